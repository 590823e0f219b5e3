"""Patient-level splits: no patient ever appears in two splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from .table import SPLITS


def assign_patient_splits(patient_ids: np.ndarray, fractions: Sequence[float], seed: int) -> np.ndarray:
    """``train`` / ``validate`` / ``test`` per image, by patient, deterministic for (patients, seed).

    Unique patients are sorted, shuffled with ``seed`` and cut by ``fractions`` (rounded, each split
    getting at least one patient when there are three or more patients).
    """
    patients = np.unique(np.asarray(patient_ids, dtype=str))
    n = len(patients)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5917]))
    order = patients[rng.permutation(n)]
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_test = max(1, n_test)
        n_val = max(1 if fractions[1] > 0 else 0, n_val)
        n_val = min(n_val, n - n_test - 1)
    split_of = {p: "test" for p in order[:n_test]}
    split_of.update({p: "validate" for p in order[n_test : n_test + n_val]})
    split_of.update({p: "train" for p in order[n_test + n_val :]})
    return np.array([split_of[p] for p in np.asarray(patient_ids, dtype=str)], dtype=object)


def check_patient_disjoint(patient_ids: np.ndarray, splits: np.ndarray, source: str) -> None:
    """An official split that puts one patient in two splits would leak: refuse it."""
    seen: dict[str, str] = {}
    for patient, split in zip(np.asarray(patient_ids, dtype=str), np.asarray(splits, dtype=str)):
        if not split:
            continue
        other = seen.setdefault(patient, split)
        if other != split:
            raise DataError(
                f"{source}: patient {patient} appears in both the '{other}' and '{split}' splits; "
                "fix the split column or leave it empty for a patient-level split"
            )


def normalise_split(value: str) -> str:
    v = str(value).strip().lower()
    aliases = {
        "val": "validate",
        "valid": "validate",
        "validation": "validate",
        "dev": "validate",
        "training": "train",
        "testing": "test",
        "nan": "",
        "none": "",
    }
    v = aliases.get(v, v)
    if v and v not in SPLITS:
        raise ValueError(v)
    return v
