import torch

from radtex_bench.objectives.captioning import reverse_tokens
from radtex_bench.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, ReportTokenizer, shared_tokenizer

CORPUS = [
    "FINDINGS: Moderate right pleural effusion. Heart size is enlarged. IMPRESSION: Cardiomegaly.",
    "FINDINGS: The lungs are clear. No pneumothorax. IMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: Possible left basilar atelectasis; cannot exclude pneumonia. IMPRESSION: Atelectasis.",
] * 20


def test_round_trip_is_lossless_after_normalisation():
    tok = ReportTokenizer.train(CORPUS, vocab_size=300, min_frequency=1)
    for text in CORPUS[:3] + ["Unseen wörds, ünicode & numbers 12.5 cm!"]:
        ids = tok.encode(text)
        assert all(i >= 4 for i in ids)  # never a special token inside the text
        assert tok.decode(ids) == tok.normalise(text) == text.lower()


def test_a_byte_token_cut_from_its_character_decodes_to_nothing():
    """A generator may emit the first byte of a two-byte character alone: no U+FFFD in the report."""
    tok = ReportTokenizer.train(CORPUS, vocab_size=300, min_frequency=1)
    whole = tok.encode("ö")  # two UTF-8 bytes: two byte-level tokens in this vocabulary
    assert len(whole) == 2 and tok.decode(whole) == "ö"
    heart = tok.encode("heart")
    assert tok.decode([*heart, whole[0]]) == "heart"
    assert tok.decode([whole[1], *heart]) == "heart"


def test_vocabulary_compresses_the_domain():
    tok = ReportTokenizer.train(CORPUS, vocab_size=1000, min_frequency=1)  # 260 slots are bytes + specials
    text = CORPUS[0]
    assert len(tok.encode(text)) < len(text.encode()) / 2  # merges learnt: far fewer tokens than bytes


def test_batch_layout_and_truncation():
    tok = ReportTokenizer.train(CORPUS, vocab_size=300, min_frequency=1)
    batch = tok.batch(["heart size is enlarged.", CORPUS[0]], max_length=8)
    assert batch.shape == (2, 8)
    assert batch[:, 0].tolist() == [BOS_ID, BOS_ID]
    lengths = (batch != PAD_ID).sum(1)
    for row, n in zip(batch, lengths):
        assert row[n - 1] == EOS_ID
        assert (row[n:] == PAD_ID).all()
    assert lengths[1] == 8  # truncated to max_length including BOS and EOS


def test_shared_tokenizer_is_saved_and_reloaded(tmp_path):
    first = shared_tokenizer(tmp_path, CORPUS, 300, 1)
    assert (tmp_path / "tokenizer.json").exists()
    again = shared_tokenizer(tmp_path, ["completely different text"], 300, 1)  # loads, does not retrain
    assert again.encode(CORPUS[1]) == first.encode(CORPUS[1])


def test_reverse_tokens_keeps_specials_and_padding():
    ids = torch.tensor([[BOS_ID, 10, 11, 12, EOS_ID, PAD_ID], [BOS_ID, 20, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    out = reverse_tokens(ids)
    assert out.tolist() == [
        [BOS_ID, 12, 11, 10, EOS_ID, PAD_ID],
        [BOS_ID, 20, EOS_ID, PAD_ID, PAD_ID, PAD_ID],
    ]
