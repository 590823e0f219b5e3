"""Decoding every common radiograph format into square uint8 pixels."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from radtex_bench.data.images import DicomSupportMissing, load_square, read_grey, square
from radtex_bench.errors import DataError


def _gradient(h: int, w: int) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) * 255 // (h + w - 2)).astype(np.uint8)


def test_8bit_grey_rgb_rgba_palette_png_and_jpeg(tmp_path):
    grey = _gradient(40, 30)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], axis=-1)).save(tmp_path / "rgba.png")
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb.jpg", quality=95)
    for name in ("grey.png", "rgb.png", "rgba.png", "palette.png"):
        out = read_grey(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (40, 30)
        assert np.abs(out.astype(int) - grey).max() <= 1, name
    jpeg = read_grey(tmp_path / "rgb.jpg")
    assert jpeg.shape == (40, 30) and np.abs(jpeg.astype(int) - grey).mean() < 3


def test_16bit_png_is_windowed_to_its_own_range(tmp_path):
    values = (np.add.outer(np.arange(32), np.arange(32)) * 40 + 1000).astype(np.uint16)  # 12-bit-like range
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = read_grey(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out[0].astype(int)) >= 0)  # monotone mapping


def test_square_keeps_aspect_and_crops_the_centre():
    portrait = np.zeros((200, 100), np.uint8)
    portrait[:40] = 255  # top band: cropped away (scaled to 128 x 64, rows 32-96 kept)
    portrait[95:105, 45:55] = 255  # centre mark: kept, in the middle
    out = square(portrait, 64)
    assert out.shape == (64, 64) and out.flags.writeable
    assert out[:4].max() < 64 and out[-4:].max() == 0
    assert out[32, 32] > 200 and out[29:35, 29:35].mean() > 150
    wide = np.tile((np.arange(300) % 256).astype(np.uint8)[None, :], (100, 1))
    assert square(wide, 50).shape == (50, 50)
    same = np.full((16, 16), 7, np.uint8)
    assert square(same, 16) is not same and (square(same, 16) == 7).all()


def test_large_jpeg_decodes_at_reduced_scale_like_full_decode(tmp_path):
    big = np.kron(_gradient(64, 48), np.ones((32, 32), np.uint8))  # 2048 x 1536
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    fast = load_square(tmp_path / "big.jpg", 128)
    slow = square(read_grey(tmp_path / "big.jpg"), 128)
    assert fast.shape == (128, 128) and np.abs(fast.astype(int) - slow).mean() < 2


def test_unreadable_and_missing_files_are_data_errors(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="cannot decode image .*broken.png"):
        read_grey(tmp_path / "broken.png")
    with pytest.raises(DataError, match="not found"):
        read_grey(tmp_path / "missing.png")


def test_dicom_without_pydicom_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    path = tmp_path / "image.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    with pytest.raises(DicomSupportMissing, match=r"pip install radtex-bench\[dicom\]"):
        read_grey(path)
    nosuffix = tmp_path / "image"
    nosuffix.write_bytes(path.read_bytes())
    with pytest.raises(DicomSupportMissing):
        read_grey(nosuffix)  # recognised by the DICM magic


def _write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", **attributes) -> None:
    """An uncompressed 12-bit-in-16 DICOM file, as a modality writes it (nothing downloaded)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom >= 3
    except TypeError:
        ds.save_as(path, write_like_original=False)  # pydicom 2.4


def test_dicom_monochrome_rescale_window_and_magic(tmp_path):
    pytest.importorskip("pydicom")
    ramp = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (48, 1))  # [48, 64], 0..4032
    _write_dicom(tmp_path / "mono2.dcm", ramp)
    mono2 = read_grey(tmp_path / "mono2.dcm")
    assert mono2.dtype == np.uint8 and mono2.shape == (48, 64)
    assert mono2.min() == 0 and mono2.max() == 255 and (np.diff(mono2[0].astype(int)) > 0).all()
    # MONOCHROME1 stores bone dark: shown inverted, as radiologists read it.
    _write_dicom(tmp_path / "mono1.dcm", ramp, "MONOCHROME1")
    assert np.array_equal(read_grey(tmp_path / "mono1.dcm"), 255 - mono2)
    # The modality rescale is applied: slope -1 turns the ramp around.
    _write_dicom(tmp_path / "slope.dcm", ramp, RescaleSlope=-1, RescaleIntercept=4095)
    assert np.abs(read_grey(tmp_path / "slope.dcm").astype(int) - (255 - mono2)).max() <= 1
    # The stored window: values below it are black, above it white, inside it a rising ramp.
    _write_dicom(tmp_path / "window.dcm", ramp, WindowCenter=2048, WindowWidth=1024)
    windowed = read_grey(tmp_path / "window.dcm")[0].astype(int)
    values = ramp[0].astype(int)
    assert (windowed[values < 1500] == 0).all() and (windowed[values > 2600] == 255).all()
    inside = windowed[(values > 1600) & (values < 2500)]
    assert (np.diff(inside) > 0).all() and 0 < inside.min() and inside.max() < 255
    # A file without a suffix (MIMIC-CXR, OpenI) is found by the DICM magic at byte 128.
    (tmp_path / "nosuffix").write_bytes((tmp_path / "mono2.dcm").read_bytes())
    assert np.array_equal(read_grey(tmp_path / "nosuffix"), mono2)
    assert load_square(tmp_path / "mono2.dcm", 32).shape == (32, 32)
