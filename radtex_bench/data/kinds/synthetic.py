"""``synthetic``: the embedded dataset, generated once per (n, size, seed) and cached.

Its pretraining labels can be made as imperfect as real ones (``pretrain_labels`` and the ``label_*``
keys, docs/synthetic.md "Pretraining labels"): they are set as :attr:`ImageTable.pretrain_labels` when
the table is read, so the generated files, the evaluation labels and the probes' labelled pool stay
exact; only pretraining objectives that train on labels see the noise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ...errors import ConfigError, did_you_mean
from ...schema import option
from ..label_noise import LabelNoise, describe_change
from ..labels import canonical_name
from ..table import ImageTable
from .base import DatasetKind, DatasetOptions, register_dataset
from .manifest import ManifestOptions, read_manifest

log = logging.getLogger("radtex_bench")

#: Where the pretraining split's labels come from before the noise model.
PretrainLabels = Literal["oracle", "labeler", "labeler_impression"]

#: A flip rate above this makes a label anti-informative (it says the opposite of the truth).
MAX_FLIP = 0.5


def cache_root() -> Path:
    """``$RADTEX_BENCH_CACHE``, else ``$XDG_CACHE_HOME/radtex_bench``, else ``~/.cache/radtex_bench``."""
    if os.environ.get("RADTEX_BENCH_CACHE"):
        return Path(os.environ["RADTEX_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "radtex_bench"


@dataclass(frozen=True)
class SyntheticOptions(DatasetOptions):
    n: int = option(2000, ge=10, le=1_000_000, help="number of images")
    size: int = option(64, ge=16, le=1024, help="image side in pixels")
    seed: int = option(0, ge=0, le=2**31 - 1, help="generator seed")
    # The generator writes a split; the patient-split keys of DatasetOptions do not apply.
    pretrain_labels: PretrainLabels = option(
        "oracle",
        help="labels pretraining objectives see: oracle (the generator's) | labeler (the rule report "
        "labeler on the synthetic reports) | labeler_impression (the labeler on the IMPRESSION section "
        "only, as CheXpert's and MIMIC-CXR's labels were made); the label_* noise applies on top; "
        "evaluation stays exact",
    )
    label_flip: float | dict[str, float] = option(
        0.0,
        ge=0.0,
        le=MAX_FLIP,
        help="probability of flipping each definite pretraining label (1 <-> 0): "
        "one rate, or {pathology: rate}",
    )
    label_uncertain: float = option(
        0.0, ge=0.0, le=1.0, help="share of positive pretraining labels turned uncertain (-1)"
    )
    label_missing: float = option(
        0.0, ge=0.0, lt=1.0, help="share of existing pretraining labels turned missing (not mentioned)"
    )
    unlabelled_images: float = option(
        0.0, ge=0.0, lt=1.0, help="share of pretraining images left without any label"
    )
    label_seed: int = option(0, ge=0, le=2**31 - 1, help="seed of the pretraining-label noise")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.label_flip, Mapping):
            from ..synthetic import LABEL_COLUMNS

            known = {canonical_name(c) for c in LABEL_COLUMNS}
            for name, rate in self.label_flip.items():
                if canonical_name(name) not in known:
                    raise ConfigError(
                        f"label_flip.{name}", f"not a synthetic label{did_you_mean(str(name), LABEL_COLUMNS)}"
                    )
                if not 0.0 <= rate <= MAX_FLIP:
                    raise ConfigError(f"label_flip.{name}", f"must be between 0 and {MAX_FLIP}, got {rate}")

    def noise(self) -> LabelNoise:
        return LabelNoise(
            self.label_flip, self.label_uncertain, self.label_missing, self.unlabelled_images, self.label_seed
        )


@register_dataset("synthetic")
class SyntheticDataset(DatasetKind):
    Options = SyntheticOptions
    description = "built-in generated chest radiographs with reports (no download)"

    def folder(self) -> Path:
        from ..synthetic import GENERATOR_VERSION

        o = self.options
        if o.root:
            return Path(o.root).expanduser()
        return cache_root() / "synthetic" / f"v{GENERATOR_VERSION}-n{o.n}-s{o.size}-seed{o.seed}"

    def read(self) -> ImageTable:
        from ..synthetic import generate_synthetic, generator_params, same_params, stored_params

        o = self.options
        folder = self.folder()
        stored = stored_params(folder) if o.root else None
        wanted = generator_params(o.n, o.size, o.seed)
        if stored and not same_params(stored, wanted):
            # A folder the user named is data, not a cache: never regenerate it behind their back.
            have = ", ".join(f"{k}: {stored.get(k)}" for k in ("n", "size", "seed"))
            want = ", ".join(f"{k}: {wanted[k]}" for k in ("n", "size", "seed"))
            raise ConfigError(
                f"{self.where}.root",
                f"{folder} holds a synthetic dataset generated with {have} (generator version "
                f"{stored.get('version')}), not {want} (version {wanted['version']}); set the same values "
                "in the recipe, or point root at a new folder",
            )
        folder = generate_synthetic(folder, n=o.n, size=o.size, seed=o.seed)
        table = read_manifest(folder / "manifest.csv", ManifestOptions(root=str(folder)), kind="synthetic")
        table.pretrain_labels = pretraining_labels(table, o, self.where)
        return table


def pretraining_labels(table: ImageTable, options: SyntheticOptions, where: str) -> np.ndarray | None:
    """The labels ``options`` give pretraining objectives (``[N, L]``, four states), or None when they
    are the generator's own (``oracle`` without noise: the table is exactly as before)."""
    noise = options.noise()
    if options.pretrain_labels == "oracle" and noise.is_identity(table.label_names):
        return None
    source = table.labels
    if options.pretrain_labels in ("labeler", "labeler_impression"):
        impression = options.pretrain_labels == "labeler_impression"
        source = labeler_labels(table, impression)
        log.info(
            "%s: pretraining labels from the rule report labeler%s (vs the generator's: %s)",
            where,
            " on the IMPRESSION section only" if impression else "",
            describe_change(table.labels, source),
        )
    noisy = noise.apply(source, table.label_names)
    if not noise.is_identity(table.label_names):
        log.info("%s: pretraining-label noise: %s", where, describe_change(source, noisy))
    return noisy


def labeler_labels(table: ImageTable, impression: bool = False) -> np.ndarray:
    """``[N, L]`` labels of the table's columns read from its reports by the rule labeler (CheXpert's
    14 observations; a column the labeler does not cover is missing).

    ``impression``: read only the IMPRESSION section, as the CheXpert labeler was run for CheXpert and
    MIMIC-CXR: what only FINDINGS says (pertinent negatives, many opacities, hedged mentions) is missing.
    """
    from ...text.labeler import CHEXPERT_14, label_reports
    from ..reports import extract

    reports = table.frame["report"].tolist()
    if impression:
        reports = [extract(r, "impression") for r in reports]
    raw = label_reports(reports)  # [N, 14]
    columns = []
    for name in table.label_names:
        canonical = canonical_name(name)
        if canonical in CHEXPERT_14:
            columns.append(raw[:, CHEXPERT_14.index(canonical)])
        else:
            columns.append(np.full(len(table), np.nan, dtype=np.float32))
    return np.stack(columns, axis=1).astype(np.float32)
