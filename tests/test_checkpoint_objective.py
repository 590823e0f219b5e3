"""The ``checkpoint`` objective: a published encoder from a local file, scored as it is."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
from conftest import write_tiny_recipe
from safetensors.torch import load_file, save_file

from radtex_bench.cli import main
from radtex_bench.config import recipe_from_dict
from radtex_bench.data.normalization import XRV, Normalization
from radtex_bench.encoders import Encoder, read_metadata
from radtex_bench.errors import ConfigError, UserError
from radtex_bench.objectives import OBJECTIVES
from radtex_bench.objectives.checkpoint import map_keys, read_checkpoint

CHECKPOINT = OBJECTIVES.get("checkpoint")


def published_resnet18(path, prefix="module.encoder.", wrap=True):
    """A resnet18 saved the way training code saves it: a training state with a wrapped backbone."""
    torch.manual_seed(11)
    model = torchvision.models.resnet18()
    state = {f"{prefix}{k}": v for k, v in model.state_dict().items()}
    state[f"{prefix.split('.')[0]}.projector.weight"] = torch.zeros(4, 512)  # not the encoder's: ignored
    torch.save({"epoch": 9, "state_dict": state, "optimizer": {"lr": 0.1}} if wrap else state, path)
    return model.state_dict()


def run_recipe(tmp_path, root, params, encoder="resnet18"):
    recipe = write_tiny_recipe(
        tmp_path / "ckpt.yaml",
        root,
        [{"name": "checkpoint", "label": "published", "params": params}],
        {"budgets": [4], "seeds": 1, "bootstrap": 0},
        "ckpt",
    )
    if encoder != "resnet18":
        recipe.write_text(recipe.read_text().replace("resnet18", encoder))
    out = tmp_path / "run"
    return main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu"]), out


def test_published_state_dict_is_written_unchanged_and_evaluated(tmp_path, manifest_dir):
    saved = published_resnet18(tmp_path / "moco.pth.tar.pth")
    params = {"path": str(tmp_path / "moco.pth.tar.pth"), "prefix": "module.encoder.", "normalization": "xrv"}
    code, out = run_recipe(tmp_path, manifest_dir, params)
    assert code == 0
    weights = out / "pretrain" / "published" / "encoder.safetensors"
    loaded = load_file(str(weights))
    assert set(loaded) == set(saved)
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key
    meta = read_metadata(weights)
    assert meta["objective"] == "checkpoint" and meta["format"] == "torchvision"
    assert Normalization.from_json(meta["normalization"]) == XRV
    assert (out / "summary.csv").read_text().count("published,linear") == 1
    assert not (out / "pretrain" / "published" / "last.ckpt").exists()  # nothing was trained


def test_wrong_prefix_is_exit_2_naming_keys_before_any_work(tmp_path, manifest_dir, capsys):
    published_resnet18(tmp_path / "w.pt")
    code, out = run_recipe(tmp_path, manifest_dir, {"path": str(tmp_path / "w.pt"), "prefix": "module."})
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert "unmatched key(s): encoder.bn1.bias" in err and "missing key(s): bn1.bias" in err
    assert "set params.prefix: 'module.encoder.'" in err
    assert not (out / "pretrain").exists()


def test_file_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="params.path .*nowhere.pt does not exist"):
        CHECKPOINT.preflight("resnet18", {"path": str(tmp_path / "nowhere.pt")})
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(UserError, match="use one of .pt, .pth, .ckpt"):
        CHECKPOINT.preflight("resnet18", {"path": str(tmp_path / "weights.npz")})
    # Anything but tensors and plain containers is refused by torch.load(weights_only=True).
    torch.save(
        {"state_dict": {"w": torch.zeros(1)}, "config": Normalization((0.5,), (0.5,))}, tmp_path / "p.pt"
    )
    with pytest.raises(UserError, match=r"cannot load .*p.pt with torch.load\(weights_only=True\)"):
        CHECKPOINT.preflight("resnet18", {"path": str(tmp_path / "p.pt")})
    published_resnet18(tmp_path / "r18.pt", prefix="", wrap=False)
    with pytest.raises(UserError, match="have another shape than resnet50's.*check encoder.name"):
        CHECKPOINT.preflight("resnet50", {"path": str(tmp_path / "r18.pt")})


def test_key_map_renames_and_drops_and_strict_false_tolerates(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    state = {k.replace("layer", "stage"): v for k, v in model.state_dict().items()}
    state["op_threshs"] = torch.zeros(18)  # torchxrayvision keeps thresholds next to the weights
    save_file(state, str(tmp_path / "w.safetensors"))
    params = {"path": str(tmp_path / "w.safetensors")}
    with pytest.raises(UserError, match="unmatched key"):
        CHECKPOINT.preflight("resnet18", params)
    renamed = {**params, "key_map": {f"stage{i}": f"layer{i}" for i in range(1, 5)} | {"op_threshs": None}}
    CHECKPOINT.preflight("resnet18", renamed)
    objective = CHECKPOINT(Encoder("resnet18"), **renamed)
    objective.setup(None)
    assert torch.equal(objective.encoder.model.layer3[0].conv1.weight, model.layer3[0].conv1.weight)
    # strict: false keeps what it cannot match at its initial value; a file that matches nothing fails.
    loose = {**params, "key_map": {"stage4": "layer4"}, "strict": False}
    CHECKPOINT.preflight("resnet18", loose)
    with pytest.raises(UserError, match="prefix 'nothing.' do not match resnet18 .* 100 missing key"):
        CHECKPOINT.preflight("resnet18", {**params, "prefix": "nothing.", "strict": False})


def test_one_channel_first_conv_and_backbone_only_files(tmp_path):
    torch.manual_seed(1)
    model = torchvision.models.densenet121()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    grey = state["features.conv0.weight"].sum(dim=1, keepdim=True)  # [64, 1, 7, 7]
    state["features.conv0.weight"] = grey
    torch.save(state, tmp_path / "xrv.pth")
    objective = CHECKPOINT(Encoder("densenet121"), path=str(tmp_path / "xrv.pth"), normalization="xrv")
    objective.setup(None)
    encoder = objective.encoder.eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        three = encoder.model.features.conv0(x.repeat(1, 3, 1, 1))
        one = torch.nn.functional.conv2d(x, grey, stride=2, padding=3)
    assert torch.allclose(three, one, atol=1e-5)  # same output on the repeated grey channel
    assert encoder.normalization == XRV


def test_timm_checkpoint_under_a_prefix(tmp_path):
    torch.manual_seed(2)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    torch.save({"model": {f"visual.{k}": v for k, v in vit.state_dict().items()}}, tmp_path / "v.ckpt")
    objective = CHECKPOINT(Encoder("vit_tiny_patch16"), path=str(tmp_path / "v.ckpt"), prefix="visual.")
    CHECKPOINT.preflight("vit_tiny_patch16", {"path": str(tmp_path / "v.ckpt"), "prefix": "visual."})
    objective.setup(None)
    assert torch.equal(objective.encoder.model.pos_embed, vit.pos_embed)


def test_nested_entries_read_as_dotted_keys(tmp_path):
    torch.save(
        {"teacher": {"backbone": {"w": torch.ones(2)}}, "student": {"w": torch.zeros(2)}}, tmp_path / "d.pt"
    )
    state = read_checkpoint(tmp_path / "d.pt")
    assert set(state) == {"teacher.backbone.w", "student.w"}
    assert set(map_keys(state, "teacher.backbone.", {})) == {"w"}


def test_params_are_validated_with_the_recipe():
    def recipe(**params):
        return {"name": "r", "objectives": [{"name": "checkpoint", "params": params}]}

    with pytest.raises(ConfigError, match="objectives.0.params.path: required parameter"):
        recipe_from_dict(recipe())
    with pytest.raises(ConfigError, match="objectives.0.params.normalization: unknown normalisation 'xray'"):
        recipe_from_dict(recipe(path="w.pt", normalization="xray"))
    assert recipe_from_dict(recipe(path="w.pt")).objectives[0].params["normalization"].name == "imagenet"
    with pytest.raises(ConfigError, match=r"objectives.0.params.normalization.std.0: must be > 0"):
        recipe_from_dict(recipe(path="w.pt", normalization={"mean": [0.5], "std": [0]}))
    custom = recipe_from_dict(recipe(path="w.pt", normalization={"mean": [0.5], "std": [0.25]}))
    params = custom.objectives[0].params
    assert params["normalization"] == Normalization((0.5,), (0.25,))
    from radtex_bench.config import dump_recipe

    assert "std: [0.25, 0.25, 0.25]" in dump_recipe(custom)  # the resolved recipe stays plain YAML
    assert json.loads(Normalization((0.5,), (0.25,)).to_json())["name"] == "custom"
