"""Synthetic frontal chest radiographs with free-text reports: the embedded default dataset (SPEC §7).

What is generated and why it looks the way it does is documented in ``docs/synthetic.md``. In short:

* **Sampling** (:func:`_sample_patient`): one random stream per (seed, patient), so image ``k`` does not
  depend on ``n``. A patient has 1-3 studies, a split, a body (anatomy parameters) and chronic
  conditions; each study draws acute findings (with realistic correlations), devices and a view.
* **Painting** (:func:`_render`): vectorised numpy over a chunk of images. Anatomy is an attenuation
  map in the patient's own coordinate frame (so position, rotation and size vary); every finding adds
  a *localised* change to it; the map goes through a film curve, then each image is normalised to a
  random mean/contrast (so no label can be read off mean intensity), and gets noise and blur.
* **Reports** (:func:`_write_report`): every sentence carries the label records a CheXpert-style
  labeler would read from it (positive / negated / hedged); the CSV labels are the aggregation of
  those records, so text and labels agree by construction. Hedged (-1) findings are painted at
  borderline severity.

Coordinates: ``X`` runs left to right and ``Y`` top to bottom of the image, both in ``[-1, 1]``.
Radiology convention: the patient's right is the image's left, so side ``sigma = -1`` is the patient's
right and ``+1`` the patient's left; ``S = sigma * X`` is the distance from the midline on that side.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .labels import RADTEX_9

#: Bump whenever the output of the generator changes for the same (n, size, seed).
GENERATOR_VERSION = "1"

MANIFEST_COLUMNS = ("image_id", "image_path", "patient_id", "study_id", "view", "split", "report")
#: Label columns written to the manifest: the 9 RadTex pathologies, then two CheXpert extras.
LABEL_COLUMNS = RADTEX_9 + ("No Finding", "Support Devices")
#: Fractions of *patients* in train / validate / test.
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)

#: Words that make a mention uncertain (CheXpert's uncertainty cues, the subset the templates use).
HEDGE_CUES = (
    "possible",
    "possibly",
    "may represent",
    "may be",
    "cannot be excluded",
    "cannot exclude",
    "questionable",
    "could represent",
    "concerning for",
    "suspicious for",
    "borderline",
)

_PARAMS_FILE = "synthetic.json"
_CHUNK_PIXELS = 1 << 19  # pixels per rendered chunk (128 images of 64 px): amortises per-call overhead
_PART_PIXELS = 1 << 16  # anatomy is painted in parts this big: temporaries stay in the CPU cache
_SALT_PATIENT, _SALT_PIXELS = 0x5EED, 0x9E37  # stream of a patient; of the texture banks of a dataset

RIGHT, LEFT = -1, 1  # sigma of the patient's right / left side (image left / right)
_SIDE_NAME = {RIGHT: "right", LEFT: "left"}


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def generator_params(n: int, size: int, seed: int) -> dict[str, Any]:
    """What identifies a generated dataset; stored as ``synthetic.json`` next to the manifest."""
    return {
        "generator": "radtex_bench.synthetic",
        "version": GENERATOR_VERSION,
        "n": int(n),
        "size": int(size),
        "seed": int(seed),
    }


def generate_synthetic(
    out: Path,
    n: int = 2000,
    size: int = 64,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a ``manifest`` dataset of ``n`` synthetic radiographs (``size`` px) into ``out``; return ``out``.

    ``out/images/<image_id>.png`` and ``out/manifest.csv`` (see :data:`MANIFEST_COLUMNS` and
    :data:`LABEL_COLUMNS`). The dataset is built in a sibling temporary folder and renamed onto ``out``
    at the end, so a killed run never leaves half a dataset. If ``out`` already holds a complete
    dataset with the same parameters, nothing is written. ``progress(done, total)`` is called after
    every rendered chunk.
    """
    _check_args(n, size, seed)
    out = Path(out).expanduser()
    params = generator_params(n, size, seed)
    if _is_complete(out, params):
        return out
    if out.exists() and not _is_replaceable(out):
        raise UserError(
            f"{out} exists and is not a synthetic dataset (no {_PARAMS_FILE}); choose an empty or new "
            "folder for the synthetic data"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(out)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as exc:
        raise UserError(
            f"cannot write to {out.parent}: {exc.strerror or exc}; choose a writable folder"
        ) from None
    try:
        _write_dataset(tmp, params, progress)
        _swap_into_place(tmp, out)
    except OSError as exc:
        raise UserError(
            f"cannot write the synthetic dataset to {out}: {exc.strerror or exc} (disk full or not writable?)"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------------------
# Folder handling (atomic, idempotent)
# ----------------------------------------------------------------------------------------------


def _check_args(n: int, size: int, seed: int) -> None:
    if int(n) < 1:
        raise UserError(f"synthetic n must be >= 1, got {n}")
    if not 16 <= int(size) <= 1024:
        raise UserError(f"synthetic size must be between 16 and 1024 pixels, got {size}")
    if int(seed) < 0:
        raise UserError(f"synthetic seed must be >= 0, got {seed}")


def _read_params(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / _PARAMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(out: Path, params: dict[str, Any]) -> bool:
    stored = _read_params(out)
    if not stored or (out / "manifest.csv").is_file() is False:
        return False
    return all(stored.get(k) == v for k, v in params.items())


def _is_replaceable(out: Path) -> bool:
    """An empty folder or an older synthetic dataset may be replaced; anything else is the user's."""
    if not out.is_dir():
        return False
    return _read_params(out) is not None or not any(out.iterdir())


def _remove_stale_temps(out: Path) -> None:
    """Remove temporary folders left by killed runs (their writer process no longer exists)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    # rename() cannot replace a non-empty folder: move the old one aside first, then delete it.
    old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


_PNG_LEVEL = 0  # zlib level: noisy radiographs shrink ~10% at level 1 for ~10x the time, so store


def _png(pixels: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG (no filtering, zlib level ``_PNG_LEVEL``): much faster than PIL for
    small images."""
    h, w = pixels.shape
    raw = np.zeros((h, w + 1), np.uint8)  # each row starts with filter type 0
    raw[:, 1:] = pixels

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8 bit, greyscale, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), _PNG_LEVEL))
        + chunk(b"IEND", b"")
    )


