"""Test videos: clips ffmpeg generates (``testsrc``, ``sine``), playlists, and a crafted header.

Every clip is made by ffmpeg itself at a low resolution, so the suite needs no media files and
stays fast; the crafted MP4 header is written byte by byte (ISO base media boxes and an H.264
sequence parameter set) so it claims what no real file of its size could.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path


def make_clip(
    path: Path,
    *,
    seconds: float = 10,
    size: str = "480x360",
    rate: int = 15,
    black_lead: float = 0.0,
    audio: bool = True,
    container: str = "mp4",
) -> Path:
    """A clip of ffmpeg's test pattern (H.264/AAC in MP4, or VP9/Opus in WebM), optionally after black seconds."""
    video = f"testsrc=size={size}:rate={rate}:duration={seconds - black_lead}"
    if black_lead:
        video = f"color=c=black:s={size}:r={rate}:d={black_lead}[b];{video}[t];[b][t]concat=n=2:v=1:a=0"
    args = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", video]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if container == "mp4":
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    else:
        args += ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"]
    subprocess.run([*args, "-shortest", str(path)], check=True, timeout=120)
    return path


def hls_playlist(target: str) -> bytes:
    """An HLS playlist whose one segment is ``target`` (a URL or a path)."""
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n".encode()


def concat_playlist(target: str) -> bytes:
    """An ffconcat script whose one entry is ``target``."""
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


# -- a crafted MP4 header: 2 hours at 8K in a few hundred bytes ---------------------------------


def huge_header(width: int = 7680, height: int = 4320, seconds: int = 7200) -> bytes:
    """An MP4 with no frames whose boxes and H.264 parameters claim ``seconds`` at ``width`` × ``height``."""
    scale, duration = 1000, seconds * 1000
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = struct.pack(">4xIIII", 0, 0, scale, duration) + struct.pack(">IH10x", 0x10000, 0x100) + matrix
    mvhd += bytes(24) + struct.pack(">I", 2)
    tkhd = struct.pack(">B3BIIIII", 0, 0, 0, 3, 0, 0, 1, 0, duration) + bytes(8) + struct.pack(">hhH2x", 0, 0, 0)
    tkhd += matrix + struct.pack(">II", width << 16, height << 16)
    mdhd = struct.pack(">4xIIIIH2x", 0, 0, scale, duration, 0x55C4)
    hdlr = struct.pack(">4xI4s12x", 0, b"vide") + b"VideoHandler\x00"
    dinf = _box(b"dinf", _box(b"dref", struct.pack(">4xI", 1) + _box(b"url ", b"\x00\x00\x00\x01")))
    sps, pps = _sps(width, height), _pps()
    avcc = bytes([1, 66, 0, 60, 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps
    avcc += b"\x01" + struct.pack(">H", len(pps)) + pps
    avc1 = bytes(6) + struct.pack(">H", 1) + bytes(16) + struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1)
    avc1 += bytes(32) + struct.pack(">Hh", 24, -1) + _box(b"avcC", avcc)
    empty = struct.pack(">4xI", 0)
    stbl = _box(b"stsd", struct.pack(">4xI", 1) + _box(b"avc1", avc1)) + _box(b"stts", empty) + _box(b"stsc", empty)
    stbl += _box(b"stsz", struct.pack(">4xII", 0, 0)) + _box(b"stco", empty)
    minf = _box(b"minf", _box(b"vmhd", struct.pack(">4xHHHH", 0, 0, 0, 0)) + dinf + _box(b"stbl", stbl))
    trak = _box(b"trak", _box(b"tkhd", tkhd) + _box(b"mdia", _box(b"mdhd", mdhd) + _box(b"hdlr", hdlr) + minf))
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41")
    return ftyp + _box(b"moov", _box(b"mvhd", mvhd) + trak)


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


class _Bits:
    """An H.264 bit writer: fixed-width fields, Exp-Golomb codes, RBSP trailing bits and escaping."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, width: int, value: int) -> _Bits:
        self.bits += [(value >> (width - 1 - i)) & 1 for i in range(width)]
        return self

    def ue(self, value: int) -> _Bits:
        code = value + 1
        return self.u(2 * code.bit_length() - 1, code)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]
        bits += [0] * (-len(bits) % 8)
        raw = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
        out, zeros = bytearray(), 0
        for byte in raw:
            if zeros >= 2 and byte <= 3:
                out.append(3)  # emulation prevention
                zeros = 0
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        return bytes(out)


def _sps(width: int, height: int) -> bytes:
    """A baseline-profile, level 6.0 sequence parameter set for a ``width`` × ``height`` picture."""
    bits = _Bits().u(8, 66).u(8, 0).u(8, 60).ue(0).ue(0).ue(2).ue(1).u(1, 0)
    bits.ue(width // 16 - 1).ue(height // 16 - 1).u(1, 1).u(1, 1).u(1, 0).u(1, 0)
    return b"\x67" + bits.rbsp()


def _pps() -> bytes:
    """The simplest picture parameter set: CAVLC, one slice group, no weighting, QP 26."""
    bits = _Bits().ue(0).ue(0).u(1, 0).u(1, 0).ue(0).ue(0).ue(0).u(1, 0).u(2, 0).ue(0).ue(0).ue(0)
    return b"\x68" + bits.u(1, 0).u(1, 0).u(1, 0).rbsp()
