"""``radtex-bench prepare``: decode every image once into a memory-mapped pixel cache.

Decoding a 2-3k px JPEG/PNG radiograph costs milliseconds to a tenth of a second per image, every
epoch; a row of a memory map costs microseconds. A cache folder holds::

    cache.json    what it holds: format, dataset kind, root, options, size, image count, completeness
    index.csv     row, image_id, path, view: one line per listed image (every view)
    pixels.npy    uint8 [N, S, S], a NumPy file read as a memory map (np.load(..., mmap_mode="r"))
    done.npy      uint8 [N]: 0 pending, 1 decoded, 2 unreadable; flushed every few seconds
    skipped.txt   "<path>\\t<reason>" per unreadable image

Pixels come from :func:`radtex_bench.data.images.load_square`, exactly what training from the files
produces (shorter side -> S, centre crop). Workers write rows straight into the memory map; the parent
marks a chunk done only after its worker flushed it, so a rerun after an interruption decodes only
unfinished rows (and retries unreadable ones). ``cache.json`` is replaced atomically, and a cache
counts as usable only once it says ``complete``.

Recipes still name the dataset (kind + root) for labels, reports and splits; ``cache: OUT`` only swaps
where pixels come from, matched by image id.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import write_text
from ..schema import to_plain
from .images import DicomSupportMissing, UnreadableImage, load_square

FORMAT = 1
META, INDEX, PIXELS, DONE, SKIPPED = "cache.json", "index.csv", "pixels.npy", "done.npy", "skipped.txt"
PENDING, DECODED, UNREADABLE = 0, 1, 2
_CHUNK = 32
_FLUSH_SECONDS = 2.0


class PixelCache:
    """Read side of a prepared cache: image id -> row -> uint8 ``[S, S]`` view of the memory map.

    Pickles without its memory map (re-opened lazily), so it can travel to DataLoader workers.
    """

    def __init__(self, folder: Path, meta: dict[str, Any], image_ids: list[str], done: np.ndarray):
        self.folder = folder
        self.meta = meta
        self._rows = dict(zip(image_ids, range(len(image_ids))))
        self._done = done
        self._pixels: np.ndarray | None = None

    @classmethod
    def open(cls, folder: str | Path) -> PixelCache:
        folder = Path(folder).expanduser()
        how = f"create it with `radtex-bench prepare KIND ROOT {folder}` or fix `cache:`"
        if not folder.is_dir():
            raise DataError(f"pixel cache {folder} does not exist; {how}")
        meta = read_meta(folder)
        if meta is None:
            raise DataError(f"{folder} is not a radtex-bench pixel cache (no {META}); {how}")
        if not meta.get("complete"):
            raise DataError(
                f"pixel cache {folder} is incomplete (prepare was interrupted); rerun the same "
                "`radtex-bench prepare` command to finish it"
            )
        try:
            ids = pd.read_csv(folder / INDEX, dtype=str, keep_default_na=False)["image_id"].tolist()
            done = np.load(folder / DONE)
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(
                f"pixel cache {folder} is damaged ({exc}); delete it and prepare it again"
            ) from None
        return cls(folder, meta, ids, done)

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    def __len__(self) -> int:
        return len(self._rows)

    def has(self, image_id: str) -> bool:
        row = self._rows.get(image_id)
        return row is not None and self._done[row] == DECODED

    def row(self, image_id: str) -> int:
        try:
            return self._rows[image_id]
        except KeyError:
            raise DataError(
                f"image {image_id!r} is not in the pixel cache {self.folder}; prepare the cache from "
                "the same dataset as the recipe names"
            ) from None

    def pixels(self, row: int) -> np.ndarray:
        """uint8 ``[S, S]``: a read-only view of the memory map (no copy)."""
        if self._pixels is None:
            self._pixels = np.load(self.folder / PIXELS, mmap_mode="r")
        return self._pixels[row]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pixels": None}


def read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / META).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{folder / META} is unreadable ({exc}); delete {folder} and prepare it again"
        ) from None


def fingerprint(image_ids: Iterable[str], size: int) -> str:
    digest = hashlib.sha256(f"radtex-cache|{size}|".encode())
    for image_id in image_ids:
        digest.update(image_id.encode() + b"\n")
    return digest.hexdigest()


# --- workers ---------------------------------------------------------------------------------------

_maps: dict[str, np.ndarray] = {}


def _decode_chunk(pixels_path: str, size: int, rows: list[int], paths: list[str]) -> list[tuple[int, str]]:
    """Decode ``paths`` into ``rows`` of the memory map; return the unreadable ones as (row, reason)."""
    pixels = _maps.get(pixels_path)
    if pixels is None:
        pixels = _maps[pixels_path] = np.load(pixels_path, mmap_mode="r+")
    failures = []
    for row, path in zip(rows, paths):
        try:
            pixels[row] = load_square(Path(path), size)
        except DicomSupportMissing:
            raise
        except UnreadableImage as exc:  # the structured reason, as a run's skip list records it
            failures.append((row, "not found" if exc.missing else f"cannot decode: {exc.reason}"))
        except DataError as exc:
            failures.append((row, str(exc)))
        except Exception as exc:  # a decoder bug on one file must not stop a 377k-image job
            failures.append((row, f"cannot decode: {type(exc).__name__}: {exc}"))
    pixels.flush()  # on disk before the parent marks these rows done
    return failures


# --- prepare ---------------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    out: str
    kind: str
    size: int
    images: int  # listed images (rows of the cache)
    cached: int  # rows holding pixels
    decoded_now: int  # rows decoded and cached by this call (the rest were done by an earlier call)
    skipped: int  # unreadable or missing images, listed in skipped.txt (cached + skipped == images)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _create(out: Path, table, meta: dict[str, Any], size: int) -> None:
    n = len(table)
    need = n * size * size
    free = shutil.disk_usage(out).free
    if need > free:
        raise DataError(
            f"prepare: {need / 1e9:.1f} GB of pixels do not fit in the {free / 1e9:.1f} GB free at "
            f"{out}; choose another OUT or a smaller --size"
        )
    frame = table.frame
    pd.DataFrame(
        {"row": np.arange(n), "image_id": frame["image_id"], "path": frame["path"], "view": frame["view"]}
    ).to_csv(out / INDEX, index=False)
    np.lib.format.open_memmap(out / PIXELS, mode="w+", dtype=np.uint8, shape=(n, size, size)).flush()
    np.lib.format.open_memmap(out / DONE, mode="w+", dtype=np.uint8, shape=(n,)).flush()
    write_text(out / META, json.dumps(meta, indent=1))


def _open_existing(out: Path, meta: dict[str, Any], old: dict[str, Any]) -> None:
    if (
        old.get("format") != FORMAT
        or old.get("fingerprint") != meta["fingerprint"]
        or old.get("size") != meta["size"]
    ):
        raise DataError(
            f"prepare: {out} already holds a pixel cache of another image list or size ({old.get('kind')} at "
            f"{old.get('root')}, {old.get('images')} images, size {old.get('size')}); choose a new OUT folder "
            "or delete this one"
        )


def check_out(out: Path, root: Path) -> None:
    """OUT must be new, empty, or a pixel cache (``cache.json``) to resume: the cache's files would
    overwrite a user's ``index.csv`` or land among a dataset's or a run's files. Not the dataset folder
    itself either (its manifest may be named like a cache file)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"prepare: OUT {out} is a file; choose a new folder")
    if out.resolve() == root.resolve() or (root.is_file() and out.resolve() == root.resolve().parent):
        raise DataError(f"prepare: OUT {out} is the dataset folder; choose a folder of its own for the cache")
    if out.is_dir() and not (out / META).is_file() and any(out.iterdir()):
        raise DataError(
            f"prepare: OUT {out} is not empty and holds no pixel cache ({META}); choose a new or empty folder"
        )


