"""A byte-level BPE vocabulary trained locally on the pretraining reports (``tokenizers``).

Nothing is downloaded: the vocabulary is learnt from the recipe's own reports and saved with the run
as ``tokenizer.json``. Text is NFKC-normalised and lower-cased; byte-level pre-tokenisation makes any
text encodable (no unknown characters) and ``decode(encode(t)) == normalise(t)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from ..io import write_text

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


class ReportTokenizer:
    def __init__(self, tokenizer):
        self._tok = tokenizer
        ids = [tokenizer.token_to_id(t) for t in SPECIALS]
        if ids != [PAD_ID, UNK_ID, BOS_ID, EOS_ID]:
            raise ValueError(f"tokenizer special tokens must have ids 0..3, got {ids}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> ReportTokenizer:
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIALS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator((t for t in texts if t), trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path) -> ReportTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        write_text(Path(path), self._tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def normalise(self, text: str) -> str:
        return self._tok.normalizer.normalize_str(text)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (specials dropped). Byte-level tokens that stop inside a multi-byte
        character (a generator can emit any byte token) decode to U+FFFD; they are dropped, since no
        report contains them and they would count as words in BLEU / CIDEr."""
        text = self._tok.decode([int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)])
        return text.replace("\ufffd", "")

    def batch(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """``[B, L]`` long ids ``[BOS] t1..tn [EOS]`` right-padded with PAD; n truncated to fit ``max_length``."""
        encoded = self._tok.encode_batch(list(texts))
        rows = [[BOS_ID, *e.ids[: max_length - 2], EOS_ID] for e in encoded]
        length = max(len(r) for r in rows)
        out = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out


def shared_tokenizer(
    out_dir: Path,
    reports: Sequence[str],
    vocab_size: int,
    min_frequency: int,
    rank: int = 0,
    barrier: Callable[[], None] = lambda: None,
) -> ReportTokenizer:
    """Train once on rank 0 and save to ``out_dir/tokenizer.json``; every rank (and a resume) loads it."""
    path = Path(out_dir) / "tokenizer.json"
    if rank == 0 and not path.exists():
        ReportTokenizer.train(reports, vocab_size=vocab_size, min_frequency=min_frequency).save(path)
    barrier()
    return ReportTokenizer.load(path)
