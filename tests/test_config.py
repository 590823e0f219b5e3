import dataclasses

import pytest
import yaml

from radtex_bench.config import dump_recipe, load_recipe, recipe_from_dict
from radtex_bench.errors import ConfigError, UserError

BASE = {"name": "t", "objectives": [{"name": "captioning"}, {"name": "random"}]}


def write(tmp_path, data, name="r.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_filled_and_round_trip(tmp_path):
    recipe = recipe_from_dict(BASE)
    assert recipe.seed == 0
    assert recipe.data.pretrain.kind == "synthetic"
    assert recipe.objectives[0].label == "captioning"
    assert recipe.objectives[0].params["bidirectional"] is True  # objective defaults filled from __init__
    assert recipe.evaluation.budgets == (10, 50, 100, 250)
    dumped = write(tmp_path, dump_recipe(recipe), "resolved.yaml")
    again = load_recipe(dumped)
    assert again == recipe


def test_recipe_is_frozen():
    recipe = recipe_from_dict(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "patch, fragment",
    [
        (
            {"objectives": [{"name": "captioning", "train": {"epoch": 2}}]},
            "objectives.0.train.epoch: unknown key; did you mean 'epochs'?",
        ),
        ({"evaluation": {"seeds": "three"}}, "evaluation.seeds: expected an integer"),
        ({"evaluation": {"budgets": [10, -5]}}, "evaluation.budgets.1: must be >= 2"),
        ({"evaluation": {"seeds": 0}}, "evaluation.seeds: must be >= 1"),
        ({"evaluation": {"protocols": ["linaer"]}}, "did you mean 'linear'"),
        (
            {"objectives": [{"name": "captoning"}]},
            "objectives.0.name: unknown objective 'captoning'; did you mean 'captioning'?",
        ),
        (
            {"objectives": [{"name": "clip", "params": {"widht": 64}}]},
            "objectives.0.params.widht: unknown parameter of this objective; did you mean 'width'?",
        ),
        (
            {"objectives": [{"name": "clip", "params": {"width": "wide"}}]},
            "objectives.0.params.width: expected an integer",
        ),
        ({"objectives": [{"name": "clip"}, {"name": "clip"}]}, "objectives.1.label: 'clip' is already used"),
        ({"objectives": []}, "objectives: needs at least one objective"),
        (
            {"encoder": {"name": "resnet18", "image_size": 70}},
            "encoder.image_size: 70 is not a multiple of 32",
        ),
        ({"encoder": {"name": "resnet19"}}, "did you mean 'resnet18'"),
        ({"data": {"pretrain": {"kind": "mimic"}}}, "data.pretrain.kind: unknown dataset kind 'mimic'"),
        (
            {"data": {"pretrain": {"kind": "synthetic", "nn": 5}}},
            "data.pretrain.nn: unknown key; did you mean 'n'?",
        ),
        ({"data": {"uncertain": "maybe"}}, "data.uncertain: invalid value 'maybe'"),
        ({"datas": {}}, "datas: unknown key; did you mean 'data'?"),
        ({"plugins": ["no_such_module_xyz"]}, "plugins.0: cannot import plug-in module 'no_such_module_xyz'"),
    ],
)
def test_validation_errors_name_the_key(tmp_path, patch, fragment):
    data = {**BASE, **patch}
    path = write(tmp_path, data)
    with pytest.raises(UserError) as info:
        load_recipe(path)
    assert fragment in str(info.value)
    assert str(info.value).startswith(str(path))


def test_missing_name_is_reported():
    with pytest.raises(ConfigError, match="name: required key is missing"):
        recipe_from_dict({"objectives": [{"name": "random"}]})


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "name: t\nobjectives:\n  - name: [captioning\n")
    with pytest.raises(UserError, match=r"invalid YAML at line \d+, column \d+"):
        load_recipe(path)


def test_yaml_python_tags_are_refused(tmp_path):
    path = write(
        tmp_path, "name: !!python/object/apply:os.system ['echo hi']\nobjectives: [{name: random}]\n"
    )
    with pytest.raises(UserError, match="invalid YAML"):
        load_recipe(path)