def prepare(
    kind: str,
    root: str,
    out: str | Path,
    size: int = 256,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> PrepareResult:
    """Decode every listed image of dataset ``kind`` at ``root`` into a pixel cache at ``out``.

    ``options`` are the dataset block's keys (``views`` defaults to every view, so one cache serves any
    recipe). Resumable; unreadable images are skipped, counted and listed in ``OUT/skipped.txt``.
    """
    from .kinds import DatasetSpec

    start = time.perf_counter()
    if size < 8:
        raise DataError(f"prepare: --size {size} is too small; use at least 8 (typical: 224-512)")
    spec = DatasetSpec.from_plain({"kind": kind, "root": root, "views": None, **options}, "prepare")
    if hasattr(spec.options, "read_reports") and "read_reports" not in options:
        spec = spec.replace(read_reports=False)  # pixels only: MIMIC's 227k report files are not needed
    table = spec.read("prepare")
    if spec.options.views is not None:
        from .views import filter_views  # the rule a run applies, so the cache holds what it reads

        table = filter_views(table, spec.options.views, f"prepare: {kind} at {root}", "prepare")
    if len(table) == 0:
        raise DataError(f"prepare: {kind} at {root} lists no images; check ROOT")
    out = Path(out).expanduser()
    check_out(out, Path(root).expanduser())
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"prepare: cannot create {out}: {exc.strerror or exc}; choose a writable OUT"
        ) from None
    meta = {
        "format": FORMAT,
        "kind": kind,
        "root": str(Path(root).expanduser().absolute()),
        "options": to_plain(spec.options),
        "size": size,
        "images": len(table),
        "fingerprint": fingerprint(table.image_ids, size),
        "complete": False,
    }
    old = read_meta(out)
    if old is None:
        _create(out, table, meta, size)
    else:
        _open_existing(out, meta, old)
        write_text(out / META, json.dumps({**old, "complete": False}, indent=1))

    done = np.load(out / DONE, mmap_mode="r+")
    pending = np.flatnonzero(done != DECODED)
    paths = table.frame["path"].to_numpy()
    reasons = _run(out, size, pending, paths, done, workers, progress)
    done.flush()

    skipped_rows = np.flatnonzero(done == UNREADABLE)
    lines = [f"{paths[r]}\t{' '.join(reasons.get(int(r), 'unreadable').split())}" for r in skipped_rows]
    write_text(out / SKIPPED, "".join(line + "\n" for line in lines))
    cached = int((done == DECODED).sum())
    # Pending rows that failed again are skipped, not decoded: cached + skipped == images.
    decoded_now = int((done[pending] == DECODED).sum())
    meta.update(complete=True, cached=cached, skipped=len(skipped_rows))
    write_text(out / META, json.dumps(meta, indent=1))
    return PrepareResult(
        str(out),
        kind,
        size,
        len(table),
        cached,
        decoded_now,
        len(skipped_rows),
        round(time.perf_counter() - start, 3),
    )


