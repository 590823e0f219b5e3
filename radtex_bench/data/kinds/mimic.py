"""``mimic_cxr``: MIMIC-CXR-JPG images, labels and official split, with the reports of MIMIC-CXR.

Layout, as downloaded from PhysioNet (``ROOT`` = the MIMIC-CXR-JPG folder)::

    ROOT/mimic-cxr-2.0.0-metadata.csv.gz    dicom_id, subject_id, study_id, ViewPosition, ...
    ROOT/mimic-cxr-2.0.0-chexpert.csv.gz    subject_id, study_id, the 14 CheXpert labels (per study)
    ROOT/mimic-cxr-2.0.0-negbio.csv.gz      the same columns, labelled by NegBio
    ROOT/mimic-cxr-2.0.0-split.csv.gz       dicom_id, study_id, subject_id, split
    ROOT/files/p10/p10000032/s50414267/<dicom_id>.jpg
    REPORTS/files/p10/p10000032/s50414267.txt       REPORTS = ``reports_root`` (default ROOT); or
    REPORTS/mimic-cxr-reports.zip                   the reports archive as downloaded, not unpacked

Labels are per study: every image of a study inherits its study's row (joined on subject_id +
study_id); a study the labeler table lacks has every label missing. ``No Finding`` is as given
(1 or blank). Views come from ``ViewPosition`` (``LL`` -> ``LATERAL``). The official split is used.

Everything is whole-column pandas work: the 377k-image table loads in seconds. Reports (one small
file per study) are read with bare ``os`` calls (about 2 s for all of them from a warm disk), or skipped
with ``read_reports: false``.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ...errors import DataError
from ...schema import option
from ..columns import dataset_folder, first_existing, normalise_views, read_table, require_columns
from ..labels import canonical_name, label_matrix
from ..table import SPLITS, ImageTable
from .base import DatasetKind, DatasetOptions, register_dataset

log = logging.getLogger("radtex_bench")

_IDS = ("subject_id", "study_id")


@dataclass(frozen=True)
class MimicOptions(DatasetOptions):
    labeler: Literal["chexpert", "negbio"] = option(
        "chexpert", help="which label table: mimic-cxr-2.0.0-chexpert.csv.gz or -negbio.csv.gz"
    )
    reports_root: str | None = option(
        None, help="folder holding files/pXX/p<subject>/s<study>.txt or mimic-cxr-reports.zip (default: root)"
    )
    read_reports: bool = option(
        True, help="read the report texts (false: faster when only labels are needed)"
    )
    official_split: bool = option(True, help="use mimic-cxr-2.0.0-split.csv.gz; false: patient-level split")


def _table(root: Path, name: str) -> Path:
    found = first_existing(root, [f"mimic-cxr-*-{name}.csv.gz", f"mimic-cxr-*-{name}.csv"])
    if found is None:
        raise DataError(
            f"mimic_cxr: no mimic-cxr-2.0.0-{name}.csv.gz in {root}; point `root` at the MIMIC-CXR-JPG folder "
            "(the one holding files/ and the mimic-cxr-2.0.0-*.csv.gz tables)"
        )
    return found


def _read_ids(path: Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    df = read_table(path, what, dtype=str, keep_default_na=False, usecols=lambda c: c in columns)
    require_columns(df, columns, path, what)
    return df


def _official_split(root: Path, meta: pd.DataFrame) -> pd.Series:
    path = _table(root, "split")
    split = _read_ids(path, "MIMIC-CXR-JPG split table", ("dicom_id", "split"))
    values = split["split"].str.strip().str.lower().replace({"val": "validate", "valid": "validate"})
    bad = ~values.isin(SPLITS)
    if bad.any():
        raise DataError(
            f"{path}: unknown split {split['split'][bad].iloc[0]!r}; expected train, validate or test"
        )
    lookup = pd.Series(values.to_numpy(), index=split["dicom_id"].to_numpy())
    lookup = lookup[~lookup.index.duplicated()]
    out = meta["dicom_id"].map(lookup)
    if out.isna().any():
        raise DataError(
            f"{path}: {int(out.isna().sum())} images of the metadata table have no split row "
            f"(first: {meta['dicom_id'][out.isna()].iloc[0]}); use the split table of the same release, "
            "or set `official_split: false`"
        )
    return out.astype(str)


def _labels(root: Path, labeler: str, meta: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    path = _table(root, labeler)
    df = read_table(path, f"MIMIC-CXR-JPG {labeler} label table", dtype={c: str for c in _IDS})
    require_columns(df, _IDS, path, f"MIMIC-CXR-JPG {labeler} label table")
    columns = [c for c in df.columns if c not in _IDS]
    df = df.drop_duplicates(list(_IDS))
    joined = meta[list(_IDS)].merge(df, on=list(_IDS), how="left", validate="many_to_one")
    return label_matrix(joined, columns, str(path)), [canonical_name(c) for c in columns]


_ZIP_MEMBER = re.compile(r"p\d+/p(\d+)/s(\d+)\.txt$")


def _reports_from_zip(archive: Path, studies: pd.DataFrame) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {}
            for name in zf.namelist():
                m = _ZIP_MEMBER.search(name)
                if m:
                    members[m.groups()] = name
            return [
                zf.read(members[key]).decode("utf-8", "replace") if key in members else ""
                for key in zip(studies["subject_id"], studies["study_id"])
            ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"mimic_cxr: cannot read the reports archive {archive} ({exc}); download "
            "mimic-cxr-reports.zip again or point `reports_root` at the unpacked folder"
        ) from None


def _read_text(path: str) -> str:
    """One report file, or ``""``; raw ``os`` calls: 227k small files must read in seconds."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _reports_from_folder(folder: Path, studies: pd.DataFrame) -> list[str]:
    base = str(folder.absolute() / "files") if (folder / "files").is_dir() else str(folder.absolute())
    sub = studies["subject_id"]
    paths = (base + "/p" + sub.str[:2] + "/p" + sub + "/s" + studies["study_id"] + ".txt").tolist()
    if not any(_read_text(p) for p in paths[:: max(1, len(paths) // 64)]):  # a spread sample, not the
        return [""] * len(paths)  # first subjects only: a partial download may lack those
    return [_read_text(p) for p in paths]


def read_reports(root: Path, reports_root: str | None, studies: pd.DataFrame) -> list[str]:
    """Report text per row of ``studies`` (subject_id, study_id); ``""`` where absent."""
    where = Path(reports_root).expanduser() if reports_root else root
    if reports_root and not where.exists():
        raise DataError(
            f"mimic_cxr: reports_root {where} does not exist; point it at the unpacked MIMIC-CXR "
            "reports (the folder holding files/) or at mimic-cxr-reports.zip"
        )
    if where.is_file():
        texts = _reports_from_zip(where, studies)
    else:
        texts = _reports_from_folder(where, studies)
        if not any(texts) and (where / "mimic-cxr-reports.zip").is_file():
            texts = _reports_from_zip(where / "mimic-cxr-reports.zip", studies)
    if not any(texts):
        message = (
            f"mimic_cxr: no report found under {where} (expected files/pXX/p<subject>/s<study>.txt or "
            "mimic-cxr-reports.zip)"
        )
        if reports_root:
            raise DataError(message + "; check `reports_root`")
        log.warning("%s; set `reports_root` to use reports (training text will be empty)", message)
    return texts


@register_dataset("mimic_cxr")
class MimicCxrDataset(DatasetKind):
    Options = MimicOptions
    description = "MIMIC-CXR-JPG images + CheXpert/NegBio labels + MIMIC-CXR reports, official split"

    def read(self) -> ImageTable:
        o = self.options
        root = dataset_folder(o, self.where, "the MIMIC-CXR-JPG folder (holding files/ and the tables)")
        meta_path = _table(root, "metadata")
        meta = _read_ids(
            meta_path, "MIMIC-CXR-JPG metadata table", ("dicom_id", "subject_id", "study_id", "ViewPosition")
        )
        meta = meta.drop_duplicates("dicom_id").reset_index(drop=True)
        labels, names = _labels(root, o.labeler, meta)
        split = _official_split(root, meta) if o.official_split else ""

        sub, study = meta["subject_id"], meta["study_id"]
        base = str(root.absolute() / "files")
        frame = pd.DataFrame(
            {
                "image_id": meta["dicom_id"],
                "path": base
                + "/p"
                + sub.str[:2]
                + "/p"
                + sub
                + "/s"
                + study
                + "/"
                + meta["dicom_id"]
                + ".jpg",
                "patient_id": sub,
                "study_id": study,
                "view": normalise_views(meta["ViewPosition"]).to_numpy(),
                "split": split,
                "report": "",
            }
        )
        if o.read_reports:
            studies = meta[list(_IDS)].drop_duplicates().reset_index(drop=True)
            texts = pd.Series(
                read_reports(root, o.reports_root, studies),
                index=pd.MultiIndex.from_frame(studies),
                dtype=object,
            )
            frame["report"] = texts.reindex(pd.MultiIndex.from_frame(meta[list(_IDS)])).to_numpy()
        return ImageTable(frame=frame, labels=labels, label_names=names, kind="mimic_cxr", root=root)
