"""``gloria``: global + local image-report contrastive learning (Huang et al., "GLoRIA: A Multimodal
Global-Local Representation Learning Framework for Label-efficient Medical Image Recognition", ICCV 2021).

- **Global**: the encoder's pooled feature and the text tower's ``[EOS]`` feature, linearly projected and
  L2-normalised, scored with the fixed scale ``logit_scale`` (GLoRIA's gamma3 = 10) by open_clip's
  ``ClipLoss`` (symmetric InfoNCE; under DDP the features of every rank are gathered with gradients, so
  the loss equals the single-process loss on the global batch).
- **Local** (word-to-region attention): the encoder's grid ``[B, C, h, w]`` gives ``h*w`` region features
  and the text tower's token outputs give word features (BPE tokens of the report, specials excluded),
  both projected to ``embed_dim``. For image i and report j, each word attends over the regions of image
  i (softmax of ``attention_scale`` x cosine similarity, gamma1 = 4); the word's similarity is the cosine
  between the word and its attended region context; the pair score is
  ``log(sum_words exp(word_scale * sim)) / word_scale`` (gamma2 = 5). The local loss is the symmetric
  cross-entropy of ``logit_scale`` x pair scores over the batch. Under DDP each rank gathers every rank's
  regions and words (with gradients, padded to ``max_length`` words) and scores its own images against
  all reports and its own reports against all images, as open_clip's ``ClipLoss(local_loss=True)`` does
  for the global term: the rank-averaged loss and gradients equal the single-process ones on the global
  batch (each rank computes ``2 * B_rank * B_global`` pairs of ``L * h*w`` attention weights).

Loss = ``global_weight`` x global + ``local_weight`` x local; both directions are averaged in each term.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParamError
from ..schema import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Range
from ..text.tokenizer import SPECIALS
from ..text.towers import TextEncoder, grid_tokens
from .base import SetupContext, register_objective
from .text import MaxLength, MinFrequency, ReportTextObjective, VocabSize, check_width_heads


def local_scores(
    regions: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    attention_scale: float,
    word_scale: float,
) -> torch.Tensor:
    """GLoRIA's local image-report scores ``[B_images, B_reports]``.

    ``regions`` ``[Bi, N, E]`` and ``words`` ``[Bj, L, E]`` are L2-normalised; ``word_mask`` ``[Bj, L]`` is
    True on the words that count. Memory ``Bi * Bj * L * (N + E)``.
    """
    similarity = torch.einsum("jle,ine->ijln", words, regions)  # [Bi, Bj, L, N]
    attention = torch.softmax(attention_scale * similarity, dim=-1)  # over the regions of image i
    context = torch.einsum("ijln,ine->ijle", attention, regions)  # [Bi, Bj, L, E]
    word_similarity = F.cosine_similarity(context, words[None], dim=-1)  # [Bi, Bj, L]
    word_similarity = word_similarity.masked_fill(~word_mask[None], float("-inf"))
    scores = torch.logsumexp(word_scale * word_similarity, dim=-1) / word_scale  # [Bi, Bj]
    return torch.where(word_mask.any(dim=-1)[None], scores, 0.0)  # a report without words: neutral, not -inf


@register_objective("gloria")
class GLoRIAObjective(ReportTextObjective):
    """GLoRIA: global (open_clip ClipLoss) + local word-to-region attention contrastive losses."""

    def __init__(
        self,
        encoder: nn.Module,
        embed_dim: PositiveInt = 128,
        width: Annotated[int, Range(ge=8)] = 256,
        layers: PositiveInt = 2,
        heads: PositiveInt = 4,
        dropout: Fraction = 0.0,
        max_length: MaxLength = 96,
        vocab_size: VocabSize = 4096,
        min_frequency: MinFrequency = 2,
        attention_scale: PositiveFloat = 4.0,
        word_scale: PositiveFloat = 5.0,
        logit_scale: PositiveFloat = 10.0,
        global_weight: NonNegativeFloat = 1.0,
        local_weight: NonNegativeFloat = 1.0,
    ):
        super().__init__(encoder, max_length, vocab_size, min_frequency)
        self.embed_dim = embed_dim
        self.width, self.layers, self.heads, self.dropout = width, layers, heads, dropout
        self.attention_scale, self.word_scale, self.scale = attention_scale, word_scale, logit_scale
        self.global_weight, self.local_weight = global_weight, local_weight
        self.image_proj = nn.Linear(encoder.out_dim, embed_dim)  # global
        self.region_proj = nn.Linear(encoder.out_dim, embed_dim)  # local (a 1x1 convolution on the grid)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        check_width_heads(params)
        if params["global_weight"] == 0 and params["local_weight"] == 0:
            raise ParamError("local_weight", "global_weight and local_weight are both 0: nothing to learn")

    def setup(self, context: SetupContext) -> None:
        from open_clip.loss import ClipLoss

        self.setup_tokenizer(context)
        self.text = TextEncoder(
            self.tokenizer.vocab_size, self.width, self.layers, self.heads, self.max_length, self.dropout
        )
        self.text_proj = nn.Linear(self.width, self.embed_dim)  # global
        self.word_proj = nn.Linear(self.width, self.embed_dim)  # local
        self.global_loss_fn = ClipLoss(
            local_loss=True, gather_with_grad=True, rank=context.rank, world_size=context.world_size
        )
        self.rank, self.world_size = context.rank, context.world_size

    def encode(
        self, images: torch.Tensor, reports: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Global image ``[B, E]``, regions ``[B, h*w, E]``, global text ``[R, E]``, words ``[R, L, E]``
        (all L2-normalised) and the word mask ``[R, L]``."""
        grid = self.encoder.forward_features(images)  # [B, C, h, w]
        image_global = F.normalize(self.image_proj(grid.mean(dim=(2, 3))).float(), dim=-1)
        regions = F.normalize(self.region_proj(grid_tokens(grid)).float(), dim=-1)
        ids = self.tokens(reports, images.device)  # [R, L]
        tokens, pooled = self.text.token_features(ids)  # [R, L, D], [R, D]
        text_global = F.normalize(self.text_proj(pooled).float(), dim=-1)
        words = F.normalize(self.word_proj(tokens).float(), dim=-1)
        return image_global, regions, text_global, words, ids >= len(SPECIALS)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]  # [B, 3, H, W]
        image_global, regions, text_global, words, word_mask = self.encode(images, batch["report"])
        with torch.autocast(images.device.type, enabled=False):  # similarities and softmaxes in float32
            global_loss = self.global_loss_fn(image_global, text_global, self.scale)
            local_loss = self.local_loss(regions, words, word_mask)
        return {
            "loss": self.global_weight * global_loss + self.local_weight * local_loss,
            "global_loss": global_loss,
            "local_loss": local_loss,
        }

    def local_loss(self, regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE of the local pair scores; ``regions`` ``[B, N, E]``, ``words`` ``[B, L, E]``,
        ``word_mask`` ``[B, L]`` of this rank. Under DDP, this rank's rows of the global batch's loss."""
        if self.world_size > 1:
            all_regions, all_words, all_mask = self.gather_local(regions, words, word_mask)
            per_image = local_scores(regions, all_words, all_mask, self.attention_scale, self.word_scale)
            per_report = local_scores(all_regions, words, word_mask, self.attention_scale, self.word_scale).T
            offset = self.rank * regions.shape[0]
        else:
            per_image = local_scores(regions, words, word_mask, self.attention_scale, self.word_scale)
            per_report, offset = per_image.T, 0
        labels = torch.arange(regions.shape[0], device=regions.device) + offset  # [B]
        return 0.5 * (
            F.cross_entropy(self.scale * per_image, labels) + F.cross_entropy(self.scale * per_report, labels)
        )

    def gather_local(
        self, regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every rank's regions ``[B_global, N, E]`` and words ``[B_global, max_length, E]`` (gathered with
        gradients) and word mask ``[B_global, max_length]``, in rank order. Words are padded to
        ``max_length`` because each rank's batch is padded to its own longest report."""
        import torch.distributed as dist
        import torch.distributed.nn

        pad = self.max_length - words.shape[1]
        words = F.pad(words, (0, 0, 0, pad))  # padded words are masked out: they never count
        mask = F.pad(word_mask, (0, pad)).to(torch.uint8)  # gloo gathers no bool tensors
        masks = [torch.empty_like(mask) for _ in range(self.world_size)]
        dist.all_gather(masks, mask)
        all_regions = torch.cat(torch.distributed.nn.all_gather(regions), dim=0)
        all_words = torch.cat(torch.distributed.nn.all_gather(words), dim=0)
        return all_regions, all_words, torch.cat(masks, dim=0).bool()

    @torch.no_grad()
    def text_scores(self, images: torch.Tensor, reports: list[str]) -> torch.Tensor:
        """``[B, R]`` logits: ``logit_scale`` x (``global_weight`` x global cosine + ``local_weight`` x
        local pair score). Reports are scored in chunks, so the word-region attention of all pairs
        (``B * R * L * h*w``) is never held at once."""
        image_global, regions, text_global, words, word_mask = self.encode(images, reports)
        scores = self.global_weight * image_global @ text_global.T  # [B, R]
        per_report = images.shape[0] * words.shape[1] * (regions.shape[1] + words.shape[2])
        chunk = max(1, PAIR_ELEMENTS // per_report)
        local = torch.cat(
            [
                local_scores(
                    regions,
                    words[i : i + chunk],
                    word_mask[i : i + chunk],
                    self.attention_scale,
                    self.word_scale,
                )
                for i in range(0, words.shape[0], chunk)
            ],
            dim=1,
        )
        return self.scale * (scores + self.local_weight * local)


#: Elements of the word-region tensors per chunk of reports in ``text_scores``.
PAIR_ELEMENTS = 1 << 24
