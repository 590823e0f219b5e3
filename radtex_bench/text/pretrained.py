"""Pretrained text towers from a local Hugging Face model folder (``params.text_model: PATH``).

Clinical language models (BioClinicalBERT, CXR-BERT, PubMedBERT, RoBERTa-style models) initialise
``clip``'s text encoder or ``captioning``'s decoder. Everything is read with ``local_files_only=True``
from a folder written by ``save_pretrained`` (``config.json``, the weights, the tokenizer files): nothing
is downloaded, and a missing folder or file is an error naming it.

**Tokens.** The model's own tokenizer replaces the locally trained BPE, with the model's own special
tokens: a report becomes ``[CLS] t1..tn [SEP]`` (``<s> .. </s>`` for RoBERTa) right-padded with
``[PAD]``. The objectives' code works in the toolkit's id convention (``PAD, UNK, BOS, EOS = 0..3``, see
:mod:`radtex_bench.text.tokenizer`), so :class:`PretrainedTokenizer` renumbers the vocabulary with a fixed
permutation that moves the model's ``[PAD] [UNK] [CLS] [SEP]`` to 0..3, and the towers map ids back
(``to_model``) before the model sees them and permute its logits the other way. The model therefore
needs distinct pad, unknown, start (``[CLS]``/``<s>``) and end (``[SEP]``/``</s>``) tokens.

**Towers.** :class:`PretrainedTextEncoder` (``clip``): ``AutoModel`` pooled at the ``[CLS]`` token of its
last hidden state (the BERT standard; the pooler layer is dropped). :func:`pretrained_decoder`
(``captioning``): ``AutoModelForCausalLM`` with ``is_decoder=True, add_cross_attention=True`` (for a
BERT folder, transformers' ``BertLMHeadModel``): causal self-attention over the report, cross-attention
(newly initialised) over the image grid, the model's own language-modelling head. ``freeze_layers: N``
freezes the embeddings and the first ``N`` transformer layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .tokenizer import BOS_ID, EOS_ID, PAD_ID


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' load reports and progress bars would flood the run's progress display."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _folder(path: str | Path, where: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"{where}: {folder} is not a folder; give a local Hugging Face model folder (written by "
            "save_pretrained or `hf download`: config.json, weights, tokenizer files)"
        )
    if not (folder / "config.json").is_file():
        raise UserError(
            f"{where}: {folder / 'config.json'} not found; is {folder} a Hugging Face model folder?"
        )
    return folder


def load_config(path: str | Path, where: str = "params.text_model") -> Any:
    """The model's ``config.json`` (an error naming the folder or file when missing or unreadable)."""
    from transformers import AutoConfig

    folder = _folder(path, where)
    try:
        with _quiet():
            return AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise UserError(f"{where}: cannot read {folder / 'config.json'}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


#: What ``from_pretrained`` reads the weights from (one file, or the index of a sharded set).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_text_model(path: str | Path, max_length: int, freeze_layers: int, where: str) -> None:
    """Everything that needs only the folder, before any work: config, weights file, tokenizer, special
    tokens, sizes."""
    config = load_config(path, where)
    folder = Path(path).expanduser()
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise UserError(
            f"{where}: no weights in {folder} (looked for {', '.join(WEIGHT_FILES)}); copy the model's weights "
            "file next to its config.json (save_pretrained writes model.safetensors)"
        )
    PretrainedTokenizer.load(path, where)
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise UserError(
            f"{where}: the model reads at most {positions} tokens; lower params.max_length (now {max_length})"
        )
    layers = getattr(config, "num_hidden_layers", None)
    if layers is not None and freeze_layers > layers:
        raise UserError(
            f"{where}: params.freeze_layers {freeze_layers} exceeds the model's {layers} layers; lower it"
        )


def hidden_size(path: str | Path, where: str = "params.text_model") -> int:
    """The model's width (``config.hidden_size``): what the image features are projected to."""
    return int(load_config(path, where).hidden_size)


#: Files a saved tokenizer consists of (one of them at least).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


class PretrainedTokenizer:
    """A Hugging Face tokenizer behind the :class:`~radtex_bench.text.tokenizer.ReportTokenizer` interface.

    Ids are renumbered so that the model's pad / unknown / start / end tokens are ``0..3``; the
    ``to_model`` permutation (a ``[V]`` long tensor, ``V`` = the model's embedding rows) maps them back.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, folder: Path):
        self._tok = tokenizer
        self.folder = folder
        specials = [
            tokenizer.pad_token_id,
            tokenizer.unk_token_id,
            tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
            tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id,
        ]
        if None in specials or len(set(specials)) != 4:
            raise UserError(
                f"params.text_model: the tokenizer in {folder} needs distinct pad, unknown, start ([CLS] or "
                f"<s>) and end ([SEP] or </s>) tokens, got ids {specials}; use a BERT- or RoBERTa-style model"
            )
        if len(tokenizer) > vocab_size:
            raise UserError(
                f"params.text_model: the tokenizer in {folder} has {len(tokenizer)} tokens but the model "
                f"embeds only {vocab_size}; the folder mixes two models"
            )
        rest = [i for i in range(vocab_size) if i not in set(specials)]
        self.to_model = torch.tensor(specials + rest, dtype=torch.long)  # ours -> the model's
        self.from_model = torch.empty_like(self.to_model)
        self.from_model[self.to_model] = torch.arange(vocab_size)  # the model's -> ours
        self._size = vocab_size

    @classmethod
    def load(cls, path: str | Path, where: str = "params.text_model") -> PretrainedTokenizer:
        from transformers import AutoTokenizer

        folder = _folder(path, where)
        config = load_config(folder, where)
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            # transformers would build an empty tokenizer (special tokens only) and say nothing.
            raise UserError(
                f"{where}: no tokenizer in {folder} (none of {', '.join(TOKENIZER_FILES)}); save the "
                "model's tokenizer there too (tokenizer.save_pretrained)"
            )
        try:
            with _quiet():
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except Exception as exc:
            raise UserError(
                f"{where}: no usable tokenizer in {folder} ({_first_line(exc)}); save the model's tokenizer "
                "there too (tokenizer.save_pretrained)"
            ) from None
        return cls(tokenizer, int(config.vocab_size), folder)

    @property
    def vocab_size(self) -> int:
        return self._size

    def normalise(self, text: str) -> str:
        backend = getattr(self._tok, "backend_tokenizer", None)
        normalizer = getattr(backend, "normalizer", None)
        return normalizer.normalize_str(text) if normalizer is not None else text

    def encode(self, text: str) -> list[int]:
        ids = self._tok(text, add_special_tokens=False, verbose=False)["input_ids"]
        return self.from_model[torch.tensor(ids, dtype=torch.long)].tolist() if ids else []

    def decode(self, ids: Sequence[int]) -> str:
        kept = [int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)]
        model_ids = self.to_model[torch.tensor(kept, dtype=torch.long)].tolist() if kept else []
        return self._tok.decode(model_ids, skip_special_tokens=True).strip()

    def batch(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """``[B, L]`` long ids ``[BOS] t1..tn [EOS]`` (the model's ``[CLS] .. [SEP]``) right-padded with PAD."""
        # Truncated here (room for [CLS] and [SEP]): no warning about reports longer than the model reads.
        encoded = self._tok(
            list(texts), add_special_tokens=False, truncation=True, max_length=max_length - 2, verbose=False
        )["input_ids"]
        rows = [
            [BOS_ID, *self.from_model[torch.tensor(e[: max_length - 2], dtype=torch.long)].tolist(), EOS_ID]
            for e in encoded
        ]
        length = max(len(r) for r in rows)
        out = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out


def _layers(base: nn.Module, config: Any) -> nn.ModuleList | None:
    """The transformer layers (``encoder.layer`` for BERT/RoBERTa, ``h`` for GPT-2)."""
    count = getattr(config, "num_hidden_layers", None)
    for module in base.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    return None


def freeze(model: Any, freeze_layers: int) -> None:
    """Freeze the embeddings and the first ``freeze_layers`` layers (nothing when 0)."""
    if freeze_layers <= 0:
        return
    base = model.base_model
    embeddings = getattr(base, "embeddings", None) or model.get_input_embeddings()
    for p in embeddings.parameters():
        p.requires_grad_(False)
    layers = _layers(base, model.config)
    if layers is None:
        raise UserError(f"params.freeze_layers: cannot find the transformer layers of {type(model).__name__}")
    for layer in layers[:freeze_layers]:
        for p in layer.parameters():
            p.requires_grad_(False)


class PretrainedTextEncoder(nn.Module):
    """``clip``'s text tower: ids ``[B, L]`` -> the ``[CLS]`` state of the last layer ``[B, hidden]``."""

    def __init__(self, tokenizer: PretrainedTokenizer, freeze_layers: int = 0):
        super().__init__()
        from transformers import AutoModel

        try:
            with _quiet():
                self.model = AutoModel.from_pretrained(tokenizer.folder, local_files_only=True)
        except Exception as exc:
            raise UserError(
                f"params.text_model: cannot load the model in {tokenizer.folder}: {_first_line(exc)}"
            ) from None
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # unused ([CLS] pooling): its weights would never get a gradient
        freeze(self.model, freeze_layers)
        self.register_buffer("to_model", tokenizer.to_model.clone(), persistent=False)
        self.out_dim = int(self.model.config.hidden_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != PAD_ID).long()  # [B, L]
        hidden = self.model(input_ids=self.to_model[ids], attention_mask=mask).last_hidden_state  # [B, L, D]
        return hidden[:, 0]  # [B, D]: [CLS]


class PretrainedTokenEmbedding(nn.Module):
    """The decoder's word embeddings, indexed by our ids: ``[B, L]`` -> ``[B, L, D]`` (positions and the
    embedding norm are added inside the model, which receives these as ``inputs_embeds``)."""

    def __init__(self, model: Any, to_model: torch.Tensor):
        super().__init__()
        self.words = model.get_input_embeddings()
        self.register_buffer("to_model", to_model.clone(), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.words(self.to_model[ids])


class PretrainedDecoder(nn.Module):
    """A Hugging Face decoder with cross-attention, called like ``nn.TransformerDecoder``:
    ``(embeddings [B, L, D], memory [B, M, D], tgt_key_padding_mask [B, L] | None) -> [B, L, D]``.
    Self-attention is causal by construction (``is_decoder=True``), so ``tgt_mask`` is not needed."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
        tgt_is_causal: bool | None = None,
    ) -> torch.Tensor:
        mask = None if tgt_key_padding_mask is None else (~tgt_key_padding_mask).long()
        out = self.base(inputs_embeds=tgt, attention_mask=mask, encoder_hidden_states=memory)
        return out.last_hidden_state  # [B, L, D]


class PretrainedOutput(nn.Module):
    """The model's language-modelling head, its logits renumbered to our ids: ``[.., D] -> [.., V]``."""

    def __init__(self, head: nn.Module, to_model: torch.Tensor):
        super().__init__()
        self.head = head
        self.register_buffer("to_model", to_model.clone(), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden)[..., self.to_model]


def load_decoder(tokenizer: PretrainedTokenizer, freeze_layers: int = 0) -> Any:
    """``AutoModelForCausalLM`` with cross-attention from the tokenizer's folder (``BertLMHeadModel``)."""
    from transformers import AutoModelForCausalLM

    try:
        with _quiet():
            model = AutoModelForCausalLM.from_pretrained(
                tokenizer.folder, local_files_only=True, is_decoder=True, add_cross_attention=True
            )
    except Exception as exc:
        raise UserError(
            f"params.text_model: cannot load {tokenizer.folder} as a decoder with cross-attention "
            f"({_first_line(exc)}); use a BERT- or RoBERTa-style model"
        ) from None
    freeze(model, freeze_layers)
    return model


def lm_head(model: Any) -> nn.Module:
    """The module mapping hidden states to vocabulary logits (``cls`` for BERT, ``lm_head`` otherwise)."""
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if head is None:
        raise UserError(f"params.text_model: {type(model).__name__} has no language-modelling head")
    return head


def pretrained_decoders(
    tokenizer: PretrainedTokenizer, bidirectional: bool, freeze_layers: int = 0
) -> tuple[nn.Module, PretrainedDecoder, nn.Module, PretrainedDecoder | None]:
    """``captioning``'s parts from the folder: ``(embedding, forward decoder, output, backward decoder)``.

    As in VirTex, both directions share the word embedding and the output head (the forward model's);
    the backward decoder is a second copy of the pretrained layers, whose own word embeddings are frozen
    (never used, so DDP does not wait for their gradients).
    """
    forward_model = load_decoder(tokenizer, freeze_layers)
    embedding = PretrainedTokenEmbedding(forward_model, tokenizer.to_model)
    output = PretrainedOutput(lm_head(forward_model), tokenizer.to_model)
    backward = None
    if bidirectional:
        backward_model = load_decoder(tokenizer, freeze_layers)
        for p in backward_model.get_input_embeddings().parameters():
            p.requires_grad_(False)
        backward = PretrainedDecoder(backward_model.base_model)
    return embedding, PretrainedDecoder(forward_model.base_model), output, backward