def test_overrides(tmp_path):
    path = write(tmp_path, {**BASE, "objectives": [{"name": "captioning", "train": {"epochs": 5}}]})
    recipe = load_recipe(
        path,
        [
            "evaluation.seeds=5",
            "objectives.0.train.epochs=2",
            "evaluation.budgets=[20, 10]",
            "objectives.0.params.width=128",
            "data.evaluate.kind=synthetic",
            "name=other",
        ],
    )
    assert recipe.evaluation.seeds == 5
    assert recipe.objectives[0].train.epochs == 2
    assert recipe.evaluation.budgets == (10, 20)
    assert recipe.objectives[0].params["width"] == 128
    assert recipe.data.evaluate is not None and recipe.data.evaluate.kind == "synthetic"
    assert recipe.name == "other"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("evaluation.seeds", "--set evaluation.seeds: expected dotted.key=value"),
        (
            "objectives.3.train.epochs=2",
            "--set objectives.3.train.epochs=2: objectives.3 is not an index of a list with 1 entries",
        ),
        ("evaluation.budgets=[10,", "--set evaluation.budgets=[10,: the value is not valid YAML ("),
        ("name.first=x", "--set name.first=x: name is not a mapping or list"),
        ("evaluation.seeds=abc", "evaluation.seeds: expected an integer"),
        ("evaluation.seedz=3", "evaluation.seedz: unknown key; did you mean 'seeds'?"),
    ],
)
def test_override_errors(tmp_path, override, fragment):
    path = write(tmp_path, {**BASE, "objectives": [{"name": "random"}]})
    with pytest.raises(UserError) as info:
        load_recipe(path, [override])
    assert fragment in str(info.value)


def test_an_error_in_a_key_set_by_set_names_the_set_not_the_file(tmp_path):
    path = write(tmp_path, {**BASE, "objectives": [{"name": "random", "train": {"batch_size": 8}}]})
    cases = {
        "evaluation.seedz=3": "--set evaluation.seedz=3: evaluation.seedz: unknown key; did you mean 'seeds'?",
        "objectives.0.train.batch_size=1": (
            "--set objectives.0.train.batch_size=1: objectives.0.train.batch_size: must be >= 2, got 1"
        ),
        "evaluation.budgets=[1, 10]": "--set evaluation.budgets=[1, 10]: evaluation.budgets.0: must be >= 2",
        # Names looked up in a registry too.
        "evaluation.protocols=[linearr]": (
            "--set evaluation.protocols=[linearr]: evaluation.protocols.0: unknown protocol 'linearr'; "
            "did you mean 'linear'?"
        ),
        "objectives.0.name=clp": "--set objectives.0.name=clp: objectives.0.name: unknown objective 'clp'",
        "encoder.name=resnet19": "--set encoder.name=resnet19: encoder.name: unknown encoder 'resnet19'",
        "encoder.name=timm:resnet19": "--set encoder.name=timm:resnet19: encoder.name: unknown timm model",
        "encoder.name=hf-hub:org/model": "--set encoder.name=hf-hub:org/model: encoder.name: 'hf-hub:org/model' "
        "is a Hugging Face Hub model",
        # A --set into a section that does not exist: a protocol section a plug-in would bring.
        "evaluation.centroid.shrink=0.2": (
            "--set evaluation.centroid.shrink=0.2: evaluation.centroid: unknown key; known: batch_size, "
            "bootstrap, budgets, confidence, finetune, generation, knn, linear, pathologies, prompts, "
            "protocols, resolved_budgets, retrieval, seeds, subsets_from, zeroshot; a plug-in protocol's "
            "section needs the plug-in's module in `plugins:`"
        ),
        "evaluation.retreival.max_candidates=9": "--set evaluation.retreival.max_candidates=9: "
        "evaluation.retreival: unknown key; did you mean 'retrieval'?",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError) as info:
            load_recipe(path, ["evaluation.seeds=2", override])
        assert str(info.value).startswith(message), str(info.value)
        with pytest.raises(ConfigError) as info:
            recipe_from_dict(yaml.safe_load(path.read_text()), [override])
        assert str(info.value).startswith(message)
    # The same mistake written in the file names the file; a --set of another key does not take it.
    bad = write(tmp_path, {**BASE, "evaluation": {"seedz": 3}}, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_recipe(bad, ["evaluation.seeds=2"])
    assert str(info.value).startswith(f"{bad}: evaluation.seedz: unknown key")


def test_every_recipe_key_is_documented():
    from pathlib import Path

    from radtex_bench import config
    from radtex_bench.data.kinds import DatasetOptions

    text = (Path(__file__).resolve().parents[1] / "docs" / "recipes.md").read_text()
    for cls in [
        config.Recipe,
        config.DataConfig,
        DatasetOptions,
        config.EncoderConfig,
        config.ObjectiveSpec,
        config.TrainConfig,
        config.EvaluationConfig,
    ]:
        for field in dataclasses.fields(cls):
            if field.metadata.get("internal"):
                continue
            assert f"`{field.name}`" in text, f"{cls.__name__}.{field.name} missing from docs/recipes.md"


def test_shipped_recipes_validate():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        load_recipe(path)


def test_a_recipe_that_is_not_utf8_is_one_line_with_the_fix(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: r\n# caf\xe9\nobjectives: [{name: random}]\n")
    with pytest.raises(
        UserError, match=r"cannot read recipe .*r.yaml: it is not UTF-8 text; save the file as UTF-8$"
    ):
        load_recipe(path)
