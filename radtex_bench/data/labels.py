"""Label vocabulary and the uncertain-label policy.

Labels are kept as float32 with four distinct states until a recipe's policy maps them:
``1`` positive, ``0`` negative, ``-1`` uncertain, ``NaN`` missing (not mentioned / not labelled).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0

#: CheXpert's 14 observations: the canonical names every dataset kind maps to.
CHEXPERT_14 = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: The 9 pathologies RadTex averages over (and the recipe default).
RADTEX_9 = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Lung Opacity",
    "Pleural Effusion",
    "Pneumonia",
    "Pneumothorax",
)

UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")


def apply_uncertain_policy(labels: np.ndarray, policy: str) -> np.ndarray:
    """Map uncertain (-1) labels: ``zeros`` -> 0, ``ones`` -> 1, ``ignore`` -> NaN (excluded).

    Missing labels stay NaN under every policy: a pathology not mentioned is not a negative.
    """
    if policy not in UNCERTAIN_POLICIES:
        raise ValueError(f"unknown uncertain-label policy {policy!r}")
    out = np.array(labels, dtype=np.float32, copy=True)
    uncertain = out == UNCERTAIN
    out[uncertain] = {"zeros": 0.0, "ones": 1.0, "ignore": np.nan}[policy]
    return out


def label_counts(column: np.ndarray) -> dict[str, int]:
    column = np.asarray(column, dtype=np.float32)
    return {
        "positive": int(np.sum(column == POSITIVE)),
        "negative": int(np.sum(column == NEGATIVE)),
        "uncertain": int(np.sum(column == UNCERTAIN)),
        "missing": int(np.sum(np.isnan(column))),
    }


_ALIASES = {
    "effusion": "Pleural Effusion",
    "pleural effusion": "Pleural Effusion",
    "pleural_effusion": "Pleural Effusion",
    "enlarged cardiomediastinum": "Enlarged Cardiomediastinum",
    "lung opacity": "Lung Opacity",
    "airspace opacity": "Lung Opacity",
    "no finding": "No Finding",
    "support devices": "Support Devices",
    "pleural other": "Pleural Other",
    "lung lesion": "Lung Lesion",
}


def canonical_name(name: str) -> str:
    """CheXpert spelling of a label name when one matches (case, ``_`` and NIH ``Effusion`` aside)."""
    key = str(name).strip().replace("_", " ").lower()
    key = " ".join(key.split())
    if key in _ALIASES:
        return _ALIASES[key]
    for canonical in CHEXPERT_14:
        if canonical.lower() == key:
            return canonical
    return str(name).strip()


_VALUE = {
    "1": 1.0,
    "1.0": 1.0,
    "0": 0.0,
    "0.0": 0.0,
    "-1": -1.0,
    "-1.0": -1.0,
    "": np.nan,
    "nan": np.nan,
    "true": 1.0,
    "false": 0.0,
}


def parse_label_column(values, column: str, source: str) -> np.ndarray:
    """Strings or numbers holding 1 / 0 / -1 / blank -> float32 with NaN for blank (whole column at once)."""
    from ..errors import DataError

    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        out = series.to_numpy(dtype=np.float32, na_value=np.nan)
        bad = ~(np.isnan(out) | np.isin(out, (POSITIVE, NEGATIVE, UNCERTAIN)))
    else:
        keys = series.astype(object).where(series.notna(), "").astype(str).str.strip().str.lower()
        out = keys.map(_VALUE).to_numpy(dtype=np.float32, na_value=np.nan)
        bad = ~keys.isin(_VALUE.keys()).to_numpy()
        if bad.any():  # other spellings of a number ("1.00", "-1.0e0")
            numbers = pd.to_numeric(keys[bad], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
            fine = np.isin(numbers, (POSITIVE, NEGATIVE, UNCERTAIN))
            out[np.flatnonzero(bad)[fine]] = numbers[fine]
            bad[np.flatnonzero(bad)[fine]] = False
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: column '{column}' holds {series.iloc[row]!r} (row {row + 2}); label columns may only hold "
            "1, 0, -1 or blank. If it is not a label column, list the label columns under `labels:`"
        )
    return out


def label_matrix(frame: pd.DataFrame, columns: Sequence[str], source: str) -> np.ndarray:
    """``[N, len(columns)]`` float32 labels (1 / 0 / -1 / NaN) from ``frame``'s label columns."""
    if not columns:
        return np.zeros((len(frame), 0), dtype=np.float32)
    return np.stack([parse_label_column(frame[c], c, source) for c in columns], axis=1)