def _write_dataset(folder: Path, params: dict[str, Any], progress: Callable[[int, int], None] | None) -> None:
    n, size, seed = params["n"], params["size"], params["seed"]
    studies = list(_iter_studies(seed, n))
    images = folder / "images"
    images.mkdir()
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, n, chunk):
        batch = studies[start : start + chunk]
        for study, pixels in zip(batch, _render(batch, size, seed)):
            (images / f"{study.image_id}.png").write_bytes(_png(pixels))
        if progress is not None:
            progress(min(start + chunk, n), n)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS + LABEL_COLUMNS)
    for s in studies:
        labels = ["" if s.labels.get(c) is None else str(int(s.labels[c])) for c in LABEL_COLUMNS]
        writer.writerow(
            [
                s.image_id,
                f"images/{s.image_id}.png",
                s.patient_id,
                s.study_id,
                s.view,
                s.split,
                s.report,
                *labels,
            ]
        )
    (folder / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
    # Written last: its presence marks the folder complete.
    (folder / _PARAMS_FILE).write_text(json.dumps({**params, "images": n}, indent=1) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Sampling: patients, studies, findings
# ----------------------------------------------------------------------------------------------


@dataclass
class Finding:
    """One abnormality of a study. ``sev`` in [0, 1] drives both the painting and the words."""

    kind: str  # a RADTEX_9 name, or "Nodule" / "Opacity" (nonspecific)
    sides: tuple[int, ...]  # (RIGHT,), (LEFT,) or (RIGHT, LEFT)
    where: str = ""  # lobe key (see _LOBES) or "base" / "apex" / "perihilar"
    sev: float = 0.5
    hedged: bool = False  # reported with uncertainty (label -1) and painted borderline
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Study:
    patient: int
    index: int  # 1-based study number of the patient
    split: str
    view: str
    anat: dict[str, float]
    findings: list[Finding]
    devices: dict[str, dict[str, Any]]
    chronic: dict[str, Any]  # scoliosis, old fracture, sternotomy, tortuous aorta, ...
    prior_kinds: dict[str, float] = field(default_factory=dict)  # kind -> severity at the previous study
    pix: list[float] = field(default_factory=list)  # uniforms choosing texture crops
    report: str = ""
    labels: dict[str, float | None] = field(default_factory=dict)

    @property
    def patient_id(self) -> str:
        return f"P{self.patient:05d}"

    @property
    def study_id(self) -> str:
        return f"{self.patient_id}_S{self.index:02d}"

    @property
    def image_id(self) -> str:  # one frontal image per study
        return self.study_id


#: Lobes: side, position across the lung (u: -1 medial .. 1 lateral), down the lung (v: 0 apex .. 1
#: base), and the names reports use for them.
_LOBES: dict[str, tuple[int, float, float, tuple[str, ...]]] = {
    "RUL": (RIGHT, 0.05, 0.27, ("right upper lobe", "right upper zone", "right upper lung")),
    "RML": (RIGHT, -0.45, 0.66, ("right middle lobe", "right mid zone", "right mid lung")),
    "RLL": (RIGHT, 0.1, 0.86, ("right lower lobe", "right base", "right lower zone")),
    "LUL": (LEFT, 0.05, 0.3, ("left upper lobe", "left upper zone", "left upper lung")),
    "LING": (LEFT, -0.25, 0.64, ("lingula", "left mid zone", "left mid lung")),
    "LLL": (LEFT, -0.45, 0.87, ("left lower lobe", "left base", "retrocardiac left lower lobe")),
}
_LOBE_KEYS = tuple(_LOBES)
_LOBE_WEIGHTS = (0.14, 0.14, 0.28, 0.1, 0.08, 0.26)  # infections favour the lower lobes


class _Stream:
    """Scalar draws from a numpy ``Generator``, buffered in blocks: the sampler makes ~100 draws per
    study and numpy's per-call overhead would otherwise dominate. Deterministic for a seed."""

    def __init__(self, words: list[int]):
        self._rng = np.random.default_rng(words)
        self._buf: list[float] = []

    def random(self) -> float:
        if not self._buf:
            self._buf = self._rng.random(128).tolist()[::-1]
        return self._buf.pop()

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def normal(self, mu: float, sd: float) -> float:
        u1, u2 = 1.0 - self.random(), self.random()  # Box-Muller
        return mu + sd * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def integers(self, lo: int, hi: int) -> int:
        """An int in [lo, hi)."""
        return lo + min(int(self.random() * (hi - lo)), hi - lo - 1)

    def choice(self, seq, p=None):
        if p is None:
            return seq[self.integers(0, len(seq))]
        u, acc = self.random(), 0.0
        for item, w in zip(seq, p):
            acc += w
            if u < acc:
                return item
        return seq[-1]


def _iter_studies(seed: int, n: int) -> Iterator[Study]:
    """Studies in order, patient after patient, until ``n``; the last patient may be cut short."""
    done, patient = 0, 1
    while done < n:
        for study in _sample_patient(seed, patient)[: n - done]:
            yield study
            done += 1
        patient += 1


def _sample_patient(seed: int, patient: int) -> list[Study]:
    rng = _Stream([seed, patient, _SALT_PATIENT])
    u = rng.random()
    split = "train" if u < SPLIT_FRACTIONS[0] else "validate" if u < sum(SPLIT_FRACTIONS[:2]) else "test"
    n_studies = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
    body = _sample_body(rng)
    chronic = _sample_chronic(rng)
    studies: list[Study] = []
    prev: Study | None = None
    for index in range(1, n_studies + 1):
        study = _sample_study(rng, patient, index, split, body, chronic, prev)
        study.report, study.labels = _write_report(study, rng)
        studies.append(study)
        prev = study
    return studies


def _sample_body(rng: _Stream) -> dict[str, float]:
    """Patient anatomy that stays the same across the patient's studies."""
    u = rng.uniform
    dia_r = u(0.30, 0.44)
    return {
        "scale": u(0.92, 1.04),
        "body_w": u(0.80, 0.96),
        "soft": u(0.85, 1.2),
        "lung_x": u(0.38, 0.43),
        "lung_ax": u(0.29, 0.335),
        "apex": u(-0.80, -0.70),
        "dia_r": dia_r,
        "dia_l": dia_r + u(0.02, 0.07),
        "ctr": min(max(rng.normal(0.435, 0.022), 0.38), 0.475),
        "med_w0": u(0.085, 0.112),  # upper mediastinal half-width (med_w: after findings)
        "aorta0": u(0.035, 0.055),  # aortic knob radius (aorta: after findings)
        "spine_x": rng.normal(0.0, 0.01),
        "rib_sp": u(0.118, 0.14),
        "rib_curv": u(0.75, 1.15),
        "rib_y0": u(-0.86, -0.80),
        "clav_y": u(-0.66, -0.58),
        "clav_slope": u(0.2, 0.32),
        "breast": u(0.1, 0.25) if rng.random() < 0.5 else 0.0,
        "bubble": u(0.5, 1.0) if rng.random() < 0.65 else 0.0,
        "v_amp": u(0.09, 0.14),
        "hilum": u(0.08, 0.15),
    }


def _sample_chronic(rng: _Stream) -> dict[str, Any]:
    """Conditions a patient keeps across studies (they drive correlations between studies)."""
    r = rng.random
    cardiac = r() < 0.2
    c: dict[str, Any] = {
        "cardiac": cardiac,
        "ctr_cardiac": rng.uniform(0.5, 0.68) if cardiac else 0.0,
        "icu_prone": r() < 0.18,
        "pacemaker": r() < (0.3 if cardiac else 0.015),
        "sternotomy": r() < (0.25 if cardiac else 0.015),
        "tortuous_aorta": r() < 0.08,
        "scoliosis": rng.choice([-1, 1]) * rng.uniform(0.035, 0.08) if r() < 0.06 else 0.0,
        "fracture": None,
        "nodule": None,
    }
    if r() < 0.05:
        c["fracture"] = {
            "side": int(rng.choice([RIGHT, LEFT])),
            "rib": int(rng.integers(4, 9)),
            "s": rng.uniform(0.5, 0.68),
        }
    if r() < 0.05:
        c["nodule"] = {
            "lobe": str(rng.choice(_LOBE_KEYS)),
            "mm": int(rng.integers(6, 28)),
            "du": rng.uniform(-0.4, 0.4),
            "dv": rng.uniform(-0.12, 0.12),
        }
    return c


def _sev(rng: _Stream, hedged: bool) -> float:
    """Severity: hedged findings are borderline, positives skew mild so many are subtle."""
    return rng.uniform(0.0, 0.1) if hedged else 0.12 + 0.88 * rng.random() ** 1.6


def _sample_study(rng, patient, index, split, body, chronic, prev) -> Study:
    r = rng.random
    icu = (chronic["icu_prone"] and r() < 0.7) or r() < 0.04
    view = "AP" if icu or r() < 0.1 else "PA"
    anat = dict(body)
    _jitter_anatomy(rng, anat, view)
    findings: list[Finding] = []

    def hedge(p: float) -> bool:
        return bool(r() < p)

    # Heart: chronic, so a cardiac patient keeps an enlarged heart in every study.
    if chronic["cardiac"]:
        anat["ctr"] = (chronic["ctr_cardiac"] + rng.normal(0, 0.01)) * (1.06 if view == "AP" else 1.0)
    elif r() < 0.03:  # a borderline heart
        anat["ctr"] = rng.uniform(0.49, 0.52)
    # CTR >= 0.52 is called enlarged; 0.49-0.52 (AP magnification included) is hedged.
    if anat["ctr"] >= 0.52:
        findings.append(Finding("Cardiomegaly", (), sev=min(max((anat["ctr"] - 0.5) / 0.18, 0.0), 1.0)))
    elif anat["ctr"] >= 0.49:
        findings.append(Finding("Cardiomegaly", (), sev=0.05, hedged=True))

    carry = prev is not None and r() < 0.5  # acute findings often persist into the next study
    if carry:
        for f in prev.findings:
            if f.kind not in ("Cardiomegaly", "Nodule"):
                sev = min(f.sev * rng.uniform(0.6, 1.3), 1.0)
                findings.append(Finding(f.kind, f.sides, f.where, sev, f.hedged, dict(f.extra)))
    else:
        findings += _sample_acute(rng, icu, chronic, view, hedge)

    if chronic["nodule"]:
        nod = chronic["nodule"]
        side = _LOBES[nod["lobe"]][0]
        findings.append(Finding("Nodule", (side,), nod["lobe"], min(1.0, nod["mm"] / 30), extra=dict(nod)))

    devices = _sample_devices(rng, icu, chronic, findings)
    study = Study(patient, index, split, view, anat, findings, devices, chronic)
    study.pix = [rng.random() for _ in range(_PIX_DRAWS)]  # texture crops (see _Canvas)
    if prev is not None:
        study.prior_kinds = {f.kind: f.sev for f in prev.findings}
    _apply_to_anatomy(study)
    return study


def _sample_acute(rng, icu, chronic, view, hedge) -> list[Finding]:
    r = rng.random
    out: list[Finding] = []
    side = lambda: int(rng.choice([RIGHT, LEFT]))  # noqa: E731

    # Fluid overload: edema with effusions (and a wide mediastinum), mostly in cardiac patients.
    overload = (chronic["cardiac"] and r() < 0.5) or r() < 0.03
    if overload:
        h = hedge(0.15)
        out.append(Finding("Edema", (RIGHT, LEFT), "perihilar", _sev(rng, h), h))
        if r() < 0.7:
            sides = (RIGHT, LEFT) if r() < 0.55 else ((RIGHT,) if r() < 0.6 else (LEFT,))
            h = hedge(0.1)
            out.append(Finding("Pleural Effusion", sides, "base", _sev(rng, h), h, {"layer": view == "AP"}))
        if r() < 0.35:
            h = hedge(0.2)
            out.append(Finding("Enlarged Cardiomediastinum", (), "", _sev(rng, h), h))
    # Infection: pneumonia with (often) consolidation in the same lobe, sometimes a second lobe.
    if r() < 0.13 + 0.1 * icu:
        lobes = [str(rng.choice(_LOBE_KEYS, p=_LOBE_WEIGHTS))]
        if r() < 0.15:
            lobes.append(str(rng.choice(_LOBE_KEYS, p=_LOBE_WEIGHTS)))
        for lobe in dict.fromkeys(lobes):
            s = (_LOBES[lobe][0],)
            h_pna = hedge(0.28)
            out.append(Finding("Pneumonia", s, lobe, _sev(rng, h_pna), h_pna))
            if r() < 0.6:
                h = hedge(0.12) and not h_pna
                out.append(Finding("Consolidation", s, lobe, _sev(rng, h), h))
        if r() < 0.15:
            out.append(Finding("Pleural Effusion", (_LOBES[lobes[0]][0],), "base", _sev(rng, False) * 0.6))
    # Atelectasis: at the bases, more likely with effusions and in ICU patients.
    p_atel = 0.08 + 0.2 * icu + 0.25 * any(f.kind == "Pleural Effusion" for f in out)
    if r() < p_atel:
        sides = (RIGHT, LEFT) if r() < 0.4 else (side(),)
        h = hedge(0.15)
        bands = {
            sg: (rng.uniform(0.74, 0.88), rng.uniform(-0.1, 0.45), rng.uniform(-0.25, 0.25)) for sg in sides
        }
        out.append(Finding("Atelectasis", sides, "base", _sev(rng, h), h, {"bands": bands}))
    if r() < 0.085 + 0.1 * icu:
        h = hedge(0.15)
        out.append(Finding("Pneumothorax", (side(),), "apex", _sev(rng, h), h))
    if r() < 0.07:
        h = hedge(0.25)
        out.append(Finding("Enlarged Cardiomediastinum", (), "", _sev(rng, h), h))
    if not any(f.kind == "Pleural Effusion" for f in out) and r() < 0.11:
        h = hedge(0.15)
        out.append(Finding("Pleural Effusion", (side(),), "base", _sev(rng, h), h, {"layer": view == "AP"}))
    if r() < 0.025:
        h = hedge(0.2)
        lobe = str(rng.choice(_LOBE_KEYS))
        out.append(Finding("Opacity", (_LOBES[lobe][0],), lobe, _sev(rng, h) * 0.7, h))
    # Merge duplicates of a kind (e.g. two effusion sources) into one finding covering both sides.
    merged: dict[tuple[str, str], Finding] = {}
    for f in out:
        key = (f.kind, f.where if f.kind in ("Pneumonia", "Consolidation", "Opacity") else "")
        if key in merged:
            g = merged[key]
            g.sides = tuple(sorted(set(g.sides) | set(f.sides)))
            g.sev, g.hedged = max(g.sev, f.sev), g.hedged and f.hedged
        else:
            merged[key] = f
    return list(merged.values())


def _sample_devices(rng, icu, chronic, findings) -> dict[str, dict[str, Any]]:
    r, u = rng.random, rng.uniform
    d: dict[str, dict[str, Any]] = {}
    if icu and r() < 0.55:
        d["ett"] = {"above_carina_cm": round(u(2.0, 7.0), 1)}
    if icu and r() < (0.7 if "ett" in d else 0.25):
        d["ng"] = {}
    if (icu and r() < 0.6) or r() < 0.04:
        d["cvc"] = {
            "route": str(rng.choice(["right internal jugular", "left subclavian", "right PICC"])),
            "tip": str(rng.choice(["mid SVC", "lower SVC", "cavoatrial junction"])),
        }
    if chronic["pacemaker"]:
        d["pacemaker"] = {}
    ptx = [f for f in findings if f.kind == "Pneumothorax" and not f.hedged]
    if ptx and (icu or ptx[0].sev > 0.45) and r() < 0.6:
        d["chest_tube"] = {"side": ptx[0].sides[0]}
    return d


def _jitter_anatomy(rng: _Stream, a: dict[str, float], view: str) -> None:
    """Positioning, inspiration and exposure of one study; AP (portable, often supine) differs."""
    u = rng.uniform
    a.update(tx=rng.normal(0, 0.03), ty=rng.normal(0, 0.03), rot=rng.normal(0, 0.035))
    insp = u(-0.05, 0.05)
    a["dia_r"] += insp
    a["dia_l"] += insp
    a.update(
        tone=u(-0.35, 0.35),
        t_mean=u(0.42, 0.58),
        t_std=u(0.17, 0.23),
        noise=u(0.012, 0.03),
        blur=u(0.3, 1.0),
        heel=u(-0.05, 0.05),
        field=u(0.015, 0.045),
        ap=0.0,
    )
    if view == "AP":
        # Portable AP: lower lung volumes, magnified heart, clavicles higher, scapulae over the lungs.
        a.update(
            ap=1.0,
            ctr=a["ctr"] * u(1.04, 1.1),
            clav_y=a["clav_y"] - u(0.04, 0.09),
            clav_slope=a["clav_slope"] * 0.5,
            scale=a["scale"] * 1.03,
        )
        a["dia_r"] -= u(0.0, 0.08)
        a["dia_l"] = max(a["dia_l"] - u(0.0, 0.08), a["dia_r"] + 0.01)


def _apply_to_anatomy(s: Study) -> None:
    """Findings that change anatomy rather than add density (mediastinum, diaphragm, vessels).
    Idempotent: everything is derived from the patient's base values."""
    a, c = s.anat, s.chronic
    a.update(scol=c["scoliosis"], ceph=0.0, v_boost=1.0, hila_boost=1.0, elev_r=0.0, elev_l=0.0)
    a["aorta"] = a["aorta0"] * (1.45 if c["tortuous_aorta"] else 1.0)
    a["med_w"] = a["med_w0"]
    for f in s.findings:
        if f.kind == "Enlarged Cardiomediastinum":
            a["med_w"] = a["med_w0"] * (1.12 + f.sev if f.hedged else 1.25 + 0.45 * f.sev)
        elif f.kind == "Atelectasis" and f.sev > 0.3:
            for side in f.sides:  # volume loss: the hemidiaphragm rises
                a["elev_r" if side == RIGHT else "elev_l"] = 0.02 + 0.08 * f.sev
        elif f.kind == "Edema":
            # Vascular redistribution to the upper zones and fuller hila, even when mild.
            a["ceph"] = 0.2 + 0.8 * f.sev
            a["v_boost"] = 1.0 + 0.2 * f.sev
            a["hila_boost"] = 1.0 + 0.3 * f.sev


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
# Cost model (one core): an elementwise op on a 64 px image costs ~1 us, a transcendental 10-100 us.
# So: coordinates are separable (X per column [B, 1, W], Y per row [B, H, 1]) and terms in one of
# them cost a row, not an image; the patient's tilt is applied at the end as a per-row shift; the
# anatomy uses arithmetic, sqrt and clip only (triangle waves instead of cosines, polynomials instead
# of exponentials) and both sides at once through |X|; structures are painted only on the rows (and
# columns) they can reach; textures come from banks computed once per (seed, size).


def _ramp(v, width):
    """Soft step from 0 to 1 centred on ``v = 0``, ``width`` wide: anti-aliased edges at any size."""
    return np.clip(v * (1.0 / width) + 0.5, 0.0, 1.0)


def _bump(d2):
    """Smooth bump: 1 at ``d2 = 0``, 0 for ``d2 >= 1`` (a cheap Gaussian)."""
    t = np.clip(1.0 - d2, 0.0, 1.0)
    return t * t


def _frac_dist(phase):
    """Distance to the nearest integer, in [0, 0.5]: periodic bands (ribs) without a cosine."""
    return np.abs(phase - np.floor(phase + 0.5))


def _col(values) -> np.ndarray:
    """Per-image scalars as a (B, 1, 1) float32 column that broadcasts over pixels."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


_BANKS: dict[tuple[int, int], dict[str, np.ndarray]] = {}
#: Random textures: name -> features across one image side (independent of the pixel size); the
#: last is pixel noise.
_FIELDS = (("shade", 5), ("tex", 7), ("fine", 18), ("noise", 0))
_PIX_DRAWS = 5  # uniforms a study needs to pick its textures: bank entry, offsets, vessels, mirror


def _banks(seed: int, size: int) -> dict[str, np.ndarray]:
    key = (seed, size)
    if key not in _BANKS:
        _BANKS.clear()  # one dataset at a time; at most ~40 MB
        _BANKS[key] = _make_banks(seed, size)
    return _BANKS[key]


def _make_banks(seed: int, size: int) -> dict[str, np.ndarray]:
    """Textures shared by a dataset; every image crops them at its own offsets (1.5 x its side)."""
    rng = np.random.default_rng([seed, size, _SALT_PIXELS])
    big = size + size // 2
    k = int(min(32, max(4, (1 << 21) // (big * big * len(_FIELDS)))))
    fields = np.empty((k, len(_FIELDS), big, big), np.float32)
    for j, (_, cells) in enumerate(_FIELDS):
        if cells == 0:
            fields[:, j] = rng.standard_normal((k, big, big), dtype=np.float32)
            continue
        g = int(round(cells * 1.5)) + 1
        up = _upsampler(big, g)
        f = up[None] @ rng.standard_normal((k, g, g), dtype=np.float32) @ up.T[None]
        fields[:, j] = f / f.std(axis=(1, 2), keepdims=True)
    return {"fields": fields, "vessels": _vessel_bank(rng, 2 * k, size)}


def _upsampler(n: int, g: int) -> np.ndarray:
    """(n, g) bilinear interpolation matrix from g grid points to n pixels."""
    pos = (np.arange(n, dtype=np.float32) + 0.5) / n * (g - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, g - 2)
    w = pos - lo
    up = np.zeros((n, g), np.float32)
    up[np.arange(n), lo] = 1 - w
    up[np.arange(n), lo + 1] = w
    return up


def _vessel_bank(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """Lung markings: branching vessels radiating from both hila, thinning to the periphery, patchy,
    over a faint parenchymal mottle."""
    grid = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    x, y = grid[None, :], grid[:, None]
    out = np.zeros((k, size, size), np.float32)
    up = _upsampler(size, 9)
    for i in range(k):
        n, ph1, ph2 = rng.uniform(19, 27), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
        wob_field = up @ rng.standard_normal((9, 9)).astype(np.float32) @ up.T
        for sigma in (RIGHT, LEFT):
            dx, dy = sigma * x - 0.2, y + 0.12
            r = np.sqrt(dx * dx + dy * dy) + 1e-3
            th = np.arctan2(dy, dx)
            wob = 1.6 * np.sin(r * 7.0 + ph2) + 0.8 * wob_field
            v1 = (0.5 + 0.5 * np.cos(n * th + wob + ph1)) ** 6
            v2 = (0.5 + 0.5 * np.cos(1.6 * n * th - 1.4 * wob + ph2)) ** 6 * np.clip((r - 0.15) / 0.2, 0, 1)
            side = np.clip(sigma * x * size, 0, 1)
            out[i] += (v1 + 0.6 * v2) * np.exp(-2.4 * r) * np.clip((r - 0.02) / 0.06, 0, 1) * side
        out[i] *= np.clip(0.55 + 0.45 * wob_field / wob_field.std(), 0.0, 1.5)
    out /= out.max(axis=(1, 2), keepdims=True)
    fine = _upsampler(size, 19)
    mottle = fine[None] @ rng.standard_normal((k, 19, 19)).astype(np.float32) @ fine.T[None]
    return out + 0.2 * mottle / mottle.std()


def _crop(bank: np.ndarray, picks: list[list[float]], size: int) -> np.ndarray:
    """One (size x size) crop of every channel per image; entry and offsets from three uniforms."""
    k, span = bank.shape[0], bank.shape[-1] - size + 1
    out = np.empty((len(picks), bank.shape[1], size, size), np.float32)
    for i, u in enumerate(picks):
        oy, ox = int(u[1] * span), int(u[2] * span)
        out[i] = bank[int(u[0] * k), :, oy : oy + size, ox : ox + size]
    return out


class _Canvas:
    """A chunk of images being painted: coordinates, anatomy parameters and the attenuation map."""

    def __init__(self, studies: list[Study], size: int, seed: int):
        self.size, self.B = size, len(studies)
        self.px = 2.0 / size  # one pixel in normalised units
        self.p = {k: _col([s.anat[k] for s in studies]) for k in studies[0].anat}
        p = self.p
        grid = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
        # Patient frame (before the tilt): images differ by shift and magnification.
        self.X = (grid[None, None, :] - p["tx"]) / p["scale"]  # [B, 1, W]
        self.Y = (grid[None, :, None] - p["ty"]) / p["scale"]  # [B, H, 1]
        self.ax = np.abs(self.X)  # distance from the midline, both sides at once
        self.left = self.X > 0  # the patient's left half (image right)
        full = (self.B, size, size)
        self.A = np.zeros(full, np.float32)  # attenuation (brighter = more)
        self.quiet = np.zeros(full, np.float32)  # where lung markings vanish (pneumothorax)
        self.lung = np.zeros(full, np.float32)  # aerated lung seen by a pixel (set by _paint_lungs)
        self.level = np.full(full, 9.0, np.float32)  # < 1 inside the thoracic cavity
        self.dome = np.full(full, 9.0, np.float32)  # hemidiaphragm line under each pixel
        self.mx = np.empty_like(self.Y)  # spine line (set by _paint_mediastinum)
        banks = _banks(seed, size)
        fields = _crop(banks["fields"], [s.pix for s in studies], size)
        for j, (name, _) in enumerate(_FIELDS):
            setattr(self, name, fields[:, j])
        vb = banks["vessels"]
        self.vessels = np.stack(
            [vb[int(s.pix[3] * len(vb))][:, :: 1 if s.pix[4] < 0.5 else -1] for s in studies]
        )

    def parts(self) -> Iterator[_Canvas]:
        """Views of consecutive images, small enough for the CPU cache."""
        step = max(1, _PART_PIXELS // (self.size * self.size))
        for a in range(0, self.B, step):
            view = object.__new__(_Canvas)
            view.__dict__ = {
                k: v[a : a + step] if isinstance(v, np.ndarray) and v.ndim >= 3 else v
                for k, v in self.__dict__.items()
            }
            view.p = {k: v[a : a + step] for k, v in self.p.items()}
            view.B = view.A.shape[0]
            yield view

    def rows(self, ylo, yhi, sel=None) -> slice:
        """Image rows that can show patient-frame Y in [ylo, yhi] (scalars or per-image columns),
        in any image of this canvas (or of the images ``sel``)."""
        s, ty = self.p["scale"], self.p["ty"]
        if sel is not None:
            s, ty = s[sel], ty[sel]
        return self._span(float(np.min(ylo * s + ty)), float(np.max(yhi * s + ty)))

    def cols(self, xlo, xhi, sel=None) -> slice:
        """Image columns that can show patient-frame X in [xlo, xhi] (before the tilt, with margin)."""
        s, tx = self.p["scale"], self.p["tx"]
        if sel is not None:
            s, tx = s[sel], tx[sel]
        return self._span(float(np.min(xlo * s + tx)), float(np.max(xhi * s + tx)))

    def _span(self, g0: float, g1: float) -> slice:
        r0 = int(math.floor((g0 + 1.0) * 0.5 * self.size - 0.5))
        r1 = int(math.ceil((g1 + 1.0) * 0.5 * self.size - 0.5)) + 1
        return slice(min(max(0, r0), self.size), min(self.size, max(r1, 0)))

    def lung_top(self):
        """Highest Y where the (anti-aliased) lung mask is non-zero, per image."""
        soft = max(0.04, 11 * self.px)
        return self.p["apex"] + 0.7 - 0.7 * math.sqrt(1.0 + soft / 2) - 0.01

    def lung_rows(self) -> slice:
        """Rows that can hold lung (apex to the costophrenic recesses)."""
        p = self.p
        return self.rows(self.lung_top(), np.maximum(p["dia_r"], p["dia_l"]) + 0.25)


def _render(studies: list[Study], size: int, seed: int) -> np.ndarray:
    """uint8 images [B, size, size] for a chunk of studies."""
    c = _paint(studies, size, seed)
    out = np.empty((c.B, size, size), np.uint8)
    start = 0
    for part in c.parts():
        out[start : start + part.B] = _expose(part)
        start += part.B
    return out


def _paint(studies: list[Study], size: int, seed: int) -> _Canvas:
    """The canvas with its attenuation map ``A`` fully painted (anatomy, findings, devices, tilt)."""
    c = _Canvas(studies, size, seed)
    for part in c.parts():
        _paint_body(part)
        occupied = _paint_mediastinum(part)
        _paint_lungs(part, occupied)
        _paint_bones(part)
    _paint_findings(c, studies)
    _paint_devices(c, studies)
    for part in c.parts():
        _paint_vessels(part)
    _tilt(c)
    return c


# -- anatomy --------------------------------------------------------------------------------------
# Attenuation units: soft tissue through the whole body ~1, air-filled lung removes ~0.9 of it.


def _paint_body(c: _Canvas) -> None:
    """Soft tissue: trunk with sloping shoulders and a neck, thicker centrally; breasts; humeral heads."""
    Y, p, ax = c.Y, c.p, c.ax
    bw = p["body_w"]
    wb = bw * (1.0 - 0.04 * Y)
    t = np.clip(ax * (1.0 / bw) - 0.2, 0.0, 1.0)
    trunk = _ramp(wb - ax, 0.025) * _ramp(Y + (0.9 - 0.28 * t * t), 0.05)
    body = np.maximum(trunk, _ramp(0.2 - ax, 0.03)) * p["soft"]
    c.A += body - (0.38 * ax * ax) * (1.0 / (wb * wb)) * body  # thicker centrally
    # Breast shadows over the lower lateral lungs: extra density that is not disease.
    if p["breast"].any():
        rows = c.rows(-0.3, 0.75)
        Yr = Y[:, rows]
        bx, by = (ax - 0.47) * (1 / 0.34), (Yr - p["dia_r"] + 0.05) * (1 / 0.27)
        bump = np.sqrt(np.clip(1.0 - bx * bx - by * by, 0.0, 1.0))
        c.A[:, rows] += (p["breast"] * _ramp(p["dia_r"] + 0.17 - Yr, 0.03)) * bump
    # Humeral heads, partly outside the field.
    rows = c.rows(-2.0, -0.55)
    hx, hy = ax - bw - 0.06, Y[:, rows] + 0.8
    c.A[:, rows] += 0.35 * np.sqrt(np.clip(1.0 - (hx * hx + hy * hy) * (1 / 0.03), 0.0, 1.0))


def _spine_line(c: _Canvas) -> np.ndarray:
    """Spine centre line (per row); scoliosis bends it (dextro: convex to the patient's right)."""
    t = np.clip((c.Y + 0.9) * (1 / 1.7), 0.0, 1.0)
    return c.p["spine_x"] - c.p["scol"] * 4.0 * t * (1.0 - t)


def _paint_mediastinum(c: _Canvas) -> np.ndarray:
    """Heart (2/3 on the patient's left), upper mediastinum, aortic knob, trachea, hila.

    Returns where heart and mediastinum displace the lungs."""
    X, Y, p = c.X, c.Y, c.p
    c.mx[...] = mx = _spine_line(c)
    occupied = np.zeros_like(c.A)
    # Heart: width = CTR x internal thoracic width, lower-left bulge of the left ventricle.
    yc = p["dia_l"] - 0.14
    hh = 0.25 + 0.4 * (p["ctr"] - 0.44)
    rows = c.rows(yc - 1.35 * hh - 0.05, yc + 1.35 * hh + 0.05)  # the soft edge included
    W = p["ctr"] * (2.0 * (p["lung_x"] + p["lung_ax"] * 1.04))
    u = X - p["spine_x"] - 0.04
    a = u * ((u < 0) * (1.0 / (0.37 * W) - 1.0 / (0.63 * W)) + 1.0 / (0.63 * W))  # per column
    v = (Y[:, rows] - yc) / hh
    uu = a - (0.35 * a) * v
    e = uu * uu + v * v
    occupied[:, rows] = _ramp(1.0 - e, max(0.05, 10 * c.px))
    # Upper mediastinum (widened in Enlarged Cardiomediastinum via med_w), merging into the heart.
    rows = c.rows(-2.0, yc + 0.12)
    Yr = Y[:, rows]
    wm = p["med_w"] * (1.0 + 0.35 * np.clip((Yr + 0.35) * (1 / 0.45), 0.0, 1.0))
    med = _ramp(wm - np.abs(X - mx[:, rows] - 0.01), 1.5 * c.px) * _ramp(yc - Yr, 0.2)
    np.maximum(occupied[:, rows], med, out=occupied[:, rows])
    rows = c.rows(-0.33 - 1.15 * p["aorta"] - c.px, -0.33 + 1.15 * p["aorta"] + c.px)  # aortic knob
    ky, wk = (
        Y[:, rows] + 0.33,
        p["med_w"] * (1.0 + 0.35 * np.clip((Y[:, rows] + 0.35) * (1 / 0.45), 0.0, 1.0)),
    )
    kx = X - mx[:, rows] - wk * 0.8
    knob = _ramp(1.0 - (kx * kx + ky * ky) * (1.0 / (p["aorta"] * p["aorta"])), 0.35)
    np.maximum(occupied[:, rows], knob, out=occupied[:, rows])
    c.A += 0.12 * occupied
    # Trachea (air) down to the carina, hila (pulmonary arteries).
    carina = p["apex"] + 0.48
    rows = c.rows(-2.0, carina + 0.03)
    c.A[:, rows] -= 0.28 * _ramp(0.026 - np.abs(X - mx[:, rows]), c.px) * _ramp(carina - Y[:, rows], 0.03)
    rows = c.rows(carina - 0.01, carina + 0.36)
    hx, hy = c.ax - 0.23, Y[:, rows] - carina - 0.17
    c.A[:, rows] += (p["hilum"] * p["hila_boost"]) * _bump(hx * hx * (1 / 0.02) + hy * hy * (1 / 0.03))
    return occupied


def _paint_lungs(c: _Canvas, occupied: np.ndarray) -> None:
    """Air in both lungs (less at the periphery and behind the heart), the domes, gastric bubble."""
    p, ax = c.p, c.ax
    lx, apex = p["lung_x"], p["apex"]
    dr, dl = p["dia_r"] - p["elev_r"], p["dia_l"] - p["elev_l"]
    rows = c.lung_rows()
    Y = c.Y[:, rows]
    d = ax - lx + 0.03
    dome = c.left * (dl - dr) + dr + 0.9 * d * d  # per column: peaks mid-lung, deep lateral recess
    inv_w = 1.0 / (p["lung_ax"] * (0.86 + 0.18 * np.clip((Y - apex) * 0.9, 0.0, 1.0)))  # wider at the base
    q = np.abs(ax - lx) * inv_w
    vert = np.maximum(apex + 0.7 - Y, 0.0) * (1 / 0.7)
    L = q * q * np.sqrt(q) + vert * vert  # level: < 1 inside the thoracic cavity
    mask = _ramp(1.0 - L, max(0.04, 11 * c.px)) * _ramp(dome - Y, 1.5 * c.px)
    # c.lung: how much aerated lung a pixel sees (some retrocardiac lung shows through the heart).
    lung = mask * (1.0 - 0.82 * occupied[:, rows])
    c.lung[:, rows], c.level[:, rows], c.dome[:, rows] = lung, L, dome
    c.A[:, rows] -= lung * (0.63 + 0.27 * np.clip(1.0 - L, 0.0, 1.0))  # less air at the periphery
    rows = c.rows(p["dia_l"], p["dia_l"] + 0.2)  # gastric air under the left hemidiaphragm
    gx, gy = (c.X - p["spine_x"] - 0.33) * (1 / 0.09), (c.Y[:, rows] - p["dia_l"] - 0.12) * (1 / 0.05)
    c.A[:, rows] -= (0.4 * p["bubble"]) * _ramp(1.0 - gx * gx - gy * gy, 0.5)


def _paint_bones(c: _Canvas) -> None:
    """Spine, posterior and anterior ribs, clavicles, scapulae (both sides at once)."""
    p, ax = c.p, c.ax
    rows = c.rows(-2.0, 0.95)  # the spine reaches the top edge
    Y = c.Y[:, rows]
    vertebrae = (1.0 - 0.5 * _frac_dist(Y * (1 / 0.115))) * _ramp(0.45 - Y, 0.2)  # disc spaces
    spine = _ramp(0.06 - np.abs(c.X - c.mx[:, rows]), c.px) * vertebrae
    S = np.abs(c.X - p["spine_x"])  # ribs hang off the (straight) spine: per column
    wall = p["lung_x"] + p["lung_ax"] + 0.05
    inside = _ramp(S - 0.05, 0.03) * _ramp(wall - S, 0.04)
    # Posterior ribs: a short rise from the spine, then falling steeply to the lateral wall.
    inv = 1.0 / p["rib_sp"]
    row = (Y - p["rib_y0"]) * inv
    ribs = np.clip(1.8 - 8.0 * _frac_dist(row + S * (0.35 * inv - (p["rib_curv"] * inv) * S)), 0.0, 1.0)
    ribs *= np.clip(np.minimum(row + 0.6, 10.5 - row), 0.0, 1.0)  # ten ribs
    # Anterior ribs: fainter, sloping down towards the sternum.
    inv = 1.0 / (1.1 * p["rib_sp"])
    row = (Y - p["rib_y0"] - 0.3) * inv
    front = np.clip(1.0 - 10.0 * _frac_dist(row + S * (0.5 * inv - (0.3 * inv) * S)), 0.0, 1.0)
    front *= np.clip(np.minimum(row + 0.5, 6.0 - row), 0.0, 1.0)
    c.A[:, rows] += 0.13 * spine + (0.11 * inside) * ribs + (0.05 * inside * _ramp(S - 0.15, 0.05)) * front
    # Clavicles: from the sternal notch, rising laterally with a gentle S curve.
    rows = c.rows(-2.0, p["clav_y"] + 0.06 + c.px)
    t = ax - 0.07
    u = np.clip(t * (1 / 0.58), 0.0, 1.0)
    yc = p["clav_y"] - p["clav_slope"] * t + 0.26 * u * (1.0 - u) * (1.0 - 2.0 * u)
    ends = 0.3 * _ramp(t, 0.03) * _ramp(0.62 - t, 0.05)
    c.A[:, rows] += ends * _ramp(0.028 - np.abs(c.Y[:, rows] - yc), c.px)
    # Scapulae: the medial border crosses the upper lateral lung on AP films.
    rows = c.rows(-0.9, -0.05)
    Y = c.Y[:, rows]
    edge = wall - 0.04 - 0.16 * p["ap"] - 0.12 * (Y + 0.7)
    band = (0.04 + 0.08 * p["ap"]) * _ramp(-0.1 - Y, 0.08) * _ramp(Y + 0.85, 0.05)
    c.A[:, rows] += band * _ramp(ax - edge, 0.02)


def _paint_vessels(c: _Canvas) -> None:
    """Lung markings (from the vessel bank), larger in the lower zones; edema redistributes them."""
    p = c.p
    rows = c.lung_rows()
    dy = c.Y[:, rows] - p["apex"] - 0.63
    zone = (p["v_amp"] * p["v_boost"]) * (1.0 + 0.5 * _ramp(dy, 0.3) + p["ceph"] * _ramp(-dy, 0.3))
    c.A[:, rows] += (zone * c.vessels[:, rows]) * ((1.0 - c.quiet[:, rows]) * c.lung[:, rows])


def _tilt(c: _Canvas) -> None:
    """The patient's small rotation, as a sub-pixel horizontal shift of each row (a shear); one
    flat gather over the whole chunk."""
    n = c.size
    shift = (c.p["rot"] * c.p["scale"] * (n / 2.0)) * c.Y  # pixels, per row
    k = np.floor(shift)
    f = shift - k
    j = np.clip(np.arange(n, dtype=np.int32)[None, None, :] + k.astype(np.int32), 0, n - 1)
    j += (np.arange(c.B * n, dtype=np.int32) * n).reshape(c.B, n, 1)
    a0 = c.A.reshape(-1)[j]
    a1 = np.empty_like(a0)
    a1[..., :-1] = a0[..., 1:]
    a1[..., -1] = a0[..., -1]
    c.A[...] = a0 + f * (a1 - a0)


def _expose(c: _Canvas) -> np.ndarray:
    """Film curve, tone, shading, a random window per image, noise, blur -> uint8."""
    p = c.p
    a = np.maximum(c.A, 0.0)
    img = 1.0 - 1.0 / (1.0 + a * (1.3 + 0.85 * a))  # film curve ~ 1 - exp(-1.3 a), without exp
    img += p["tone"] * img * (1.0 - img)  # per-image tone curve
    img += p["heel"] * c.X + p["field"] * c.shade
    # Normalise every image to its own random mean and contrast: global brightness carries no label.
    sub = img[:, ::2, ::2]
    mean = sub.mean(axis=(1, 2), keepdims=True)
    std = np.sqrt(np.maximum((sub * sub).mean(axis=(1, 2), keepdims=True) - mean * mean, 1e-8))
    gain = p["t_std"] * 255.0 / std
    img = img * gain + (p["t_mean"] * 255.0 + 0.5 - mean * gain) + (p["noise"] * 255.0) * c.noise
    img = _blur(img, p["blur"] * 0.25, max(1, round(c.size / 80)))
    return np.clip(img, 0, 255).astype(np.uint8)


def _blur(a: np.ndarray, w: np.ndarray, passes: int) -> np.ndarray:
    """Separable 3-tap blur with per-image neighbour weight ``w`` (0.25: binomial), borders kept."""
    for _ in range(passes):
        b = a.copy()
        b[:, :, 1:-1] += w * (a[:, :, :-2] + a[:, :, 2:] - 2.0 * a[:, :, 1:-1])
        a = b.copy()
        a[:, 1:-1] += w * (b[:, :-2] + b[:, 2:] - 2.0 * b[:, 1:-1])
    return a


def _seg_dist(X, Y, x0, y0, x1, y1):
    """Distance from every pixel to the segment (x0, y0)-(x1, y1); arguments broadcast."""
    dx, dy = x1 - x0, y1 - y0
    inv = 1.0 / (dx * dx + dy * dy + 1e-9)
    t = np.clip((X - x0) * (dx * inv) + (Y - y0) * (dy * inv), 0.0, 1.0)
    ex, ey = X - x0 - t * dx, Y - y0 - t * dy
    return np.sqrt(ex * ex + ey * ey)


# -- findings ----------------------------------------------------------------------------------


def _lobe_point(a: dict[str, float], lobe: str, du: float = 0.0, dv: float = 0.0) -> tuple[int, float, float]:
    """(sigma, S, Y) of a lobe centre in the patient frame of anatomy ``a``."""
    sigma, u, v, _ = _LOBES[lobe]
    S = a["lung_x"] + (u + du) * a["lung_ax"]
    dia = a["dia_r"] - a["elev_r"] if sigma == RIGHT else a["dia_l"] - a["elev_l"]
    return sigma, S, a["apex"] + (v + dv) * (dia + 0.04 - a["apex"])


class _Group:
    """Instances of one painter across a chunk, in layers that each hold an image at most once
    (so ``A[idx] += ...`` is safe without the slow ``np.add.at``). ``ylo``/``yhi`` bound the rows an
    instance can touch."""

    def __init__(self) -> None:
        self.layers: list[tuple[list[int], dict[str, list[float]]]] = []

    def add(self, i: int, sigma: int, ylo: float, yhi: float, **vals: float) -> None:
        for layer in self.layers:
            if i not in layer[0]:
                break
        else:
            layer = ([], {})
            self.layers.append(layer)
        idx, vv = layer
        idx.append(i)
        for k, v in dict(vals, sigma=sigma, ylo=ylo, yhi=yhi).items():
            vv.setdefault(k, []).append(v)

    def paint(self, c: _Canvas, painter) -> None:
        for idx, vals in self.layers:
            ii = np.asarray(idx)
            q = {k: _col(v) for k, v in vals.items()}
            rows = c.rows(q["ylo"], q["yhi"], ii)
            if rows.start >= rows.stop:
                continue
            add, quiet = painter(
                c,
                ii,
                rows,
                q["sigma"] * c.X[ii],
                c.Y[ii, rows],
                c.lung[ii, rows],
                c.level[ii, rows],
                c.dome[ii, rows],
                q,
            )
            c.A[ii, rows] += add
            if quiet is not None:
                c.quiet[ii, rows] = np.maximum(c.quiet[ii, rows], quiet)


def _paint_findings(c: _Canvas, studies: list[Study]) -> None:
    groups: dict[str, _Group] = {}

    def g(name: str) -> _Group:
        return groups.setdefault(name, _Group())

    for i, s in enumerate(studies):
        a = s.anat
        # Every painter's rows must hold all of its non-zero support: then the rows shared with the
        # other images of a layer only add exact zeros, and an image never depends on its neighbours.
        low = max(a["dia_r"], a["dia_l"]) + 0.25  # below the costophrenic recesses
        top_lung = a["apex"] + 0.7 - 0.7 * math.sqrt(1.0 + max(0.04, 11 * c.px) / 2) - 0.01
        for f in s.findings:
            k, sev = f.kind, f.sev
            if k in ("Consolidation", "Pneumonia", "Opacity"):
                sigma, cx, cy = _lobe_point(a, f.where)
                size = {
                    "Consolidation": 0.09 + 0.14 * sev,
                    "Pneumonia": 0.1 + 0.16 * sev,
                    "Opacity": 0.06 + 0.08 * sev,
                }[k]
                dens = {
                    "Consolidation": 0.32 + 0.4 * sev,
                    "Pneumonia": 0.16 + 0.22 * sev,
                    "Opacity": 0.14 + 0.2 * sev,
                }[k]
                if f.hedged:
                    dens *= 0.55
                fiss = {"RUL": -1.0, "RML": 1.0}.get(f.where, 0.0)  # the minor fissure bounds these lobes
                patch = 0.9 if k == "Pneumonia" else 0.5
                reach = size * math.sqrt(1.5 + 2.5 * patch) + 0.01  # how far the (clipped) texture extends it
                g("airspace").add(
                    i,
                    sigma,
                    cy - reach,
                    cy + reach,
                    cx=cx,
                    cy=cy,
                    rx=size * 1.15,
                    ry=size,
                    dens=dens,
                    fiss=fiss,
                    fy=a["apex"] + 0.5,
                    patch=patch,
                    bronch=0.6 if k == "Consolidation" and sev > 0.4 else 0.0,
                )
            elif k == "Nodule":
                sigma, cx, cy = _lobe_point(a, f.where, f.extra["du"], f.extra["dv"])
                r = f.extra["mm"] / 1000 * 2.0 / 0.36  # the image is ~36 cm across
                g("nodule").add(i, sigma, cy - r, cy + r, cx=cx, cy=cy, r=r, amp=0.3 + 0.1 * sev)
            elif k == "Pleural Effusion":
                for sigma in f.sides:
                    h = 0.035 + 0.03 * sev / 0.1 if f.hedged else 0.07 + 0.5 * sev
                    dia = a["dia_r"] - a["elev_r"] if sigma == RIGHT else a["dia_l"] - a["elev_l"]
                    recess = dia + 0.9 * (a["lung_ax"] + 0.03) ** 2  # lowest point: lateral angle
                    layer = float(f.extra.get("layer", False)) * sev
                    top = top_lung if layer else recess - h - 0.1
                    g("effusion").add(
                        i, sigma, top, low, h=h, soft=0.02 + 0.06 * sev, recess=recess, layer=layer
                    )
            elif k == "Pneumothorax":
                for sigma in f.sides:
                    width = 0.022 + 0.012 * sev / 0.1 if f.hedged else 0.035 + 0.16 * sev
                    qe = max(0.05, 1.0 - width / a["lung_ax"])  # level of the edge: L = qe ** 2.5
                    reach = 0.22 + 0.8 * (0.0 if f.hedged else sev)
                    g("ptx").add(
                        i,
                        sigma,
                        top_lung,
                        a["apex"] + reach + 0.1,
                        edge=qe * qe * math.sqrt(qe),
                        grad=2.5 * qe * math.sqrt(qe) / a["lung_ax"],
                        reach=reach,
                    )
            elif k == "Atelectasis":
                for sigma in f.sides:
                    v, u, slope = f.extra["bands"].get(sigma, (0.8, 0.2, 0.0))
                    g("atel").add(
                        i,
                        sigma,
                        a["apex"] + 0.5,
                        low,
                        v=v,
                        u=u,
                        slope=slope,
                        th=0.009 + 0.018 * sev,
                        amp=(0.13 if f.hedged else 0.2 + 0.14 * sev),
                        wedge=max(0.0, sev - 0.6) / 0.4,
                    )
            elif k == "Edema":
                g("edema").add(i, 1, top_lung, low, sev=sev * (0.5 if f.hedged else 1.0))
        if s.chronic["fracture"]:
            fr = s.chronic["fracture"]
            # On the centre line of rib number fr["rib"] (see the rib phase in _paint_bones).
            y = a["rib_y0"] + fr["rib"] * a["rib_sp"] - 0.35 * fr["s"] + a["rib_curv"] * fr["s"] ** 2
            g("fracture").add(i, fr["side"], y - 0.04, y + 0.04, cx=fr["s"], cy=y)
    for name, painter in _PAINTERS.items():  # a fixed order: sums are bit-identical whatever the chunk
        if name in groups:
            groups[name].paint(c, painter)


# Painters: (canvas, image indices, rows, S = sigma * X, Y, lung, level, dome, parameters) ->
# (attenuation to add on those rows, pixels whose lung markings vanish or None).


def _paint_airspace(c, idx, rows, S, Y, lung, L, dome, q):
    """Consolidation / pneumonia / nonspecific opacity: a patchy lobar density, air bronchograms."""
    patches = np.clip(0.35 * c.tex[idx, rows] + 0.75 * c.fine[idx, rows], -2.5, 2.5)
    gx, gy = (S - q["cx"]) / q["rx"], (Y - q["cy"]) / q["ry"]
    region = _ramp((1.0 - gy * gy) - gx * gx + q["patch"] * patches, 0.9) * (
        0.75 + 0.25 * np.clip(patches, -1.0, 1.0)
    )
    bounded = q["fiss"] != 0  # the minor fissure: a sharp lower (RUL) or upper (RML) edge
    region *= 1.0 - bounded + bounded * _ramp((q["fy"] - Y) * q["fiss"], 1.5 * c.px)
    # Air bronchograms: dark airways radiating from the hilum (the vessel pattern) in dense areas.
    br = np.clip(2.0 * c.vessels[idx, rows] - 0.4, 0.0, 1.0) * q["bronch"] * _ramp(region - 0.6, 0.3)
    return q["dens"] * region * lung * (1.0 - br), None


def _paint_nodule(c, idx, rows, S, Y, lung, L, dome, q):
    dx, dy = S - q["cx"], Y - q["cy"]
    d2 = (dx * dx + dy * dy) / (q["r"] * q["r"])
    return q["amp"] * np.sqrt(np.clip(1.0 - d2, 0.0, 1.0)) * _ramp(1.0 - d2, 0.3) * np.minimum(
        lung * 4, 1.0
    ), None


def _paint_effusion(c, idx, rows, S, Y, lung, L, dome, q):
    """Fluid at the base: meniscus (higher laterally), blunted costophrenic angle, lost dome."""
    p = c.p
    lx, ax, apex = p["lung_x"][idx], p["lung_ax"][idx], p["apex"][idx]
    lateral = np.clip((S - 0.1) / (lx + ax - 0.1), 0.0, 1.0)
    top = q["recess"] - q["h"] * (0.3 + 0.7 * lateral * lateral * lateral)
    # Fluid replaces aerated lung, so the base turns as dense as the abdomen and the dome vanishes.
    fluid = _ramp(Y - top, q["soft"]) * (_ramp(S - 0.06, 0.05) * lung)
    # Supine (AP) films: fluid layers posteriorly and veils the whole hemithorax.
    veil = (q["layer"] * 0.3) * np.clip((Y - apex) / (q["recess"] - apex), 0.0, 1.0) * (lung * _ramp(S, c.px))
    return 0.8 * fluid + veil, None


def _paint_ptx(c, idx, rows, S, Y, lung, L, dome, q):
    """Pneumothorax: a lucent rim without lung markings at the apex/lateral wall, thin pleural edge."""
    p = c.p
    zone = _ramp(p["apex"][idx] + q["reach"] - Y, 0.1) * _ramp(
        S - p["lung_x"][idx] + 0.5 * p["lung_ax"][idx], 0.06
    )
    zone = zone * lung
    lw = max(0.006, 0.6 * c.px) * q["grad"]  # line half-width (normalised -> level units)
    inside = _ramp(L - q["edge"], 2.0 * lw) * zone
    dl = (L - q["edge"]) / lw
    return 0.3 * _bump(dl * dl * 0.25) * zone - 0.2 * inside, inside


def _paint_atel(c, idx, rows, S, Y, lung, L, dome, q):
    """Atelectasis: a thin, tapering linear (discoid) band at the base; a dense medial wedge when
    lobar (collapse)."""
    p = c.p
    lx, ax, apex = p["lung_x"][idx], p["lung_ax"][idx], p["apex"][idx]
    cS = lx + q["u"] * ax
    cY = apex + q["v"] * (dome - apex)  # follows the (possibly elevated) hemidiaphragm
    d = np.abs((Y - cY) - q["slope"] * (S - cS))
    along = np.abs(S - cS) * (1 / 0.17)
    band = _ramp(q["th"] * (1.0 - along * along) - d, c.px) * (
        0.7 + 0.3 * np.clip(c.fine[idx, rows], -1.0, 1.0)
    )
    wedge = _ramp(S - 0.06, 0.03) * _ramp(Y - apex - 0.62 - 1.6 * (S - 0.08), 0.04) * q["wedge"]
    return (q["amp"] * band + 0.45 * wedge) * lung, None


def _paint_edema(c, idx, rows, S, Y, lung, L, dome, q):
    """Edema (both lungs): perihilar haze (bat wing), septal (Kerley B) lines at the lateral bases."""
    p = c.p
    sev, ax = q["sev"], c.ax[idx]
    hx, hy = ax - 0.26, Y - p["apex"][idx] - 0.65
    haze = _bump((hx * hx + 0.7 * hy * hy) / (0.08 + 0.25 * sev)) * np.maximum(
        1.0 + 0.5 * sev * c.tex[idx, rows], 0.3
    )
    kerley = np.clip(1.0 - 10.0 * _frac_dist(Y * (1.0 / max(0.045, 3.2 * c.px))), 0.0, 1.0)
    kerley = (
        kerley * _ramp(ax - p["lung_x"][idx] - p["lung_ax"][idx] + 0.07, 0.03) * _ramp(Y - dome + 0.22, 0.05)
    )
    return ((0.03 + 0.24 * sev) * haze + (0.07 * np.minimum(1.0, 0.4 + sev)) * kerley) * lung, None


def _paint_fracture(c, idx, rows, S, Y, lung, L, dome, q):
    """Old rib fracture: a focal callus on a lateral rib."""
    dx, dy = S - q["cx"], Y - q["cy"]
    return 0.3 * np.clip(1.0 - (dx * dx + dy * dy) * (1 / 0.028**2), 0.0, 1.0), None


_PAINTERS = {
    "airspace": _paint_airspace,
    "nodule": _paint_nodule,
    "effusion": _paint_effusion,
    "ptx": _paint_ptx,
    "atel": _paint_atel,
    "edema": _paint_edema,
    "fracture": _paint_fracture,
}


# -- devices --------------------------------------------------------------------------------------


def _device_paths(s: Study) -> list[tuple[list[list[float]], float, float]]:
    """Polylines (patient frame) of one study's devices, with half-width and brightness."""
    a, d = s.anat, s.devices
    x0, carina, dia_l = a["spine_x"], a["apex"] + 0.48, a["dia_l"]
    out = []
    if "ett" in d:
        tip = carina - d["ett"]["above_carina_cm"] / 18.0  # ~18 cm per unit
        out.append(([[x0 + 0.01, -1.1], [x0, -0.7], [x0 - 0.005, tip]], 0.01, 0.9))
    if "ng" in d:
        out.append(
            (
                [
                    [x0 + 0.03, -1.1],
                    [x0 + 0.015, -0.4],
                    [x0 + 0.05, dia_l],
                    [x0 + 0.2, dia_l + 0.12],
                    [x0 + 0.32, dia_l + 0.1],
                ],
                0.008,
                0.8,
            )
        )
    if "cvc" in d:
        ty = carina + {"mid SVC": 0.02, "lower SVC": 0.1, "cavoatrial junction": 0.2}[d["cvc"]["tip"]]
        path = {
            "right internal jugular": [[x0 - 0.26, -1.1], [x0 - 0.16, -0.7], [x0 - 0.08, -0.45]],
            "left subclavian": [[0.8, -0.78], [0.45, -0.66], [0.15, -0.58], [x0 - 0.06, -0.45]],
            "right PICC": [[-0.99, -0.55], [-0.7, -0.68], [-0.3, -0.62], [x0 - 0.08, -0.45]],
        }[d["cvc"]["route"]]
        out.append((path + [[x0 - 0.07, ty]], 0.008, 0.75))
    if "pacemaker" in d:
        out.append(
            (
                [
                    [0.45, -0.56],
                    [0.2, -0.5],
                    [x0 - 0.04, -0.36],
                    [x0 - 0.07, carina + 0.28],
                    [x0 + 0.12, dia_l - 0.04],
                ],
                0.009,
                1.0,
            )
        )
    if "chest_tube" in d:
        sg = d["chest_tube"]["side"]
        out.append(([[sg * 0.95, 0.4], [sg * 0.72, 0.3], [sg * 0.62, -0.2], [sg * 0.45, -0.58]], 0.016, 0.7))
    return out


def _paint_devices(c: _Canvas, studies: list[Study]) -> None:
    """Radiopaque tubes and lines, the pacemaker generator, sternotomy wires: one pass per device
    signature (paths with the same number of points) across the chunk, inside its bounding box."""
    paths: dict[tuple[int, float, float], tuple[list[int], list[list[list[float]]]]] = {}
    boxes, wires = [], []
    for i, s in enumerate(studies):
        for pts, half, amp in _device_paths(s):
            idx, pp = paths.setdefault((len(pts), half, amp), ([], []))
            idx.append(i)
            pp.append(pts)
        if "pacemaker" in s.devices:
            boxes.append(i)
        if s.chronic["sternotomy"]:
            wires.append(i)
    for (_, half, amp), (idx, pp) in sorted(paths.items()):  # a fixed order, whatever the chunk
        m = half + c.px
        for layer in _unique_layers(idx):  # two devices of one signature in an image: two passes
            ii = np.asarray([idx[j] for j in layer])
            pts = np.asarray([pp[j] for j in layer], dtype=np.float32)  # [k, points, 2]
            rows = c.rows(float(pts[..., 1].min()) - m, float(pts[..., 1].max()) + m, ii)
            cols = c.cols(float(pts[..., 0].min()) - m, float(pts[..., 0].max()) + m, ii)
            X, Y = c.X[ii][:, :, cols], c.Y[ii, rows]
            d = None
            for j in range(pts.shape[1] - 1):
                seg = [_col(pts[:, j + a, b]) for a in (0, 1) for b in (0, 1)]
                dj = _seg_dist(X, Y, seg[0], seg[1], seg[2], seg[3])
                d = dj if d is None else np.minimum(d, dj)
            c.A[ii, rows, cols] += amp * _ramp(half - d, c.px)
    if boxes:  # pacemaker generator in the left upper chest
        ii = np.asarray(boxes)
        rows, cols = c.rows(-0.64 - c.px, -0.52 + c.px, ii), c.cols(0.415 - c.px, 0.585 + c.px, ii)
        c.A[ii, rows, cols] += (
            1.6
            * _ramp(0.085 - np.abs(c.X[ii][:, :, cols] - 0.5), c.px)
            * _ramp(0.06 - np.abs(c.Y[ii, rows] + 0.58), c.px)
        )
    if wires:  # sternotomy wires: small loops down the midline
        ii = np.asarray(wires)
        rows, cols = c.rows(-0.55 - c.px, 0.22 + c.px, ii), c.cols(-0.15 - c.px, 0.15 + c.px, ii)
        dx = c.X[ii][:, :, cols] - c.p["spine_x"][ii]
        for k in range(6):
            dy = (c.Y[ii, rows] + 0.48 - 0.12 * k) * 1.6
            c.A[ii, rows, cols] += 0.9 * _ramp(0.008 - np.abs(np.sqrt(dx * dx + dy * dy) - 0.02), c.px)


def _unique_layers(idx: list[int]) -> list[list[int]]:
    """Split positions of ``idx`` into layers in which every image index occurs once."""
    layers: list[list[int]] = []
    seen: list[set[int]] = []
    for j, i in enumerate(idx):
        for layer, used in zip(layers, seen):
            if i not in used:
                layer.append(j)
                used.add(i)
                break
        else:
            layers.append([j])
            seen.append({i})
    return layers


# ----------------------------------------------------------------------------------------------
# Reports and labels
# ----------------------------------------------------------------------------------------------


@dataclass
class _Sent:
    """A sentence and the (category, value) records a CheXpert-style labeler would read from it."""

    text: str
    records: list[tuple[str, int]]


def _aggregate(records: list[tuple[str, int]]) -> dict[str, int]:
    """CheXpert's rule for several mentions of a category: positive > uncertain > negative."""
    out: dict[str, int] = {}
    for cat, val in records:
        prev = out.get(cat)
        if prev is None:
            out[cat] = val
        elif 1 in (prev, val):
            out[cat] = 1
        elif -1 in (prev, val):
            out[cat] = -1
    return out


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pick(rng: _Stream, options):
    return options[rng.integers(0, len(options))]


def _side_words(sides: tuple[int, ...]) -> str:
    return "bilateral" if len(sides) == 2 else _SIDE_NAME[sides[0]]


def _severity_word(kind: str, sev: float) -> str:
    scale = {
        "Pleural Effusion": ("small", "moderate", "large"),
        "Pneumothorax": ("small", "moderate", "large"),
        "Cardiomegaly": ("mild", "moderate", "severe"),
        "Edema": ("mild", "moderate", "severe"),
        "Enlarged Cardiomediastinum": ("mild", "moderate", "marked"),
        "Atelectasis": ("mild", "moderate", "severe"),
        "Consolidation": ("patchy", "focal", "dense"),
        "Pneumonia": ("patchy", "multifocal patchy", "extensive"),
    }[kind]
    return scale[0 if sev < 0.35 else 1 if sev < 0.68 else 2]


def _lobe_name(rng, lobe: str) -> str:
    return _pick(rng, _LOBES[lobe][3])


def _prior_note(s: Study, f: Finding, rng) -> str:
    """ ", new since the prior study" and the like. Not used for the heart and mediastinum, where
    CheXpert's labeler reads "stable" / "unchanged" as uncertain."""
    if s.index == 1 or f.hedged or rng.random() < 0.5:
        return ""
    if f.kind not in s.prior_kinds:
        return _pick(rng, (", new since the prior study", ", new compared with the prior radiograph"))
    before = s.prior_kinds[f.kind]
    if f.sev > before * 1.15:
        return ", increased since the prior study"
    if f.sev < before * 0.85:
        return ", decreased compared with the prior radiograph"
    return _pick(rng, (", unchanged from the prior study", ", similar to the prior radiograph"))


_Described = tuple[list[_Sent], "_Sent | None"]  # findings sentences, impression phrase
_LO = ("Lung Opacity", 1)


def _describe(f: Finding, s: Study, rng) -> _Described:
    """Findings-section sentences for one finding and a short impression phrase (same hedging)."""
    if f.kind in ("Consolidation", "Pneumonia", "Opacity"):
        return _describe_airspace(f, s, rng)
    return {
        "Cardiomegaly": _describe_heart,
        "Enlarged Cardiomediastinum": _describe_mediastinum,
        "Pleural Effusion": _describe_effusion,
        "Pneumothorax": _describe_ptx,
        "Edema": _describe_edema,
        "Atelectasis": _describe_atelectasis,
        "Nodule": _describe_nodule,
    }[f.kind](f, s, rng)


def _describe_heart(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    if f.hedged:
        t = _pick(
            rng,
            (
                "Borderline heart size.",
                "The cardiac silhouette is possibly mildly enlarged.",
                "Heart size may be mildly enlarged, accentuated by technique.",
                "Mild cardiomegaly cannot be excluded.",
            ),
        )
        imp = _pick(rng, ("Possible mild cardiomegaly.", "Borderline heart size.", None))
        return [_Sent(t, [(k, -1)])], imp and _Sent(imp, [(k, -1)])
    sw = _severity_word(k, f.sev)
    ly = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}[sw]
    t = _pick(
        rng,
        (
            f"{_cap(sw)} cardiomegaly.",
            f"The heart is {ly} enlarged.",
            f"{_cap(sw)} enlargement of the cardiac silhouette.",
            f"Heart size is {ly} enlarged.",
            "Enlarged cardiac silhouette.",
        ),
    )
    return [_Sent(t, [(k, 1)])], _Sent(_pick(rng, (f"{_cap(sw)} cardiomegaly.", "Cardiomegaly.")), [(k, 1)])


def _describe_mediastinum(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    if f.hedged:
        t = _pick(
            rng,
            (
                "Possible mild widening of the mediastinum.",
                "The mediastinal silhouette may be mildly widened, possibly due to technique.",
                "Questionable widening of the mediastinum.",
            ),
        )
        return [_Sent(t, [(k, -1)])], None
    sw = _severity_word(k, f.sev)
    ly = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}[sw]
    t = _pick(
        rng,
        (
            f"The mediastinum is {ly} widened.",
            f"{_cap(sw)} widening of the mediastinal silhouette.",
            f"The cardiomediastinal silhouette is {ly} enlarged.",
            f"The mediastinal contours are {ly} widened.",
        ),
    )
    imp = _pick(rng, ("Widened mediastinum.", "Enlarged cardiomediastinal silhouette."))
    return [_Sent(t, [(k, 1)])], _Sent(imp, [(k, 1)])


def _describe_effusion(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    side = _side_words(f.sides)
    pl = "s" if len(f.sides) == 2 else ""
    if f.hedged:
        t = _pick(
            rng,
            (
                f"Possible small {side} pleural effusion{pl}.",
                f"Minimal blunting of the {side} costophrenic angle{pl} may represent trace "
                f"pleural effusion{pl}.",
                f"Trace {side} pleural effusion{pl} cannot be excluded.",
            ),
        )
        imp = _pick(rng, (f"Possible small {side} pleural effusion{pl}.", None))
        return [_Sent(t, [(k, -1)])], imp and _Sent(imp, [(k, -1)])
    sw = _severity_word(k, f.sev)
    note = _prior_note(s, f, rng)
    options = [
        f"{_cap(sw)} {side} pleural effusion{pl}{note}.",
        f"There {'are' if pl else 'is a'} {sw} {side} pleural effusion{pl}{note}.",
        f"{_cap(sw)} {side} effusion{pl} with a meniscus at the base{note}.",
    ]
    if sw == "small":
        options.append(
            f"Blunting of the {side} costophrenic angle{pl}, consistent with small effusion{pl}{note}."
        )
    if f.extra.get("layer"):
        options.append(f"{_cap(sw)} layering {side} pleural effusion{pl}{note}.")
    return [_Sent(_pick(rng, options), [(k, 1)])], _Sent(f"{_cap(sw)} {side} pleural effusion{pl}.", [(k, 1)])


def _describe_ptx(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    side = _side_words(f.sides)
    if f.hedged:
        t = _pick(
            rng,
            (
                f"Possible tiny {side} apical pneumothorax.",
                f"A tiny {side} apical pneumothorax cannot be excluded.",
                f"Questionable small {side} apical pneumothorax.",
            ),
        )
        imp = _pick(
            rng,
            (
                f"Possible tiny {side} apical pneumothorax; consider repeat imaging.",
                f"Questionable tiny {side} apical pneumothorax.",
            ),
        )
        return [_Sent(t, [(k, -1)])], _Sent(imp, [(k, -1)])
    sw = _severity_word(k, f.sev)
    note = _prior_note(s, f, rng)
    where = "apical" if f.sev < 0.35 else "apicolateral"
    t = _pick(
        rng,
        (
            f"{_cap(sw)} {side} {where} pneumothorax{note}.",
            f"There is a {sw} {side} pneumothorax with a visible visceral pleural edge{note}.",
            f"{_cap(side)} pneumothorax, {sw} in size, most apparent at the apex{note}.",
        ),
    )
    return [_Sent(t, [(k, 1)])], _Sent(f"{_cap(sw)} {side} pneumothorax.", [(k, 1)])


def _describe_edema(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    if f.hedged:
        # "vascular congestion" alone reads as uncertain to CheXpert; it only appears here.
        t = _pick(
            rng,
            (
                "Possible mild interstitial edema.",
                "Mild interstitial edema cannot be excluded.",
                "Mild pulmonary vascular congestion, possibly early interstitial edema.",
                "Perihilar haziness may represent mild pulmonary edema.",
            ),
        )
        imp = _pick(rng, ("Possible mild pulmonary edema.", None))
        return [_Sent(t, [(k, -1)])], imp and _Sent(imp, [(k, -1)])
    sw = _severity_word(k, f.sev)
    note = _prior_note(s, f, rng)
    options = {
        "mild": (
            "Increased interstitial opacities with septal thickening, compatible with mild "
            "interstitial edema",
            "Mild pulmonary edema with perihilar opacities",
        ),
        "moderate": (
            "Bilateral perihilar hazy opacities consistent with moderate pulmonary edema",
            "Moderate pulmonary edema with bilateral perihilar opacities",
        ),
        "severe": (
            "Diffuse bilateral airspace opacities consistent with severe alveolar edema",
            "Severe pulmonary edema with confluent bilateral perihilar opacities",
        ),
    }[sw]
    return [_Sent(_pick(rng, options) + note + ".", [(k, 1), _LO])], _Sent(
        f"{_cap(sw)} pulmonary edema.", [(k, 1)]
    )


def _describe_nodule(f: Finding, s: Study, rng) -> _Described:
    mm = f.extra["mm"]
    loc = _lobe_name(rng, f.where)
    size = f"{mm} mm" if mm < 20 else f"{mm / 10:.1f} cm"
    noun = "nodular opacity" if mm < 20 else "mass-like opacity"
    t = _pick(
        rng, (f"There is a {size} {noun} in the {loc}.", f"A {size} rounded {noun} projects over the {loc}.")
    )
    recs = [("Lung Lesion", 1), _LO]
    imp = f"{_cap(size)} {noun} in the {loc}; recommend chest CT for further evaluation."
    return [_Sent(t, recs)], _Sent(imp, recs)


def _describe_airspace(f: Finding, s: Study, rng) -> _Described:
    """Consolidation (with the pneumonia of the same lobe, if any), pneumonia alone, or an opacity."""
    k, h = f.kind, f.hedged
    loc = _lobe_name(rng, f.where)
    note = _prior_note(s, f, rng)
    if k == "Opacity":
        if h:
            t = _pick(
                rng, (f"Possible subtle opacity in the {loc}.", f"Questionable faint opacity in the {loc}.")
            )
            return [_Sent(t, [("Lung Opacity", -1)])], None
        t = _pick(
            rng,
            (
                f"Small patchy opacity in the {loc}{note}.",
                f"Subtle hazy opacity in the {loc}{note}.",
                f"There is a faint nonspecific opacity in the {loc}{note}.",
            ),
        )
        imp = _pick(rng, (f"Nonspecific {loc} opacity; follow-up recommended.", None))
        return [_Sent(t, [_LO])], imp and _Sent(imp, [_LO])
    pna = next((g for g in s.findings if g.kind == "Pneumonia" and g.where == f.where), None)
    if k == "Pneumonia" and any(g.kind == "Consolidation" and g.where == f.where for g in s.findings):
        return [], None  # described with the consolidation of the same lobe
    sw = _severity_word(k, f.sev)
    if k == "Consolidation":
        bronch = " with air bronchograms" if f.sev > 0.4 and rng.random() < 0.6 else ""
        if h:
            t = _pick(
                rng,
                (
                    f"Faint opacity in the {loc}, possibly early consolidation.",
                    f"Subtle {loc} opacity; consolidation cannot be excluded.",
                ),
            )
            sents = [_Sent(t, [_LO, (k, -1)])]
            imp = _Sent(f"Possible early consolidation in the {loc}.", [(k, -1)])
        else:
            t = _pick(
                rng,
                (
                    f"There is {sw} consolidative opacity in the {loc}{bronch}{note}.",
                    f"{_cap(sw)} airspace opacity in the {loc} consistent with consolidation{bronch}{note}.",
                    f"The {loc} is opacified, consistent with {sw} consolidation{bronch}{note}.",
                ),
            )
            sents = [_Sent(t, [_LO, (k, 1)])]
            imp = _Sent(f"{_cap(loc)} consolidation.", [(k, 1)])
        if pna is not None:  # pneumonia in the same lobe: say what the consolidation means
            if pna.hedged:
                t = _pick(
                    rng,
                    (
                        "This may represent pneumonia.",
                        "Pneumonia cannot be excluded.",
                        "Findings are concerning for pneumonia in the appropriate clinical setting.",
                    ),
                )
                sents.append(_Sent(t, [("Pneumonia", -1)]))
                imp = _Sent(
                    f"{_cap(loc)} consolidation, concerning for pneumonia.", [(k, 1), ("Pneumonia", -1)]
                )
            else:
                t = _pick(
                    rng, ("Findings are consistent with pneumonia.", "This is compatible with pneumonia.")
                )
                sents.append(_Sent(t, [("Pneumonia", 1)]))
                imp = _Sent(f"{_cap(loc)} pneumonia.", [("Pneumonia", 1)])
        return sents, imp
    # Pneumonia without consolidation: patchy and less dense.
    if h:
        t = _pick(
            rng,
            (
                f"Patchy opacity in the {loc}, which may represent atelectasis or pneumonia.",
                f"Hazy {loc} opacity; early pneumonia cannot be excluded.",
                f"Ill-defined opacity in the {loc}, possibly infectious.",
            ),
        )
        recs = [_LO, ("Pneumonia", -1)] + ([("Atelectasis", -1)] if "atelectasis" in t else [])
        imp = _pick(
            rng,
            (
                (f"{_cap(loc)} opacity, possibly pneumonia.", [_LO, ("Pneumonia", -1)]),
                (f"Possible early {loc} pneumonia.", [("Pneumonia", -1)]),
            ),
        )
        return [_Sent(t, recs)], _Sent(*imp)
    t = _pick(
        rng,
        (
            f"{_cap(sw)} opacity in the {loc} consistent with pneumonia{note}.",
            f"{_cap(sw)} airspace opacities in the {loc}, compatible with infectious process{note}.",
            f"There are {sw} opacities in the {loc} compatible with pneumonia{note}.",
        ),
    )
    return [_Sent(t, [_LO, ("Pneumonia", 1)])], _Sent(f"{_cap(loc)} pneumonia.", [("Pneumonia", 1)])


def _describe_atelectasis(f: Finding, s: Study, rng) -> _Described:
    k = "Atelectasis"
    both = len(f.sides) == 2
    side = "" if both else _SIDE_NAME[f.sides[0]]
    loc = _pick(rng, ("bibasilar", "bilateral basilar")) if both else f"{side} basilar"
    base = "both lung bases" if both else f"the {side} lung base"
    if f.hedged:
        t = _pick(
            rng,
            (
                f"Minimal streaky opacity at {base}, which may represent atelectasis.",
                f"Possible minimal {loc} atelectasis.",
            ),
        )
        return [_Sent(t, [(k, -1)] + ([_LO] if "opacity" in t else []))], None
    sw = _severity_word(k, f.sev)
    note = _prior_note(s, f, rng)
    if sw == "severe" and not both:
        lobe = f"{side} lower lobe"
        where = "Dense retrocardiac opacification" if side == "left" else "Dense opacity at the right base"
        t = _pick(
            rng,
            (
                f"{where} with volume loss, consistent with {lobe} collapse{note}.",
                f"{_cap(lobe)} atelectasis with associated opacity and elevation of the {side} "
                f"hemidiaphragm{note}.",
            ),
        )
        return [_Sent(t, [(k, 1), _LO])], _Sent(f"{_cap(lobe)} collapse.", [(k, 1)])
    if sw == "severe":  # both bases
        t = _pick(
            rng,
            (
                f"Dense bibasilar opacities with volume loss, consistent with severe atelectasis{note}.",
                f"Severe bibasilar atelectasis with associated opacities{note}.",
            ),
        )
        return [_Sent(t, [(k, 1), _LO])], _Sent("Severe bibasilar atelectasis.", [(k, 1)])
    kind = "subsegmental" if sw == "mild" else sw
    t = _pick(
        rng,
        (
            f"Linear opacity at {base} consistent with {kind} atelectasis{note}.",
            f"{_cap(sw)} {loc} atelectasis with band-like opacity{note}.",
            f"Band-like opacit{'ies' if both else 'y'} at {base} compatible with discoid atelectasis{note}.",
        ),
    )
    sents = [_Sent(t, [(k, 1), _LO])]
    if f.sev > 0.3 and not both and rng.random() < 0.5:
        sents.append(_Sent(f"Mild elevation of the {side} hemidiaphragm.", [("Other", 1)]))
    imp = _pick(rng, (f"{_cap(loc)} atelectasis.", None))
    return sents, imp and _Sent(imp, [(k, 1)])


def _describe_devices(s: Study, rng) -> list[_Sent]:
    d, out, SD = s.devices, [], ("Support Devices", 1)
    if "ett" in d:
        cm = d["ett"]["above_carina_cm"]
        out.append(
            _Sent(
                _pick(
                    rng,
                    (
                        f"Endotracheal tube terminates approximately {cm:.0f} cm above the carina.",
                        f"The endotracheal tube tip is {cm:.1f} cm above the carina.",
                    ),
                ),
                [SD],
            )
        )
    if "ng" in d:
        out.append(
            _Sent(
                _pick(
                    rng,
                    (
                        "Enteric tube courses below the diaphragm with its tip in the stomach.",
                        "Nasogastric tube tip is in the stomach.",
                    ),
                ),
                [SD],
            )
        )
    if "cvc" in d:
        route, tip = d["cvc"]["route"], d["cvc"]["tip"]
        noun = "PICC line" if "PICC" in route else "central venous catheter"
        route = route.replace(" PICC", "")
        out.append(
            _Sent(
                _pick(
                    rng,
                    (
                        f"{_cap(route)} {noun} terminates in the {tip}.",
                        f"{_cap(route)} {noun} with tip in the {tip}.",
                    ),
                ),
                [SD],
            )
        )
    if "pacemaker" in d:
        out.append(
            _Sent(
                _pick(
                    rng,
                    (
                        "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
                        "Dual-lead pacemaker with leads in expected position.",
                    ),
                ),
                [SD],
            )
        )
    if "chest_tube" in d:
        out.append(_Sent(f"{_cap(_SIDE_NAME[d['chest_tube']['side']])} chest tube in place.", [SD]))
    return out


#: How reports negate absent lung findings.
_NEGATE_LUNG = {
    "Consolidation": "focal consolidation",
    "Edema": "pulmonary edema",
    "Lung Opacity": "focal airspace opacity",
    "Atelectasis": "atelectasis",
}
#: Probability of negating an absent finding (otherwise it stays unmentioned: label missing).
_P_NEGATE = {
    "Consolidation": 0.45,
    "Edema": 0.3,
    "Lung Opacity": 0.15,
    "Atelectasis": 0.03,
    "Pneumonia": 0.15,
    "Pleural Effusion": 0.65,
    "Pneumothorax": 0.7,
    "Cardiomegaly": 0.7,
    "Enlarged Cardiomediastinum": 0.45,
}


def _join_or(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + (", or " if len(items) > 2 else " or ") + items[-1]


def _negations(s: Study, rng, present: set[str]) -> tuple[list[_Sent], list[_Sent], list[_Sent]]:
    """Sentences negating some absent findings, for the lung, pleura and heart groups."""
    boost = 0.2 if not present else 0.0  # normal reports list more pertinent negatives
    parenchymal = bool(present & {"Consolidation", "Pneumonia", "Atelectasis", "Edema", "Lung Opacity"})

    def negate(k: str) -> bool:
        return k not in present and bool(rng.random() < _P_NEGATE[k] + boost)

    lung, pleura, heart = [], [], []
    neg = [
        k
        for k in _NEGATE_LUNG
        if negate(k)
        and not (k == "Lung Opacity" and parenchymal)
        and not (k == "Consolidation" and "Pneumonia" in present)
    ]
    if neg:
        phrase = _join_or([_NEGATE_LUNG[k] for k in neg])
        lung.append(_Sent(_pick(rng, (f"No {phrase}.", f"There is no {phrase}.")), [(k, 0) for k in neg]))
    if not parenchymal and negate("Pneumonia"):
        lung.append(
            _Sent(
                _pick(rng, ("No evidence of pneumonia.", "No radiographic evidence of pneumonia.")),
                [("Pneumonia", 0)],
            )
        )
    neg = [k for k in ("Pleural Effusion", "Pneumothorax") if negate(k)]
    if neg:
        words = (
            ["pleural effusion", "pneumothorax"]
            if len(neg) == 2
            else ["pleural effusion" if neg[0] == "Pleural Effusion" else "pneumothorax"]
        )
        if len(neg) == 2 and rng.random() < 0.5:
            words = ["effusion", "pneumothorax"]
        phrase = _join_or(words)
        pleura.append(_Sent(_pick(rng, (f"No {phrase}.", f"There is no {phrase}.")), [(k, 0) for k in neg]))
    card = s.anat["ctr"] < 0.49 and negate("Cardiomegaly")  # never call a large heart normal
    ec = negate("Enlarged Cardiomediastinum")
    if card and ec and rng.random() < 0.6:
        t = _pick(
            rng,
            (
                "Heart size and mediastinal contours are normal.",
                "Heart size is normal and the mediastinal silhouette is unremarkable.",
            ),
        )
        heart.append(_Sent(t, [("Cardiomegaly", 0), ("Enlarged Cardiomediastinum", 0)]))
    else:
        if card:
            t = _pick(
                rng,
                (
                    "Heart size is normal.",
                    "The heart is normal in size.",
                    "The cardiac silhouette is within normal limits.",
                ),
            )
            heart.append(_Sent(t, [("Cardiomegaly", 0)]))
        if ec:
            t = _pick(
                rng,
                (
                    "The mediastinal contours are normal.",
                    "The cardiomediastinal silhouette is unremarkable.",
                    "Normal mediastinal silhouette.",
                ),
            )
            heart.append(_Sent(t, [("Enlarged Cardiomediastinum", 0)]))
    return lung, pleura, heart


def _describe_chronic(s: Study, rng) -> list[_Sent]:
    """What the 9 labels do not carry: aorta, sternotomy, spine, old rib fractures."""
    c, out = s.chronic, []
    if c["tortuous_aorta"]:
        out.append(
            _Sent(
                _pick(rng, ("The thoracic aorta is tortuous.", "Tortuous and unfolded thoracic aorta.")), []
            )
        )
    if c["sternotomy"]:
        out.append(
            _Sent(_pick(rng, ("Median sternotomy wires are intact.", "Intact median sternotomy wires.")), [])
        )
    if c["scoliosis"]:
        word = "dextroscoliosis" if c["scoliosis"] > 0 else "levoscoliosis"
        degree = "Mild" if abs(c["scoliosis"]) < 0.06 else "Moderate"
        out.append(_Sent(f"{degree} {word} of the thoracic spine.", [("Other", 1)]))
    if c["fracture"]:
        fr = c["fracture"]
        nth, side = f"{fr['rib']}th", _SIDE_NAME[fr["side"]]
        t = _pick(
            rng, (f"Healed {side} lateral {nth} rib fracture.", f"Old {side} {nth} rib fracture deformity.")
        )
        out.append(_Sent(t, [("Fracture", 1)]))
    elif not c["scoliosis"] and rng.random() < 0.25:
        out.append(
            _Sent(_pick(rng, ("No acute osseous abnormality.", "The osseous structures are intact.")), [])
        )
    return out


_ORDER = (
    "Consolidation",
    "Pneumonia",
    "Edema",
    "Atelectasis",
    "Opacity",
    "Nodule",
    "Pleural Effusion",
    "Pneumothorax",
    "Cardiomegaly",
    "Enlarged Cardiomediastinum",
)
_GROUP = {
    "Cardiomegaly": "heart",
    "Enlarged Cardiomediastinum": "heart",
    "Pleural Effusion": "pleura",
    "Pneumothorax": "pleura",
}


def _write_report(s: Study, rng: _Stream) -> tuple[str, dict[str, float | None]]:
    """FINDINGS and IMPRESSION text, and the labels a CheXpert-style labeler reads from it."""
    findings: list[_Sent] = []
    if s.index > 1 and rng.random() < 0.5:
        findings.append(
            _Sent(
                _pick(
                    rng, ("Comparison is made with the prior radiograph.", "Compared with the prior study.")
                ),
                [],
            )
        )
    if rng.random() < 0.4:
        findings.append(
            _Sent("Portable AP upright view of the chest." if s.view == "AP" else "PA view of the chest.", [])
        )
    devices = _describe_devices(s, rng)
    findings += devices
    groups: dict[str, list[_Sent]] = {"lung": [], "pleura": [], "heart": []}
    impression: list[_Sent] = []
    for f in sorted(s.findings, key=lambda f: _ORDER.index(f.kind)):
        sents, imp = _describe(f, s, rng)
        groups[_GROUP.get(f.kind, "lung")] += sents
        if imp is not None:
            impression.append(imp)
    present = {k for sents in groups.values() for x in sents for k, v in x.records if v != 0}
    neg_lung, neg_pleura, neg_heart = _negations(s, rng, present & set(RADTEX_9))
    if not groups["lung"]:
        clear = _pick(
            rng,
            (
                "The lungs are clear.",
                "The lungs are well expanded and clear.",
                "Lungs are clear bilaterally.",
                "",
            ),
        )
        if clear:
            findings.append(_Sent(clear, []))
    findings += groups["lung"] + neg_lung + groups["pleura"] + neg_pleura + groups["heart"] + neg_heart
    findings += _describe_chronic(s, rng)

    if not impression:
        if devices and rng.random() < 0.5:
            impression.append(
                _Sent(
                    _pick(
                        rng,
                        (
                            "Support lines and tubes as described above.",
                            "Lines and tubes in appropriate position.",
                        ),
                    ),
                    [("Support Devices", 1)],
                )
            )
        impression.append(
            _Sent(
                _pick(
                    rng,
                    (
                        "No acute cardiopulmonary process.",
                        "No acute cardiopulmonary abnormality.",
                        "No acute intrathoracic process.",
                    ),
                ),
                [],
            )
        )
    if len(impression) > 1 and rng.random() < 0.5:
        imp_text = " ".join(f"{i}. {x.text}" for i, x in enumerate(impression, 1))
    else:
        imp_text = " ".join(x.text for x in impression)
    text = "FINDINGS: " + " ".join(x.text for x in findings) + "\n\nIMPRESSION: " + imp_text

    agg = _aggregate([r for x in findings + impression for r in x.records])
    labels: dict[str, float | None] = {c: agg.get(c) for c in LABEL_COLUMNS}
    # CheXpert: No Finding is positive when nothing but support devices is positive or uncertain.
    found = any(v != 0 for c, v in agg.items() if c != "Support Devices")
    labels["No Finding"] = None if found else 1
    return text, labels
