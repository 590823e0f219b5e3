"""Objectives written outside the package: recipe `plugins:`, entry points, and registration errors."""

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from radtex_bench import registry
from radtex_bench.cli import main
from radtex_bench.config import recipe_from_dict
from radtex_bench.errors import UserError
from radtex_bench.objectives import OBJECTIVES, load_plugins

DOCS = Path(__file__).resolve().parents[1] / "docs" / "objectives.md"


#: What a test here registers is gone after it (conftest.registries_restored).
pytestmark = pytest.mark.usefixtures("registries_restored")


def docs_example() -> str:
    text = DOCS.read_text()
    section = text.split("## Writing your own objective", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_docs_example_runs_from_a_recipe(tmp_path, monkeypatch, capsys):
    from conftest import write_manifest

    (tmp_path / "docs_example_objectives.py").write_text(docs_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    write_manifest(tmp_path / "ds", n=40)
    recipe = {
        "name": "plugin",
        "plugins": ["docs_example_objectives"],
        "data": {
            "pretrain": {"kind": "manifest", "root": str(tmp_path / "ds")},
            "pathologies": ["Cardiomegaly"],
        },
        "encoder": {"name": "resnet18", "image_size": 32},
        "objectives": [
            {
                "name": "rotation",
                "params": {"hidden": 16},
                "train": {"max_steps": 2, "batch_size": 8, "log_every": 1},
            },
            {"name": "random"},
        ],
        "evaluation": {"budgets": [6], "seeds": 1, "bootstrap": 0},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["--quiet", "run", str(path), "--out", str(tmp_path / "run")]) == 0
    results = (tmp_path / "run" / "results.csv").read_text()
    assert "rotation,linear,6,0,Cardiomegaly" in results
    metrics = [
        json.loads(x) for x in (tmp_path / "run/pretrain/rotation/metrics.jsonl").read_text().splitlines()
    ]
    assert "accuracy" in metrics[-1]
    assert main(["list", "objectives", "--json", "--plugin", "docs_example_objectives"]) == 0
    assert "rotation" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def plugin(tmp_path, monkeypatch, name, body):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)


def test_name_clash_is_an_error(tmp_path, monkeypatch):
    plugin(
        tmp_path,
        monkeypatch,
        "clash_plugin",
        """
        from radtex_bench import Objective, register_objective

        @register_objective("captioning")
        class Mine(Objective):
            pass
    """,
    )
    with pytest.raises(UserError, match="'captioning' is registered twice"):
        recipe_from_dict({"name": "x", "plugins": ["clash_plugin"], "objectives": [{"name": "random"}]})


def test_not_an_objective_is_an_error(tmp_path, monkeypatch):
    plugin(
        tmp_path,
        monkeypatch,
        "notobj_plugin",
        """
        from radtex_bench import register_objective

        @register_objective("notobj")
        class Plain:
            pass
    """,
    )
    with pytest.raises(UserError, match="is not a subclass of radtex_bench.objectives.base.Objective"):
        load_plugins(["notobj_plugin"])


def test_plugin_that_crashes_on_import(tmp_path, monkeypatch):
    plugin(tmp_path, monkeypatch, "broken_plugin", "raise RuntimeError('boom')\n")
    with pytest.raises(
        UserError, match=r"plugins.0: plug-in module 'broken_plugin' failed to import: RuntimeError: boom"
    ):
        load_plugins(["broken_plugin"])


def test_plugin_error_through_the_cli(tmp_path, monkeypatch, capsys):
    plugin(tmp_path, monkeypatch, "broken_plugin2", "import does_not_exist_anywhere\n")
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump({"name": "x", "plugins": ["broken_plugin2"], "objectives": [{"name": "random"}]})
    )
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken_plugin2" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_entry_point_registers_objective(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    pkg.mkdir()
    (pkg / "ep_objectives.py").write_text(
        textwrap.dedent("""
        from radtex_bench import Objective

        class ViaEntryPoint(Objective):
            def forward(self, batch):
                return {"loss": self.encoder(batch["image"]).mean()}
    """)
    )
    dist = pkg / "ep_objectives-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-objectives\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[radtex_bench.objectives]\nvia_ep = ep_objectives:ViaEntryPoint\n"
    )
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", set())
    load_plugins()
    assert "via_ep" in OBJECTIVES
    recipe = recipe_from_dict({"name": "x", "objectives": [{"name": "via_ep"}]})
    assert recipe.objectives[0].name == "via_ep"


