"""The media worker's job handlers: thin, over ``images`` (Pillow) and ``sources``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from offload.contracts.media import ImageOutput, ImageResult, ResizePayload, TargetSize, ThumbnailPayload
from offload.signing import LinkSigner
from offload.storage import Storage, make_key
from offload.worker import Handler, JobContext
from offload_media import images
from offload_media.settings import MediaSettings
from offload_media.sources import Sources

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaHandlers:
    """Entry points for the ``media`` queue."""

    sources: Sources
    storage: Storage
    signer: LinkSigner
    settings: MediaSettings
    #: Decoded pixels this process may hold at once (shared by its threads).
    budget: images.MemoryBudget

    def resize(self, ctx: JobContext, payload: ResizePayload) -> ImageResult:
        """Every size in every format from one decode; outputs replace any of an earlier attempt.

        Raises:
            PermanentJobError: a hostile, corrupt or unsupported image, or a source that cannot be had.
            TransientJobError: a URL source that could not be fetched now.
        """
        limits = images.Limits(self.settings.max_pixels, self.settings.max_frames)
        if self.storage.discard_partials(ctx.tenant, ctx.job_id):
            logger.info("Discarded the half-written outputs of an interrupted attempt.")
        with self.sources.open(payload.source, tenant=ctx.tenant) as source:
            image = images.open_image(source, limits, first_frame=payload.animated == "first_frame")
            needed = images.needed_size(images.upright_size(image), payload.sizes, enlarge=payload.enlarge)
            with self.budget.reserve(images.decoded_bytes(image, needed)):
                original, decoded, exif = images.load(image, needed, keep_metadata=payload.keep_metadata)
                outputs = []
                steps = len(payload.sizes) * len(payload.formats)
                for variant in images.variants(
                    decoded, payload.sizes, payload.formats, quality=payload.quality, enlarge=payload.enlarge, exif=exif
                ):
                    outputs.append(self._store(ctx, variant))
                    ctx.progress(100 * len(outputs) / steps, f"{variant.name}")
                del image, decoded  # free the pixels before the budget is given back (they may be one object)
        return ImageResult(source=original, outputs=outputs)

    def thumbnail(self, ctx: JobContext, payload: ThumbnailPayload) -> ImageResult:
        """One small image (the longest side becomes ``size``): the JPEG fast path of :meth:`resize`."""
        resize = ResizePayload(
            source=payload.source,
            sizes=[TargetSize(width=payload.size, height=payload.size)],
            formats=[payload.format],
            quality=payload.quality,
        )
        return self.resize(ctx, resize)

    def _store(self, ctx: JobContext, variant: images.Variant) -> ImageOutput:
        key = make_key(ctx.tenant, ctx.job_id, variant.name)
        stored = self.storage.put(key, [variant.data])
        return ImageOutput(
            name=variant.name,
            format=variant.format,
            width=variant.width,
            height=variant.height,
            bytes=stored.size,
            url=self.signer.path(key),
        )

    def handlers(self) -> dict[str, Handler]:
        """The handlers by job type."""
        return {"image.resize": self.resize, "image.thumbnail": self.thumbnail}
