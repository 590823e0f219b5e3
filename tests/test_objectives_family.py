"""The objectives of issue 15: VirTex's pretext tasks, report-mined labels, CoCa, SigLIP, GLoRIA and
lightly's image-only methods; one tiny recipe trains every built-in objective end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CAPTIONING, write_manifest, write_tiny_recipe

from radtex_bench.config import recipe_from_dict
from radtex_bench.encoders import Encoder
from radtex_bench.errors import ConfigError, UserError
from radtex_bench.objectives import OBJECTIVES, SetupContext
from radtex_bench.text.tokenizer import SPECIALS

#: The six objectives before issue 15.
BEFORE = ("captioning", "clip", "simclr", "imagenet", "supervised", "random")
NEW = (
    "token_classification",
    "masked_lm",
    "report_labels",
    "coca",
    "siglip",
    "gloria",
    "moco",
    "byol",
    "dino",
    "vicreg",
    "barlow_twins",
)
REPORTS = [
    "FINDINGS: Large right pleural effusion. IMPRESSION: Effusion.",
    "FINDINGS: Lungs are clear. No pleural effusion. IMPRESSION: Normal chest.",
    "FINDINGS: Enlarged cardiac silhouette. IMPRESSION: Cardiomegaly.",
    "FINDINGS: Possible mild edema. IMPRESSION: Cannot exclude edema.",
]
TEXT = {"width": 32, "heads": 2, "vocab_size": 200, "min_frequency": 1}
#: Tiny sizes: every objective trains in a fraction of a second per step at 32 px.
TINY = {
    "token_classification": {"vocab_size": 200, "min_frequency": 1},
    "masked_lm": TEXT,
    "report_labels": {},
    "coca": {**TEXT, "embed_dim": 16},
    "siglip": {**TEXT, "embed_dim": 16, "layers": 1},
    "gloria": {**TEXT, "embed_dim": 16, "layers": 1},
    "moco": {"hidden_dim": 32, "projection_dim": 16, "queue_size": 16},
    "byol": {"hidden_dim": 32, "projection_dim": 16},
    "dino": {"hidden_dim": 32, "bottleneck_dim": 16, "output_dim": 64},
    "vicreg": {"hidden_dim": 32, "projection_dim": 32},
    "barlow_twins": {"hidden_dim": 32, "projection_dim": 32},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and a busy shared CPU cannot oversubscribe it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(
    name: str, tmp_path: Path, pathologies=("Cardiomegaly", "Pleural Effusion"), uncertain="zeros", **params
):
    torch.manual_seed(0)
    objective = OBJECTIVES.get(name)(Encoder("resnet18"), **{**TINY[name], **params})
    objective.setup(
        SetupContext(
            reports=REPORTS,
            labels=np.zeros((len(REPORTS), len(pathologies)), np.float32),
            pathologies=list(pathologies),
            out_dir=tmp_path,
            image_size=32,
            seed=0,
            uncertain=uncertain,
        )
    )
    return objective


def batch() -> dict:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 32, 32, generator=g)  # [4, 3, 32, 32]
    other = images + 0.1 * torch.randn(4, 3, 32, 32, generator=g)
    return {"image": images, "report": REPORTS, "views": [images, other], "index": torch.arange(4)}


def test_list_objectives_json_has_the_whole_family(capsys):
    from radtex_bench.cli import main

    assert main(["list", "objectives", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert set(NEW) | set(BEFORE) <= set(names)


def test_text_capabilities_of_the_new_objectives():
    # what the zeroshot / retrieval / generation protocols may call
    assert OBJECTIVES.get("coca").capabilities() == {"text_scores", "generate"}
    assert OBJECTIVES.get("siglip").capabilities() == {"text_scores"}
    assert OBJECTIVES.get("gloria").capabilities() == {"text_scores"}
    for name in set(NEW) - {"coca", "siglip", "gloria"}:
        assert OBJECTIVES.get(name).capabilities() == frozenset(), name


#: Loss weights at the edge of their range: a term weighted 0 must still reach its parameters.
ZERO_WEIGHTS = [
    ("coca", {"contrastive_weight": 0.0}),
    ("coca", {"caption_weight": 0.0}),
    ("gloria", {"global_weight": 0.0}),
    ("gloria", {"local_weight": 0.0}),
    ("vicreg", {"variance_weight": 0.0}),
]


@pytest.mark.parametrize("name, params", [(name, {}) for name in NEW] + ZERO_WEIGHTS)
def test_one_step_is_finite_and_reaches_every_trainable_parameter(name, params, tmp_path):
    objective = make(name, tmp_path, **params)
    out = objective(batch())
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert objective.encoder.model.conv1.weight.grad.abs().sum() > 0
    # DDP (without find_unused_parameters) stops at the second step on a parameter that got no gradient
    unreached = [k for k, v in objective.named_parameters() if v.requires_grad and v.grad is None]
    assert not unreached, unreached
    # the text tower, heads and momentum copies are heads, never the exported encoder
    heads = objective.heads_state_dict()
    assert heads and not any(k.startswith("encoder.") for k in heads)


# -- VirTex's pretext tasks --------------------------------------------------------------------------


def test_token_classification_is_virtex_mean_log_probability_of_the_report_tokens(tmp_path):
    objective = make("token_classification", tmp_path).eval()
    data = batch()
    loss = objective(data)["loss"]
    ids = objective.tokens(REPORTS, torch.device("cpu"))
    logprobs = torch.log_softmax(objective.head(objective.encoder(data["image"])), dim=1)
    expected = []
    for row, lp in zip(ids, logprobs):  # VirTex's loop: unique tokens, specials ignored
        unique = [t for t in row.unique().tolist() if t >= len(SPECIALS)]
        expected.append(-lp[unique].mean())
    torch.testing.assert_close(loss, torch.stack(expected).mean(), rtol=1e-5, atol=1e-6)


def test_masked_lm_predicts_only_chosen_word_tokens(tmp_path):
    from radtex_bench.objectives.masked_lm import choose_masked

    objective = make("masked_lm", tmp_path)
    ids = objective.tokens(REPORTS, torch.device("cpu"))  # [4, L]
    torch.manual_seed(3)
    chosen = choose_masked(ids, 1e-6)
    assert chosen.sum(dim=1).tolist() == [1, 1, 1, 1]  # at least one target per report, even at p ~ 0
    assert not chosen[ids < len(SPECIALS)].any()  # never [BOS], [EOS], [PAD]
    everything = choose_masked(ids, 1.0)
    assert torch.equal(everything, ids >= len(SPECIALS))
    inputs = objective.corrupt(ids, everything)
    assert torch.equal(inputs[~everything], ids[~everything])  # the context is untouched
    assert (inputs[everything] == objective.mask_id).float().mean() > 0.5  # mostly [MASK] (80%)
    assert objective.output.weight is objective.embedding.tokens.weight
    out = objective(batch())
    assert 0.0 <= float(out["masked_accuracy"]) <= 1.0


def test_masked_lm_is_conditioned_on_the_image(tmp_path):
    objective = make("masked_lm", tmp_path, dropout=0.0).eval()
    data = batch()
    torch.manual_seed(0)
    a = objective(data)["loss"]
    torch.manual_seed(0)  # the same masks, another image
    b = objective({**data, "image": data["image"].flip(0)})["loss"]
    assert not torch.isclose(a, b)


# -- report_labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy, uncertain_value", [("zeros", 0.0), ("ones", 1.0), ("ignore", None)])
def test_report_labels_mines_the_recipe_pathologies_with_its_uncertain_policy(
    tmp_path, policy, uncertain_value
):
    objective = make("report_labels", tmp_path, pathologies=("Edema", "Pleural Effusion"), uncertain=policy)
    mined = objective.mined.numpy()  # [4 reports, 2 pathologies]
    # effusion: positive, negated, not mentioned, not mentioned
    np.testing.assert_array_equal(mined[:, 1], [1.0, 0.0, np.nan, np.nan])
    edema = mined[:, 0]  # only the 4th report mentions it, uncertainly
    assert np.isnan(edema[:3]).all()
    if uncertain_value is None:
        assert np.isnan(edema[3])
    else:
        assert edema[3] == uncertain_value
    assert objective.head.out_features == 2


def test_report_labels_looks_up_each_batch_row_by_index(tmp_path):
    from radtex_bench.losses import masked_bce

    objective = make("report_labels", tmp_path).eval()
    data = batch()
    rows = torch.tensor([2, 0, 1, 3])  # a shuffled batch: labels must follow the rows, not positions
    loss = objective({**data, "index": rows})["loss"]
    logits = objective.head(objective.encoder(data["image"]))
    torch.testing.assert_close(loss, masked_bce(logits, objective.mined[rows]))


def test_report_labels_refuses_when_the_reports_mention_none_of_the_pathologies(tmp_path):
    with pytest.raises(UserError, match="found none of Pneumothorax"):
        make("report_labels", tmp_path, pathologies=("Pneumothorax",))


def test_report_labels_needs_reports_not_labels():
    cls = OBJECTIVES.get("report_labels")
    assert "report" in cls.needs and "labels" not in cls.needs
    cls.preflight("resnet18", {"labeler": "rule"})
    with pytest.raises(UserError, match="nope"):  # an unknown labeler stops the run before any work
        cls.preflight("resnet18", {"labeler": "nope"})


# -- CoCa, SigLIP, GLoRIA ------------------------------------------------------------------------------


def test_coca_sums_weighted_contrastive_and_caption_losses(tmp_path):
    objective = make("coca", tmp_path, contrastive_weight=0.5, caption_weight=3.0).eval()
    out = objective(batch())
    torch.testing.assert_close(out["loss"], out["contrastive_loss"] + out["caption_loss"])
    plain = make("coca", tmp_path, contrastive_weight=1.0, caption_weight=1.0).eval()(batch())
    torch.testing.assert_close(out["contrastive_loss"], 0.5 * plain["contrastive_loss"])
    torch.testing.assert_close(out["caption_loss"], 3.0 * plain["caption_loss"])


def test_coca_captioning_never_sees_the_token_it_predicts(tmp_path):
    objective = make("coca", tmp_path).eval()
    images = batch()["image"]
    ids = objective.tokens(REPORTS, torch.device("cpu"))
    _, memory = objective.encode_grid(images)
    changed = ids.clone()
    changed[:, 5] = 300 % objective.tokenizer.vocab_size  # alter position 5 only
    a = objective.caption_logits(ids, objective.unimodal_text(ids), memory)
    b = objective.caption_logits(changed, objective.unimodal_text(changed), memory)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # positions before 5 are unaffected
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    assert objective.text_scores(images, REPORTS[:3]).shape == (4, 3)
    for beam_size in (1, 2):  # the generation protocol's call
        texts = objective.generate(images[:2], beam_size=beam_size, max_tokens=6)
        assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_siglip_learns_scale_and_bias_and_clamps_the_scale(tmp_path):
    objective = make("siglip", tmp_path, max_logit_scale=20.0)
    assert math.isclose(objective.logit_scale.exp().item(), 10.0, rel_tol=1e-6)
    assert objective.logit_bias.item() == -10.0
    objective(batch())["loss"].backward()
    assert objective.logit_scale.grad is not None and objective.logit_bias.grad is not None
    with torch.no_grad():
        objective.logit_scale.fill_(10.0)
    objective.after_step(1, 10)
    assert math.isclose(objective.logit_scale.exp().item(), 20.0, rel_tol=1e-5)
    assert objective.text_scores(batch()["image"], REPORTS).shape == (4, 4)


def test_gloria_local_scores_ignore_padding_and_prefer_the_matching_pair():
    from radtex_bench.objectives.gloria import local_scores

    g = torch.Generator().manual_seed(0)
    regions = torch.nn.functional.normalize(torch.randn(3, 4, 8, generator=g), dim=-1)  # [3 images, 4, E]
    words = regions[:, :3].clone()  # report j's words are three of image j's regions  [3, 3, E]
    mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    scores = local_scores(regions, words, mask, attention_scale=20.0, word_scale=5.0)  # [3, 3]
    assert scores.shape == (3, 3)
    assert torch.equal(scores.argmax(dim=0), torch.arange(3))  # each report's best image is its own
    noisy = words.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), 8, generator=g)  # padded words change nothing
    torch.testing.assert_close(local_scores(regions, noisy, mask, 20.0, 5.0), scores)


def test_gloria_weights_its_global_and_local_parts(tmp_path):
    objective = make("gloria", tmp_path, global_weight=0.25, local_weight=2.0).eval()
    out = objective(batch())
    torch.testing.assert_close(out["loss"], 0.25 * out["global_loss"] + 2.0 * out["local_loss"])


def test_gloria_text_scores_in_chunks_equal_scores_at_once(tmp_path, monkeypatch):
    import radtex_bench.objectives.gloria as gloria

    objective = make("gloria", tmp_path).eval()
    images = batch()["image"]
    whole = objective.text_scores(images, REPORTS * 2)  # [4, 8]
    monkeypatch.setattr(gloria, "PAIR_ELEMENTS", 1)  # one report per chunk
    torch.testing.assert_close(objective.text_scores(images, REPORTS * 2), whole)
    assert whole.shape == (4, 8) and torch.equal(whole[:, :4], whole[:, 4:])


# -- lightly's image-only methods and their momentum encoders ------------------------------------------


@pytest.mark.parametrize("name", ["moco", "byol", "dino"])
def test_momentum_update_is_an_ema_of_the_online_weights_on_a_cosine_schedule(name, tmp_path):
    objective = make(name, tmp_path, momentum=0.9, momentum_end=1.0)
    assert not any(p.requires_grad for p in objective.momentum_encoder.parameters())
    assert not any(p.requires_grad for p in objective.momentum_head.parameters())
    online = objective.encoder.model.conv1.weight
    ema = objective.momentum_encoder.model.conv1.weight
    assert torch.equal(online, ema)  # the teacher starts as the student
    with torch.no_grad():
        online.add_(1.0)
    before = ema.clone()
    objective.after_step(1, 11)  # first step: momentum 0.9
    torch.testing.assert_close(ema, 0.9 * before + 0.1 * online)
    assert objective.momentum_at(11, 11) == 1.0  # the last step: momentum_end
    assert 0.9 < objective.momentum_at(6, 11) < 1.0
    heads = objective.heads_state_dict()
    assert "momentum_encoder.model.conv1.weight" in heads and "encoder.model.conv1.weight" not in heads


def test_moco_queue_is_checkpointed_and_restored(tmp_path):
    objective = make("moco", tmp_path)
    objective(batch())  # enqueues 4 keys
    state = objective.state_dict()
    assert "loss_fn.memory_bank.bank" in state and int(state["loss_fn.memory_bank.bank_ptr"]) == 4
    fresh = make("moco", tmp_path / "fresh")
    torch.manual_seed(99)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.queue, objective.queue) and int(fresh.loss_fn.memory_bank.bank_ptr) == 4


@pytest.mark.parametrize(
    "name, params, key",
    [
        ("byol", {"momentum": 0.99, "momentum_end": 0.9}, "momentum_end"),
        ("moco", {"crop_scale": [0.9, 0.5]}, "crop_scale"),
        ("moco", {"queue_size": 0}, "queue_size"),
        ("dino", {"output_dim": 1}, "output_dim"),
        ("coca", {"contrastive_weight": 0, "caption_weight": 0}, "caption_weight"),
        ("coca", {"width": 30, "heads": 4}, "heads"),
        ("siglip", {"init_logit_scale": 200.0}, "init_logit_scale"),
        ("gloria", {"global_weight": 0, "local_weight": 0}, "local_weight"),
        ("masked_lm", {"mask_probability": 0}, "mask_probability"),
        ("vicreg", {"variance_weight": -1}, "variance_weight"),
    ],
)
def test_bad_params_are_refused_when_the_recipe_is_read(name, params, key):
    raw = {"name": "bad", "objectives": [{"name": name, "params": params}]}
    with pytest.raises(ConfigError, match=f"objectives.0.params.{key}"):
        recipe_from_dict(raw)


# -- every built-in objective end to end ---------------------------------------------------------------

FINDINGS = {
    "Cardiomegaly": ("The heart is enlarged.", "Heart size is normal."),
    "Edema": ("There is pulmonary edema.", "No edema."),
}


def write_reporting_manifest(root: Path) -> None:
    """The tiny manifest, with reports that state each image's labels (for report_labels)."""
    write_manifest(root, n=40)
    path = root / "manifest.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        sentences = [FINDINGS[p][0 if row[p] == "1" else 1] for p in FINDINGS if row[p] in ("0", "1")]
        row["report"] = "FINDINGS: " + " ".join(sentences or ["Nothing to report."])
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_every_builtin_objective_finishes_a_tiny_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    from radtex_bench.cli import main
    from radtex_bench.objectives.imagenet import imagenet_weights_file

    weights, _ = imagenet_weights_file("resnet18")  # stands in for the downloaded ImageNet weights
    weights.parent.mkdir(parents=True)
    torch.save(Encoder("resnet18").model.state_dict(), weights)
    write_reporting_manifest(tmp_path / "ds")

    train = {"max_steps": 2, "batch_size": 4, "log_every": 1}
    params = {**TINY, "captioning": TINY_CAPTIONING, "clip": {**TEXT, "embed_dim": 16, "layers": 1}}
    params["simclr"] = {"hidden_dim": 32, "projection_dim": 16}
    names = sorted(BEFORE + NEW)
    objectives = [
        {
            "name": n,
            **({"params": params[n]} if n in params else {}),
            **({} if n in ("imagenet", "random") else {"train": train}),
        }
        for n in names
    ]
    evaluation = {"budgets": [4], "seeds": 1, "bootstrap": 0}
    recipe = write_tiny_recipe(tmp_path / "all.yaml", tmp_path / "ds", objectives, evaluation, "all")
    assert main(["--quiet", "run", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0

    with (tmp_path / "run" / "summary.csv").open() as f:
        labels = {row["objective"] for row in csv.DictReader(f)}
    assert labels == set(names)
    for name in set(names) - {"imagenet", "random"}:
        lines = (tmp_path / "run" / "pretrain" / name / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(m)["step"] for m in lines] == [1, 2], name
        assert all(math.isfinite(json.loads(m)["loss"]) for m in lines), name