def test_internal_error_exits_1_with_traceback_in_run_log(tmp_path, monkeypatch, capsys):
    from conftest import write_manifest

    plugin(
        tmp_path,
        monkeypatch,
        "buggy_plugin",
        """
        from radtex_bench import Objective, register_objective

        @register_objective("buggy")
        class Buggy(Objective):
            def forward(self, batch):
                raise ZeroDivisionError("a bug in the objective")
    """,
    )
    write_manifest(tmp_path / "ds", n=40)
    recipe = {
        "name": "bug",
        "plugins": ["buggy_plugin"],
        "data": {
            "pretrain": {"kind": "manifest", "root": str(tmp_path / "ds")},
            "pathologies": ["Cardiomegaly"],
        },
        "encoder": {"name": "resnet18", "image_size": 32},
        "objectives": [{"name": "buggy", "train": {"max_steps": 1, "batch_size": 4}}],
        "evaluation": {"budgets": [4], "seeds": 1, "bootstrap": 0},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: ZeroDivisionError: a bug in the objective")
    assert str(out / "run.log") in err and "Traceback" not in err
    log = (out / "run.log").read_text()
    assert "Traceback" in log and "a bug in the objective" in log
    assert main(["--debug", "--quiet", "run", str(path), "--out", str(tmp_path / "run2")]) == 1
    assert "Traceback" in capsys.readouterr().err


EVALUATION_DOCS = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"


def test_a_plugin_protocol_from_the_docs_runs_from_a_recipe(tmp_path, monkeypatch, capsys):
    from conftest import write_manifest

    section = EVALUATION_DOCS.read_text().split("## Writing your own protocol", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "docs_example_protocols.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    write_manifest(tmp_path / "ds", n=40)
    recipe = {
        "name": "plugin-protocol",
        "plugins": ["docs_example_protocols"],
        "data": {
            "pretrain": {"kind": "manifest", "root": str(tmp_path / "ds")},
            "pathologies": ["Cardiomegaly"],
        },
        "encoder": {"name": "resnet18", "image_size": 32},
        "objectives": [{"name": "random"}],
        "evaluation": {
            "budgets": [6],
            "seeds": 1,
            "bootstrap": 0,
            "protocols": ["linear", "centroid"],
            "centroid": {"shrink": 0.5},
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["--quiet", "run", str(path), "--out", str(tmp_path / "run")]) == 0
    summary = (tmp_path / "run" / "summary.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in summary[1:]] == ["linear", "centroid"]  # the recipe's order
    assert "centroid: {shrink: 0.5}" in (tmp_path / "run" / "recipe.yaml").read_text()
    capsys.readouterr()
    assert main(["list", "protocols", "--json", "--plugin", "docs_example_protocols"]) == 0
    assert "centroid" in json.loads(capsys.readouterr().out)
    # its settings section is validated like any recipe key
    recipe["evaluation"]["centroid"] = {"shrink": 2.0}
    with pytest.raises(UserError, match="evaluation.centroid.shrink: must be <= 1.0"):
        recipe_from_dict(recipe)


def test_list_protocols_json_lists_the_built_ins(capsys):
    assert main(["list", "protocols", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert {"finetune", "knn", "linear"} <= set(names) and names == sorted(names)


def test_an_unannotated_parameter_is_checked_against_its_defaults_type(tmp_path, monkeypatch):
    from radtex_bench.errors import ConfigError

    plugin(
        tmp_path,
        monkeypatch,
        "untyped_plugin",
        """
        from radtex_bench import Objective, register_objective

        @register_objective("untyped")
        class Untyped(Objective):
            def __init__(self, encoder, alpha=0.5, layers=2, mode="sum", flag=False, extra=None):
                super().__init__(encoder)

            def forward(self, batch):
                return {"loss": self.encoder(batch["image"]).mean()}
    """,
    )

    def params(**given):
        entry = {"name": "untyped", "params": given}
        recipe = recipe_from_dict({"name": "x", "plugins": ["untyped_plugin"], "objectives": [entry]})
        return recipe.objectives[0].params

    got = params(alpha="3e-1", layers=2.5, mode=7, flag=True, extra=[1, 2])
    assert got == {"alpha": 0.3, "layers": 2.5, "mode": "7", "flag": True, "extra": [1, 2]}
    assert params()["layers"] == 2 and isinstance(params(layers=4)["layers"], int)
    for key, value, message in [
        ("alpha", "abc", "objectives.0.params.alpha: expected a number, got 'abc'"),
        ("layers", "many", "objectives.0.params.layers: expected int or float, got 'many'"),
        ("flag", "yes", "objectives.0.params.flag: expected true or false, got 'yes'"),
        ("mode", [1], "objectives.0.params.mode: expected a string, got [1]"),
    ]:
        with pytest.raises(ConfigError) as info:
            params(**{key: value})
        assert str(info.value) == message


def test_data_summary_and_prepare_take_a_plug_in_dataset_kind(tmp_path, monkeypatch, capsys, manifest_dir):

    plugin(
        tmp_path,
        monkeypatch,
        "alias_kind_plugin",
        """
        from radtex_bench import register_dataset
        from radtex_bench.data.kinds.manifest import ManifestDataset

        @register_dataset("manifest_alias")
        class ManifestAlias(ManifestDataset):
            '''The manifest kind under another name.'''
    """,
    )
    assert main(["data", "summary", "manifest_alias", str(manifest_dir), "--json"]) == 2
    assert "unknown dataset kind 'manifest_alias'" in capsys.readouterr().err
    flags = ["--plugin", "alias_kind_plugin"]
    assert main(["data", "summary", "manifest", str(manifest_dir), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["data", "summary", "manifest_alias", str(manifest_dir), "--json", *flags]) == 0
    assert json.loads(capsys.readouterr().out) == {**expected, "kind": "manifest_alias"}
    out = tmp_path / "cache"
    assert (
        main(["--quiet", "prepare", "manifest_alias", str(manifest_dir), str(out), "--size", "16", *flags])
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] == expected["images"]
    assert main(["list", "datasets", "--plugin", "no_such_module"]) == 2
    assert capsys.readouterr().err.startswith("error: --plugin no_such_module: cannot import plug-in module")
