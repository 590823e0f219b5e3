"""The ``generation`` protocol: the objective writes a report for every test image that has one.

``generate(images, beam_size, max_tokens)`` writes one report per test image with a non-empty reference
report (greedy decoding for ``beam_size`` 1, beam search otherwise). A plug-in's ``generate(images)``
(SPEC §5) is called without the two: it decodes its own way, and a recipe that sets either for it is
refused before any work. The cell keeps, per scored image, its position in the test split, id,
reference and generated text, and the CheXpert labels the report labeler
(``evaluation.generation.labeler``) extracts from both. The scores (BLEU-1..4, ROUGE-L, CIDEr and
clinical efficacy) and their patient-bootstrap intervals are computed from those by
:mod:`radtex_bench.evaluation.text_tables`, which writes ``generation.csv`` and ``generations.csv``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...engine.precision import autocast
from ...errors import ConfigError, did_you_mean
from ...schema import option
from ...text.labeler import LABELERS, get_labeler
from .base import Cell, CellTask, Protocol, register_protocol
from .retrieval import normalise_report


@dataclass(frozen=True)
class GenerationConfig:
    beam_size: int = option(
        1, ge=1, le=32, help="1 = greedy decoding; k > 1 = beam search keeping k hypotheses"
    )
    max_tokens: int | None = option(
        None,
        ge=3,
        le=4096,
        help="longest generated report in tokens, [BOS] and [EOS] included; null = the objective's own maximum",
    )
    labeler: str = option(
        "rule", help="report labeler for clinical efficacy (rule | f1chexbert | a plug-in's)"
    )

    def __post_init__(self) -> None:
        if self.labeler not in LABELERS:
            raise ConfigError(
                "labeler", f"unknown labeler '{self.labeler}'{did_you_mean(self.labeler, LABELERS.names())}"
            )


@register_protocol("generation")
class GenerationProtocol(Protocol):
    """Generated reports scored by BLEU, ROUGE-L, CIDEr and clinical efficacy, through ``generate``."""

    Config = GenerationConfig
    labelled = False
    auroc = False
    reads_test_reports = True
    requires = frozenset({"generate"})
    description = (
        "generated reports (greedy or beam search) scored by BLEU, ROUGE-L, CIDEr and clinical efficacy"
    )

    @classmethod
    def preflight(cls, config: GenerationConfig) -> None:
        get_labeler(config.labeler)  # a labeler whose weights are missing stops the run before any work

    @classmethod
    def check_objective(cls, config: GenerationConfig, objective: type, where: str) -> None:
        generate = getattr(objective, "generate", None)
        if generate is None:
            return
        for key, default in (("beam_size", 1), ("max_tokens", None)):
            if getattr(config, key) != default and not _takes(generate, key):
                raise ConfigError(
                    f"evaluation.generation.{key}",
                    f"{where} writes with generate(images), which takes no {key}; leave {key} at "
                    f"{default if default is not None else 'null'} or add a {key} parameter to its generate",
                )

    def run(self, task: CellTask) -> Cell:
        d = self.data
        model = task.encoder.load_model()
        references = [str(r) for r in d.table.frame["report"].to_numpy()[d.test]]
        scored = np.array([i for i, r in enumerate(references) if normalise_report(r)], dtype=np.int64)
        generated = [""] * len(scored)
        options = {  # a plug-in's generate(images) gets neither (check_objective refused settings for it)
            key: getattr(self.config, key)
            for key in ("beam_size", "max_tokens")
            if _takes(model.generate, key)
        }
        for positions, images in self.image_batches(d.test[scored], task.encoder.normalization):
            with autocast(self.device):
                texts = model.generate(images, **options)
            for i, text in zip(positions, texts):
                generated[int(i)] = str(text)
        refs = [references[i] for i in scored]
        labeler = get_labeler(self.config.labeler)
        return Cell(
            task.encoder.label,
            self.name,
            task.budget,
            task.seed,
            np.zeros(0),
            np.zeros((len(d.test), 0), dtype=np.float32),
            {
                "test_index": scored,
                "image_id": np.array(d.ids(d.test[scored]), dtype=str),
                "reference": np.array(refs, dtype=str),
                "generated": np.array(generated, dtype=str),
                "reference_labels": labeler.label_reports(refs),  # [n, 14] CHEXPERT_14 order
                "generated_labels": labeler.label_reports(generated),
            },
        )


def _takes(function: Any, name: str) -> bool:
    """Whether ``function`` accepts the keyword argument ``name`` (by name or through ``**kwargs``)."""
    parameters = inspect.signature(function).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
