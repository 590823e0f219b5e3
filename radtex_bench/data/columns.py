"""Whole-column conversions every dataset reader shares: views, image paths, files on disk, carved splits.

MIMIC-CXR lists 377k images, so readers must load in seconds: everything here works on pandas
columns at once, and checking files on disk lists each folder once instead of one ``stat`` per image.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

#: Projection spellings the datasets use for a lateral view; all become ``LATERAL``.
LATERAL_ALIASES = ("LATERAL", "LAT", "LL", "RL", "LARGE LATERAL", "XTABLE LATERAL")
#: Spellings of "the view is not known": they become ``""`` (no view), never a view name, so a CSV
#: that writes ``?`` or ``unknown`` is treated like one that leaves the cell blank.
NO_VIEW = ("UNKNOWN", "UNK", "N/A", "NA", "NONE", "NULL", "NAN", "UNSPECIFIED", "NOT AVAILABLE", "NOT KNOWN")


#: Words that say how the patient or the machine was placed, not which projection was taken: a view
#: made of one base projection (``AP``, ``PA``, a lateral spelling) and only these words is that base
#: view (``AP SUPINE``, ``PORTABLE AP``, ``PA ERECT``, ``AP SEMI-ERECT`` -> ``AP`` / ``PA``). Words that
#: change the projection (``AXIAL``, ``LLD`` / ``RLD`` decubitus, ``LORDOTIC``, ``OBLIQUE``) are not here,
#: so those views keep their own name.
POSITION_WORDS = frozenset(
    {
        "SUPINE", "PRONE", "RECUMBENT", "ERECT", "UPRIGHT", "SEMI", "SEMIERECT", "SEMIUPRIGHT", "SITTING",
        "SEATED", "STANDING", "PORTABLE", "PORT", "MOBILE", "BEDSIDE", "VIEW", "CHEST",
    }
)  # fmt: skip
_BASE_VIEWS = {"AP": "AP", "PA": "PA", **{alias: "LATERAL" for alias in LATERAL_ALIASES if " " not in alias}}


def _base_view(view: str) -> str:
    """``view`` less its position words (:data:`POSITION_WORDS`) when one base projection is left."""
    words = [w for w in re.split(r"[^A-Z0-9]+", view) if w]
    bases = [w for w in words if w not in POSITION_WORDS]
    if len(words) > 1 and len(bases) == 1 and bases[0] in _BASE_VIEWS:
        return _BASE_VIEWS[bases[0]]
    return view


def normalise_views(values: pd.Series | Iterable[str]) -> pd.Series:
    """Upper-case, single-spaced view names; every lateral spelling (``LL``, ``RL``, ...) -> ``LATERAL``;
    a base view with position words (``AP SUPINE``, ``PORTABLE AP``, ``PA ERECT``) -> the base view.

    Other projections (``AP AXIAL``, ``AP LLD``, ``LAO``, ``SWIMMERS``, ...) keep their own name. No view
    is ``""``: a blank or missing cell, a value without a letter or digit (``?``, ``-``) or a spelling of
    unknown (:data:`NO_VIEW`: ``unknown``, ``n/a``, ``none``, ...).
    """
    s = pd.Series(values, dtype=object).fillna("").astype(str)
    s = s.str.strip().str.upper().str.replace(r"\s+", " ", regex=True)
    s = s.where(s.str.contains(r"[A-Z0-9]", regex=True) & ~s.isin(NO_VIEW), "")
    s = s.where(~s.isin(LATERAL_ALIASES), "LATERAL")
    # A few distinct values over 377k rows (MIMIC): map each distinct value once.
    return s.map({v: _base_view(v) for v in s.unique()})


_SPECIAL = re.compile(r"^/|^\./|(?:^|/)\.\.?(?:/|$)")


def join_image_paths(
    base: Path,
    values: pd.Series | Iterable[str],
    allow_absolute: bool,
    source: str,
    column: str = "image_path",
) -> pd.Series:
    """Absolute image paths for ``values`` relative to ``base``, refusing any that leave ``base``.

    The check is lexical (``..`` segments), not ``realpath``: a dataset folder whose images are
    symlinks into another disk is common and fine. Backslashes (CSV files written on Windows) are read
    as separators.
    """
    base_abs = os.path.abspath(base)
    inside = base_abs.rstrip("/") + "/"
    values = ["" if v is None or v != v else str(v).strip().replace("\\", "/") for v in values]
    out = [inside + v for v in values]
    for i in (i for i, v in enumerate(values) if _SPECIAL.search(v)):  # rare: absolute, ./ or ..
        v = values[i]
        if v.startswith("/"):
            if not allow_absolute:
                raise DataError(
                    f"{source}: {column} {v!r} is absolute; use paths relative to {base} or set "
                    "`allow_absolute_paths: true`"
                )
            out[i] = os.path.normpath(v)
            continue
        out[i] = os.path.normpath(out[i])
        if not allow_absolute and not out[i].startswith(inside):
            raise DataError(
                f"{source}: {column} {v!r} points outside the dataset folder {base}; move the image "
                "inside it or set `allow_absolute_paths: true`"
            )
    return pd.Series(out, dtype=object)


def _listing(folder: str) -> set[str]:
    try:
        with os.scandir(folder or "/") as it:
            return {e.name for e in it}
    except OSError:
        return set()


def files_present(paths: pd.Series | Iterable[str]) -> np.ndarray:
    """Whether each path exists, listing a folder once when it holds many of them (NIH: 112k images in
    one folder) and checking the others one by one (MIMIC: 2-3 images per study folder)."""
    paths = [str(p) for p in paths]
    folders = [p.rpartition("/")[0] for p in paths]
    listed = {f: _listing(f) for f, n in Counter(folders).items() if n >= 8}
    isfile = os.path.isfile
    return np.fromiter(
        (p[len(f) + 1 :] in listed[f] if f in listed else isfile(p) for p, f in zip(paths, folders)),
        dtype=bool,
        count=len(paths),
    )


def carve_patients(
    patient_ids: np.ndarray, rows: np.ndarray, fraction: float, seed: int, salt: int
) -> np.ndarray:
    """Boolean mask over ``patient_ids``: the images of a seeded ``fraction`` of the patients among ``rows``.

    Used to cut a split a dataset does not ship (e.g. NIH's validate out of ``train_val_list.txt``) by
    patient, so no patient lands in two splits. Deterministic for (patients, seed); at least one patient
    is carved when ``fraction > 0`` and there are two or more patients.
    """
    patient_ids = np.asarray(patient_ids, dtype=str)
    mask = np.zeros(len(patient_ids), dtype=bool)
    patients = np.unique(patient_ids[rows])
    n = len(patients)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    if k <= 0:
        return mask
    rng = np.random.default_rng(np.random.SeedSequence([seed, salt]))
    chosen = patients[rng.permutation(n)[:k]]
    mask[rows] = np.isin(patient_ids[rows], chosen)
    return mask


def dataset_folder(options, where: str, what: str) -> Path:
    """``options.root`` as an existing folder, else a :class:`DataError` saying what it should hold."""
    root = options.root_path(where)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"{where}.root: {root} {state}; point it at {what}")
    return root


def first_existing(folder: Path, patterns: Iterable[str]) -> Path | None:
    """The first file matching one of ``patterns`` (glob, tried in order; within one, the last sorted name)."""
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[-1]
    return None


def read_table(path: Path, what: str, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` whose failures become one-line :class:`DataError` naming the file and the fix
    (not pandas' or the codec's own words)."""
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; the {what} is a CSV file") from None
    except UnicodeDecodeError:
        raise DataError(
            f"cannot read {what} {path}: it is not UTF-8 text (is it a CSV? an image?); save it as a "
            "UTF-8 CSV"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{what} {path} is empty; it needs a header row and one row per image") from None
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(
            f"{what} {path} is not a well-formed CSV ({first}); check its quotes and that every row has "
            "as many fields as the header"
        ) from None
    except ValueError as exc:  # missing usecols, bad dtype
        raise DataError(f"{path}: {exc}; is this the {what} as downloaded?") from None
    except Exception as exc:
        raise DataError(f"cannot read {what} {path}: {type(exc).__name__}: {exc}") from None


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: Path, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; expected the {what} as downloaded "
            f"(found: {', '.join(map(str, df.columns[:12]))})"
        )
