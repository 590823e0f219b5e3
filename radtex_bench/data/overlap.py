"""Pretraining must never see an evaluation validation or test image: find and remove any overlap.

With ``data.evaluate: null`` the evaluation patients are held out of the pretraining split by
construction. With another evaluation dataset (or the same files under another split) they may not be,
so before any work the pretraining images are compared with the evaluation *validation and test*
images (the training pool may be pretrained on: the probes' labelled subsets come from it, as in
RadTex):

* **same dataset** (same kind, same root folder): by image id, and by patient id;
* **different datasets**: by resolved file path (symlinks followed), since ids and patient ids of two
  datasets live in different namespaces and are not compared.

``data.overlap: exclude`` (default) drops the overlapping images, and every image of an overlapping
patient, from pretraining and says so in run.log and report.md; ``error`` stops the run instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .table import ImageTable


@dataclass(frozen=True)
class Overlap:
    """What pretraining shares with the evaluation validation/test images.

    ``drop``: ``[N_pretrain]`` bool, the pretraining images to leave out (shared images and every image
    of a shared patient); ``images`` / ``patients``: how many pretraining images are themselves
    evaluation images / how many patients both sides share; ``by``: how they were matched.
    """

    drop: np.ndarray
    images: int
    patients: int
    by: str
    examples: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.drop.any())

    def describe(self) -> str:
        """One sentence for the log, the report and the error."""
        what = f"{self.images} pretraining image(s) are evaluation validation/test images"
        if self.patients:
            what += f" and {self.patients} patient(s) appear on both sides"
        example = f" (e.g. {self.examples[0]})" if self.examples else ""
        return f"{what}, matched by {self.by}{example}; {int(self.drop.sum())} pretraining image(s) affected"

    def to_json(self) -> dict:
        return {
            "excluded_images": int(self.drop.sum()),
            "shared_images": self.images,
            "shared_patients": self.patients,
            "matched_by": self.by,
            "examples": self.examples,
        }


def same_dataset(a: ImageTable, b: ImageTable) -> bool:
    """Two tables read from the same dataset (kind and root folder): their ids are comparable."""
    if a is b:
        return True
    if a.kind != b.kind or a.root is None or b.root is None:
        return False
    return Path(a.root).resolve() == Path(b.root).resolve()


def _real(paths: list[str]) -> np.ndarray:
    return np.array([os.path.realpath(p) for p in paths], dtype=object)


def find_overlap(pretrain: ImageTable, evaluate: ImageTable, held_out: np.ndarray) -> Overlap:
    """Compare ``pretrain`` (its pretraining images) with the rows ``held_out`` of ``evaluate``.

    ``held_out``: row indices of the evaluation validation and test images.
    """
    held = evaluate.take(held_out)
    if same_dataset(pretrain, evaluate):
        shared = np.isin(pretrain.frame["image_id"].to_numpy(), held.frame["image_id"].to_numpy())
        patients = np.isin(pretrain.patient_ids, held.patient_ids)
        by = "image id and patient id (same dataset)"
        n_patients = int(np.unique(pretrain.patient_ids[patients]).size)
    else:
        shared = np.isin(_real(pretrain.frame["path"].tolist()), _real(held.frame["path"].tolist()))
        patients = np.zeros(len(pretrain), dtype=bool)
        by = "resolved file path (different datasets: ids and patients are not comparable)"
        n_patients = 0
    drop = shared | patients
    examples = (
        pretrain.frame["path"].to_numpy()[shared][:3].tolist()
        or pretrain.frame["image_id"].to_numpy()[drop][:3].tolist()
    )
    return Overlap(drop=drop, images=int(shared.sum()), patients=n_patients, by=by, examples=examples)