def _run(
    out: Path,
    size: int,
    pending: np.ndarray,
    paths: np.ndarray,
    done: np.ndarray,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> dict[int, str]:
    """Decode the ``pending`` rows, ``workers`` processes at a time; return reasons of unreadable rows."""
    workers = default_workers() if workers is None else max(0, int(workers))
    chunks = [pending[i : i + _CHUNK].tolist() for i in range(0, len(pending), _CHUNK)]
    pixels_path = str(out / PIXELS)
    reasons: dict[int, str] = {}
    finished, last_flush = 0, time.monotonic()

    def record(rows: list[int], failures: list[tuple[int, str]]) -> None:
        nonlocal finished, last_flush
        done[rows] = DECODED
        for row, reason in failures:
            done[row] = UNREADABLE
            reasons[row] = reason
        finished += len(rows)
        if progress is not None:
            progress(finished, len(pending))
        if time.monotonic() - last_flush > _FLUSH_SECONDS:
            done.flush()
            last_flush = time.monotonic()

    try:
        if workers <= 1 or len(chunks) <= 1:
            for rows in chunks:
                record(rows, _decode_chunk(pixels_path, size, rows, [paths[r] for r in rows]))
            return reasons
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            in_flight: dict[Future, list[int]] = {}
            queue = iter(chunks)
            while True:
                for rows in queue:
                    in_flight[
                        pool.submit(_decode_chunk, pixels_path, size, rows, [paths[r] for r in rows])
                    ] = rows
                    if len(in_flight) >= 4 * workers:
                        break
                if not in_flight:
                    break
                finished_now, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished_now:
                    record(in_flight.pop(future), future.result())
        return reasons
    finally:
        done.flush()  # an interrupted run keeps every finished chunk


def default_workers() -> int:
    return max(
        1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    )
