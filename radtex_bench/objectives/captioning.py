"""``captioning``: RadTex / VirTex image captioning as pretraining.

The encoder's spatial grid ``[B, C, h, w]`` is projected to the decoder width and used as the memory of
a transformer decoder that predicts the report token by token. With ``bidirectional: true`` a second
decoder reads the report right-to-left; both share the token embedding and the output layer (tied to
the embedding), and their losses are summed (VirTex, Desai & Johnson 2021; RadTex, Quigley et al. 2022).

Text API: ``generate`` writes with the forward decoder (greedy, or beam search); ``text_scores`` is the
forward decoder's length-normalised log-likelihood of each report given each image. The backward
decoder is not used by either: it models the same text, so averaging it in would double the cost of
scoring without a second source of evidence, and using the forward decoder only keeps scores and
generations the output of one model.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..schema import Fraction, PositiveInt, Range
from ..text.pretrained import hidden_size, pretrained_decoders
from ..text.tokenizer import BOS_ID, EOS_ID, PAD_ID
from ..text.towers import TokenEmbedding, causal_mask
from .base import SetupContext, register_objective
from .text import FreezeLayers, MaxLength, MinFrequency, ReportTextObjective, VocabSize, check_width_heads


def reverse_tokens(ids: torch.Tensor) -> torch.Tensor:
    """``[BOS] t1..tn [EOS] PAD..`` -> ``[BOS] tn..t1 [EOS] PAD..`` row by row."""
    lengths = (ids != PAD_ID).sum(dim=1)  # [B] including BOS and EOS
    positions = torch.arange(ids.shape[1], device=ids.device)[None]  # [1, L]
    inner = (positions >= 1) & (positions < (lengths - 1)[:, None])  # the t1..tn slots
    source = torch.where(inner, lengths[:, None] - 1 - positions, positions)  # mirror inside the span
    return ids.gather(1, source)


@register_objective("captioning")
class CaptioningObjective(ReportTextObjective):
    """RadTex / VirTex captioning: transformer decoders write the report from the encoder's grid."""

    def __init__(
        self,
        encoder: nn.Module,
        bidirectional: bool = True,
        decoder_layers: PositiveInt = 1,
        width: Annotated[int, Range(ge=8)] = 256,
        heads: PositiveInt = 4,
        feedforward: PositiveInt | None = None,
        dropout: Fraction = 0.1,
        max_length: MaxLength = 96,
        vocab_size: VocabSize = 4096,
        min_frequency: MinFrequency = 2,
        label_smoothing: Fraction = 0.0,
        text_model: str | None = None,
        freeze_layers: FreezeLayers = 0,
    ):
        super().__init__(encoder, max_length, vocab_size, min_frequency, text_model)
        self.freeze_layers = freeze_layers
        if text_model:  # the grid is projected to the pretrained decoder's width
            width = hidden_size(text_model)
        self.bidirectional = bidirectional
        self.decoder_layers = decoder_layers
        self.width = width
        self.heads = heads
        self.feedforward = feedforward or 4 * width
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.visual_proj = nn.Sequential(nn.Linear(encoder.out_dim, width), nn.LayerNorm(width))

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        super().check_params(params)
        check_width_heads(params)

    def _decoder(self) -> nn.TransformerDecoder:
        layer = nn.TransformerDecoderLayer(
            self.width,
            self.heads,
            self.feedforward,
            self.dropout,
            batch_first=True,
            norm_first=True,
            activation="gelu",
        )
        return nn.TransformerDecoder(layer, self.decoder_layers, norm=nn.LayerNorm(self.width))

    def setup(self, context: SetupContext) -> None:
        vocab = self.setup_tokenizer(context).vocab_size
        if self.text_model:  # a pretrained decoder (BertLMHeadModel) with cross-attention to the grid
            parts = pretrained_decoders(self.tokenizer, self.bidirectional, self.freeze_layers)
            self.embedding, self.forward_decoder, self.output, self.backward_decoder = parts
            return
        self.embedding = TokenEmbedding(vocab, self.width, self.max_length, self.dropout)
        self.forward_decoder = self._decoder()
        self.backward_decoder = self._decoder() if self.bidirectional else None
        self.output = nn.Linear(self.width, vocab)
        self.output.weight = self.embedding.tokens.weight  # tied, as in VirTex

    def memory(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.encoder.forward_features(images)  # [B, C, h, w]
        return self.visual_proj(grid.flatten(2).transpose(1, 2))  # [B, h*w, D]

    def _caption_loss(
        self, decoder: nn.TransformerDecoder, ids: torch.Tensor, memory: torch.Tensor
    ) -> torch.Tensor:
        inputs, targets = ids[:, :-1], ids[:, 1:]  # [B, L-1] each
        length = inputs.shape[1]
        hidden = decoder(
            self.embedding(inputs),
            memory,
            tgt_mask=causal_mask(length, ids.device),
            tgt_key_padding_mask=inputs == PAD_ID,
            tgt_is_causal=True,
        )  # [B, L-1, D]
        logits = self.output(hidden)  # [B, L-1, V]
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            targets.reshape(-1),
            ignore_index=PAD_ID,
            label_smoothing=self.label_smoothing,
        )

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        ids = self.tokens(batch["report"], images.device)  # [B, L]
        memory = self.memory(images)  # [B, h*w, D]
        out = {"forward_loss": self._caption_loss(self.forward_decoder, ids, memory)}
        loss = out["forward_loss"]
        if self.backward_decoder is not None:
            out["backward_loss"] = self._caption_loss(self.backward_decoder, reverse_tokens(ids), memory)
            loss = loss + out["backward_loss"]
        out["loss"] = loss
        return out

    def _hidden(self, ids: torch.Tensor, memory: torch.Tensor, padding: bool = True) -> torch.Tensor:
        """Forward-decoder states ``[N, T, D]`` of token prefixes ``ids`` ``[N, T]`` over ``memory`` ``[N, M, D]``."""
        length = ids.shape[1]
        return self.forward_decoder(
            self.embedding(ids),
            memory,
            tgt_mask=causal_mask(length, ids.device),
            tgt_key_padding_mask=(ids == PAD_ID) if padding else None,
            tgt_is_causal=True,
        )

    @torch.no_grad()
    def text_scores(self, images: torch.Tensor, reports: list[str]) -> torch.Tensor:
        """``[B, R]`` float32: the mean log-probability per token of each report given each image.

        For image i and report r tokenised as ``[BOS] t1..tn [EOS]`` (truncated to ``max_length``), the
        forward decoder's ``(1 / (n + 1)) * sum_k log p(t_k | t_<k, image)`` over ``t1..tn`` and ``[EOS]``:
        a length-normalised log-likelihood, so long and short reports compare. Every (image, report)
        pair is a decoder pass; pairs are scored in chunks of about :data:`PAIR_TOKENS` tokens, so
        memory does not grow with ``B * R``.
        """
        memory = self.memory(images)  # [B, M, D]
        ids = self.tokens(reports, images.device)  # [R, L]
        n_images, n_reports = memory.shape[0], ids.shape[0]
        out = torch.empty(n_images * n_reports, dtype=torch.float32, device=images.device)
        chunk = max(1, PAIR_TOKENS // ids.shape[1])
        for start in range(0, n_images * n_reports, chunk):
            pairs = torch.arange(start, min(start + chunk, out.shape[0]), device=images.device)
            rows = ids[pairs % n_reports]  # [c, L]
            rows = rows[:, : int((rows != PAD_ID).sum(dim=1).max())]  # drop columns that are all padding
            inputs, targets = rows[:, :-1], rows[:, 1:]  # [c, L-1]
            logits = self.output(self._hidden(inputs, memory[pairs // n_reports]))  # [c, L-1, V]
            logp = torch.log_softmax(logits.float(), dim=-1).gather(2, targets[..., None])[..., 0]
            real = targets != PAD_ID  # [c, L-1]
            out[pairs] = (logp * real).sum(dim=1) / real.sum(dim=1)
        return out.view(n_images, n_reports)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, beam_size: int = 1, max_tokens: int | None = None) -> list[str]:
        """One report per image of ``images`` ``[B, 3, H, W]``, written by the forward decoder.

        ``beam_size`` 1 is greedy decoding; larger keeps that many hypotheses per image (beam search)
        and returns the one with the highest mean log-probability per written token (``[EOS]``
        included), so long reports are not penalised for their length. ``max_tokens`` caps the
        sequence length including ``[BOS]``/``[EOS]`` (None or larger = ``max_length``).
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        length = min(max_tokens or self.max_length, self.max_length)
        memory = self.memory(images)  # [B, M, D]
        ids = beam_search(
            lambda prefix, rows: self.output(self._hidden(prefix, memory[rows], False)[:, -1]),
            memory.shape[0],
            beam_size,
            length,
            images.device,
        )  # [B, T]
        return [self.tokenizer.decode(row.tolist()) for row in ids]


#: Tokens per chunk of (image, report) pairs in ``text_scores`` (bounds the ``[c, L, V]`` logits).
PAIR_TOKENS = 16384


def beam_search(step, n: int, beam_size: int, length: int, device: torch.device) -> torch.Tensor:
    """Token ids ``[n, T]`` (``[BOS] ... [EOS] PAD..``) of the best hypothesis per sequence.

    ``step(prefix [N, t], rows [N]) -> logits [N, V]`` gives the next-token logits of each prefix, where
    ``rows`` says which of the ``n`` inputs each prefix belongs to. Finished hypotheses (that wrote
    ``[EOS]``) only extend with ``PAD`` at no cost. Hypotheses are kept by their summed log-probability
    and, when every hypothesis has finished or ``length`` is reached, the one with the best mean
    log-probability per written token is returned; with ``beam_size`` 1 this is greedy decoding.
    """
    k = beam_size
    rows = torch.arange(n, device=device).repeat_interleave(k)  # [n*k]
    ids = torch.full((n * k, 1), BOS_ID, dtype=torch.long, device=device)
    # Only the first beam of each input is live at the start, so k copies of [BOS] are not k hypotheses.
    total = torch.full((n, k), float("-inf"), device=device)
    total[:, 0] = 0.0
    total = total.view(-1)  # [n*k]
    done = torch.zeros(n * k, dtype=torch.bool, device=device)
    written = torch.zeros(n * k, device=device)  # tokens written, [EOS] included
    for _ in range(length - 1):
        logp = torch.log_softmax(step(ids, rows).float(), dim=-1)  # [n*k, V]
        vocab = logp.shape[1]
        # A finished hypothesis continues with PAD only, at no cost.
        logp = torch.where(done[:, None], torch.full_like(logp, float("-inf")), logp)
        logp[done, PAD_ID] = 0.0
        candidates = (total[:, None] + logp).view(n, k * vocab)  # [n, k*V]
        best, index = candidates.topk(k, dim=1)  # [n, k]
        source = (index // vocab + torch.arange(n, device=device)[:, None] * k).view(-1)  # [n*k]
        token = (index % vocab).view(-1)
        ids = torch.cat([ids[source], token[:, None]], dim=1)
        written = written[source] + (~done[source]).float()
        done = done[source] | (token == EOS_ID)
        total = best.view(-1)
        if done.all():
            break
    mean = (total / written.clamp(min=1)).view(n, k)
    mean = torch.where(torch.isfinite(mean), mean, torch.full_like(mean, float("-inf")))
    choice = mean.argmax(dim=1) + torch.arange(n, device=device) * k  # [n]
    return ids[choice]
