"""Report-generation metrics: equality with pycocoevalcap, bootstrap = explicit resampling, edge cases.

pycocoevalcap (the ``test`` extra) is the oracle for BLEU-1..4, ROUGE-L and CIDEr; it is fed the
strings our tokenizer produced, joined by spaces (its own tokenizer needs Java). The tokenizer is
compared with the Java PTBTokenizer that pycocoevalcap ships only where ``java`` is on PATH.
"""

from __future__ import annotations

import math
import shutil
import time

import numpy as np
import pytest

from radtex_bench.text.metrics import (
    METRICS,
    DocumentFrequency,
    _lcs_length,
    bootstrap_scores,
    corpus_scores,
    generation_stats,
    tokenize,
)

# Realistic report sentences: findings, impressions, devices, numbers, abbreviations, brackets,
# de-identification blanks, upper case, run-on sentences.
SENTENCES = [
    "FINDINGS: PA and lateral views of the chest were obtained. There is a small left-sided pleural "
    "effusion. No pneumothorax.",
    "IMPRESSION: 1. Mild cardiomegaly (stable). 2. ET tube 4.5 cm above the carina; NG tube in the stomach.",
    "Compared to the prior study dated ___, there is no significant interval change.",
    "The endotracheal tube tip is 3.2 cm above the carina. Right IJ central venous catheter terminates in "
    "the mid SVC.",
    "Heart size is top-normal. Mediastinal and hilar contours are unremarkable.",
    "There is mild pulmonary vascular congestion, without frank pulmonary edema.",
    "Bibasilar opacities, likely atelectasis, though infection cannot be excluded.",
    "No focal consolidation, pleural effusion, or pneumothorax is seen.",
    "Status post median sternotomy and CABG. Sternal wires are intact.",
    "Left lower lobe opacity may represent atelectasis vs. pneumonia.",
    "Recommend follow-up CT. Clinical correlation is advised.",
    "Patchy opacity at the right lung base (series 2, image 45) is concerning for aspiration.",
    "A 1.5cm nodule projects over the left upper lobe; comparison with outside films is recommended.",
    "Degenerative changes of the thoracic spine are noted, e.g. osteophytes at T7-T8.",
    "Left PICC line tip at the cavoatrial junction. Dobhoff tube courses below the diaphragm, tip not "
    "visualized.",
    "Lungs are hyperinflated, consistent with COPD/emphysema.",
    "Worsening right upper lobe consolidation -- likely pneumonia.",
    "Moderate-to-large right pleural effusion with adjacent compressive atelectasis.",
    "The patient's heart size is enlarged; the lungs' bases are clear.",
    "The heart doesn't appear enlarged. There's no effusion. Can't exclude small pneumothorax.",
    "Small bilateral effusions (R>L). Interstitial markings are increased ~10% compared with prior.",
    "Heart size is normal.The lungs are clear.No effusion.",
    "Findings were discussed with Dr. ___ by telephone at 4:15 p.m. on ___.",
    "NO ACUTE CARDIOPULMONARY PROCESS. LEFT LUNG MASS. RECOMMEND CT.",
    "There is a 2.3 x 1.8 cm mass in the left upper lobe, new since ___ (previously 1.2 cm).",
    "Severe cardiomegaly, ?pericardial effusion. Pulmonary edema has improved since yesterday.",
    "Pacemaker/ICD with leads in the RA and RV.",
    "Multifocal opacities - right > left - concerning for multifocal pneumonia.",
    "The lungs are clear.",
    "No acute cardiopulmonary process.",
    "No acute intrathoracic process.",
    "Heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Lungs clear.",
    "Normal.",
    "Stable.",
    "",
]

