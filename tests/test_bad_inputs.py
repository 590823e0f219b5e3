"""The corpus in tests/bad_inputs/: every malformed recipe or broken dataset ends as its case says.

Each case file gives the recipe (merged over a tiny base recipe, or raw text), the dataset tree to
build, any extra setup and command-line arguments, the expected exit code and a fragment of the one
`error:` line. No case may print a traceback or leave a results file behind.
"""

from __future__ import annotations

import copy
import csv
import pickle
from pathlib import Path

import pytest
import yaml

from radtex_bench.cli import main
from radtex_bench.config import dump_recipe, load_recipe

CASES = sorted((Path(__file__).parent / "bad_inputs").glob("*.yaml"))
RESULT_FILES = ("results.csv", "summary.csv", "comparisons.csv", "report.md")

BASE = {
    "name": "bad",
    "data": {"pretrain": {"kind": "manifest", "root": "{data}"}, "pathologies": ["Cardiomegaly", "Edema"]},
    "encoder": {"name": "resnet18", "image_size": 32},
    "objectives": [{"name": "random"}],
    "evaluation": {"budgets": [4, 8], "seeds": 1, "bootstrap": 0},
}


def merge(base, patch):
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


# -- dataset trees ---------------------------------------------------------------------------------


def _rows(root: Path) -> list[list[str]]:
    return list(csv.reader(open(root / "manifest.csv")))


def _write(root: Path, rows: list[list[str]]) -> None:
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _edit(root: Path, column: str, row: int, value: str) -> None:
    rows = _rows(root)
    rows[row][rows[0].index(column)] = value
    _write(root, rows)


def _add_column(root: Path, name: str, values) -> None:
    rows = _rows(root)
    _write(root, [rows[0] + [name]] + [r + [values(i)] for i, r in enumerate(rows[1:])])


def build_dataset(kind: str, root: Path) -> None:
    from conftest import write_manifest

    if kind == "none":
        return
    if kind == "no_csv":
        root.mkdir(parents=True)
        return
    write_manifest(root, n=40, reports=kind != "no_reports")
    if kind == "no_patient_column":
        rows = _rows(root)
        i = rows[0].index("patient_id")
        _write(root, [r[:i] + r[i + 1 :] for r in rows])
    elif kind == "empty_patient":
        _edit(root, "patient_id", 3, "")
    elif kind == "duplicate_image":
        _add_column(root, "image_id", lambda i: "same" if i in (1, 2) else f"id{i}")
    elif kind == "bad_label_value":
        _edit(root, "Edema", 5, "yes")
    elif kind == "missing_image":
        (root / "images" / "3.png").unlink()
    elif kind == "corrupt_image":
        data = (root / "images" / "3.png").read_bytes()
        (root / "images" / "3.png").write_bytes(data[: len(data) // 2])
    elif kind == "escaping_path":
        (root.parent / "outside.png").write_bytes((root / "images" / "2.png").read_bytes())
        _edit(root, "image_path", 2, "../outside.png")
    elif kind == "absolute_path":
        _edit(root, "image_path", 2, str((root / "images" / "2.png").resolve()))
    elif kind == "all_negative_edema":
        rows = _rows(root)
        j = rows[0].index("Edema")
        _write(root, [rows[0]] + [r[:j] + ["0"] + r[j + 1 :] for r in rows[1:]])
    elif kind == "all_positive_edema":
        rows = _rows(root)
        j = rows[0].index("Edema")
        _write(root, [rows[0]] + [r[:j] + ["1"] + r[j + 1 :] for r in rows[1:]])
    elif kind == "hedged_negatives_edema":  # 1 or -1, never 0: the negatives come from the policy alone
        rows = _rows(root)
        j = rows[0].index("Edema")
        _write(
            root, [rows[0]] + [r[:j] + ["1" if i % 2 else "-1"] + r[j + 1 :] for i, r in enumerate(rows[1:])]
        )
    elif kind == "partial_split":
        _add_column(
            root, "split", lambda i: "" if i == 7 else ["train", "train", "validate", "test"][(i // 2) % 4]
        )
    elif kind == "leaky_split":
        _add_column(
            root,
            "split",
            lambda i: "test" if i == 1 else ["train", "train", "validate", "test"][(i // 2) % 4],
        )
    elif kind == "lateral_only":
        rows = _rows(root)
        j = rows[0].index("view")
        _write(root, [rows[0]] + [r[:j] + ["LATERAL"] + r[j + 1 :] for r in rows[1:]])
    elif kind == "header_only":
        _write(root, _rows(root)[:1])
    elif kind == "small_cache":
        from radtex_bench.data.cache import prepare

        prepare("manifest", str(root), root.parent / "cache16", size=16, workers=0)
    elif kind not in ("good", "no_reports"):
        raise ValueError(f"unknown dataset builder {kind}")


# -- extra setups ----------------------------------------------------------------------------------


class Bomb:
    """Unpickling this would create a marker file: weights_only=True must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def setup(kind: str | None, recipe_path: Path, out: Path, tmp_path: Path, monkeypatch) -> Path | None:
    if kind is None:
        return None
    if kind == "empty_torch_home":
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
        return None
    if kind == "out_is_file":
        out.write_text("not a folder")
        return None
    recipe = load_recipe(recipe_path)
    out.mkdir(parents=True)
    if kind == "other_run_in_out":
        (out / "recipe.yaml").write_text(dump_recipe(load_recipe(recipe_path, ["seed=7"])))
    elif kind == "same_run_in_out":
        (out / "recipe.yaml").write_text(dump_recipe(recipe))
    elif kind == "poisoned_checkpoint":
        (out / "recipe.yaml").write_text(dump_recipe(recipe))
        ckpt = out / "pretrain" / recipe.objectives[0].label / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        marker = tmp_path / "pwned"
        with open(ckpt, "wb") as f:
            pickle.dump({"format": 1, "model": Bomb(marker)}, f)
        return marker
    else:
        raise ValueError(f"unknown setup {kind}")
    return None


@pytest.mark.parametrize("case_path", CASES, ids=[c.stem for c in CASES])
def test_bad_input(case_path, tmp_path, monkeypatch, capsys):
    case = yaml.safe_load(case_path.read_text())
    data = tmp_path / "ds"
    build_dataset(case.get("dataset", "good"), data)
    recipe_path = tmp_path / "recipe.yaml"
    if "recipe_text" in case:
        recipe_path.write_text(case["recipe_text"])
    else:
        text = (
            yaml.safe_dump(merge(BASE, case.get("recipe", {})))
            .replace("'{data}'", str(data))
            .replace("'{cache}'", str(data.parent / "cache16"))
        )
        recipe_path.write_text(text)
    out = tmp_path / "out"
    marker = setup(case.get("setup"), recipe_path, out, tmp_path, monkeypatch)

    code = main(
        ["--quiet", "run", str(recipe_path), "--out", str(out), "--device", "cpu", *case.get("args", [])]
    )
    err = capsys.readouterr().err
    assert code == case["exit"], err
    assert "Traceback" not in err
    if case["exit"] == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert case["message"] in lines[0], lines[0]
        for name in RESULT_FILES:
            assert not (out / name).exists() or not out.is_dir(), f"{name} left behind"
    else:
        skipped = (out / "skipped_images.txt").read_text().splitlines()
        assert len(skipped) == case["skipped"]
        assert f"{case['skipped']} images were skipped" in (out / "report.md").read_text()
        assert "skipping" in (out / "run.log").read_text()
    if marker is not None:
        assert not marker.exists(), "the checkpoint ran code"
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"


def test_corpus_is_large_enough():
    assert len(CASES) >= 25
