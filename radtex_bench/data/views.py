"""The view filter of a dataset block (``views: [PA, AP]``): the one rule runs and ``prepare`` apply."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from ..errors import DataError
from .columns import normalise_views
from .table import ImageTable

log = logging.getLogger("radtex_bench")


def filter_views(table: ImageTable, views, source: str, where: str) -> ImageTable:
    """Keep the images whose view is in ``views`` (the block's ``views``; ``None`` keeps every image).

    * A dataset that carries no view information at all (a CSV without a ``view`` column, or one whose
      views are all blank / ``?`` / ``unknown``) is not filtered: there is nothing to filter on, and
      refusing it would make the default ``views: [PA, AP]`` unusable for such data. run.log says so.
    * Where views exist, the filter applies, and images **without** a view are left out too: a
      frontal-only benchmark must not take in laterals that were simply not labelled (OpenI's images
      without metadata include laterals). Listing ``unknown`` (or ``?``, or ``""``) in ``views`` keeps them.
    * Nothing is left out silently: one warning names the count per view value left out (``LATERAL 8,
      no view 16``) and the key that keeps them (:func:`left_out_message`).

    The recipe's names are normalised like the data's (``LL`` -> ``LATERAL``, ``unknown`` -> no view).
    """
    if views is None:
        return table
    wanted = set(normalise_views(list(views)))
    keep_unknown = "" in wanted
    view = table.frame["view"].to_numpy(dtype=object)
    has_view = view != ""
    shown = list(views)
    if not has_view.any():
        log.info(
            "%s: the dataset carries no view information, so `%s.views: %s` does not filter it "
            "(all %d images kept)",
            source,
            where,
            shown,
            len(view),
        )
        return table
    keep = np.isin(view, sorted(wanted - {""}))
    if keep_unknown:
        keep |= ~has_view
    if not keep.any():
        found = sorted(set(view) - {""})
        raise DataError(
            f"{source}: no image has a view in {shown} (found {found}); "
            f"set `{where}.views` to the views you want, or null for all"
        )
    if not keep.all():
        log.warning("%s", left_out_message(view[~keep], len(view), source, where, shown))
    return table.take(keep)


def left_out_message(dropped: np.ndarray, total: int, source: str, where: str, shown: list) -> str:
    """The one warning naming every view value the filter left out, with its count (most first)."""
    counts = Counter("no view" if v == "" else str(v) for v in dropped)
    listed = ", ".join(f"{v} {n}" for v, n in sorted(counts.items(), key=lambda vn: (-vn[1], vn[0])))
    unknown = " (`unknown` for those without a view)" if "no view" in counts else ""
    return (
        f"{source}: {len(dropped)} of {total} images left out by the view filter `{where}.views: {shown}` "
        f"({listed}); add their views to `{where}.views` to keep them{unknown}, or set `{where}.views: null` "
        "to keep every image"
    )
