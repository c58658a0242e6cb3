"""The pure rules of the video jobs: what a probe description passes, and what sizes a request yields.

Each is also exercised end to end on real files in ``test_video.py``; these cover the cases no
small generated file reaches (rotation, many streams, odd sizes).
"""

from __future__ import annotations

from typing import Any

import pytest

from offload.errors import PermanentJobError
from offload_media.settings import MediaSettings
from offload_media.video.commands import plan
from offload_media.video.jobs import VideoTools
from offload_media.video.models import Rendition
from offload_media.video.probe import vet

RULES = VideoTools(sources=None, storage=None, signer=None, settings=MediaSettings()).rules  # type: ignore[arg-type]


def _document(**video: Any) -> dict[str, Any]:
    stream = {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080}
    stream |= {"avg_frame_rate": "30/1", **video}
    audio = {"index": 1, "codec_type": "audio", "codec_name": "aac", "sample_rate": "48000", "channels": 2}
    return {"format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "12.5"}, "streams": [stream, audio]}


def test_an_ordinary_file_passes_with_its_description() -> None:
    probed = vet(_document(), RULES, size=1000)
    assert probed.demuxer == "mov" and probed.too_large is None
    info = probed.info
    assert (info.width, info.height, info.frame_rate, info.duration) == (1920, 1080, 30.0, 12.5)
    assert (info.video_codec, info.audio_codec, len(info.streams)) == ("h264", "aac", 2)


def test_a_rotated_phone_video_is_described_as_shown() -> None:
    info = vet(_document(side_data_list=[{"rotation": -90}]), RULES, size=1).info
    assert (info.width, info.height) == (1080, 1920)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"width": 7680, "height": 4320}, "7680×4320"),
        ({"width": 10_000, "height": 10}, "10000×10"),
        ({"avg_frame_rate": "240/1"}, "240 frames"),
        ({"duration": "7200"}, "7200 s"),
    ],
)
def test_limits_are_named(change: dict[str, Any], problem: str) -> None:
    probed = vet(_document(**change), RULES, size=1)
    assert probed.too_large is not None and problem in probed.too_large
    with pytest.raises(PermanentJobError) as refused:
        probed.require_within_limits()
    assert refused.value.code == "input_too_large"


@pytest.mark.parametrize(
    ("format_name", "codec"), [("hls", "h264"), ("concat", "h264"), ("mpegts", "h264"), ("mov,mp4", "prores")]
)
def test_containers_and_codecs_off_the_allow_list_are_unsupported(format_name: str, codec: str) -> None:
    document = _document(codec_name=codec)
    document["format"]["format_name"] = format_name
    with pytest.raises(PermanentJobError) as refused:
        vet(document, RULES, size=1)
    assert refused.value.code == "unsupported_input"


def test_too_many_streams_and_no_video_are_refused() -> None:
    document = _document()
    document["streams"] += [{"index": i, "codec_type": "data", "codec_name": "bin_data"} for i in range(2, 12)]
    assert "12 streams" in (vet(document, RULES, size=1).too_large or "")
    document["streams"] = document["streams"][1:2]
    with pytest.raises(PermanentJobError, match="no video stream"):
        vet(document, RULES, size=1)


def test_renditions_are_never_upscaled_and_stay_even() -> None:
    asked = [Rendition(height=360), Rendition(height=1080, format="webm"), Rendition(height=144, video_kbps=120)]
    made = plan(asked, 426, 241)
    assert [(p.width, p.height, p.video_kbps) for p in made] == [(424, 240, 300), (424, 240, 300), (254, 144, 120)]
    assert made[0].note and "240p" in made[0].note and made[2].note is None
    assert made[0].name == made[1].name.replace("webm", "mp4")
