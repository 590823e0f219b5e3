"""Encoders: the torchvision and timm families, the weights file, input normalisation, ImageNet weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
import yaml
from safetensors.torch import load_file, save_file

from radtex_bench.config import TrainConfig, recipe_from_dict
from radtex_bench.data.normalization import IMAGENET, XRV, Normalization
from radtex_bench.data.pipeline import RadiographDataset, to_model_input
from radtex_bench.encoders import (
    ENCODERS,
    Encoder,
    build_encoder,
    load_encoder,
    read_metadata,
    save_encoder,
)
from radtex_bench.engine.distributed import DistInfo
from radtex_bench.engine.trainer import Trainer
from radtex_bench.errors import ConfigError, UserError
from radtex_bench.objectives import OBJECTIVES, Objective

SHORT_NAMES = [
    "vit_tiny_patch16",
    "vit_small_patch16",
    "vit_base_patch16",
    "convnext_tiny",
    "efficientnet_b0",
]


# -- torchvision (unchanged keys and numbers) ----------------------------------------------------


def test_pooled_and_grid_shapes():
    enc = Encoder("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        grid = enc.forward_features(x)
        pooled = enc(x)
    assert grid.shape == (2, 512, 2, 2)
    assert pooled.shape == (2, enc.out_dim) == (2, 512)
    assert torch.allclose(pooled, grid.mean(dim=(2, 3)))


def test_pooled_features_match_torchvision_backbone():
    enc = Encoder("resnet18").eval()
    tv = torchvision.models.resnet18()
    tv.load_state_dict(enc.export_state_dict())
    tv.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(enc(x), tv.eval()(x), atol=1e-5)


def test_safetensors_loads_into_plain_torchvision(tmp_path):
    enc = Encoder("resnet18")
    with torch.no_grad():
        enc.model.layer1[0].conv1.weight.add_(1.0)  # make the weights distinguishable from a fresh init
    path = tmp_path / "encoder.safetensors"
    digest = save_encoder(enc, path, {"label": "x"})
    assert len(digest) == 64
    plain = torchvision.models.resnet18()
    plain.load_state_dict(load_file(str(path)), strict=True)
    assert torch.equal(plain.layer1[0].conv1.weight, enc.model.layer1[0].conv1.weight)
    meta = read_metadata(path)
    assert (meta["encoder"], meta["format"], meta["model"], meta["label"]) == (
        "resnet18",
        "torchvision",
        "resnet18",
        "x",
    )
    assert json.loads(meta["normalization"])["name"] == "imagenet"
    again = load_encoder(path)
    assert again.name == "resnet18" and again.normalization == IMAGENET
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(again.eval()(x), enc.eval()(x))


def test_classifier_is_frozen_so_ddp_sees_no_unused_parameters():
    enc = Encoder("resnet18")
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert not any(n.startswith("model.fc.") for n in trainable)
    assert "model.conv1.weight" in trainable


@pytest.mark.parametrize("name, dim", [("resnet50", 2048), ("densenet121", 1024)])
def test_other_backbones(name, dim):
    enc = Encoder(name).eval()
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 64, 64)).shape == (1, dim)
    assert ENCODERS.get(name).out_dim == dim


def test_list_encoders_includes_the_timm_short_names(capsys):
    from radtex_bench.cli import main

    assert main(["list", "encoders", "--json"]) == 0
    names = set(json.loads(capsys.readouterr().out))
    assert {"resnet18", "densenet121", *SHORT_NAMES} <= names


# -- timm ------------------------------------------------------------------------------------------


def test_vit_grid_is_the_patch_tokens_and_pooled_is_the_class_token():
    enc = Encoder("vit_tiny_patch16").eval()
    assert type(enc).__name__ == "TimmEncoder" and enc.out_dim == 192
    x = torch.randn(2, 3, 32, 48)  # any multiple of the patch size, not only 224
    with torch.no_grad():
        tokens = enc.model.forward_features(x)  # [B, 1 + 2*3, 192]
        grid = enc.forward_features(x)
        pooled = enc(x)
    assert tokens.shape == (2, 7, 192)
    assert grid.shape == (2, 192, 2, 3)
    # Row-major patches: grid[:, :, i, j] is token 1 + i*3 + j (the class token dropped).
    assert torch.equal(grid[:, :, 1, 2], tokens[:, 1 + 1 * 3 + 2])
    assert torch.equal(pooled, tokens[:, 0])


@pytest.mark.parametrize("name, dim", [("convnext_tiny", 768), ("efficientnet_b0", 1280)])
def test_timm_cnns_give_a_grid_and_their_pre_logits(name, dim):
    enc = Encoder(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        grid = enc.forward_features(x)
        pooled = enc(x)
        reference = enc.model.forward_head(enc.model.forward_features(x), pre_logits=True)
    assert grid.shape == (1, dim, 2, 2) and pooled.shape == (1, dim) == (1, enc.out_dim)
    assert torch.equal(pooled, reference)
    frozen = {n for n, p in enc.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("model.head.", "model.classifier.")) for n in frozen)


def test_vit_safetensors_keeps_timm_keys_and_loads_strictly(tmp_path):
    enc = Encoder("vit_tiny_patch16")
    with torch.no_grad():
        enc.model.blocks[0].attn.qkv.weight.mul_(2.0)
    path = tmp_path / "encoder.safetensors"
    save_encoder(enc, path)
    plain = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    plain.load_state_dict(load_file(str(path)), strict=True)
    assert torch.equal(plain.blocks[0].attn.qkv.weight, enc.model.blocks[0].attn.qkv.weight)
    meta = read_metadata(path)
    assert (meta["format"], meta["model"], meta["encoder"]) == (
        "timm",
        "vit_tiny_patch16_224",
        "vit_tiny_patch16",
    )
    again = load_encoder(path).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), enc.eval()(x))


def test_any_timm_model_by_name():
    spec = ENCODERS.get("timm:test_vit")
    assert (spec.model, spec.stride, spec.out_dim) == ("test_vit", 16, 64)
    enc = build_encoder("timm:test_vit").eval()
    with torch.no_grad():
        assert enc.forward_features(torch.randn(1, 3, 48, 32)).shape == (1, 64, 3, 2)
    with pytest.raises(UserError) as info:
        ENCODERS.get("timm:vit_tiny_patch61_224", where="encoder.name")
    assert str(info.value) == (
        "encoder.name: unknown timm model 'vit_tiny_patch61_224'; did you mean 'timm:vit_tiny_patch16_224'? "
        "(the names: python -c \"import timm; print(timm.list_models('vit*'))\")"
    )
    with pytest.raises(UserError, match="unknown encoder family 'timmm:'"):
        ENCODERS.get("timmm:test_vit")


@pytest.mark.parametrize(
    "name, arch",
    [
        ("hf-hub:org/model", "timm:<model_name>"),
        ("hf_hub:timm/vit_small_patch16_224.augreg_in21k", "timm:vit_small_patch16_224.augreg_in21k"),
        ("timm:hf-hub:timm/convnext_tiny.fb_in1k@main", "timm:convnext_tiny.fb_in1k"),
    ],
)
def test_a_hub_model_is_refused_saying_it_would_download_and_what_to_do(name, arch):
    with pytest.raises(UserError) as caught:
        ENCODERS.get(name, where="encoder.name")
    assert str(caught.value) == (
        f"encoder.name: '{name}' is a Hugging Face Hub model and would be downloaded (radtex-bench never "
        f"downloads); save its weights to a local file and use encoder.name: {arch} (the architecture) with "
        "the checkpoint objective's params.path: <that file> (docs/encoders.md)"
    )


def _recipe(name: str, size: int, **objective):
    return {
        "name": "r",
        "encoder": {"name": name, "image_size": size},
        "objectives": [objective or {"name": "random"}],
    }


def test_vit_image_size_must_be_a_multiple_of_the_patch_size():
    assert recipe_from_dict(_recipe("vit_tiny_patch16", 48)).encoder.image_size == 48
    with pytest.raises(ConfigError) as info:
        recipe_from_dict(_recipe("vit_tiny_patch16", 40))
    message = str(info.value)
    assert message.startswith("encoder.image_size: 40 is not a multiple of 16")
    assert "patch size" in message and "use 32 or 48" in message
    with pytest.raises(ConfigError, match="encoder.image_size: 40 is not a multiple of 32"):
        recipe_from_dict(_recipe("timm:swin_tiny_patch4_window7_224", 40))


def test_models_built_for_one_size_are_refused_at_another_before_any_work(tmp_path, capsys):
    """BEiT takes 224 px only (a multiple of its patch size is not enough); LeViT's tokens lay out on no
    grid at any size. Both used to pass validation and stop the run with a traceback."""
    from radtex_bench.cli import main

    beit = "timm:beit_base_patch16_224"
    assert recipe_from_dict(_recipe(beit, 224)).encoder.image_size == 224
    with pytest.raises(ConfigError) as info:
        recipe_from_dict(_recipe(beit, 64))
    message = str(info.value)
    assert message.startswith(f"encoder.image_size: {beit} fails on a 64 px image (AssertionError: ")
    assert message.endswith("use encoder.image_size: 224 (the size it is built for)")
    with pytest.raises(ConfigError, match="it cannot serve as an encoder here; choose another encoder"):
        recipe_from_dict(_recipe("timm:levit_128s", 224))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(beit, 64)))
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {recipe}: encoder.image_size: {beit} fails on a 64 px image")
    assert "Traceback" not in err and not (tmp_path / "out").exists()


# -- input normalisation ---------------------------------------------------------------------------


def test_default_normalisation_is_imagenet_bit_for_bit():
    pixels = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    # The formula the pipeline has always used, written out.
    std = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)
    mean = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)
    expected = torch.addcmul(
        (-mean / std).view(1, 3, 1, 1), pixels.float(), (1.0 / (255.0 * std)).view(1, 3, 1, 1)
    )
    assert torch.equal(to_model_input(pixels), expected)
    assert torch.equal(to_model_input(pixels, normalization=IMAGENET), expected)


def test_xrv_and_custom_normalisations():
    pixels = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    x = to_model_input(pixels, normalization=XRV)
    assert torch.allclose(x[0, :, 0, 0], torch.full((3,), -1024.0))
    assert torch.allclose(x[0, :, 0, 1], torch.full((3,), 1024.0))
    custom = Normalization.parse({"mean": [0.5], "std": [0.25]})
    assert custom.mean == (0.5, 0.5, 0.5) and custom.name == "custom"
    assert torch.allclose(to_model_input(pixels, normalization=custom)[0, 0, 0], torch.tensor([-2.0, 2.0]))
    assert Normalization.parse("xrv") is XRV
    assert Normalization.from_json(XRV.to_json()) == XRV
    with pytest.raises(ConfigError, match="unknown normalisation 'xray'"):
        Normalization.parse("xray")
    with pytest.raises(ConfigError, match=r"normalization.std.0: must be > 0"):
        Normalization.parse({"mean": [0.5], "std": [0.0]})
    with pytest.raises(ConfigError, match="normalization.mean: expected 1 or 3 numbers"):
        Normalization.parse({"mean": [0.1, 0.2], "std": [1.0]})


def test_normalisation_travels_in_the_metadata(tmp_path):
    enc = Encoder("resnet18")
    enc.normalization = XRV
    path = tmp_path / "encoder.safetensors"
    first = save_encoder(enc, path)
    assert load_encoder(path).normalization == XRV
    assert save_encoder(enc, tmp_path / "again.safetensors") == first  # byte-reproducible


class _Probe(Objective):
    """Records the pixel range the trainer hands to the objective."""

    needs = {"image"}

    def __init__(self, encoder):
        super().__init__(encoder)
        self.head = torch.nn.Linear(encoder.out_dim, 1)
        self.ranges: list[tuple[float, float]] = []

    def forward(self, batch):
        images = batch["image"]
        self.ranges.append((float(images.min()), float(images.max())))
        return {"loss": self.head(self.encoder(images)).pow(2).mean()}


class _Pixels:
    def __init__(self, n: int):
        self.pixels = np.zeros((n, 32, 32), dtype=np.uint8)
        self.pixels[:, 0, 0] = 255

    def __len__(self):
        return len(self.pixels)

    def __call__(self, i):
        return self.pixels[i]


def test_trainer_feeds_the_encoder_its_own_normalisation(tmp_path):
    encoder = Encoder("resnet18")
    encoder.normalization = XRV
    objective = _Probe(encoder)
    cfg = TrainConfig(max_steps=1, batch_size=4, checkpoint_every=0, log_every=1)
    dataset = RadiographDataset(_Pixels(8), needs=["image"], seed=0)
    Trainer(objective, dataset, cfg, tmp_path, torch.device("cpu"), DistInfo(), 0, 0, "t").fit()
    assert np.allclose(objective.ranges, [(-1024.0, 1024.0)])  # ImageNet would give about -2.1..2.6


# -- ImageNet weights for timm encoders (local cache only) ----------------------------------------


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_timm_imagenet_offline_error_names_model_and_cache(hub_cache):
    with pytest.raises(UserError) as info:
        OBJECTIVES.get("imagenet").preflight("timm:test_vit", {"weights": "DEFAULT"})
    message = str(info.value)
    assert "test_vit.r160_in1k" in message
    assert str(hub_cache) in message and "models--timm--test_vit.r160_in1k" in message
    with pytest.raises(UserError, match="do not exist for vit_tiny_patch16 .*augreg_in21k"):
        OBJECTIVES.get("imagenet").preflight("vit_tiny_patch16", {"weights": "in22k"})


def _place_in_hub_cache(cache: Path, repo: str, state: dict) -> Path:
    """What ``hf download`` leaves behind: a snapshot folder and refs/main naming it."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    save_file(state, str(folder / "snapshots" / commit / "model.safetensors"))
    return folder


