"""Writing a dataset folder: images as PNG, ``manifest.csv`` and the ``synthetic.json`` params file.

The dataset is built in a sibling temporary folder and renamed onto the target at the end, so a
killed run never leaves half a dataset; the params file is written last and marks a folder complete,
which makes generation idempotent.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from .render import render
from .reports import LABEL_COLUMNS
from .sampling import iter_studies

#: Bump whenever the output of the generator changes for the same (n, size, seed).
GENERATOR_VERSION = "1"

MANIFEST_COLUMNS = ("image_id", "image_path", "patient_id", "study_id", "view", "split", "report")

_PARAMS_FILE = "synthetic.json"
_CHUNK_PIXELS = 1 << 19  # pixels per rendered chunk (128 images of 64 px): amortises per-call overhead


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


def _check_args(n: int, size: int, seed: int) -> None:
    if int(n) < 1:
        raise UserError(f"synthetic n must be >= 1, got {n}")
    if not 16 <= int(size) <= 1024:
        raise UserError(f"synthetic size must be between 16 and 1024 pixels, got {size}")
    if int(seed) < 0:
        raise UserError(f"synthetic seed must be >= 0, got {seed}")


def stored_params(folder: Path) -> dict[str, Any] | None:
    """The :func:`generator_params` of the complete synthetic dataset in ``folder``, else None."""
    if not (Path(folder) / "manifest.csv").is_file():
        return None
    return _read_params(Path(folder))


def _read_params(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / _PARAMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def same_params(stored: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether a stored ``synthetic.json`` describes the dataset :func:`generator_params` names."""
    return all(stored.get(k) == v for k, v in params.items())


def _is_complete(out: Path, params: dict[str, Any]) -> bool:
    stored = stored_params(out)
    return bool(stored) and same_params(stored, params)


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
    studies = list(iter_studies(seed, n))
    images = folder / "images"
    images.mkdir()
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, n, chunk):
        batch = studies[start : start + chunk]
        for study, pixels in zip(batch, render(batch, size, seed)):
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
