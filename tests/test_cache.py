"""``prepare``: the memory-mapped pixel cache (decode once, resume, skip unreadable, read anywhere)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from radtex_bench.data.cache import PixelCache, prepare
from radtex_bench.data.images import load_square
from radtex_bench.data.kinds import DatasetSpec
from radtex_bench.data.kinds.manifest import ManifestOptions, read_manifest
from radtex_bench.data.loading import load_table
from radtex_bench.data.pipeline import PixelSource, RadiographDataset, collate
from radtex_bench.errors import DataError


def make_images(root: Path, n: int = 12, broken: int = 1, missing: int = 1) -> Path:
    """A manifest of ``n`` readable images (PNG/JPEG, grey/RGB, 8/16-bit, various sizes) + bad ones."""
    rng = np.random.default_rng(4)
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = ["image_path,patient_id,view,Cardiomegaly"]
    for i in range(n):
        h, w = int(rng.integers(24, 60)), int(rng.integers(24, 60))
        kind = i % 4
        if kind == 0:
            name, img = f"img/{i}.png", Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8))
        elif kind == 1:
            name, img = f"img/{i}.jpg", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        elif kind == 2:
            name, img = f"img/{i}.png", Image.fromarray(rng.integers(0, 4095, (h, w)).astype(np.uint16))
        else:
            name, img = f"img/{i}.png", Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        img.save(root / name)
        lines.append(f"{name},p{i // 2},PA,{i % 2}")
    for i in range(broken):
        (root / f"img/broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
        lines.append(f"img/broken{i}.png,q{i},PA,1")
    for i in range(missing):
        lines.append(f"img/missing{i}.jpg,r{i},PA,0")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = make_images(tmp_path_factory.mktemp("images") / "ds")
    out = tmp_path_factory.mktemp("cache") / "c16"
    result = prepare("manifest", str(root), out, size=16, workers=0)
    return root, out, result


def _table(root: Path):
    return read_manifest(root / "manifest.csv", ManifestOptions(root=str(root)))


def test_prepare_decodes_every_image_and_lists_the_unreadable(prepared):
    root, out, result = prepared
    assert (result.images, result.cached, result.skipped, result.decoded_now) == (14, 12, 2, 12)
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 2
    assert any(
        line.startswith(str(root.absolute() / "img/broken0.png") + "\t") and "cannot decode" in line
        for line in skipped
    )
    assert any("missing0.jpg\t" in line and "not found" in line for line in skipped)
    meta = json.loads((out / "cache.json").read_text())
    assert meta["complete"] and meta["kind"] == "manifest" and meta["size"] == 16 and meta["skipped"] == 2


def test_decoded_now_counts_only_images_decoded_by_this_call(tmp_path):
    """`decoded_now` was every pending row, so 2 readable + 2 unreadable said 4 decoded."""
    root = make_images(tmp_path / "ds", n=2, broken=1, missing=1)
    out = tmp_path / "cache"
    first = prepare("manifest", str(root), out, size=8, workers=0)
    assert (first.images, first.decoded_now, first.cached, first.skipped) == (4, 2, 2, 2)
    again = prepare("manifest", str(root), out, size=8, workers=0)  # retries the 2, which fail again
    assert (again.decoded_now, again.cached, again.skipped) == (0, 2, 2)
    Image.fromarray(np.full((10, 10), 7, dtype=np.uint8)).save(root / "img/broken0.png")  # repaired
    fixed = prepare("manifest", str(root), out, size=8, workers=0)
    assert (fixed.decoded_now, fixed.cached, fixed.skipped) == (1, 3, 1)


def test_cached_pixels_equal_decoding_the_files(prepared):
    root, out, _ = prepared
    cache = PixelCache.open(out)
    table = _table(root)
    assert cache.size == 16 and len(cache) == 14
    for image_id, path in zip(table.image_ids[:12], table.frame["path"][:12]):
        assert cache.has(image_id)
        pixels = cache.pixels(cache.row(image_id))
        assert pixels.dtype == np.uint8 and pixels.shape == (16, 16) and not pixels.flags.writeable
        assert np.array_equal(pixels, load_square(Path(path), 16))
    assert not cache.has("img/broken0.png") and not cache.has("img/missing0.jpg") and not cache.has("nope")
    with pytest.raises(DataError, match="not in the pixel cache"):
        cache.row("nope")
    clone = pickle.loads(pickle.dumps(cache))
    assert np.array_equal(clone.pixels(0), cache.pixels(0))


def test_loader_reads_the_cache_in_worker_processes(prepared):
    root, out, _ = prepared
    table = _table(root).take(np.arange(12))
    cached = RadiographDataset(PixelSource(table, 16, out), needs=["image"])
    files = RadiographDataset(PixelSource(table, 16, None), needs=["image"])
    batches = list(DataLoader(cached, batch_size=5, num_workers=2, collate_fn=collate))
    images = torch.cat([b["image"] for b in batches])
    assert images.shape == (12, 1, 16, 16) and images.dtype == torch.uint8
    assert torch.equal(images, torch.stack([files[i]["image"] for i in range(12)]))
    resized = PixelSource(table, 8, out)(0)  # another size than the cache's: resized from the cache
    assert resized.shape == (8, 8)


def test_recipes_read_pixels_from_the_cache(prepared):
    root, out, _ = prepared
    spec = DatasetSpec.from_plain({"kind": "manifest", "root": str(root), "cache": str(out)}, "data.pretrain")
    with pytest.raises(DataError, match="missing from the cache"):
        load_table(spec)
    table = load_table(spec, on_bad_image="skip")
    assert len(table) == 12 and len(table.skipped) == 2


def test_interrupted_prepare_resumes_with_only_the_unfinished_rows(tmp_path):
    root = make_images(tmp_path / "ds", n=70, broken=0, missing=0)
    out = tmp_path / "cache"
    calls = []

    def stop_after_first_chunk(done: int, total: int) -> None:
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare("manifest", str(root), out, size=12, workers=0, progress=stop_after_first_chunk)
    assert calls == [32]
    with pytest.raises(DataError, match="incomplete.*rerun"):
        PixelCache.open(out)
    result = prepare("manifest", str(root), out, size=12, workers=0)
    assert (result.decoded_now, result.cached, result.skipped) == (38, 70, 0)
    cache = PixelCache.open(out)
    table = _table(root)
    assert np.array_equal(cache.pixels(69), load_square(Path(table.frame["path"][69]), 12))
    assert prepare("manifest", str(root), out, size=12, workers=0).decoded_now == 0
    with pytest.raises(DataError, match="another image list or size"):
        prepare("manifest", str(root), out, size=24, workers=0)


def test_worker_processes_write_the_same_pixels(tmp_path):
    root = make_images(tmp_path / "ds", n=70, broken=1, missing=0)  # 3 chunks: a real process pool
    serial = prepare("manifest", str(root), tmp_path / "serial", size=16, workers=0)
    parallel = prepare("manifest", str(root), tmp_path / "par", size=16, workers=2)
    assert (parallel.cached, parallel.skipped) == (serial.cached, serial.skipped) == (70, 1)
    assert np.array_equal(
        np.load(tmp_path / "serial" / "pixels.npy"), np.load(tmp_path / "par" / "pixels.npy")
    )
    assert (
        (tmp_path / "par" / "skipped.txt")
        .read_text()
        .splitlines()[0]
        .startswith(str(root.absolute() / "img"))
    )


def test_open_errors_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="does not exist.*radtex-bench prepare"):
        PixelCache.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a radtex-bench pixel cache"):
        PixelCache.open(tmp_path / "plain")


def test_prepare_writes_only_into_a_new_empty_or_cache_folder(tmp_path, prepared):
    """The cache's files would replace a user's index.csv or scatter among a dataset's or a run's."""
    root, cache, _ = prepared
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.csv").write_text("my,own\n")
    with pytest.raises(DataError, match=r"OUT .*mine is not empty and holds no pixel cache \(cache.json\)"):
        prepare("manifest", str(root), mine, size=16, workers=0)
    assert (mine / "index.csv").read_text() == "my,own\n" and sorted(p.name for p in mine.iterdir()) == [
        "index.csv"
    ]
    for out in (root, root / "manifest.csv"):  # the dataset folder, however ROOT names it
        with pytest.raises(DataError, match="is the dataset folder; choose a folder of its own"):
            prepare("manifest", str(out), root, size=16, workers=0)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="is a file; choose a new folder"):
        prepare("manifest", str(root), tmp_path / "file", size=16, workers=0)
    # an existing cache is resumed (nothing left to decode), an empty folder filled
    assert prepare("manifest", str(root), cache, size=16, workers=0).decoded_now == 0
    (tmp_path / "empty").mkdir()
    assert prepare("manifest", str(root), tmp_path / "empty", size=16, workers=0).decoded_now > 0
