"""Decoding radiographs of any common format into square one-channel uint8 arrays.

One function, :func:`load_square`, is used both when training straight from the files and by
``radtex-bench prepare``, so the cache holds exactly the pixels the uncached path would produce.

Resizing rule: the shorter side is scaled to ``size`` (aspect ratio kept, antialiased), then the longer
side is centre-cropped to ``size``. Chest radiographs are close to square, so the crop removes only a
thin band at the top/bottom (portrait) or the sides (landscape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError

DICOM_SUFFIXES = {".dcm", ".dicom"}


class DicomSupportMissing(DataError):
    """A DICOM file was met but pydicom is not installed (every later DICOM would fail the same way)."""


class UnreadableImage(DataError):
    """One image file that is missing or does not decode (truncated, corrupt, not an image).

    ``path``: the file. ``reason``: the cause on one line, ``"<exception type>: <message>"`` from the
    decoder (``"OSError: image file is truncated"``), or ``"not found"``. ``missing``: the file does not
    exist. Skip lists (a run's ``skipped_images.txt``, ``prepare``'s ``skipped.txt``) record ``reason``
    from here: the message itself ends in a fix hint that holds ``: `` too, so it cannot be parsed back.
    """

    def __init__(self, path: str | Path, reason: str, missing: bool = False):
        self.path = str(path)
        self.reason = " ".join(reason.split()) or "unreadable"
        self.missing = missing
        if missing:
            message = f"image not found: {path}"
        else:
            message = (
                f"cannot decode image {path}: {self.reason}; replace the file, or set "
                "`data.on_bad_image: skip` to leave unreadable images out"
            )
        super().__init__(message)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Linearly map an integer or float image's own [min, max] range onto [0, 255]."""
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip((arr - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _read_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise DicomSupportMissing(
            f"{path}: reading DICOM needs pydicom; install it with `pip install radtex-bench[dicom]`"
        ) from None
    ds = pydicom.dcmread(str(path))
    arr = ds.pixel_array.astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # RGB DICOM (rare): luminance
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif arr.ndim == 3:  # multi-frame: first frame
        arr = arr[0]
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    try:
        from pydicom.pixels import apply_voi_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_voi_lut
    try:
        arr = np.asarray(apply_voi_lut(arr, ds), dtype=np.float32)
    except Exception:
        pass  # no usable VOI LUT / window: the min-max mapping below applies
    out = _to_uint8(arr)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1 stores bone dark; radiographs are shown with bone bright
    return out


def _open_pil(path: Path, size: int | None) -> Image.Image:
    img = Image.open(path)
    if size and img.format == "JPEG":
        img.draft("L", (size, size))  # decode JPEGs at reduced scale: several times faster
    return img


def is_dicom(path: Path) -> bool:
    """DICOM by suffix, or by the ``DICM`` magic at byte 128 (MIMIC-CXR/OpenI files without a suffix)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_grey(path: Path, size_hint: int | None = None) -> np.ndarray:
    """Decode ``path`` as uint8 ``[H, W]`` (8/16-bit PNG, JPEG, grey or RGB, DICOM).

    16-bit and float images are mapped linearly from their own min/max onto 0-255 (the stored range of
    a radiograph PNG is its window); RGB(A) is converted to luminance; DICOM applies the rescale and
    VOI LUT / window and shows MONOCHROME1 inverted, as radiologists see it.

    Raises :class:`UnreadableImage` for a missing or undecodable file, :class:`DicomSupportMissing`
    for a DICOM without pydicom installed.
    """
    path = Path(path)
    try:
        if is_dicom(path):
            return _read_dicom(path)
        with _open_pil(path, size_hint) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return _to_uint8(np.asarray(img))
            if img.mode != "L":
                img = img.convert("L")
            return np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except FileNotFoundError:
        raise UnreadableImage(path, "not found", missing=True) from None
    except Exception as exc:
        raise UnreadableImage(path, f"{type(exc).__name__}: {exc}") from None


def square(arr: np.ndarray, size: int) -> np.ndarray:
    """Shorter side -> ``size`` (antialiased), then centre-crop the longer side: uint8 ``[size, size]``."""
    h, w = arr.shape
    if (h, w) == (size, size):
        return np.array(arr, dtype=np.uint8, copy=True)  # writable: torch.from_numpy needs it
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    img = Image.fromarray(arr).resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.array(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_square(path: Path, size: int) -> np.ndarray:
    """``path`` decoded and resized to uint8 ``[size, size]`` (the pixels training and the cache both use)."""
    return square(read_grey(path, size_hint=size), size)
