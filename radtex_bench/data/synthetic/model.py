"""The generator's vocabulary: a study, its findings, the patient's sides and lobes.

Sampling fills these in, the painters draw them and the report writer words them; keeping them in
one small module lets those three depend on it rather than on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RIGHT, LEFT = -1, 1  # sigma of the patient's right / left side (image left / right)
SIDE_NAME = {RIGHT: "right", LEFT: "left"}


@dataclass
class Finding:
    """One abnormality of a study. ``sev`` in [0, 1] drives both the painting and the words."""

    kind: str  # a RADTEX_9 name, or "Nodule" / "Opacity" (nonspecific)
    sides: tuple[int, ...]  # (RIGHT,), (LEFT,) or (RIGHT, LEFT)
    where: str = ""  # lobe key (see LOBES) or "base" / "apex" / "perihilar"
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
LOBES: dict[str, tuple[int, float, float, tuple[str, ...]]] = {
    "RUL": (RIGHT, 0.05, 0.27, ("right upper lobe", "right upper zone", "right upper lung")),
    "RML": (RIGHT, -0.45, 0.66, ("right middle lobe", "right mid zone", "right mid lung")),
    "RLL": (RIGHT, 0.1, 0.86, ("right lower lobe", "right base", "right lower zone")),
    "LUL": (LEFT, 0.05, 0.3, ("left upper lobe", "left upper zone", "left upper lung")),
    "LING": (LEFT, -0.25, 0.64, ("lingula", "left mid zone", "left mid lung")),
    "LLL": (LEFT, -0.45, 0.87, ("left lower lobe", "left base", "retrocardiac left lower lobe")),
}