# (generated, reference) pairs, one per image: exact matches, near misses, repeats of the same pair,
# one shared reference with different candidates, very short and long, empty on either or both sides.
PAIRS = [
    (SENTENCES[31], SENTENCES[31]),
    (SENTENCES[29], SENTENCES[30]),
    (SENTENCES[29], SENTENCES[30]),  # a repeated pair
    (SENTENCES[31], SENTENCES[0]),
    (SENTENCES[1], SENTENCES[1]),
    (SENTENCES[7], SENTENCES[0]),
    (SENTENCES[28], SENTENCES[32]),
    (SENTENCES[32], SENTENCES[28]),
    (SENTENCES[32], SENTENCES[32]),
    (SENTENCES[5], SENTENCES[6]),
    (SENTENCES[6], SENTENCES[5]),
    (SENTENCES[3], SENTENCES[14]),
    (SENTENCES[10], SENTENCES[23]),
    (SENTENCES[23], SENTENCES[10]),
    (SENTENCES[24], SENTENCES[12]),
    (SENTENCES[12], SENTENCES[24]),
    (SENTENCES[17], SENTENCES[0]),
    (SENTENCES[0], SENTENCES[17]),
    (SENTENCES[21], SENTENCES[32]),
    (SENTENCES[19], SENTENCES[18]),
    (SENTENCES[20], SENTENCES[25]),
    (SENTENCES[33], SENTENCES[28]),  # very short vs short
    (SENTENCES[34], SENTENCES[4]),
    (SENTENCES[35], SENTENCES[34]),
    (SENTENCES[4], SENTENCES[4]),
    (SENTENCES[2], SENTENCES[2]),
    (SENTENCES[8], SENTENCES[26]),
    (SENTENCES[9], SENTENCES[15]),
    (SENTENCES[11], SENTENCES[13]),
    (SENTENCES[16], SENTENCES[27]),
    (SENTENCES[22], SENTENCES[22]),
    ("", SENTENCES[28]),  # empty generation
    (SENTENCES[28], ""),  # empty reference
    ("", ""),  # both empty
    (" ".join(SENTENCES[:6]), " ".join(SENTENCES[2:9])),  # long reports
    (SENTENCES[31], SENTENCES[31]),  # repeat of the first pair
]

TOL = 1e-9


# ----------------------------------------------------------------------------------------------
# pycocoevalcap oracle
# ----------------------------------------------------------------------------------------------


