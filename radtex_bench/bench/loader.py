"""``radtex-bench bench loader``: training-loader images/s from the pixel cache vs decoding the files.

Both paths run the same DataLoader over :class:`~radtex_bench.data.pipeline.RadiographDataset` +
:class:`~radtex_bench.data.pipeline.PixelSource` (batch size, workers, output size, order), once with
``cache=`` a prepared folder and once decoding the original JPEG/PNG files. One untimed epoch first
(worker start-up, memory maps opened, and the operating system's file cache warmed for *both*, which
flatters the file path: a real 400 GB dataset does not stay in memory), then ``epochs`` timed ones.

Without ``kind``/``root`` it writes its own dataset: ``n`` radiographs of realistic size (each side
``min_side``-``max_side`` px; JPEG quality 95, 8-bit PNG, or half each) made by upscaling the built-in
synthetic radiographs and adding film-grain noise, listed in a manifest. With ``kind``/``root`` it
takes ``n`` images (seeded choice) of that dataset instead.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class LoaderBenchmark:
    dataset: str
    images: int
    source_pixels: str
    formats: dict[str, int]
    size: int
    batch_size: int
    workers: int
    epochs: int
    prepare_seconds: float
    cache_images_per_s: float
    files_images_per_s: float
    speedup: float

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": "loader", **asdict(self)}


def write_radiographs(
    folder: Path,
    n: int,
    min_side: int = 1024,
    max_side: int = 2048,
    seed: int = 0,
    file_format: str = "mixed",
) -> Path:
    """``n`` realistically sized radiographs + ``manifest.csv`` in ``folder``.

    ``file_format``: ``jpg`` (quality 95), ``png`` (8-bit) or ``mixed`` (alternating).
    """
    if file_format not in ("mixed", "jpg", "png"):
        raise ValueError(f"unknown file format {file_format!r}")
    from ..data.synthetic import generate_synthetic

    folder.mkdir(parents=True, exist_ok=True)
    base = generate_synthetic(folder / "base", n=max(n, 10), size=256, seed=seed)
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(exist_ok=True)
    rows = []
    for i, small in enumerate(sorted((base / "images").glob("*.png"))[:n]):
        h = int(rng.integers(min_side, max_side + 1))
        w = int(np.clip(h * rng.uniform(0.8, 1.2), min_side, max_side))
        img = np.asarray(Image.open(small).convert("L").resize((w, h), Image.BICUBIC), dtype=np.float32)
        img += rng.normal(0.0, 4.0, size=img.shape).astype(np.float32)  # film grain: real files compress less
        pixels = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        suffix = file_format if file_format != "mixed" else ("jpg" if i % 2 == 0 else "png")
        name = f"images/{i:05d}.{suffix}"
        if name.endswith(".jpg"):
            pixels.save(folder / name, quality=95)
        else:
            pixels.save(folder / name, compress_level=1)
        rows.append((name, f"p{i // 2}", "PA"))
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_path", "patient_id", "view"])
        writer.writerows(rows)
    return manifest


def _subset_manifest(kind: str, root: str, n: int, seed: int, folder: Path) -> Path:
    """A manifest of ``n`` present images of a real dataset (absolute paths, nothing copied)."""
    from ..data.columns import files_present
    from ..data.kinds import DatasetSpec
    from ..errors import DataError

    table = DatasetSpec.from_plain({"kind": kind, "root": root}, "bench").read("bench")
    frame = table.frame[table.frame["view"].isin(["PA", "AP"]) | (table.frame["view"] == "")]
    frame = frame[files_present(frame["path"])]
    if len(frame) == 0:
        raise DataError(f"bench loader: {kind} at {root} has no frontal image on disk")
    rows = np.random.default_rng(seed).permutation(len(frame))[:n]
    manifest = folder / "manifest.csv"
    frame.iloc[np.sort(rows)][["path", "patient_id"]].rename(columns={"path": "image_path"}).to_csv(
        manifest, index=False
    )
    return manifest


def images_per_second(
    table, size: int, cache: str | None, batch_size: int, workers: int, epochs: int
) -> float:
    """Images/s of a DataLoader over ``table`` (after one untimed warm-up epoch)."""
    from torch.utils.data import DataLoader

    from ..data.pipeline import PixelSource, RadiographDataset, collate

    dataset = RadiographDataset(PixelSource(table, size, cache), needs=["image"])
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
        shuffle=False,
    )
    for _ in loader:  # warm-up epoch
        pass
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            count += len(batch["index"])
    return count / (time.perf_counter() - start)


def run_loader_benchmark(
    n: int = 200,
    size: int = 256,
    batch_size: int = 32,
    workers: int = 2,
    epochs: int = 2,
    min_side: int = 1024,
    max_side: int = 2048,
    seed: int = 0,
    kind: str | None = None,
    root: str | None = None,
    keep: str | None = None,
    file_format: str = "mixed",
) -> LoaderBenchmark:
    import torch

    from ..data.cache import prepare
    from ..data.kinds.manifest import ManifestOptions, read_manifest

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the loader is measured, not the model: keep compute threads out of its way
    try:
        with tempfile.TemporaryDirectory(prefix="radtex-bench-loader-") as tmp:
            folder = Path(keep).expanduser() if keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            if kind:
                manifest = _subset_manifest(kind, root or "", n, seed, folder)
                options = ManifestOptions(root=str(manifest), allow_absolute_paths=True)
            else:
                manifest = write_radiographs(folder / "data", n, min_side, max_side, seed, file_format)
                options = ManifestOptions(root=str(manifest))
            table = read_manifest(manifest, options)
            start = time.perf_counter()
            prepare(
                "manifest",
                str(manifest),
                folder / "cache",
                size=size,
                workers=workers,
                allow_absolute_paths=options.allow_absolute_paths,
            )
            prepare_seconds = time.perf_counter() - start
            cached = images_per_second(table, size, str(folder / "cache"), batch_size, workers, epochs)
            files = images_per_second(table, size, None, batch_size, workers, epochs)
            formats = dict(Counter(os.path.splitext(p)[1].lower().lstrip(".") for p in table.frame["path"]))
            sides = "as stored" if kind else f"{min_side}-{max_side} px"
        return LoaderBenchmark(
            dataset=kind or "generated",
            images=len(table),
            source_pixels=sides,
            formats=formats,
            size=size,
            batch_size=batch_size,
            workers=workers,
            epochs=epochs,
            prepare_seconds=round(prepare_seconds, 2),
            cache_images_per_s=round(cached, 1),
            files_images_per_s=round(files, 1),
            speedup=round(cached / files, 1),
        )

    finally:
        torch.set_num_threads(previous)
