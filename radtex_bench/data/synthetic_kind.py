"""``synthetic``: the embedded dataset, generated once per (n, size, seed) and cached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..schema import option
from .kinds import DatasetKind, DatasetOptions, register_dataset
from .manifest import ManifestOptions, read_manifest
from .table import ImageTable


def cache_root() -> Path:
    """``$RADTEX_BENCH_CACHE``, else ``$XDG_CACHE_HOME/radtex_bench``, else ``~/.cache/radtex_bench``."""
    if os.environ.get("RADTEX_BENCH_CACHE"):
        return Path(os.environ["RADTEX_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "radtex_bench"


@dataclass(frozen=True)
class SyntheticOptions(DatasetOptions):
    n: int = option(2000, ge=10, help="number of images")
    size: int = option(64, ge=16, help="image side in pixels")
    seed: int = option(0, ge=0, help="generator seed")
    # The generator writes a split; the patient-split keys of DatasetOptions do not apply.


@register_dataset("synthetic")
class SyntheticDataset(DatasetKind):
    Options = SyntheticOptions
    description = "built-in generated chest radiographs with reports (no download)"

    def folder(self) -> Path:
        from .synthetic import GENERATOR_VERSION

        o = self.options
        if o.root:
            return Path(o.root).expanduser()
        return cache_root() / "synthetic" / f"v{GENERATOR_VERSION}-n{o.n}-s{o.size}-seed{o.seed}"

    def read(self) -> ImageTable:
        from .synthetic import generate_synthetic

        o = self.options
        folder = generate_synthetic(self.folder(), n=o.n, size=o.size, seed=o.seed)
        table = read_manifest(folder / "manifest.csv", ManifestOptions(root=str(folder)), kind="synthetic")
        return table
