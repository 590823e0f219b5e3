"""``f1chexbert``: the CheXbert report labeler (Smit et al., *CheXbert: Combining Automatic Labelers
and Expert Annotations for Accurate Radiology Report Labeling Using BERT*, EMNLP 2020), from local files.

It never downloads. It needs two things on disk, under ``$RADTEX_BENCH_CACHE/chexbert/`` (default
``~/.cache/radtex_bench/chexbert/``):

* ``chexbert.pth``: the CheXbert checkpoint (``{"model_state_dict": ...}``), the file the ``f1chexbert``
  package fetches from the Hugging Face repository ``StanfordAIMI/RRG_scorers``;
* ``bert-base-uncased/``: that model's ``config.json`` and ``vocab.txt`` (CheXbert's tokenizer and
  architecture).

The model is CheXbert's: BERT-base, dropout, 14 linear heads on the ``[CLS]`` state; heads 1-13 have 4
classes (blank, positive, negative, uncertain), the last (No Finding) 2 (blank, positive). It is built
here with ``transformers`` (a dependency already) instead of through the ``f1chexbert`` package, whose
constructor downloads the checkpoint and the tokenizer from the Hub.

tests/test_labeler.py runs it on a tiny random BERT saved in this layout (no weights ship with the
project); it has not been run against the released checkpoint here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...data.labels import CHEXPERT_14
from ...errors import UserError
from .base import Labeler, register_labeler

#: CheXbert's head order: CheXpert's, with No Finding moved last.
HEADS = (*CHEXPERT_14[1:], CHEXPERT_14[0])
#: CheXbert class index -> CheXpert value (0 blank, 1 positive, 2 negative, 3 uncertain).
_CLASS_VALUE = np.array([np.nan, 1.0, 0.0, -1.0], dtype=np.float32)


def chexbert_folder() -> Path:
    """``$RADTEX_BENCH_CACHE/chexbert``, else ``$XDG_CACHE_HOME/radtex_bench/chexbert``, else
    ``~/.cache/radtex_bench/chexbert`` (the same cache root as the synthetic dataset)."""
    if os.environ.get("RADTEX_BENCH_CACHE"):
        root = Path(os.environ["RADTEX_BENCH_CACHE"]).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "radtex_bench"
    return root / "chexbert"


def required_files() -> tuple[Path, Path]:
    """(checkpoint file, BERT folder) the ``f1chexbert`` labeler reads."""
    folder = chexbert_folder()
    return folder / "chexbert.pth", folder / "bert-base-uncased"


@register_labeler("f1chexbert")
class CheXbertLabeler(Labeler):
    """CheXbert (BERT-base, 14 heads) on local weights; raises ``UserError`` naming what to place where."""

    name = "f1chexbert"

    def __init__(self, device: str | None = None, batch_size: int = 32):
        weights, bert = required_files()
        if not weights.is_file():
            raise UserError(
                f"labeler f1chexbert: weights file {weights} not found; it is never downloaded: get "
                f"chexbert.pth (the f1chexbert package's checkpoint, Hugging Face StanfordAIMI/RRG_scorers) "
                f"and place it in {weights.parent} (set RADTEX_BENCH_CACHE to use another folder), or use "
                "the 'rule' labeler"
            )
        if not ((bert / "config.json").is_file() and (bert / "vocab.txt").is_file()):
            raise UserError(
                f"labeler f1chexbert: {bert} must hold bert-base-uncased's config.json and vocab.txt "
                "(CheXbert's tokenizer); copy them there from a Hugging Face download, or use the 'rule' "
                "labeler"
            )
        self._load(weights, bert, device, batch_size)

    def _load(self, weights: Path, bert: Path, device: str | None, batch_size: int) -> None:
        import torch
        from torch import nn
        from transformers import BertConfig, BertModel, BertTokenizerFast

        class _CheXbert(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.bert = BertModel(config)
                self.dropout = nn.Dropout(0.1)
                hidden = config.hidden_size
                self.linear_heads = nn.ModuleList(
                    [nn.Linear(hidden, 4) for _ in range(13)] + [nn.Linear(hidden, 2)]
                )

            def forward(self, ids, mask):
                cls = self.dropout(self.bert(ids, attention_mask=mask)[0][:, 0])
                return [head(cls) for head in self.linear_heads]

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        self.tokenizer = BertTokenizerFast.from_pretrained(str(bert), local_files_only=True)
        model = _CheXbert(BertConfig.from_pretrained(str(bert), local_files_only=True))
        try:
            checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated download, or another file under that name
            # only the exception's name: torch's own messages run over several lines
            raise UserError(
                f"labeler f1chexbert: cannot read {weights} as a CheXbert checkpoint "
                f"({type(exc).__name__}); get chexbert.pth again"
            ) from None
        state = checkpoint.get("model_state_dict") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise UserError(
                f"labeler f1chexbert: {weights} has no 'model_state_dict'; it is not a CheXbert checkpoint"
            )
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from nn.DataParallel
        own = model.state_dict()
        # checkpoints saved under transformers 3.x-4.30 carry position_ids, a buffer newer versions
        # rebuild; every weight must be there, with the shape config.json gives it
        buffers = ("position_ids", "token_type_ids")  # rebuilt by the model when absent
        missing = [k for k in own if k not in state and not k.endswith(buffers)]
        unexpected = [k for k in state if k not in own and not k.endswith(buffers)]
        resized = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
        if missing or unexpected or resized:
            raise UserError(
                f"labeler f1chexbert: {weights} is not a CheXbert checkpoint for {bert / 'config.json'} "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}, other shape {resized[:3]})"
            )
        model.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
        self.model = model.to(self.device).eval()

    def label_reports(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        from .rules import prepare

        out = np.full((len(texts), len(CHEXPERT_14)), np.nan, dtype=np.float32)
        columns = [CHEXPERT_14.index(h) for h in HEADS]
        docs = [prepare(t) for t in texts]
        for start in range(0, len(docs), self.batch_size):
            chunk = docs[start : start + self.batch_size]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=512, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
            classes = np.stack([lg.argmax(dim=1).cpu().numpy() for lg in logits], axis=1)  # [B, 14]
            out[start : start + len(chunk), columns] = _CLASS_VALUE[classes]
        out[[i for i, d in enumerate(docs) if not d]] = np.nan
        return out
