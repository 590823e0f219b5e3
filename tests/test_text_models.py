"""Pretrained text towers from a local Hugging Face folder: clip's text encoder, captioning's decoder."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import write_tiny_recipe
from safetensors.torch import load_file

from radtex_bench.cli import main
from radtex_bench.config import recipe_from_dict
from radtex_bench.encoders import Encoder
from radtex_bench.errors import ConfigError, UserError
from radtex_bench.objectives import OBJECTIVES, SetupContext
from radtex_bench.text.pretrained import PretrainedTokenizer
from radtex_bench.text.tokenizer import BOS_ID, EOS_ID, PAD_ID

WORDS = "findings impression image of nothing acute no heart lung effusion pleural normal size . :".split()


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A tiny random BERT and its WordPiece tokenizer, written with save_pretrained (nothing downloaded)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("bert") / "tiny-bert"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"0123456789p"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    config = BertConfig(
        vocab_size=len(vocab) + 2,  # models often embed more rows than the tokenizer uses
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def context(tmp_path):
    import numpy as np

    return SetupContext(
        reports=["FINDINGS: no effusion. IMPRESSION: normal heart size."] * 4,
        labels=np.zeros((4, 1), dtype=np.float32),
        pathologies=["Edema"],
        out_dir=tmp_path,
        image_size=32,
        seed=0,
    )


def test_tokenizer_uses_the_models_special_tokens(bert_folder):
    tok = PretrainedTokenizer.load(bert_folder)
    ids = tok.batch(["FINDINGS: no effusion.", "heart"], max_length=8)  # [2, L]
    assert ids[0, 0] == BOS_ID and ids[1].tolist()[:3] == [BOS_ID, tok.encode("heart")[0], EOS_ID]
    assert (ids[1, 3:] == PAD_ID).all()
    model_ids = tok.to_model[ids]
    assert model_ids[0, 0] == 2 and model_ids[1, 2] == 3 and model_ids[1, 3] == 0  # [CLS] .. [SEP] [PAD]
    assert tok.decode(ids[0].tolist()) == "findings : no effusion."
    assert tok.vocab_size == len(WORDS) + 5 + 11 + 2
    assert tok.batch(["no " * 20], max_length=6).shape == (1, 6)  # truncated, [SEP] kept
    assert tok.batch(["no " * 20], max_length=6)[0, -1] == EOS_ID


def test_clip_text_encoder_starts_from_the_folder_and_freezes_layers(bert_folder, tmp_path):
    from transformers import BertModel

    reference = BertModel.from_pretrained(bert_folder, local_files_only=True)
    clip = OBJECTIVES.get("clip")(
        Encoder("resnet18"), embed_dim=8, text_model=str(bert_folder), freeze_layers=1, max_length=16
    )
    clip.setup(context(tmp_path))
    tower = clip.text.model
    assert torch.equal(
        tower.encoder.layer[1].attention.self.query.weight,
        reference.encoder.layer[1].attention.self.query.weight,
    )
    assert not tower.embeddings.word_embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in tower.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in tower.encoder.layer[1].parameters())
    batch = {
        "image": torch.randn(4, 3, 32, 32),
        "report": ["no effusion.", "normal heart size.", "nothing acute.", "lung"],
    }
    loss = clip(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert tower.encoder.layer[1].attention.self.query.weight.grad.abs().sum() > 0
    assert clip.text_scores(batch["image"], batch["report"]).shape == (4, 4)
    heads = clip.heads_state_dict()
    assert any(k.startswith("text.model.encoder.layer.1.") for k in heads)


def test_captioning_decoder_from_the_folder(bert_folder, tmp_path):
    captioning = OBJECTIVES.get("captioning")(
        Encoder("resnet18"), text_model=str(bert_folder), bidirectional=True, max_length=16, dropout=0.0
    )
    assert captioning.visual_proj[0].out_features == 32  # the grid goes to the decoder's width
    captioning.setup(context(tmp_path))
    batch = {"image": torch.randn(2, 3, 32, 32), "report": ["no effusion.", "normal heart size."]}
    out = captioning(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and "backward_loss" in out
    layer = captioning.forward_decoder.base.encoder.layer[0]
    assert layer.crossattention.self.query.weight.grad.abs().sum() > 0  # the decoder reads the image
    captioning.eval()
    texts = captioning.generate(batch["image"], beam_size=2, max_tokens=6)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    scores = captioning.text_scores(batch["image"], batch["report"])
    assert scores.shape == (2, 2) and torch.isfinite(scores).all() and (scores <= 0).all()


def test_clip_and_captioning_with_a_local_bert_run_end_to_end_offline(bert_folder, tmp_path, manifest_dir):
    train = {"max_steps": 2, "batch_size": 8, "log_every": 1}
    params = {"embed_dim": 8, "text_model": str(bert_folder), "freeze_layers": 1, "max_length": 32}
    captioning = {"text_model": str(bert_folder), "max_length": 32}
    recipe = write_tiny_recipe(
        tmp_path / "bert.yaml",
        manifest_dir,
        [
            {"name": "clip", "label": "clip-bert", "params": params, "train": train},
            {"name": "captioning", "label": "cap-bert", "params": captioning, "train": train},
        ],
        {
            "budgets": [4],
            "seeds": 1,
            "bootstrap": 0,
            "protocols": ["linear", "generation"],
            "generation": {"max_tokens": 6},
        },
        "bert",
    )
    out = tmp_path / "run"
    assert main(["--quiet", "run", str(recipe), "--out", str(out), "--device", "cpu"]) == 0
    heads = load_file(str(out / "pretrain" / "clip-bert" / "heads.safetensors"))
    assert "text.model.encoder.layer.1.output.dense.weight" in heads
    summary = (out / "summary.csv").read_text()
    assert summary.count("clip-bert,linear") == 1 and summary.count("cap-bert,linear") == 1
    # the decoder built from the folder is rebuilt from heads.safetensors and writes
    generations = (out / "generations.csv").read_text().splitlines()
    assert len(generations) > 1 and all(line.split(",")[0] == "cap-bert" for line in generations[1:])


def test_missing_folder_is_exit_2_naming_it(tmp_path, manifest_dir, capsys):
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        manifest_dir,
        [{"name": "captioning", "params": {"text_model": str(tmp_path / "no-such-model")}}],
        {"budgets": [4], "seeds": 1},
        "r",
    )
    assert main(["--quiet", "run", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: objectives.0.params.text_model: ") and "no-such-model is not a folder" in err
    )
    assert not (tmp_path / "run" / "pretrain").exists()


def test_a_folder_without_weights_is_refused_before_any_work(bert_folder, tmp_path, manifest_dir, capsys):
    folder = tmp_path / "no-weights"
    shutil.copytree(bert_folder, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    recipe = write_tiny_recipe(
        tmp_path / "r.yaml",
        manifest_dir,
        [{"name": "random"}, {"name": "clip", "params": {"text_model": str(folder), "max_length": 32}}],
        {"budgets": [4], "seeds": 1},
        "r",
    )
    assert main(["--quiet", "run", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: objectives.1.params.text_model: no weights in {folder} (looked for")
    assert "\n" not in err
    assert not (tmp_path / "run").exists()  # refused before any work: no splits, no pretrain folder


def test_folder_problems_are_found_before_any_work(bert_folder, tmp_path):
    clip = OBJECTIVES.get("clip")
    no_tokenizer = tmp_path / "weights-only"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(bert_folder / name, no_tokenizer / name)
    with pytest.raises(UserError, match="no tokenizer in .*weights-only"):
        clip.preflight("resnet18", {"text_model": str(no_tokenizer), "max_length": 32, "freeze_layers": 0})
    with pytest.raises(UserError, match=r"config.json not found"):
        clip.preflight("resnet18", {"text_model": str(tmp_path), "max_length": 32, "freeze_layers": 0})
    with pytest.raises(UserError, match="freeze_layers 3 exceeds the model's 2 layers"):
        clip.preflight("resnet18", {"text_model": str(bert_folder), "max_length": 32, "freeze_layers": 3})
    with pytest.raises(UserError, match="at most 64 tokens; lower params.max_length"):
        clip.preflight("resnet18", {"text_model": str(bert_folder), "max_length": 96, "freeze_layers": 0})
    with pytest.raises(ConfigError, match="objectives.0.params.freeze_layers: only applies to a pretrained"):
        recipe_from_dict({"name": "r", "objectives": [{"name": "clip", "params": {"freeze_layers": 1}}]})
