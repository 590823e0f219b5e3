"""Skipped images say why (issue 11, case 19): the recorded reason is the decoder's cause, taken from a
structured field (:attr:`UnreadableImage.reason`), never parsed back out of an error message whose fix
hint holds ``: `` itself ("... set `data.on_bad_image: skip` to ...")."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_manifest, write_tiny_recipe

from radtex_bench.cli import main
from radtex_bench.data.cache import prepare
from radtex_bench.data.images import UnreadableImage, read_grey

TRUNCATED = "OSError: image file is truncated"


def _truncate(path: Path) -> None:
    """Keep the first half of the file, as an interrupted download does."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def broken_manifest(tmp_path) -> tuple[Path, list[Path]]:
    root = tmp_path / "ds"
    write_manifest(root, n=40, size=64)
    bad = [root / "images" / "3.png", root / "images" / "17.png"]
    for path in bad:
        _truncate(path)
    (root / "images" / "20.png").write_text("not an image at all\n")
    return root, bad + [root / "images" / "20.png"]


def test_the_reason_is_a_field_of_the_error(broken_manifest, tmp_path):
    _, (truncated, _, text) = broken_manifest
    with pytest.raises(UnreadableImage) as info:
        read_grey(truncated)
    assert info.value.reason == TRUNCATED and info.value.path == str(truncated) and not info.value.missing
    assert "on_bad_image: skip" in str(info.value)  # the message keeps its fix hint
    with pytest.raises(UnreadableImage) as info:
        read_grey(text)
    assert info.value.reason.startswith("UnidentifiedImageError: cannot identify image file")
    with pytest.raises(UnreadableImage) as info:
        read_grey(tmp_path / "nowhere.png")
    assert (info.value.reason, info.value.missing) == ("not found", True)


def test_a_run_records_the_real_cause(broken_manifest, tmp_path):
    root, (first, second, text) = broken_manifest
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        root,
        [{"name": "random"}],
        {"budgets": [6], "seeds": 1, "bootstrap": 0},
        name="skip",
    )
    text_yaml = recipe.read_text().replace("pathologies:", "on_bad_image: skip\n  pathologies:")
    recipe.write_text(text_yaml)
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    lines = sorted((out / "skipped_images.txt").read_text().splitlines())
    reasons = dict(line.split("\t") for line in lines)
    assert reasons[str(first.absolute())] == f"unreadable: {TRUNCATED}"
    assert reasons[str(second.absolute())] == f"unreadable: {TRUNCATED}"
    assert reasons[str(text.absolute())].startswith(
        "unreadable: UnidentifiedImageError: cannot identify image"
    )
    assert not any("skip`" in why or "replace the file" in why for why in reasons.values())
    log = (out / "run.log").read_text()
    warning = next(line for line in log.splitlines() if "skipping 3 unreadable images" in line)
    assert warning.endswith(f"e.g. {first.absolute()} ({TRUNCATED})")


def test_prepare_records_the_same_cause(broken_manifest, tmp_path):
    root, (first, _, _) = broken_manifest
    (root / "images" / "30.png").unlink()
    result = prepare("manifest", str(root), tmp_path / "cache", size=16, workers=0)
    assert result.skipped == 4
    reasons = dict(line.split("\t") for line in (tmp_path / "cache" / "skipped.txt").read_text().splitlines())
    assert reasons[str(first.absolute())] == f"cannot decode: {TRUNCATED}"
    assert reasons[str((root / "images" / "30.png").absolute())] == "not found"
