"""The base of evaluation protocols: one signature, one per-pathology scoring rule, and the registry.

A protocol turns one pretrained encoder into test-set scores. Every protocol has the same shape:

* it is constructed once per run with the evaluation data (:class:`~radtex_bench.evaluation.data.EvalData`),
  its own recipe section (``evaluation.<name>``, validated against its ``Config`` dataclass), the recipe
  seed, the device and two scalars (feature-extraction batch size, loader workers);
* :meth:`Protocol.run` receives one :class:`CellTask` (the encoder under test, the budget, the seed
  index and the labelled subset's rows) and returns one :class:`Cell`.

Protocols that need labels (``labelled = True``: linear, knn, finetune) run once per (seed, budget);
the others (zeroshot, retrieval, generation) run once per encoder, at budget 0, seed 0. A protocol that
needs something an objective does not offer (``requires``, e.g. ``text_scores``) is skipped for that
objective with a reason that report.md shows. Cells of protocols with ``auroc = True`` are
per-pathology AUROCs and become rows of results/summary/comparisons; the others keep their results in
``Cell.extra`` and write tables of their own (retrieval.csv, generation.csv).

A protocol's ``Config`` may declare a field with ``option(..., internal=True)`` named after a general
``evaluation`` key (``prompts``): it receives that key's value, so the value is part of the protocol's
settings (and of its cells' cache key) without being a key of its section.

Plug-ins register a protocol like an objective, from a module in the recipe's ``plugins:`` or the
``radtex_bench.protocols`` entry-point group::

    from radtex_bench import Protocol, register_protocol

    @register_protocol("my_probe")
    class MyProbe(Protocol):
        def run(self, task):
            features = task.encoder.features()          # [N, D] pooled features of every image
            ...
            return self.cell(task, scores)              # scores [N_test, P]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ...data.normalization import IMAGENET, Normalization
from ...engine.inference import image_batches
from ...errors import ConfigError, UserError
from ...registry import Registry
from ..stats import auroc

if TYPE_CHECKING:
    from ..data import EvalData


@dataclass
class Cell:
    """The result of one protocol on one encoder for one (budget, seed).

    ``aucs`` ``[P]`` per-pathology test AUROC (NaN = missing: the labelled subset had one class only);
    ``scores`` ``[N_test, P]`` the test scores behind them (NaN columns where missing), kept for the
    patient bootstrap. ``extra`` holds protocol-specific arrays (saved with the cell) for protocols whose
    results are not AUROCs; such cells have ``P = 0`` columns.
    """

    objective: str
    protocol: str
    budget: int
    seed: int
    aucs: np.ndarray
    scores: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EncoderUnderTest:
    """What a protocol may use of one pretrained objective (never the objective's module itself).

    ``features()``: pooled features ``[N, D]`` of every evaluation image (extracted once, cached on disk);
    ``load_encoder()``: a fresh copy of the encoder; ``load_model()``: the whole pretrained objective with
    its heads (``text_scores`` / ``generate``), or None when the objective has none. ``capabilities``
    names what ``load_model()`` offers, so a protocol can be skipped without loading anything.
    """

    label: str
    path: Path
    weights_hash: str
    features: Callable[[], np.ndarray]
    load_encoder: Callable[[], torch.nn.Module]
    load_model: Callable[[], Any] | None = None
    capabilities: frozenset[str] = frozenset()
    #: Identifies everything the cell depends on besides the encoder weights (heads, tokenizer).
    model_hash: str = ""
    #: Why ``load_model`` is unavailable although the objective implements the text API (else "").
    unavailable: str = ""
    #: The input normalisation the encoder's weights need (their metadata): images given to
    #: ``load_encoder()`` / ``load_model()`` must be normalised with it, as :meth:`Protocol.image_batches` does.
    normalization: Normalization = IMAGENET


@dataclass(frozen=True)
class CellTask:
    """One unit of work: ``encoder`` at ``budget`` labels with subset ``seed`` (rows into the table)."""

    encoder: EncoderUnderTest
    budget: int
    seed: int
    rows: np.ndarray  # labelled subset, rows of EvalData.table; empty for protocols without labels


@dataclass(frozen=True)
class NoConfig:
    """A protocol without settings of its own."""


class Protocol:
    """Base class of evaluation protocols (see the module docstring)."""

    name: ClassVar[str] = ""
    #: Dataclass of the protocol's recipe section ``evaluation.<name>`` (ranges with ``option``).
    Config: ClassVar[type] = NoConfig
    #: True: one cell per (seed, budget) on that labelled subset; False: one cell per encoder at budget 0.
    labelled: ClassVar[bool] = True
    #: Capabilities the pretrained objective must offer (``text_scores``, ``generate``); else skipped.
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Whether cells hold per-pathology AUROCs (rows of results/summary/comparisons); False: the results
    #: are in ``Cell.extra`` (``P = 0`` score columns) and the protocol's own tables report them.
    auroc: ClassVar[bool] = True
    #: Whether it reads the test images' reports (retrieval, generation): refused before any pretraining
    #: when no test image has one (:meth:`check_data`).
    reads_test_reports: ClassVar[bool] = False
    #: One line for ``radtex-bench list protocols``.
    description: ClassVar[str] = ""

    def __init__(
        self,
        data: EvalData,
        config: Any,
        seed: int,
        device: torch.device,
        batch_size: int = 128,
        workers: int = 0,
    ):
        self.data = data
        self.config = config
        self.seed = seed
        self.device = device
        self.batch_size = batch_size
        self.workers = workers

    @classmethod
    def preflight(cls, config: Any) -> None:
        """Check, before any work, what the protocol will need (e.g. a labeler's weights). Optional.

        Raise :class:`radtex_bench.errors.UserError` to stop the run with a clear message.
        """

    @classmethod
    def check_objective(cls, config: Any, objective: type, where: str) -> None:
        """Check, before any work, that the objective class ``objective`` (recipe entry ``where``, e.g.
        ``objectives.2 (mine)``) can give this protocol what ``config`` asks of it. Optional: the base
        accepts every objective (one without the :attr:`requires` capabilities is skipped, not refused).

        Raise :class:`radtex_bench.errors.UserError` (or ``ConfigError``) with the fix.
        """

    @classmethod
    def check_data(cls, data: EvalData, where: str) -> None:
        """Check, before any pretraining, that the evaluation data can feed this protocol. Optional.

        ``where`` names the recipe block the data came from (``data.evaluate`` or ``data.pretrain``).
        Raise :class:`radtex_bench.errors.UserError` (or ``ConfigError``) with the fix. The base refuses a
        protocol that :attr:`reads_test_reports` when no test image has a report.
        """
        if cls.reads_test_reports:
            require_test_reports(cls.name, data, where)

    def skip_reason(self, encoder: EncoderUnderTest) -> str | None:
        """Why this protocol cannot score ``encoder`` (shown in report.md), or None."""
        missing = sorted(self.requires - encoder.capabilities)
        if missing:
            return encoder.unavailable or f"the objective does not implement {', '.join(missing)}"
        return None

    def run(self, task: CellTask) -> Cell:
        raise NotImplementedError

    # -- helpers for subclasses --------------------------------------------------------------------

    def cell(self, task: CellTask, scores: np.ndarray) -> Cell:
        """A :class:`Cell` from test scores ``[N_test, P]`` (NaN columns = not scorable): the one place
        where per-pathology AUROCs are computed."""
        scores = np.asarray(scores, dtype=np.float32)
        test_labels = self.data.labels[self.data.test]
        return Cell(
            task.encoder.label,
            self.name,
            task.budget,
            task.seed,
            score_pathologies(scores, test_labels),
            scores,
        )

    def image_batches(
        self, rows: np.ndarray, normalization: Normalization
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(positions [b], images [b, 3, S, S])`` of the images ``rows`` (of ``EvalData.table``), in
        order, on the device as for feature extraction and normalised with ``normalization`` (the
        encoder's: ``task.encoder.normalization``); ``positions`` index ``rows``."""
        d = self.data
        table = d.table.take(np.asarray(rows, dtype=np.int64))
        yield from image_batches(
            table, d.image_size, self.device, self.batch_size, d.cache, self.workers, normalization
        )

    def learnable(self, rows: np.ndarray) -> np.ndarray:
        """``[P]`` bool: pathologies whose labelled subset ``rows`` holds a positive and a negative.

        The others cannot be learnt from the subset: their scores are NaN and their AUROC is reported as
        missing (never as 0.5), and report.md lists them.
        """
        labels = self.data.labels[rows]
        return np.array([has_both_classes(labels[:, j]) for j in range(labels.shape[1])], dtype=bool)

    def per_pathology(
        self, rows: np.ndarray, fit: Callable[[int, np.ndarray], np.ndarray | None]
    ) -> np.ndarray:
        """Test scores ``[N_test, P]`` from ``fit(j, known_rows) -> [N_test] | None`` for each pathology j.

        ``known_rows`` are the labelled rows whose label for j is not missing. Pathologies that are not
        :meth:`learnable` are not fitted (NaN column); nor is one where ``fit`` returns None.
        """
        d = self.data
        scores = np.full((len(d.test), len(d.pathologies)), np.nan, dtype=np.float32)
        for j in np.flatnonzero(self.learnable(rows)):
            known = rows[~np.isnan(d.labels[rows, j])]
            s = fit(int(j), known)
            if s is not None:
                scores[:, j] = s
        return scores


def has_both_classes(labels: np.ndarray) -> bool:
    """Whether ``labels`` (1 / 0, NaN ignored) hold at least one positive and one negative."""
    y = labels[~np.isnan(labels)]
    return bool((y == 1).any() and (y == 0).any())


def score_pathologies(scores: np.ndarray, test_labels: np.ndarray) -> np.ndarray:
    """Per-pathology AUROC ``[P]`` of ``[N_test, P]`` scores; NaN where a score column is NaN."""
    aucs = np.full(scores.shape[1], np.nan)
    for j in range(scores.shape[1]):
        if np.isfinite(scores[:, j]).all():
            aucs[j] = auroc(scores[:, j], test_labels[:, j])
    return aucs


PROTOCOLS: Registry[type[Protocol]] = Registry("protocol", base=Protocol)


def register_protocol(name: str):
    """Class decorator: make a :class:`Protocol` available to recipes under ``name``."""

    def decorator(cls: type[Protocol]) -> type[Protocol]:
        PROTOCOLS.register(name)(cls)
        if not (dataclasses.is_dataclass(cls.Config) and isinstance(cls.Config, type)):
            raise UserError(f"protocol '{name}': Config must be a dataclass, got {cls.Config!r}")
        cls.name = name
        return cls

    return decorator


def require_test_reports(name: str, data: EvalData, where: str) -> None:
    """Refuse protocol ``name`` when no test image of ``data`` has a non-empty report (CheXpert and NIH
    have none): otherwise it would score nothing after all the pretraining."""
    reports = data.table.frame["report"].to_numpy()[data.test]
    if not any(str(r).strip() for r in reports):
        raise ConfigError(
            "evaluation.protocols",
            f"{name} needs test images with reports, but none of the {len(reports)} test images of "
            f"{where} has one; remove {name}, or evaluate on a dataset with reports (mimic_cxr, openi, "
            "synthetic, or a manifest with a report column)",
        )
