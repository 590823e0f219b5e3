"""``synthetic``: the embedded dataset, generated once per (n, size, seed) and cached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
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
        from .synthetic import generate_synthetic, generator_params, same_params, stored_params

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
        return table
