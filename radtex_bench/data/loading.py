"""From a recipe's dataset block to a ready :class:`ImageTable`.

Everything every kind needs happens here once: view filter, report sections, patient-level splits,
missing-image policy, and pixel source (the ``prepare`` cache or the original files).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from . import reports
from .columns import files_present
from .kinds import DatasetSpec
from .splits import assign_patient_splits, check_patient_disjoint
from .table import ImageTable
from .views import filter_views

if TYPE_CHECKING:
    from .cache import PixelCache

log = logging.getLogger("radtex_bench")


def load_table(
    spec: DatasetSpec,
    on_bad_image: str = "error",
    where: str = "data.pretrain",
    check_files: bool = True,
    image_size: int | None = None,
) -> ImageTable:
    """``image_size``: the side the model is fed; a pixel cache smaller than that is refused."""
    opts = spec.options
    table = spec.read(where)
    source = spec.source(where)
    if len(table) == 0:
        raise DataError(f"{source}: the dataset lists no images; check `root`")

    table = filter_views(table, opts.views, source, where)

    table.frame["report"] = reports.extract_all(table.frame["report"], opts.report_section, opts.drop_prior)

    splits = table.frame["split"].to_numpy()
    if (splits == "").all():
        table.frame["split"] = assign_patient_splits(table.patient_ids, opts.split_fractions, opts.split_seed)
    elif (splits == "").any():
        raise DataError(f"{source}: some images have a split and others none; fill the split for every image")
    check_patient_disjoint(table.patient_ids, table.frame["split"].to_numpy(), source)

    if check_files:
        table = _check_images(table, spec, on_bad_image, source, image_size, where)
    return table


def _undecodable(paths: list[str]) -> list[tuple[str, str]]:
    """(path, reason) of every image that does not decode (truncated, corrupt, not an image).

    The reason is the structured :attr:`UnreadableImage.reason` (``"OSError: image file is truncated"``),
    the same field ``prepare`` records. A missing pydicom is no property of one image: it propagates.
    """
    from .images import UnreadableImage, read_grey

    bad = []
    for path in paths:
        try:
            read_grey(path, size_hint=64)
        except UnreadableImage as exc:
            bad.append((path, exc.reason))
    return bad


def _check_images(
    table: ImageTable,
    spec: DatasetSpec,
    on_bad_image: str,
    source: str,
    image_size: int | None = None,
    where: str = "data.pretrain",
) -> ImageTable:
    cache = None
    if spec.options.cache:
        from .cache import PixelCache

        cache = PixelCache.open(Path(spec.options.cache))
        cached = cache.size
        if image_size and cached < image_size:
            # Upsampling a small cache would silently train on blurred images.
            raise DataError(
                f"{where}.cache: {spec.options.cache} holds {cached} px images, smaller than "
                f"encoder.image_size {image_size}; prepare the cache again with --size {image_size} "
                "(or larger), or lower encoder.image_size"
            )
    table = _check_present(table, on_bad_image, source, cache, spec.options.cache)
    if on_bad_image == "skip" and not spec.options.cache:
        # Skipping must happen before training, so every objective sees the same images; decoding
        # everything once is the price (a `prepare` cache has already dropped unreadable images).
        bad = _undecodable(table.frame["path"].tolist())
        if bad:
            log.warning("%s: skipping %d unreadable images, e.g. %s (%s)", source, len(bad), *bad[0])
            keep = ~table.frame["path"].isin({p for p, _ in bad}).to_numpy()
            skipped = table.skipped + [(p, f"unreadable: {why}") for p, why in bad]
            table = table.take(keep)
            table.skipped = skipped
            if len(table) == 0:
                raise DataError(f"{source}: no listed image can be decoded")
    return table


def _check_present(
    table: ImageTable, on_bad_image: str, source: str, cache: PixelCache | None, cache_name: str | None
) -> ImageTable:
    if cache is not None:
        present = np.array([cache.has(i) for i in table.image_ids], dtype=bool)
        what = f"missing from the cache {cache_name}"
    else:
        present = files_present(table.frame["path"])
        what = "not found"
    if present.all():
        return table
    missing = table.frame["path"].to_numpy()[~present]
    if on_bad_image == "error":
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"{source}: image {what}: {missing[0]}{more}; restore the files or set "
            "`data.on_bad_image: skip` to leave them out"
        )
    log.warning("%s: skipping %d images %s", source, len(missing), what)
    skipped = table.skipped + [(str(p), what) for p in missing]
    table = table.take(present)
    table.skipped = skipped
    if len(table) == 0:
        raise DataError(f"{source}: every listed image is {what}")
    return table
