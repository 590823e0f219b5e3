"""Atomic, byte-reproducible file writes: a reader never sees half a file, a crash never leaves one
behind, and the same content always gives the same bytes (no timestamps, no hash-map key order), so two
runs of one recipe can be compared file by file and caches keyed by a file's SHA-256 hit.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from .errors import UserError, disk_full


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise UserError(
            f"cannot write to {path.parent}: {exc.strerror or exc}; choose a writable --out"
        ) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except IsADirectoryError:
        raise UserError(f"cannot write {path}: it is a folder; give a file path") from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc} (disk full or not writable?)") from None
    except Exception as exc:
        full = disk_full(exc)  # a writer that wraps the OSError (torch.save: RuntimeError)
        if full is None:
            raise
        raise UserError(
            f"cannot write {path}: {full.strerror or full} (disk full or not writable?)"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any, indent: int | None = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    write_text(path, buf.getvalue())


def append_jsonl(path: Path, obj: Any) -> None:
    """One JSON line, written with a single write so an interrupted append leaves at most a torn tail."""
    line = json.dumps(obj) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file, ignoring a torn last line left by a killed writer."""
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


#: The zip entry time of every ``.npz`` member: the earliest a zip can hold (1980-01-01 00:00:00).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(target: Path | IO[bytes], **arrays: Any) -> None:
    """``np.savez(target, **arrays)`` with byte-reproducible output; atomic when ``target`` is a path.

    ``np.savez`` stamps every zip member with the current local time, so two saves of equal arrays
    differ. Here each member (``<name>.npy``, in keyword order, stored uncompressed as ``np.savez`` does)
    carries :data:`_ZIP_EPOCH` and fixed permissions; everything else is what ``np.savez`` writes
    (object arrays are pickled as it does), so ``np.load`` reads it unchanged. ``target`` may also be a binary file object opened for writing (e.g. inside :func:`atomic_path`).
    """
    import numpy as np

    if isinstance(target, (str, os.PathLike)):
        with atomic_path(Path(target)) as tmp, open(tmp, "wb") as f:
            save_npz(f, **arrays)
        return
    with zipfile.ZipFile(target, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16  # -rw-r--r--, whatever the umask
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=True)


def canonical_safetensors(raw: bytes) -> bytes:
    """The same safetensors file with a canonical header: metadata keys sorted, tensors in data order.

    safetensors' writer serialises ``__metadata__`` from a hash map, so its key order (and hence the
    file's bytes and SHA-256) changes from one save to the next. Format (huggingface/safetensors,
    "Format"): 8 bytes little-endian u64 ``N``, then ``N`` bytes of UTF-8 JSON starting with ``{`` and
    possibly right-padded with spaces (0x20), then the tensor bytes, addressed by each entry's
    ``data_offsets`` relative to the end of the header. Only the JSON changes here (compact separators,
    padded with spaces so the data starts at a multiple of 8 bytes as the writer aligns it); the tensor
    bytes and offsets are untouched.
    """
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    canonical: dict[str, Any] = {} if meta is None else {"__metadata__": dict(sorted(meta.items()))}
    canonical.update(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"], kv[0])))
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]
