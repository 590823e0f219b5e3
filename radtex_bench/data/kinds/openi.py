"""``openi``: the Indiana University chest X-ray collection (OpenI, "IU X-ray") as downloaded.

Layout (``ROOT`` = the download folder)::

    ROOT/ecgen-radiology/<n>.xml        the reports (or ROOT/NLMCXR_reports.tgz, read without unpacking)
    ROOT/NLMCXR_png/CXR<n>_IM-<...>.png  the images, named by the XML's parentImage ids
    ROOT/nlmcxr_dicom_metadata.csv.gz   optional per-image DICOM metadata (``imageid``, ``View Position``),
                                        or the file named by ``metadata``

One report per study; each ``parentImage`` of a report is one image row. OpenI has no patient ids, so
each report is its own patient (and study). Report text is ``COMPARISON``, ``INDICATION``, ``FINDINGS``
and ``IMPRESSION`` joined as ``HEADER: text`` lines. Views come from the metadata's ``View Position``
(``LL`` / ``RL`` -> ``LATERAL``); images without it (about a third) have no view, so the default
frontal-only filter leaves them out (``views: null`` keeps them).

Labels come from the report's manual MeSH ``major`` terms (``Term/qualifier/...``), see :data:`MESH_TERMS`:

* ``normal``: ``No Finding`` 1 and every other label 0.
* reports with mapped terms: those labels 1; ``No Finding`` 0 unless the only findings are devices;
  labels not mentioned are **missing** (``unmentioned: missing``, the default: MeSH indexes what the
  report mentions, not what it rules out) or 0 (``unmentioned: negative``).
* reports with only ``No Indexing`` / ``Technical Quality of Image Unsatisfactory``: everything missing.
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ...errors import DataError
from ...schema import option
from ..columns import dataset_folder, first_existing, normalise_views, read_table, require_columns
from ..labels import CHEXPERT_14, NEGATIVE, POSITIVE
from ..table import ImageTable
from .base import DatasetKind, DatasetOptions, register_dataset

#: MeSH major term (lower case) -> CheXpert label.
MESH_TERMS = {
    "cardiomegaly": "Cardiomegaly",
    "pulmonary atelectasis": "Atelectasis",
    "atelectasis": "Atelectasis",
    "pleural effusion": "Pleural Effusion",
    "pulmonary edema": "Edema",
    "pulmonary congestion": "Edema",
    "consolidation": "Consolidation",
    "pneumonia": "Pneumonia",
    "pneumothorax": "Pneumothorax",
    "hydropneumothorax": "Pneumothorax",
    "hemopneumothorax": "Pneumothorax",
    "airspace disease": "Lung Opacity",
    "infiltrate": "Lung Opacity",
    "opacity": "Lung Opacity",
    "density": "Lung Opacity",
    "nodule": "Lung Lesion",
    "mass": "Lung Lesion",
    "fractures, bone": "Fracture",
    "catheters, indwelling": "Support Devices",
    "tube, inserted": "Support Devices",
    "implanted medical device": "Support Devices",
    "medical device": "Support Devices",
    "surgical instruments": "Support Devices",
    "stents": "Support Devices",
}
#: (term, qualifier) -> label, for terms that mean a label only with that qualifier.
MESH_QUALIFIED = {
    ("cardiac shadow", "enlarged"): "Cardiomegaly",
    ("heart", "enlarged"): "Cardiomegaly",
    ("mediastinum", "enlarged"): "Enlarged Cardiomediastinum",
    ("mediastinum", "widened"): "Enlarged Cardiomediastinum",
    ("mediastinum", "prominent"): "Enlarged Cardiomediastinum",
    ("thickening", "pleura"): "Pleural Other",
}
#: Qualifiers that put an opacity / density / nodule / mass outside the lung.
NOT_LUNG = {
    "ribs",
    "thoracic vertebrae",
    "spine",
    "bone and bones",
    "humerus",
    "clavicle",
    "shoulder",
    "breast",
    "abdomen",
    "mediastinum",
    "heart",
    "thorax",
    "soft tissue",
    "lymph nodes",
}
_LUNG_ONLY = {"Lung Opacity", "Lung Lesion"}
#: Terms that say nothing about the image's findings.
NO_INFORMATION = {"no indexing", "technical quality of image unsatisfactory"}

_SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")


@dataclass(frozen=True)
class OpeniOptions(DatasetOptions):
    unmentioned: Literal["missing", "negative"] = option(
        "missing", help="labels an abnormal report's MeSH terms do not mention: missing or negative"
    )
    metadata: str | None = option(
        None,
        help="per-image metadata CSV with imageid + View Position (default: ROOT/nlmcxr_dicom_metadata.csv*)",
    )


def mesh_labels(terms: list[str]) -> dict[str, float] | None:
    """CheXpert labels stated by one report's MeSH major terms; ``None`` = the report says nothing usable.

    Returns positives (and, for a normal report, every label with ``No Finding`` 1); labels absent from
    the result are unmentioned.
    """
    found: dict[str, float] = {}
    informative = False
    normal = False
    for term in terms:
        parts = [p.strip().lower() for p in term.split("/")]
        head, qualifiers = parts[0], set(parts[1:])
        if head in NO_INFORMATION or not head:
            continue
        informative = True
        if head == "normal":
            normal = True
            continue
        label = MESH_TERMS.get(head) or next(
            (MESH_QUALIFIED[(head, q)] for q in parts[1:] if (head, q) in MESH_QUALIFIED), None
        )
        if label in _LUNG_ONLY and qualifiers & NOT_LUNG:
            label = None
        if label:
            found[label] = POSITIVE
        else:
            found.setdefault("_other", POSITIVE)
    if not informative:
        return None
    abnormal = {k for k in found if k != "Support Devices"}
    if normal and not found:
        return {name: (POSITIVE if name == "No Finding" else NEGATIVE) for name in CHEXPERT_14}
    found.pop("_other", None)
    found["No Finding"] = NEGATIVE if abnormal else POSITIVE
    return found


def parse_report(xml: bytes | str) -> tuple[str, str, list[str], list[str]]:
    """(report id, report text, MeSH major terms, image ids) of one ecgen-radiology XML."""
    doc = ET.fromstring(xml)
    uid = doc.find("uId")
    report_id = uid.get("id", "") if uid is not None else ""
    texts = {}
    for node in doc.iter("AbstractText"):
        label = (node.get("Label") or "").strip().upper()
        body = " ".join("".join(node.itertext()).split())
        if label and body:
            texts[label] = body
    text = "\n".join(f"{s}: {texts[s]}" for s in _SECTIONS if s in texts)
    terms = [(m.text or "").strip() for m in doc.iter("major")]
    images = [p.get("id", "") for p in doc.iter("parentImage") if p.get("id")]
    return report_id, text, terms, images


def _xml_documents(root: Path) -> Iterator[tuple[str, bytes]]:
    folder = root / "ecgen-radiology"
    if folder.is_dir():
        for path in sorted(folder.glob("*.xml")):
            yield str(path), path.read_bytes()
        return
    archive = root / "NLMCXR_reports.tgz"
    if not archive.is_file():
        raise DataError(
            f"openi: neither {folder} nor {archive} exists; download NLMCXR_reports.tgz from "
            "OpenI into `root` (unpacked or not)"
        )
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".xml"):
                    yield f"{archive}:{member.name}", tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"openi: cannot read {archive}: {exc}; download it again") from None


def _metadata_views(root: Path, option_path: str | None, image_ids: pd.Series) -> np.ndarray:
    path = (
        Path(option_path).expanduser()
        if option_path
        else first_existing(root, ["nlmcxr_dicom_metadata.csv.gz", "nlmcxr_dicom_metadata.csv"])
    )
    if path is None:
        return np.full(len(image_ids), "", dtype=object)
    meta = read_table(
        path, "OpenI image metadata", dtype=str, usecols=lambda c: c in ("imageid", "View Position")
    )
    require_columns(meta, ("imageid", "View Position"), path, "OpenI image metadata")
    views = pd.Series(normalise_views(meta["View Position"]).to_numpy(), index=meta["imageid"].to_numpy())
    views = views[~views.index.duplicated()]
    # A few reports name images "CXR<n>_<k>_IM-..." where the metadata has "CXR<n>_IM-...".
    short = image_ids.str.replace(r"^(CXR\d+)_\d+_", r"\1_", regex=True)
    return image_ids.map(views).fillna(short.map(views)).fillna("").to_numpy()


@register_dataset("openi")
class OpeniDataset(DatasetKind):
    Options = OpeniOptions
    description = "OpenI / IU X-ray reports (XML or NLMCXR_reports.tgz) + NLMCXR_png images, MeSH labels"

    def read(self) -> ImageTable:
        o = self.options
        root = dataset_folder(o, self.where, "the OpenI folder (ecgen-radiology/ or NLMCXR_reports.tgz)")
        rows, label_rows = [], []
        for source, xml in _xml_documents(root):
            try:
                report_id, text, terms, images = parse_report(xml)
            except ET.ParseError as exc:
                raise DataError(
                    f"openi: {source} is not valid XML ({exc}); download the reports again"
                ) from None
            report_id = report_id or re.sub(r"\.xml$", "", Path(source).name)
            labels = mesh_labels(terms)
            for image_id in images:
                rows.append((image_id, report_id, text))
                label_rows.append(labels)
        frame = pd.DataFrame(rows, columns=["image_id", "patient_id", "report"]).drop_duplicates("image_id")
        label_rows = [label_rows[i] for i in frame.index]
        frame = frame.reset_index(drop=True)
        fill = NEGATIVE if o.unmentioned == "negative" else np.nan
        labels = np.full((len(frame), len(CHEXPERT_14)), np.nan, dtype=np.float32)
        for i, found in enumerate(label_rows):
            if found is not None:
                labels[i] = [found.get(name, fill) for name in CHEXPERT_14]
        images = str(root.absolute() / "NLMCXR_png")
        frame["path"] = images + "/" + frame["image_id"] + ".png"
        frame["study_id"] = frame["patient_id"]
        frame["view"] = _metadata_views(root, o.metadata, frame["image_id"])
        frame["split"] = ""
        return ImageTable(frame=frame, labels=labels, label_names=list(CHEXPERT_14), kind="openi", root=root)
