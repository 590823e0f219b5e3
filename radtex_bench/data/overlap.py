"""Pretraining must never see an evaluation validation or test image: find and remove any overlap.

With ``data.evaluate: null`` the evaluation patients are held out of the pretraining split by
construction. With another evaluation dataset (or the same files under another split) they may not be,
so before any work the pretraining images are compared with the evaluation *validation and test*
images (the training pool may be pretrained on: the probes' labelled subsets come from it, as in
RadTex). What is compared depends on whether the two sides' ids share one naming scheme
(:func:`comparable_ids`):

* **same dataset** (same kind, same root folder): by image id, and by patient id;
* **same kind at another root** (a copy, another release such as CheXpert-v1.0-small vs CheXpert-v1.0,
  two MIMIC-CXR-JPG folders, a copied manifest folder): by image id, by patient id *and* by resolved
  file path. For ``manifest`` (CSVs of your own) this assumes the two CSVs use one naming scheme for
  ``image_id`` / ``patient_id``; the finding says so, so that a coincidence of ids between two
  unrelated CSVs shows as what it is. ``synthetic`` ids are compared only between datasets of the
  same generator seed (and version): other seeds reuse the ids for other images;
* **different kinds**: by resolved file path (symlinks followed), since ids and patient ids of two
  datasets live in different namespaces; a patient with a shared file is an evaluation patient, so
  every pretraining image of that (pretraining-side) patient goes too.

``data.overlap: exclude`` (default) drops the overlapping images, and every image of an overlapping
patient, from pretraining and says so in run.log and report.md; ``error`` stops the run instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .table import ImageTable

#: Said with every finding between two ``manifest`` CSVs at different roots: their ids are *assumed*
#: to be one naming scheme, which the toolkit cannot check.
MANIFEST_NOTE = (
    "the two manifest CSVs are at different roots, so their image_id and patient_id columns are taken "
    "to use one naming scheme (a copied manifest); if they are different datasets whose ids merely "
    "coincide, give one of them distinct ids (e.g. a prefix)"
)


@dataclass(frozen=True)
class Overlap:
    """What pretraining shares with the evaluation validation/test images.

    ``drop``: ``[N_pretrain]`` bool, the pretraining images to leave out (shared images and every image
    of a shared patient); ``images`` / ``patients``: how many pretraining images are themselves
    evaluation images / how many (pretraining-side) patients both sides share; ``by``: how they were
    matched; ``note``: a caveat on the match (empty when none), e.g. :data:`MANIFEST_NOTE`.
    """

    drop: np.ndarray
    images: int
    patients: int
    by: str
    examples: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def found(self) -> bool:
        return bool(self.drop.any())

    def describe(self) -> str:
        """One sentence for the log, the report and the error (the caller says what happens to them).

        ``3 pretraining image(s) are evaluation validation/test images, matched by ...`` when only the
        shared images go; ``...; with the rest of those patients' images, 7 pretraining image(s) in all``
        when shared patients have other pretraining images that go too.
        """
        what = f"{self.images} pretraining image(s) are evaluation validation/test images"
        if self.patients:
            what += f" and {self.patients} patient(s) appear on both sides"
        example = f" (e.g. {self.examples[0]})" if self.examples else ""
        # The count of images to leave out is said only when it adds something: it is larger than the
        # shared images when shared patients bring their other images along.
        dropped = int(self.drop.sum())
        extra = (
            f"; with the rest of those patients' images, {dropped} pretraining image(s) in all"
            if dropped != self.images
            else ""
        )
        note = f" (note: {self.note})" if self.note else ""
        return f"{what}, matched by {self.by}{example}{extra}{note}"

    def to_json(self) -> dict:
        return {
            "excluded_images": int(self.drop.sum()),
            "shared_images": self.images,
            "shared_patients": self.patients,
            "matched_by": self.by,
            "examples": self.examples,
            "note": self.note,
        }


def same_dataset(a: ImageTable, b: ImageTable) -> bool:
    """Two tables read from the same dataset (kind and root folder)."""
    if a is b:
        return True
    if a.kind != b.kind or a.root is None or b.root is None:
        return False
    return Path(a.root).resolve() == Path(b.root).resolve()


def _synthetic_generator(table: ImageTable) -> tuple | None:
    """(version, seed) of a synthetic table's generator, from its ``synthetic.json``; None if unknown."""
    from .synthetic import stored_params

    params = stored_params(Path(table.root)) if table.root is not None else None
    return None if params is None else (params.get("version"), params.get("seed"))


def comparable_ids(a: ImageTable, b: ImageTable) -> tuple[str, str] | None:
    """Whether the image and patient ids of ``a`` and ``b`` name the same images and people.

    Returns ``(why, note)`` when they do (``note``: a caveat for the user, or ``""``), None when they
    live in different namespaces and only file paths can be compared.
    """
    if same_dataset(a, b):
        return "same dataset", ""
    if a.kind != b.kind:
        return None
    if a.kind == "synthetic":
        ga, gb = _synthetic_generator(a), _synthetic_generator(b)
        if ga is not None and gb is not None and ga != gb:
            return None  # another seed reuses the ids P00000_S01, ... for other images
        return "same synthetic generator seed at another root", ""
    if a.kind == "manifest":
        return "two manifest CSVs at different roots", MANIFEST_NOTE
    return f"same dataset kind `{a.kind}` at another root: a copy or another release", ""


def _real(paths: list[str]) -> np.ndarray:
    return np.array([os.path.realpath(p) for p in paths], dtype=object)


def find_overlap(pretrain: ImageTable, evaluate: ImageTable, held_out: np.ndarray) -> Overlap:
    """Compare ``pretrain`` (its pretraining images) with the rows ``held_out`` of ``evaluate``.

    ``held_out``: row indices of the evaluation validation and test images.
    """
    held = evaluate.take(held_out)
    ids = comparable_ids(pretrain, evaluate)
    note = ""
    if ids is not None:
        why, note = ids
        shared = np.isin(pretrain.frame["image_id"].to_numpy(), held.frame["image_id"].to_numpy())
        patients = np.isin(pretrain.patient_ids, held.patient_ids)
        by = f"image id and patient id ({why})"
        if not same_dataset(pretrain, evaluate):  # a copy may also name other files by the same path
            shared |= np.isin(_real(pretrain.frame["path"].tolist()), _real(held.frame["path"].tolist()))
            by = f"image id, patient id and resolved file path ({why})"
    else:
        shared = np.isin(_real(pretrain.frame["path"].tolist()), _real(held.frame["path"].tolist()))
        patients = np.zeros(len(pretrain), dtype=bool)
        by = "resolved file path (different dataset kinds: ids and patient ids are not compared)"
    # A patient with a shared image is an evaluation patient whatever the id scheme: all their
    # pretraining images go, named by the pretraining side's own patient ids.
    patients |= np.isin(pretrain.patient_ids, pretrain.patient_ids[shared])
    drop = shared | patients
    n_patients = int(np.unique(pretrain.patient_ids[patients]).size)
    examples = (
        pretrain.frame["path"].to_numpy()[shared][:3].tolist()
        or pretrain.frame["image_id"].to_numpy()[drop][:3].tolist()
    )
    return Overlap(
        drop=drop, images=int(shared.sum()), patients=n_patients, by=by, examples=examples, note=note
    )