def test_timm_imagenet_loads_weights_from_the_local_cache(hub_cache, tmp_path):
    torch.manual_seed(7)
    published = timm.create_model("test_vit", pretrained=False)
    _place_in_hub_cache(hub_cache, "timm/test_vit.r160_in1k", published.state_dict())
    cls = OBJECTIVES.get("imagenet")
    cls.preflight("timm:test_vit", {"weights": "DEFAULT"})
    objective = cls(build_encoder("timm:test_vit"))
    objective.setup(None)
    encoder = objective.encoder
    for key, value in published.state_dict().items():
        assert torch.equal(encoder.model.state_dict()[key], value), key
    assert encoder.normalization == Normalization((0.5,), (0.5,))  # the weights' own mean/std
    save_encoder(encoder, tmp_path / "e.safetensors")
    assert load_encoder(tmp_path / "e.safetensors").normalization == Normalization((0.5,), (0.5,))


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_vit_tiny_runs_captioning_and_clip_through_every_protocol(tmp_path, synthetic_dir):
    from conftest import TINY_CAPTIONING, write_tiny_recipe

    from radtex_bench.cli import main

    train = {"max_steps": 2, "batch_size": 8, "log_every": 1}
    clip = {"width": 32, "heads": 2, "layers": 1, "embed_dim": 16, "vocab_size": 300, "min_frequency": 1}
    recipe = write_tiny_recipe(
        tmp_path / "vit.yaml",
        synthetic_dir,
        [
            {"name": "captioning", "params": TINY_CAPTIONING, "train": train},
            {"name": "clip", "params": clip, "train": train},
        ],
        {
            "budgets": [8],
            "seeds": 1,
            "bootstrap": 10,
            "protocols": ["linear", "knn", "finetune", "zeroshot", "retrieval", "generation"],
            "finetune": {"epochs": 1, "min_steps": 1},
            "generation": {"max_tokens": 6},
        },
        "vit",
    )
    raw = yaml.safe_load(recipe.read_text())
    raw["encoder"]["name"] = "vit_tiny_patch16"
    raw["data"]["pathologies"] = ["Pleural Effusion", "Lung Opacity"]  # both in every synthetic split
    recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu"]) == 0
    summary = [line.split(",") for line in (out / "summary.csv").read_text().splitlines()[1:]]
    cells = {(row[0], row[1]) for row in summary}
    for protocol in ("linear", "knn", "finetune", "zeroshot"):  # a ViT grid and class token through each
        assert {("captioning", protocol), ("clip", protocol)} <= cells, protocol
    assert all(0.0 <= float(row[3]) <= 1.0 for row in summary)  # macro AUROC of every cell
    retrieval = (out / "retrieval.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in retrieval[1:]} == {"captioning", "clip"}
    generation = (out / "generation.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in generation[1:]} == {"captioning"}
    for label in ("captioning", "clip"):
        weights = out / "pretrain" / label / "encoder.safetensors"
        assert read_metadata(weights)["format"] == "timm"
        timm.create_model("vit_tiny_patch16_224").load_state_dict(load_file(str(weights)), strict=True)


# -- plug-in encoders -----------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "encoders.md"


def docs_example() -> str:
    """The plug-in of docs/encoders.md, "Registering your own encoder", exactly as printed."""
    section = DOCS.read_text().split("## Registering your own encoder", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_a_plugin_registers_an_encoder_family(tmp_path, monkeypatch, capsys):
    """The example of docs/encoders.md, as a plug-in module named by the recipe."""
    from radtex_bench.cli import main

    (tmp_path / "my_encoders.py").write_text(docs_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = recipe_from_dict({**_recipe("small_cnn", 64), "plugins": ["my_encoders"]})
    assert recipe.encoder.name == "small_cnn"
    with pytest.raises(ConfigError, match="40 is not a multiple of 16"):
        recipe_from_dict({**_recipe("small_cnn", 40), "plugins": ["my_encoders"]})
    encoder = Encoder("small_cnn").eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        assert encoder.forward_features(x).shape == (2, 64, 4, 4) and encoder(x).shape == (2, 64)
    save_encoder(encoder, tmp_path / "e.safetensors")
    assert read_metadata(tmp_path / "e.safetensors")["format"] == "my_lab"
    with torch.no_grad():
        assert torch.equal(load_encoder(tmp_path / "e.safetensors").eval()(x), encoder(x))
    assert main(["list", "encoders", "--json", "--plugin", "my_encoders"]) == 0
    assert "small_cnn" in json.loads(capsys.readouterr().out)


def test_feature_extraction_feeds_the_encoder_its_own_normalisation(tmp_path):
    """extract_features (every frozen-encoder protocol) and predict (fine-tuning) normalise like training."""
    import pandas as pd
    from PIL import Image

    from radtex_bench.data.table import COLUMNS, ImageTable
    from radtex_bench.evaluation.features import extract_features

    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    paths = []
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    frame = pd.DataFrame({c: [""] * 3 for c in COLUMNS})
    frame["path"], frame["image_id"], frame["patient_id"] = paths, ["a", "b", "c"], ["p", "q", "r"]
    table = ImageTable(frame, np.zeros((3, 0)), [])
    encoder = Encoder("resnet18").eval()
    encoder.normalization = XRV
    features = extract_features(encoder, table, 32, torch.device("cpu"), batch_size=2)
    with torch.no_grad():
        expected = encoder(to_model_input(torch.from_numpy(pixels)[:, None], normalization=XRV)).numpy()
        imagenet = encoder(to_model_input(torch.from_numpy(pixels)[:, None])).numpy()
    assert np.allclose(features, expected, rtol=1e-4, atol=1e-3)
    assert not np.allclose(features, imagenet, rtol=1e-2, atol=1e-2)


def test_vit_tokens_and_position_embeddings_get_no_weight_decay():
    from radtex_bench.engine.optim import param_groups

    objective = _Probe(Encoder("vit_tiny_patch16"))
    groups = {
        g["name"]: {id(p) for p in g["params"]}
        for g in param_groups(objective, objective.encoder, TrainConfig())
    }
    model = objective.encoder.model
    for token in (model.pos_embed, model.cls_token):
        assert id(token) in groups["encoder_no_decay"]
    assert id(model.blocks[0].attn.qkv.weight) in groups["encoder"]
    assert id(model.head.weight) not in groups["encoder"] | groups["encoder_no_decay"]  # frozen


def test_finetune_and_the_text_protocols_feed_the_encoder_its_own_normalisation(tmp_path, monkeypatch):
    """Every protocol that runs the encoder on images (not only feature extraction) normalises them with
    the encoder's weights' metadata, here XRV's, never ImageNet's default."""
    import inspect

    from conftest import write_manifest

    from radtex_bench.data.kinds import DatasetSpec
    from radtex_bench.data.loading import load_table
    from radtex_bench.engine import inference
    from radtex_bench.evaluation.data import build_eval_data
    from radtex_bench.evaluation.protocols import PROTOCOLS, CellTask, EncoderUnderTest
    from radtex_bench.evaluation.protocols import finetune as finetune_module

    write_manifest(tmp_path / "ds", n=60)
    recipe = recipe_from_dict(
        {
            "name": "norm",
            "data": {
                "pretrain": {"kind": "manifest", "root": str(tmp_path / "ds")},
                "pathologies": ["Edema"],
            },
            "encoder": {"name": "resnet18", "image_size": 32},
            "objectives": [{"name": "random"}],
            "evaluation": {"budgets": [8], "seeds": 1},
        }
    )
    table = load_table(DatasetSpec.from_plain(recipe.data.pretrain.to_plain(), "data.pretrain"))
    data = build_eval_data(recipe, table, "data.pretrain")
    seen = []

    def spy(module, name):
        real = getattr(module, name)
        signature = inspect.signature(real)

        def wrapper(*args, **kwargs):
            seen.append((name, signature.bind(*args, **kwargs).arguments.get("normalization")))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    spy(finetune_module, "to_model_input")  # fine-tuning batches
    spy(inference, "to_model_input")  # predict() and every Protocol.image_batches

    class TextModel:
        def text_scores(self, images, reports):
            return torch.zeros(images.shape[0], len(reports)) + images.mean()

        def generate(self, images, beam_size=1, max_tokens=None):
            return ["No acute findings."] * images.shape[0]

    def encoder():
        e = Encoder("resnet18")
        e.normalization = XRV
        return e

    under_test = EncoderUnderTest(
        "x", tmp_path / "e.safetensors", "h", lambda: None, encoder, TextModel, normalization=XRV
    )
    for name in ("finetune", "zeroshot", "retrieval", "generation"):
        protocol_cls = PROTOCOLS.get(name)
        config = recipe.evaluation.section(name)
        if name == "finetune":
            config = type(config)(epochs=1, min_steps=1, batch_size=4)
        protocol = protocol_cls(data, config, 0, torch.device("cpu"), batch_size=16)
        seen.clear()
        protocol.run(CellTask(under_test, 8 if protocol_cls.labelled else 0, 0, data.pool[:8]))
        assert seen and all(n == XRV for _, n in seen), (name, seen)


def test_loading_weights_of_an_encoder_not_registered_here_says_to_import_its_plug_in(tmp_path):
    from safetensors.torch import save_file

    from radtex_bench.encoders import load_encoder

    path = tmp_path / "encoder.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"encoder": "xylophone_net"})
    with pytest.raises(UserError) as info:
        load_encoder(path)
    assert str(info.value).startswith(
        f"{path} holds a 'xylophone_net' encoder, which is not registered here (if a plug-in registers it, "
        "import that module first, as a recipe's plugins: does); known: "
    )
