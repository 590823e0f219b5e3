"""The dataset-kind example of docs/datasets.md ("Writing your own dataset kind"), run as written.

The module is read from the docs (the first ```python block of the section), so the docs and this test
cannot drift apart. The kind is registered only for the test: the registry and ``sys.modules`` are
restored afterwards, so tests that walk every registered kind (test_docs_ranges.py) do not see it.
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from radtex_bench import registry
from radtex_bench.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"
MODULE = "docs_example_kinds"  # the docs call it my_kinds.py; a name no other test uses
KIND = "png_folder"


def docs_example() -> str:
    section = DOCS.read_text(encoding="utf-8").split("## Writing your own dataset kind", 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def example_kind(tmp_path, monkeypatch, registries_restored):
    """The docs' module importable from tmp_path; the registry and sys.modules restored afterwards."""
    (tmp_path / f"{MODULE}.py").write_text(docs_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(MODULE, None)
    return MODULE


def write_png_folder(root: Path, patients: int = 8, per_patient: int = 3) -> Path:
    """24 grey 32 px PNGs named P<k>_<n>.png, and labels.json with positives and negatives for each
    pathology among every patient's images (so any patient-level split can score an AUROC)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for p in range(patients):
        for n in range(per_patient):
            name = f"P{p}_{n}.png"
            positive = (p + n) % 2
            pixels = rng.integers(0, 120, (32, 32)) + 100 * positive  # a learnable signal
            Image.fromarray(pixels.astype(np.uint8)).save(root / name)
            entry = {"Cardiomegaly": positive, "Effusion": 1 - positive}
            if n == 2:
                entry["Edema"] = -1 if p % 2 else None  # uncertain / missing
            labels[name] = entry
    (root / "labels.json").write_text(json.dumps(labels))
    return root


def write_recipe(path: Path, root: Path, module: str, **pretrain) -> Path:
    recipe = {
        "name": "kind_plugin",
        "plugins": [module],
        "data": {
            "pretrain": {"kind": KIND, "root": str(root), **pretrain},
            "pathologies": ["Cardiomegaly", "Pleural Effusion"],
        },
        "encoder": {"name": "resnet18", "image_size": 32},
        "objectives": [{"name": "random"}],
        "evaluation": {"budgets": [4], "seeds": 1, "bootstrap": 0},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_the_docs_example_reads_its_folder(tmp_path, example_kind):
    from radtex_bench.data.kinds import DatasetSpec
    from radtex_bench.data.loading import load_table
    from radtex_bench.registry import import_plugin

    root = write_png_folder(tmp_path / "pngs")
    import_plugin(example_kind)
    spec = DatasetSpec.from_plain({"kind": KIND, "root": str(root), "max_images": 12}, "data.pretrain")
    table = load_table(spec)
    assert len(table) == 12 and table.kind == KIND
    # CheXpert's spelling for Effusion; names sorted; -1 kept, null and absent both missing.
    assert table.label_names == ["Cardiomegaly", "Edema", "Pleural Effusion"]
    rows = {image_id: i for i, image_id in enumerate(table.image_ids)}
    assert table.labels[rows["P1_2.png"], 1] == -1
    assert np.isnan(table.labels[rows["P0_2.png"], 1]) and np.isnan(table.labels[rows["P0_0.png"], 1])
    assert table.labels[rows["P0_1.png"], 0] == 1 and table.labels[rows["P0_1.png"], 2] == 0
    # No official split: the patient-level split, no patient in two splits.
    frame = table.frame
    assert set(frame["split"]) == {"train", "validate", "test"}
    assert (frame.groupby("patient_id")["split"].nunique() == 1).all()
    assert frame["path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()


def test_a_recipe_pretrains_and_evaluates_on_the_plugin_kind(tmp_path, example_kind, capsys):
    root = write_png_folder(tmp_path / "pngs")
    recipe = write_recipe(tmp_path / "r.yaml", root, example_kind)
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out)]) == 0
    results = (out / "results.csv").read_text().splitlines()
    assert len(results) > 1
    assert any(line.startswith("random,linear,4,0,Cardiomegaly,") for line in results[1:])
    # Every evaluation image is one of the folder's files.
    splits = json.loads((out / "splits.json").read_text())
    listed = {p.name for p in root.glob("*.png")}
    assert splits["test"] and set(splits["test"]) <= listed


def test_an_out_of_range_option_is_one_error_line(tmp_path, example_kind, capsys):
    root = write_png_folder(tmp_path / "pngs")
    recipe = write_recipe(tmp_path / "r.yaml", root, example_kind, max_images=0)
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "data.pretrain.max_images" in err[0] and ">= 1" in err[0]
    assert not out.exists()


def test_bad_labels_json_names_the_file_and_the_entry(tmp_path, example_kind, capsys):
    root = write_png_folder(tmp_path / "pngs")
    labels = json.loads((root / "labels.json").read_text())
    labels["P3_1.png"]["Cardiomegaly"] = 2
    (root / "labels.json").write_text(json.dumps(labels))
    recipe = write_recipe(tmp_path / "r.yaml", root, example_kind)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert str(root / "labels.json") in err[0] and "P3_1.png has Cardiomegaly: 2" in err[0]


def test_list_datasets_shows_the_plugin_kind(example_kind, capsys):
    assert main(["list", "datasets", "--json", "--plugin", example_kind]) == 0
    names = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert KIND in names and "manifest" in names


def test_an_entry_point_naming_the_module_registers_the_kind(tmp_path, example_kind, monkeypatch, capsys):
    # The docs' packaging advice: no dataset-kind group, so a module entry in the objectives group.
    dist = tmp_path / "docs_example_kinds-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: docs-example-kinds\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[radtex_bench.objectives]\nmy_kinds = {example_kind}\n")
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", set())
    assert main(["list", "datasets", "--json"]) == 0
    assert KIND in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _faulty_reader(monkeypatch, module_name: str, fault) -> None:
    """The docs' kind, with ``fault(frame)`` applied to what its ``read()`` returns."""
    import importlib

    kind = importlib.import_module(module_name).PngFolder
    original = kind.read

    def read(self):
        table = original(self)
        fault(table.frame)
        return table

    monkeypatch.setattr(kind, "read", read)


def _load(root: Path):
    from radtex_bench.data.kinds import DatasetSpec
    from radtex_bench.data.loading import load_table

    return load_table(
        DatasetSpec.from_plain({"kind": KIND, "root": str(root)}, "data.pretrain"), check_files=False
    )


def test_split_and_view_spellings_of_a_plug_in_kind_are_made_canonical(example_kind, tmp_path, monkeypatch):
    def fault(frame):
        patient = frame["patient_id"]
        frame["split"] = np.where(
            patient.isin(["P0", "P1"]), "val", np.where(patient == "P7", "TEST", "Training")
        )
        frame["view"] = np.where(patient == "P0", "pa", "AP supine")

    _faulty_reader(monkeypatch, example_kind, fault)
    table = _load(write_png_folder(tmp_path / "pngs"))
    assert len(table) == 24  # every view kept by the default views: [PA, AP]
    assert sorted(set(table.frame["split"])) == ["test", "train", "validate"]
    assert sorted(set(table.frame["view"])) == ["AP", "PA"]


def test_data_summary_counts_a_plug_in_kinds_views_in_their_canonical_spelling(
    example_kind, tmp_path, monkeypatch
):
    from radtex_bench.data.summary import summarise

    def fault(frame):
        frame["view"] = np.where(frame["patient_id"] == "P0", "pa", "AP supine")

    _faulty_reader(monkeypatch, example_kind, fault)
    assert summarise(KIND, str(write_png_folder(tmp_path / "pngs")))["views"] == {"AP": 21, "PA": 3}


@pytest.mark.parametrize(
    "fault, message",
    [
        (
            lambda f: f.__setitem__("image_id", f["image_id"].where(f.index != 1, f["image_id"][0])),
            "image_id 'P0_0.png' is listed more than once; every image needs its own id",
        ),
        (
            lambda f: f.__setitem__("patient_id", f["patient_id"].where(f.index != 5, " ")),
            "1 image(s) have no patient_id (e.g. 'P1_2.png')",
        ),
        (
            lambda f: f.__setitem__("split", "holdout"),
            "unknown split 'holdout'; use train, validate, test or blank",
        ),
    ],
)
def test_what_every_kind_must_give_is_checked_once_for_all(
    example_kind, tmp_path, monkeypatch, fault, message
):
    from radtex_bench.errors import DataError

    _faulty_reader(monkeypatch, example_kind, fault)
    with pytest.raises(DataError, match=re.escape(message)):
        _load(write_png_folder(tmp_path / "pngs"))


def test_data_summary_of_a_kind_without_views_says_so(example_kind, tmp_path, capsys):
    root = write_png_folder(tmp_path / "pngs")
    assert main(["data", "summary", KIND, str(root), "--plugin", example_kind]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{KIND} at {root}: 24 images, 24 studies, 8 patients, 0 with reports"
    assert lines[1] == "views: not recorded"
