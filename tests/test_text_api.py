"""The objectives' public text API (clip, captioning), ConVIRT weighting, heads.safetensors, prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from radtex_bench.config import dump_recipe, load_recipe, recipe_from_dict
from radtex_bench.encoders import build_encoder
from radtex_bench.errors import ConfigError, UserError
from radtex_bench.objectives import OBJECTIVES, SetupContext
from radtex_bench.text.tokenizer import BOS_ID, EOS_ID, PAD_ID

REPORTS = [
    "FINDINGS: No effusion. IMPRESSION: Normal chest.",
    "FINDINGS: Large right pleural effusion. IMPRESSION: Effusion.",
    "FINDINGS: The heart is enlarged. IMPRESSION: Cardiomegaly.",
] * 4
TINY = {"width": 32, "heads": 2, "vocab_size": 300, "min_frequency": 1}


def build(name: str, tmp_path, **params):
    torch.manual_seed(0)
    objective = OBJECTIVES.get(name)(build_encoder("resnet18"), **TINY, **params)
    objective.setup(
        SetupContext(
            reports=REPORTS,
            labels=np.zeros((len(REPORTS), 1), dtype=np.float32),
            pathologies=["x"],
            out_dir=tmp_path,
            image_size=32,
            seed=0,
        )
    )
    return objective.eval()


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_capabilities_follow_the_methods_a_class_defines():
    assert OBJECTIVES.get("clip").capabilities() == {"text_scores"}
    assert OBJECTIVES.get("captioning").capabilities() == {"text_scores", "generate"}
    assert OBJECTIVES.get("random").capabilities() == frozenset()
    assert OBJECTIVES.get("simclr").capabilities() == frozenset()


def test_clip_text_scores_are_the_logits_the_loss_trains_on(tmp_path):
    clip = build("clip", tmp_path, embed_dim=16)
    x = images(4)
    scores = clip.text_scores(x, REPORTS[:3])
    assert scores.shape == (4, 3) and scores.dtype == torch.float32
    with torch.no_grad():
        per_image, _ = clip.loss_fn.get_logits(
            clip.encode_image(x), clip.encode_text(REPORTS[:3], x.device), clip.logit_scale.exp()
        )
    assert torch.allclose(scores, per_image, atol=1e-5)
    # Reports are encoded in chunks: the chunk size does not change the scores.
    import radtex_bench.objectives.clip as clip_module

    old, clip_module.TEXT_CHUNK = clip_module.TEXT_CHUNK, 2
    try:
        assert torch.allclose(clip.text_scores(x, REPORTS[:3]), scores, atol=1e-5)
    finally:
        clip_module.TEXT_CHUNK = old


def test_clip_convirt_weighting(tmp_path):
    clip = build("clip", tmp_path, embed_dim=16)
    batch = {"image": images(4), "report": REPORTS[:4]}
    with torch.no_grad():
        symmetric = clip(batch)["loss"]
        i, t = clip.encode_image(batch["image"]), clip.encode_text(batch["report"], torch.device("cpu"))
        logits = clip.logit_scale.exp() * i @ t.T
        target = torch.arange(4)
        a, b = F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)
        assert torch.allclose(symmetric, (a + b) / 2, atol=1e-6)  # 0.5 = open_clip's ClipLoss
        clip.image_to_text_weight = 0.75  # ConVIRT's lambda
        assert torch.allclose(clip(batch)["loss"], 0.75 * a + 0.25 * b, atol=1e-6)
        clip.image_to_text_weight = 0.5000001  # the weighted path equals ClipLoss at 0.5 too
        assert torch.allclose(clip(batch)["loss"], symmetric, atol=1e-5)
    fixed = build("clip", tmp_path / "fixed", embed_dim=16, learn_temperature=False, init_temperature=0.1)
    assert not fixed.logit_scale.requires_grad
    assert torch.isclose(fixed.logit_scale.exp(), torch.tensor(10.0))


def test_clip_weight_is_range_checked():
    recipe = {"name": "w", "objectives": [{"name": "clip", "params": {"image_to_text_weight": 1.5}}]}
    with pytest.raises(ConfigError, match="objectives.0.params.image_to_text_weight"):
        recipe_from_dict(recipe)


def greedy_reference(captioning, x, length):
    """The decoding loop captioning used before beam search: argmax until [EOS]."""
    memory = captioning.memory(x)
    ids = torch.full((x.shape[0], 1), BOS_ID, dtype=torch.long)
    done = torch.zeros(x.shape[0], dtype=torch.bool)
    from radtex_bench.text.towers import causal_mask

    for _ in range(length - 1):
        hidden = captioning.forward_decoder(
            captioning.embedding(ids), memory, tgt_mask=causal_mask(ids.shape[1], ids.device)
        )
        nxt = captioning.output(hidden[:, -1]).argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == EOS_ID
        if done.all():
            break
    return [captioning.tokenizer.decode(row.tolist()) for row in ids]


@pytest.fixture(scope="module")
def trained_captioning(module_tmp):
    """A captioning model that has learnt to write three reports (greedy output is not empty)."""
    captioning = build("captioning", module_tmp, dropout=0.0, bidirectional=False)
    captioning.train()
    captioning.encoder.requires_grad_(False).eval()  # only the decoder learns: fast, and enough here
    optimiser = torch.optim.AdamW([p for p in captioning.parameters() if p.requires_grad], lr=5e-3)
    x = images(3, seed=1) + torch.tensor([-2.0, 0.0, 2.0])[:, None, None, None]  # clearly different images
    for _ in range(60):
        loss = captioning({"image": x, "report": REPORTS[:3]})["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return captioning.eval(), x


def test_captioning_generate_greedy_and_beam(trained_captioning):
    captioning, x = trained_captioning
    greedy = captioning.generate(x, beam_size=1, max_tokens=24)
    assert greedy == greedy_reference(captioning, x, 24)
    assert all(isinstance(t, str) for t in greedy) and any(t.strip() for t in greedy)
    beam = captioning.generate(x, beam_size=3, max_tokens=24)
    assert len(beam) == 3 and all(isinstance(t, str) for t in beam)
    # Beam search keeps the most likely hypotheses: its choice is at least as likely per token.
    s_beam = captioning.text_scores(x, beam).diagonal()
    s_greedy = captioning.text_scores(x, greedy).diagonal()
    assert (s_beam >= s_greedy - 1e-4).all()
    with pytest.raises(ValueError, match="beam_size"):
        captioning.generate(x, beam_size=0)


def test_captioning_text_scores_are_mean_log_likelihoods(trained_captioning):
    captioning, x = trained_captioning
    scores = captioning.text_scores(x, REPORTS[:3])  # [3, 3]
    assert scores.shape == (3, 3) and (scores <= 0).all()
    with torch.no_grad():
        for i in range(3):
            for r in range(3):
                ids = captioning.tokens([REPORTS[r]], x.device)
                nll = captioning._caption_loss(
                    captioning.forward_decoder, ids, captioning.memory(x[i : i + 1])
                )
                assert torch.isclose(scores[i, r], -nll, atol=1e-4)
    # After training on (image i, report i) pairs, each image prefers its own report.
    assert (scores.argmax(dim=1) == torch.arange(3)).all()
    # Scoring in small chunks of pairs gives the same numbers (memory is bounded, results are not).
    import radtex_bench.objectives.captioning as captioning_module

    old, captioning_module.PAIR_TOKENS = captioning_module.PAIR_TOKENS, 7
    try:
        assert torch.allclose(captioning.text_scores(x, REPORTS[:3]), scores, atol=1e-5)
    finally:
        captioning_module.PAIR_TOKENS = old


def test_heads_are_byte_reproducible_and_load_back(tmp_path):
    from safetensors import safe_open

    from radtex_bench.engine.pretrain import load_heads, save_heads

    captioning = build("captioning", tmp_path)
    meta = {"objective": "captioning", "label": "cap"}
    assert save_heads(captioning, tmp_path / "a.safetensors", meta)
    assert save_heads(captioning, tmp_path / "b.safetensors", meta)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with safe_open(str(tmp_path / "a.safetensors"), framework="pt") as f:
        assert f.metadata() == {"objective": "captioning", "label": "cap", "format": "radtex_bench.heads"}
        assert not any(k.startswith("encoder.") for k in f.keys())
    other = build("captioning", tmp_path)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    load_heads(other, tmp_path / "a.safetensors")
    x = images(2)
    other.encoder.load_state_dict(captioning.encoder.state_dict())
    assert torch.equal(other.text_scores(x, REPORTS[:2]), captioning.text_scores(x, REPORTS[:2]))
    # The tied output layer is still the embedding after loading.
    assert other.output.weight is other.embedding.tokens.weight
    # Objectives without heads write nothing (and remove a stale file).
    random_init = OBJECTIVES.get("random")(build_encoder("resnet18"))
    (tmp_path / "r.safetensors").write_bytes(b"stale")
    assert not save_heads(random_init, tmp_path / "r.safetensors", meta)
    assert not (tmp_path / "r.safetensors").exists()
    # A heads file of other settings is refused with the fix.
    with pytest.raises(UserError, match="does not fit the objective"):
        load_heads(OBJECTIVES.get("clip")(build_encoder("resnet18"), **TINY), tmp_path / "a.safetensors")


# -- evaluation.prompts ------------------------------------------------------------------------------


def prompts_recipe(**evaluation):
    return {
        "name": "p",
        "data": {"pathologies": ["Cardiomegaly", "Edema"]},
        "objectives": [{"name": "random"}],
        "evaluation": {"protocols": ["zeroshot"], **evaluation},
    }


def test_default_prompts_cover_chexpert_and_user_entries_replace_them():
    from radtex_bench.data.labels import CHEXPERT_14
    from radtex_bench.evaluation.prompts import DEFAULT_PROMPTS

    assert set(DEFAULT_PROMPTS) == set(CHEXPERT_14)
    recipe = recipe_from_dict(
        prompts_recipe(prompts={"Edema": {"positive": ["wet lungs"], "negative": ["dry"]}})
    )
    section = recipe.evaluation.section("zeroshot")
    assert section.prompts["Edema"].positive == ("wet lungs",)
    assert section.prompts["Cardiomegaly"] == DEFAULT_PROMPTS["Cardiomegaly"]
    default = recipe_from_dict(prompts_recipe()).evaluation.section("zeroshot")
    assert default.prompts["Edema"] == DEFAULT_PROMPTS["Edema"]


@pytest.mark.parametrize(
    "evaluation, key",
    [
        ({"pathologies": ["Cardiomegaly", "Nodule"]}, "evaluation.prompts"),
        (
            {"prompts": {"Cardiomegally": {"positive": ["a"], "negative": ["b"]}}},
            "evaluation.prompts.Cardiomegally",
        ),
        ({"prompts": {"Edema": {"positive": [], "negative": ["b"]}}}, "evaluation.prompts.Edema.positive"),
        (
            {"prompts": {"Edema": {"positive": ["  "], "negative": ["b"]}}},
            "evaluation.prompts.Edema.positive.0",
        ),
        ({"prompts": {"Edema": {"positive": ["a"]}}}, "evaluation.prompts.Edema.negative"),
        ({"generation": {"labeler": "chexpertt"}}, "evaluation.generation.labeler"),
        ({"retrieval": {"max_candidates": 5}}, "evaluation.retrieval.max_candidates"),
        ({"generation": {"beam_size": 0}}, "evaluation.generation.beam_size"),
    ],
)
def test_bad_text_settings_are_refused_naming_the_key(evaluation, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        recipe_from_dict(prompts_recipe(**evaluation))


def test_a_pathology_without_prompts_is_fine_when_zeroshot_is_not_listed():
    recipe = prompts_recipe(pathologies=["Cardiomegaly", "Nodule"], protocols=["linear"])
    recipe_from_dict(recipe)


def test_resolved_recipe_round_trips_without_the_shared_prompts(tmp_path):
    recipe = recipe_from_dict(prompts_recipe(prompts={"Edema": {"positive": ["wet"], "negative": ["dry"]}}))
    text = dump_recipe(recipe)
    assert "wet" in text and text.count("positive") == 1  # in evaluation.prompts only, not in the section
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    again = load_recipe(path)
    assert again.evaluation.section("zeroshot") == recipe.evaluation.section("zeroshot")
