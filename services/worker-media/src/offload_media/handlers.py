"""The media worker's job handlers: thin, over ``images`` (Pillow), ``crop``, ``metadata`` and ``sources``.

Every operation is written once, for one source, with a name prefix and a progress callback, so
the single-image jobs and ``image.batch`` run the same code.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from offload.contracts.media import (
    AVATAR,
    BATCH,
    CLEANUP,
    OPTIMIZE,
    RESIZE,
    THUMBNAIL,
    AvatarOptions,
    AvatarPayload,
    BatchItemResult,
    BatchOperation,
    BatchPayload,
    BatchResult,
    CleanupPayload,
    CleanupResult,
    ImageFormat,
    ImageOutput,
    ImageResult,
    ImageSource,
    ItemError,
    OptimizeOptions,
    OptimizePayload,
    OptimizeResult,
    ResizeOptions,
    ResizePayload,
    TargetSize,
    ThumbnailOptions,
    ThumbnailPayload,
)
from offload.errors import JobCancelled, JobError, TransientJobError
from offload.jobs import served_by
from offload.signing import LinkSigner
from offload.status.effects import Effects
from offload.storage import Storage, make_key
from offload.worker import JobContext
from offload_media import crop, images, metadata
from offload_media.settings import MediaSettings
from offload_media.sources import Sources

logger = logging.getLogger(__name__)

#: Reports progress: percent of this operation (0-100) and a short message.
Progress = Callable[[float, str], None]
#: The output format ``image.optimize`` picks for ``same``, by source format.
SAME_FORMAT: dict[str, ImageFormat] = {"jpeg": "jpeg", "png": "png", "webp": "webp", "gif": "png"}


@dataclass(frozen=True)
class MediaHandlers:
    """Entry points for the ``media`` queue."""

    sources: Sources
    storage: Storage
    signer: LinkSigner
    settings: MediaSettings
    #: Decoded pixels this process may hold at once (shared by its threads).
    budget: images.MemoryBudget

    # -- jobs ----------------------------------------------------------------------------------

    def resize(self, ctx: JobContext, payload: ResizePayload) -> ImageResult:
        """Every size in every format from one decode; outputs replace any of an earlier attempt.

        Raises:
            PermanentJobError: a hostile, corrupt or unsupported image, or a source that cannot be had.
            TransientJobError: a URL source that could not be fetched now.
        """
        self._fresh_start(ctx)
        return self._resize(ctx, payload.source, payload, "", ctx.progress)

    def thumbnail(self, ctx: JobContext, payload: ThumbnailPayload) -> ImageResult:
        """One small image (the longest side becomes ``size``): the JPEG fast path of :meth:`resize`."""
        self._fresh_start(ctx)
        return self._resize(ctx, payload.source, _as_resize(payload), "", ctx.progress)

    def avatar(self, ctx: JobContext, payload: AvatarPayload) -> ImageResult:
        """Square images of exactly each size, cut from the centre or the busiest part of the image.

        Raises:
            PermanentJobError, TransientJobError: as :meth:`resize`.
        """
        self._fresh_start(ctx)
        return self._avatar(ctx, payload.source, payload, "", ctx.progress)

    def optimize(self, ctx: JobContext, payload: OptimizePayload) -> OptimizeResult:
        """The image re-encoded at full size, or the original (metadata removed) if that is smaller.

        Raises:
            PermanentJobError, TransientJobError: as :meth:`resize`; animated images are refused.
        """
        self._fresh_start(ctx)
        return self._optimize(ctx, payload.source, payload, "", ctx.progress)

    def batch(self, ctx: JobContext, payload: BatchPayload) -> BatchResult:
        """Apply one operation to every source, recording each item's outcome as it is known.

        An item that fails is reported (with its code and whether trying again could help) and the
        batch goes on. A retried or redelivered batch resumes: items already recorded are not redone.
        Outputs are named ``<index>-<name>``.
        """
        self._fresh_start(ctx)
        effects = Effects(self.sources.store)
        journal = effects.journal("image-batch", ctx.job_id)
        done = {int(i): BatchItemResult.model_validate_json(raw) for i, raw in journal.items()}
        total = len(payload.sources)
        items: list[BatchItemResult] = []
        for index, source in enumerate(payload.sources):
            item = done.get(index)
            if item is None:

                def progress(percent: float, message: str, index: int = index) -> None:
                    ctx.progress(100 * (index + percent / 100) / total, f"{index + 1}/{total}: {message}")

                item = self._batch_item(ctx, index, source, payload.operation, progress)
                outcome = item.status if item.error is None else f"{item.status}: {item.error.code}"
                ctx.log(f"item {index + 1}/{total}: {outcome}")
                entry = {str(index): item.model_dump_json()}
                effects.write("image-batch", ctx.job_id, entry, ttl_s=self.settings.retention_failed)
            items.append(item)
            ctx.progress(100 * (index + 1) / total, f"{index + 1}/{total} images")
        succeeded = sum(item.status == "succeeded" for item in items)
        return BatchResult(succeeded=succeeded, failed=total - succeeded, items=items)

    def cleanup(self, _ctx: JobContext, payload: CleanupPayload) -> CleanupResult:
        """Remove the uploads and outputs of the whole storage (every tenant) past retention."""
        older_than = payload.older_than or self.settings.storage_retention
        swept = self.storage.remove_older_than(time.time() - older_than, dry_run=payload.dry_run)
        logger.info("Storage cleanup: %d folders, %d files, %d bytes.", swept.folders, swept.files, swept.bytes)
        return CleanupResult(folders=swept.folders, files=swept.files, bytes=swept.bytes, dry_run=payload.dry_run)

    # -- one source --------------------------------------------------------------------------

    def _resize(
        self, ctx: JobContext, source: ImageSource, options: ResizeOptions, prefix: str, progress: Progress
    ) -> ImageResult:
        with self.sources.open(source, tenant=ctx.tenant) as handle:
            image = images.open_image(handle, self._limits(), first_frame=options.animated == "first_frame")
            needed = images.needed_size(images.upright_size(image), options.sizes, enlarge=options.enlarge)
            with self.budget.reserve(images.decoded_bytes(image, needed)):
                original, decoded, exif = images.load(
                    image, needed, keep_metadata=options.keep_metadata, srgb=options.colour == "srgb"
                )
                made = images.variants(
                    decoded, options.sizes, options.formats, quality=options.quality, enlarge=options.enlarge, exif=exif
                )
                outputs = self._store_all(ctx, made, len(options.sizes) * len(options.formats), prefix, progress)
                del image, decoded  # free the pixels before the budget is given back (they may be one object)
        return ImageResult(source=original, outputs=outputs)

    def _avatar(
        self, ctx: JobContext, source: ImageSource, options: AvatarOptions, prefix: str, progress: Progress
    ) -> ImageResult:
        largest = max(options.sizes)
        cover = TargetSize(width=largest, height=largest, fit="cover")
        with self.sources.open(source, tenant=ctx.tenant) as handle:
            image = images.open_image(handle, self._limits(), first_frame=True)
            needed = images.needed_size(images.upright_size(image), [cover], enlarge=True)
            with self.budget.reserve(images.decoded_bytes(image, needed)):
                original, decoded, _ = images.load(image, needed, srgb=options.colour == "srgb")
                square = decoded.crop(crop.square_box(decoded, options.crop))
                targets = [TargetSize(width=size, height=size) for size in sorted(options.sizes, reverse=True)]
                made = images.variants(square, targets, [options.format], quality=options.quality, enlarge=True)
                outputs = self._store_all(ctx, made, len(targets), prefix, progress)
                del image, decoded, square
        return ImageResult(source=original, outputs=outputs)

    def _optimize(
        self, ctx: JobContext, source: ImageSource, options: OptimizeOptions, prefix: str, progress: Progress
    ) -> OptimizeResult:
        with self.sources.open(source, tenant=ctx.tenant) as handle:
            data = handle.read()
        image = images.open_image(io.BytesIO(data), self._limits())
        upright = images.upright_size(image)
        # The original keeps its profile: not an answer to a request for sRGB pixels, nor when the
        # profile is too large for outputs to inherit.
        icc = image.info.get("icc_profile") or b""
        may_keep_original = (options.colour == "preserve" or not icc) and len(icc) <= images.MAX_ICC_BYTES
        fmt: ImageFormat = SAME_FORMAT[(image.format or "").lower()] if options.format == "same" else options.format
        with self.budget.reserve(images.decoded_bytes(image, upright)):
            original, decoded, exif = images.load(
                image, upright, keep_metadata=options.keep_metadata, srgb=options.colour == "srgb"
            )
            progress(50, "decoded")
            encoded = images.encode(
                decoded, fmt, quality=options.quality, icc=decoded.info.get("icc_profile"), exif=exif, smallest=True
            )
            fallback = None
            if len(encoded) >= len(data) and may_keep_original:
                fallback = data if options.keep_metadata else metadata.without_metadata(data)
            del image, decoded  # free the pixels before the budget is given back
        name, kept = f"optimized.{images.EXTENSIONS[fmt]}", False
        if fallback is not None and len(fallback) <= len(encoded):
            kept_format = str(original["format"])
            encoded, name, kept = fallback, f"optimized.{images.EXTENSIONS[kept_format]}", True
            logger.info("Re-encoding would not save bytes; keeping the original (%s).", kept_format)
        variant = images.Variant(name, fmt, upright[0], upright[1], encoded)
        output = self._store(ctx, variant, prefix, label=str(original["format"]) if kept else fmt)
        progress(100, name)
        return OptimizeResult(
            source=original, outputs=[output], bytes_before=len(data), bytes_after=output.bytes, kept_original=kept
        )

    def _batch_item(
        self, ctx: JobContext, index: int, source: ImageSource, operation: BatchOperation, progress: Progress
    ) -> BatchItemResult:
        prefix = f"{index}-"
        try:
            result: ImageResult
            if operation.resize is not None:
                result = self._resize(ctx, source, operation.resize, prefix, progress)
            elif operation.thumbnail is not None:
                result = self._resize(ctx, source, _as_resize(operation.thumbnail), prefix, progress)
            elif operation.avatar is not None:
                result = self._avatar(ctx, source, operation.avatar, prefix, progress)
            else:
                assert operation.optimize is not None
                result = self._optimize(ctx, source, operation.optimize, prefix, progress)
        except JobCancelled:
            raise
        except JobError as exc:
            error = ItemError(code=exc.code, message=exc.message, retryable=isinstance(exc, TransientJobError))
            return BatchItemResult(index=index, status="failed", error=error)
        except Exception:  # one bad item must not cost the others their results
            logger.exception("Item %d of batch %s failed unexpectedly.", index, ctx.job_id)
            error = ItemError(code="internal_error", message="The item could not be processed.", retryable=True)
            return BatchItemResult(index=index, status="failed", error=error)
        return BatchItemResult(index=index, status="succeeded", result=result)

    # -- storage -------------------------------------------------------------------------------

    def _fresh_start(self, ctx: JobContext) -> None:
        if self.storage.discard_partials(ctx.tenant, ctx.job_id):
            logger.info("Discarded the half-written outputs of an interrupted attempt.")

    def _limits(self) -> images.Limits:
        return images.Limits(self.settings.max_pixels, self.settings.max_frames)

    def _store_all(
        self, ctx: JobContext, made: Iterator[images.Variant], steps: int, prefix: str, progress: Progress
    ) -> list[ImageOutput]:
        outputs: list[ImageOutput] = []
        for variant in made:
            outputs.append(self._store(ctx, variant, prefix))
            progress(100 * len(outputs) / steps, variant.name)
        return outputs

    def _store(self, ctx: JobContext, variant: images.Variant, prefix: str, *, label: str | None = None) -> ImageOutput:
        name = f"{prefix}{variant.name}"
        key = make_key(ctx.tenant, ctx.job_id, name)
        stored = self.storage.put(key, [variant.data])
        return ImageOutput(
            name=name,
            format=label or variant.format,
            width=variant.width,
            height=variant.height,
            bytes=stored.size,
            url=self.signer.path(key),
        )


def _as_resize(options: ThumbnailOptions) -> ResizeOptions:
    return ResizeOptions(
        sizes=[TargetSize(width=options.size, height=options.size)],
        formats=[options.format],
        quality=options.quality,
        colour=options.colour,
    )


#: The job types these handlers serve, each bound to its contract.
resize = served_by(MediaHandlers, MediaHandlers.resize, RESIZE)
thumbnail = served_by(MediaHandlers, MediaHandlers.thumbnail, THUMBNAIL)
avatar = served_by(MediaHandlers, MediaHandlers.avatar, AVATAR)
optimize = served_by(MediaHandlers, MediaHandlers.optimize, OPTIMIZE)
batch = served_by(MediaHandlers, MediaHandlers.batch, BATCH)
cleanup = served_by(MediaHandlers, MediaHandlers.cleanup, CLEANUP)