def _coco(gen: list[str], refs: list[str]) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """pycocoevalcap's corpus scores, per-image ROUGE-L and per-image CIDEr on our tokens."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [" ".join(tokenize(g))] for i, g in enumerate(gen)}
    gts = {i: [" ".join(tokenize(r))] for i, r in enumerate(refs)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    scores = {f"bleu_{k + 1}": float(bleu[k]) for k in range(4)}
    scores.update(rouge_l=float(rouge), cider=float(cider))
    return scores, np.asarray(rouge_each, dtype=float), np.asarray(cider_each, dtype=float)


def _assert_scores_close(ours: dict[str, float], theirs: dict[str, float], tol: float = TOL) -> None:
    assert set(ours) == set(METRICS)
    for name in METRICS:
        assert math.isclose(ours[name], theirs[name], rel_tol=tol, abs_tol=tol), (
            name,
            ours[name],
            theirs[name],
        )


def _random_corpus(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """Pairs of pool sentences, the candidate sometimes a word-dropped / shuffled copy of the reference."""
    pool = [s for s in SENTENCES if s]
    gen, refs = [], []
    for _ in range(n):
        ref = pool[int(rng.integers(len(pool)))]
        u = rng.random()
        if u < 0.3:
            words = ref.split()
            keep = [w for w in words if rng.random() > 0.3]
            gen.append(" ".join(keep))
        elif u < 0.4:
            words = ref.split()
            rng.shuffle(words)
            gen.append(" ".join(words))
        elif u < 0.5:
            gen.append(ref)
        elif u < 0.53:
            gen.append("")
        else:
            gen.append(pool[int(rng.integers(len(pool)))])
        refs.append(ref if rng.random() > 0.03 else "")
    return gen, refs


# ----------------------------------------------------------------------------------------------
# equality with pycocoevalcap
# ----------------------------------------------------------------------------------------------


def test_corpus_scores_match_pycocoevalcap():
    gen, refs = [g for g, _ in PAIRS], [r for _, r in PAIRS]
    theirs, rouge_each, cider_each = _coco(gen, refs)
    stats = generation_stats(gen, refs)
    _assert_scores_close(corpus_scores(stats), theirs)
    np.testing.assert_allclose(stats.rouge_l, rouge_each, rtol=0, atol=TOL)
    np.testing.assert_allclose(stats.cider, cider_each, rtol=0, atol=TOL)
    # sanity: the metrics are not degenerate on this set
    assert 0.1 < theirs["bleu_4"] < 0.9 and 0.2 < theirs["rouge_l"] < 0.95 and theirs["cider"] > 1.0


@pytest.mark.parametrize("seed", range(6))
def test_random_corpora_match_pycocoevalcap(seed):
    rng = np.random.default_rng(seed)
    gen, refs = _random_corpus(rng, int(rng.integers(2, 90)))
    theirs, rouge_each, cider_each = _coco(gen, refs)
    stats = generation_stats(gen, refs)
    _assert_scores_close(corpus_scores(stats), theirs)
    np.testing.assert_allclose(stats.cider, cider_each, rtol=0, atol=TOL)


def test_bleu_sufficient_statistics_match_pycocoevalcap_cook_test():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

    gen, refs = [g for g, _ in PAIRS], [r for _, r in PAIRS]
    stats = generation_stats(gen, refs)
    for i, (g, r) in enumerate(PAIRS):
        cooked = cook_test(" ".join(tokenize(g)), cook_refs([" ".join(tokenize(r))]))
        assert list(stats.bleu_matches[i]) == cooked["correct"]
        assert list(stats.bleu_counts[i]) == cooked["guess"]
        assert stats.hyp_len[i] == cooked["testlen"] and [stats.ref_len[i]] == cooked["reflen"]


def test_single_image_and_no_match_corpora_match_pycocoevalcap():
    # every reference empty: pycocoevalcap's CIDEr fails (max() of no document frequencies); ours is 0
    gen, refs = ["Normal.", "Stable."], ["", ""]
    ours = corpus_scores(generation_stats(gen, refs))
    assert ours["cider"] == 0.0
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [" ".join(tokenize(g))] for i, g in enumerate(gen)}
    gts = {i: [" ".join(tokenize(r))] for i, r in enumerate(refs)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    theirs = {f"bleu_{k + 1}": bleu[k] for k in range(4)} | {"rouge_l": Rouge().compute_score(gts, res)[0]}
    for name, value in theirs.items():
        assert math.isclose(ours[name], value, rel_tol=TOL, abs_tol=TOL), name
    # one image: CIDEr's IDF is log(1) - log(1) = 0 for every reference n-gram -> 0
    for gen, refs in [
        (["The lungs are clear."], ["The lungs are clear."]),
        (["Cardiomegaly."], ["No pneumothorax."]),  # nothing matches: BLEU ~ 0 via the 1e-15 guard
        (["", ""], ["Lungs clear.", "Normal."]),  # empty candidates only: brevity penalty exp(-huge) = 0
    ]:
        theirs, _, _ = _coco(gen, refs)
        _assert_scores_close(corpus_scores(generation_stats(gen, refs)), theirs)


def test_lcs_matches_pycocoevalcap_dynamic_programme():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.rouge.rouge import my_lcs

    rng = np.random.default_rng(0)
    vocab = ["the", "lungs", "are", "clear", "no", "effusion", "heart", "-lrb-", ""]
    for _ in range(300):
        a = [vocab[i] for i in rng.integers(len(vocab), size=int(rng.integers(0, 40)))]
        b = [vocab[i] for i in rng.integers(len(vocab), size=int(rng.integers(0, 40)))]
        assert _lcs_length(a, b) == my_lcs(a, b) == _lcs_length(b, a)


# ----------------------------------------------------------------------------------------------
# bootstrap = explicit resampling
# ----------------------------------------------------------------------------------------------


def _resample(items: list[str], w: np.ndarray) -> list[str]:
    return [x for x, k in zip(items, w) for _ in range(int(k))]


def _bootstrap_case():
    gen, refs = [g for g, _ in PAIRS], [r for _, r in PAIRS]
    stats = generation_stats(gen, refs)
    n = len(PAIRS)
    weights = np.random.default_rng(1).multinomial(n, np.full(n, 1 / n), size=12)
    weights[3] = 0
    weights[3, 5] = 1  # a one-image replicate
    weights[4] = 0
    weights[4, [31, 33]] = [2, 1]  # only empty generations / references
    boot = bootstrap_scores(stats, weights)
    assert set(boot) == set(METRICS) and all(v.shape == (12,) for v in boot.values())
    return gen, refs, stats, weights, boot


def test_bootstrap_equals_our_scorer_on_explicitly_resampled_lists():
    # Every metric, CIDEr's IDF held at the full set's: the bootstrap resamples images, not the IDF.
    gen, refs, stats, weights, boot = _bootstrap_case()
    for b, w in enumerate(weights):
        g_b, r_b = _resample(gen, w), _resample(refs, w)
        fixed = corpus_scores(generation_stats(g_b, r_b, document_frequency=stats.document_frequency))
        _assert_scores_close({k: float(v[b]) for k, v in boot.items()}, fixed)


def test_bootstrap_equals_pycocoevalcap_on_explicitly_resampled_lists():
    # BLEU and ROUGE-L of a replicate are pycocoevalcap's on the resampled list. Its CIDEr recomputes the
    # IDF from the resample (a duplicated image counts twice in df and N): that is what our scorer gives
    # when not handed a fixed IDF, and not what the bootstrap holds fixed.
    gen, refs, _, weights, boot = _bootstrap_case()
    for b, w in enumerate(weights):
        g_b, r_b = _resample(gen, w), _resample(refs, w)
        theirs, _, _ = _coco(g_b, r_b)
        for name in METRICS[:5]:
            assert math.isclose(boot[name][b], theirs[name], rel_tol=TOL, abs_tol=TOL), (b, name)
        recomputed_idf = corpus_scores(generation_stats(g_b, r_b))["cider"]
        assert math.isclose(recomputed_idf, theirs["cider"], rel_tol=TOL, abs_tol=TOL)


def test_bootstrap_all_zero_replicate_is_nan_and_ones_replicate_is_corpus():
    gen, refs = [g for g, _ in PAIRS], [r for _, r in PAIRS]
    stats = generation_stats(gen, refs)
    weights = np.zeros((3, len(PAIRS)), dtype=np.int32)
    weights[1] = 1
    weights[2] = 3  # every image three times: BLEU, ROUGE-L and CIDEr (fixed IDF) unchanged
    boot = bootstrap_scores(stats, weights)
    corpus = corpus_scores(stats)
    for name in METRICS:
        assert np.isnan(boot[name][0])
        assert math.isclose(boot[name][1], corpus[name], rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(boot[name][2], corpus[name], rel_tol=1e-12, abs_tol=1e-12)


def test_bootstrap_chunking_gives_the_same_replicates(monkeypatch):
    import radtex_bench.text.metrics as m

    gen, refs = _random_corpus(np.random.default_rng(3), 50)
    stats = generation_stats(gen, refs)
    weights = np.random.default_rng(4).multinomial(50, np.full(50, 1 / 50), size=40)
    whole = bootstrap_scores(stats, weights)
    monkeypatch.setattr(m, "_CHUNK_CELLS", 7 * 50)  # 7 replicates per chunk, last chunk partial
    chunked = bootstrap_scores(stats, weights)
    for name in METRICS:
        np.testing.assert_array_equal(whole[name], chunked[name])


def test_bootstrap_is_fast_for_600_images_and_1000_replicates():
    gen, refs = _random_corpus(np.random.default_rng(5), 600)
    stats = generation_stats(gen, refs)
    weights = np.random.default_rng(6).multinomial(600, np.full(600, 1 / 600), size=1000).astype(np.int32)
    start = time.perf_counter()
    boot = bootstrap_scores(stats, weights)
    elapsed = time.perf_counter() - start
    assert all(v.shape == (1000,) and np.all(np.isfinite(v)) for v in boot.values())
    assert elapsed < 2.0, f"1000 replicates of 600 images took {elapsed:.2f} s"


# ----------------------------------------------------------------------------------------------
# edge cases and input checks
# ----------------------------------------------------------------------------------------------


def test_no_images_gives_nan():
    stats = generation_stats([], [])
    assert stats.n_images == 0
    assert all(math.isnan(v) for v in corpus_scores(stats).values())
    boot = bootstrap_scores(stats, np.zeros((4, 0), dtype=np.int64))
    assert all(v.shape == (4,) and np.all(np.isnan(v)) for v in boot.values())
    assert all(v.shape == (0,) for v in bootstrap_scores(stats, np.zeros((0, 0), dtype=int)).values())


def test_empty_texts():
    stats = generation_stats(["", "The lungs are clear.", ""], ["", "", "No effusion."])
    assert list(stats.hyp_len) == [0, 4, 0] and list(stats.ref_len) == [0, 0, 2]
    # as pycocoevalcap: an empty text is one empty token, so empty vs empty has ROUGE-L 1
    assert list(stats.rouge_l) == [1.0, 0.0, 0.0]
    assert list(stats.cider) == [0.0, 0.0, 0.0]
    scores = corpus_scores(stats)
    assert all(np.isfinite(v) for v in scores.values())


def test_fixed_document_frequency_is_used():
    gen = ["The lungs are clear.", "Small left effusion."]
    refs = ["The lungs are clear.", "Small right effusion."]
    own = generation_stats(gen, refs)
    assert own.document_frequency.n_documents == 2
    assert own.document_frequency.counts[("the", "lungs")] == 1
    df = DocumentFrequency.from_references([tokenize(r) for r in refs * 5])
    assert df.n_documents == 10 and df.counts[("effusion",)] == 5
    fixed = generation_stats(gen, refs, document_frequency=df)
    assert fixed.document_frequency is df
    assert not np.allclose(fixed.cider, own.cider)
    with pytest.raises(ValueError, match="exceeds"):
        DocumentFrequency(counts={("a",): 3}, n_documents=2)


def test_input_checks():
    with pytest.raises(ValueError, match="one entry per image"):
        generation_stats(["a"], ["a", "b"])
    with pytest.raises(TypeError, match=r"generated\[1\]"):
        generation_stats(["a", None], ["a", "b"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of strings"):
        generation_stats("a report", "a report")  # type: ignore[arg-type]
    stats = generation_stats(["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match=r"\[B, N=2\]"):
        bootstrap_scores(stats, np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"\[B, N=2\]"):
        bootstrap_scores(stats, np.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        bootstrap_scores(stats, np.array([[1, -1]]))
    with pytest.raises(ValueError, match="finite"):
        bootstrap_scores(stats, np.array([[1.0, np.nan]]))


# ----------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------

# Expected tokens as CoreNLP 3.4.1's PTBTokenizer (-preserveLines -lowerCase) + pycocoevalcap's
# punctuation filter produce them (checked with Java).
TOKENIZED = [
    ("Mild cardiomegaly (stable). No effusion.", "mild cardiomegaly -lrb- stable -rrb- no effusion"),
    (
        "IMPRESSION: 1. ET tube 4.5 cm above the carina; NG tube.",
        "impression 1 et tube 4.5 cm above the carina ng tube",
    ),
    ("Small left-sided effusion -- likely chronic...", "small left-sided effusion likely chronic"),
    (
        "Heart size is normal.The lungs are clear.No effusion.",
        "heart size is normal.the lungs are clear.no effusion",
    ),
    (
        "The patient's heart doesn't appear enlarged; cannot exclude it.",
        "the patient 's heart does n't appear enlarged can not exclude it",
    ),
    (
        "e.g. at 10:30 a.m. vs. 4:15 p.m. on 01/02/2023, Dr. Smith",
        "e.g. at 10:30 a.m. vs. 4:15 p.m. on 01/02/2023 dr. smith",
    ),
    ("Recommend CT. LEFT LUNG MASS. There is a mass.", "recommend ct. left lung mass. there is a mass"),
    (
        "A 2.5cm or 3cm nodule, ~10% larger [unchanged] {x}",
        "a 2.5 cm or 3cm nodule ~ 10 % larger -lsb- unchanged -rsb- -lcb- x -rcb-",
    ),
    ("Lines/tubes: R IJ, s/p CABG w/ AP/PA views.", "lines/tubes r ij s/p cabg w / ap/pa views"),
    ('"Ground-glass" opacities? Yes!! No?!', "ground-glass opacities yes !! no ?!"),
    ("No. 5 and no. The fig. 3 approx. 4 mm", "no. 5 and no the fig. 3 approx 4 mm"),
    ("Findings: A. The heart. B. lungs", "findings a the heart b. lungs"),
    ("R>L, +/- effusion, 5° tilt, ≥ 2 cm, ___-year-old", "r > l + / effusion 5 ° tilt ≥ 2 cm ___ year-old"),
    ("", ""),
    ("   .  ,  ;  ", ""),
]


@pytest.mark.parametrize(("text", "expected"), TOKENIZED)
def test_tokenize_follows_ptb_and_coco_conventions(text, expected):
    assert tokenize(text) == expected.split()


def test_tokenize_matches_java_ptbtokenizer_when_java_is_available(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("java not on PATH")
    pytest.importorskip("pycocoevalcap")
    import subprocess
    from pathlib import Path

    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    jar = Path(ptb.__file__).with_name(ptb.STANFORD_CORENLP_3_4_1_JAR)
    lines = [s for s in SENTENCES if s] + [t for t, _ in TOKENIZED if t.strip()]
    src = tmp_path / "captions.txt"
    src.write_text("\n".join(lines), encoding="utf-8")
    cmd = [
        "java",
        "-cp",
        str(jar),
        "edu.stanford.nlp.process.PTBTokenizer",
        "-preserveLines",
        "-lowerCase",
        str(src),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=120, check=True)
    java_lines = out.stdout.split("\n")[: len(lines)]
    for line, java in zip(lines, java_lines):
        expected = [w for w in java.rstrip().split(" ") if w and w not in ptb.PUNCTUATIONS]
        assert tokenize(line) == expected, line
