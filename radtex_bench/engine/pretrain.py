"""Pretraining one recipe entry: build the encoder and objective, train, export the encoder and heads."""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ObjectiveSpec, Recipe
from ..data.pipeline import PixelSource, RadiographDataset
from ..data.table import ImageTable
from ..encoders import Encoder, build_encoder, load_encoder, save_encoder
from ..errors import UserError
from ..io import atomic_path, canonical_safetensors
from ..objectives import OBJECTIVES, Objective, SetupContext
from ..rundir import CHECKPOINT_FILE, ENCODER_FILE, HEADS_FILE, TOKENIZER_FILE
from ..seeds import derive_seed
from .checkpoint import rng_state, set_rng_state
from .distributed import DistInfo
from .trainer import MetricsHook, StepHook, Trainer

log = logging.getLogger("radtex_bench")


def default_workers(device: torch.device) -> int:
    # On the CPU, loader processes compete with the model for the same cores.
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def resolve_workers(recipe: Recipe, device: torch.device) -> int:
    """``data.workers``, or the automatic choice for ``device`` when it is null."""
    return recipe.data.workers if recipe.data.workers is not None else default_workers(device)


def initial_encoder(recipe: Recipe) -> Encoder:
    """Every objective starts from the same randomly initialised encoder (fixed by the recipe seed)."""
    torch.manual_seed(derive_seed(recipe.seed, "encoder-init"))
    return build_encoder(recipe.encoder.name)


@dataclass(frozen=True)
class PretrainingData:
    """What one objective trains on, computed once: its images, their reports and labels, its seed."""

    table: ImageTable
    reports: list[str]
    #: [N, P] after the recipe's uncertain policy, NaN = missing: the table's pretraining labels (a
    #: dataset's simulated label noise, :attr:`ImageTable.pretrain_labels`), never evaluation's.
    labels: np.ndarray
    pathologies: list[str]
    seed: int

    @classmethod
    def of(cls, recipe: Recipe, spec: ObjectiveSpec, table: ImageTable) -> PretrainingData:
        pathologies = list(recipe.data.pathologies)
        return cls(
            table=table,
            reports=table.frame["report"].tolist(),
            labels=table.label_matrix(pathologies, recipe.data.uncertain, pretraining=True),
            pathologies=pathologies,
            seed=derive_seed(recipe.seed, "objective", spec.label),
        )


def build_objective(
    recipe: Recipe, spec: ObjectiveSpec, data: PretrainingData, out_dir: Path, dist: DistInfo
) -> Objective:
    """The objective of ``spec`` around the recipe's initial encoder, after its data-dependent ``setup``."""
    cls = OBJECTIVES.get(spec.name)
    encoder = initial_encoder(recipe)
    torch.manual_seed(data.seed)
    # Python's and NumPy's global generators too: nothing built in draws from them, but a plug-in may,
    # and last.ckpt stores their state, so unseeded they would make two equal runs' checkpoints differ.
    random.seed(data.seed)
    np.random.seed(data.seed)
    try:
        objective = cls(encoder, **spec.params)
    except (TypeError, ValueError) as exc:
        index = recipe.objectives.index(spec)
        raise UserError(f"objectives.{index}.params ({spec.label}): {exc}") from None
    if "report" in cls.needs and not any(r.strip() for r in data.reports):
        raise UserError(
            f"objective '{spec.label}' needs reports, but the pretraining split has none; "
            "use a dataset with reports or drop this objective"
        )
    objective.setup(
        SetupContext(
            reports=data.reports,
            labels=data.labels,
            pathologies=data.pathologies,
            out_dir=out_dir,
            image_size=recipe.encoder.image_size,
            seed=data.seed,
            rank=dist.rank,
            world_size=dist.world_size,
            uncertain=recipe.data.uncertain,
            barrier=dist.barrier,
        )
    )
    return objective


def build_dataset(
    recipe: Recipe, objective: Objective, data: PretrainingData, device_views: bool = False
) -> RadiographDataset:
    """Pretraining items for ``objective``; with ``device_views`` the workers only draw view parameters."""
    size = recipe.encoder.image_size
    return RadiographDataset(
        PixelSource(data.table, size, recipe.data.pretrain.options.cache),
        needs=sorted(objective.needs),
        reports=data.reports,
        labels=data.labels,
        view_transform=None if device_views else objective.view_transform(size),
        n_views=objective.n_views,
        seed=data.seed,
        view_augment=objective.batch_view_transform(size) if device_views else None,
    )


def use_device_views(
    objective: Objective, image_size: int, device: torch.device, choice: bool | None = None
) -> bool:
    """Augment views in one batched pass on the GPU when training there and the objective offers it."""
    available = "views" in objective.needs and objective.batch_view_transform(image_size) is not None
    return available and (device.type == "cuda" if choice is None else choice)


def build_trainer(
    recipe: Recipe,
    spec: ObjectiveSpec,
    objective: Objective,
    data: PretrainingData,
    out_dir: Path,
    device: torch.device,
    dist: DistInfo,
    workers: int | None = None,
    device_views: bool | None = None,
    step_hook: StepHook | None = None,
    metrics_hook: MetricsHook | None = None,
) -> Trainer:
    """A :class:`Trainer` for ``objective`` on the pretraining split (benchmarks build one directly)."""
    views = use_device_views(objective, recipe.encoder.image_size, device, device_views)
    dataset = build_dataset(recipe, objective, data, views)
    workers = resolve_workers(recipe, device) if workers is None else workers
    return Trainer(
        objective,
        dataset,
        spec.train,
        out_dir,
        device,
        dist,
        data.seed,
        workers,
        spec.label,
        step_hook,
        metrics_hook,
    )


def pretrain_objective(
    recipe: Recipe,
    spec: ObjectiveSpec,
    train_table: ImageTable,
    out_dir: Path,
    device: torch.device,
    dist: DistInfo,
    resume: bool = False,
    workers: int | None = None,
    device_views: bool | None = None,
    metrics_hook: MetricsHook | None = None,
) -> Path:
    """Train ``spec`` on ``train_table`` (the pretraining split) and write ``encoder.safetensors``.

    ``device_views``: None = batched view augmentation on the GPU when training there (see
    :class:`~radtex_bench.data.augment.ViewAugment`); True/False force it on or off. ``metrics_hook``
    receives every metrics.jsonl record on rank 0 (the experiment trackers).
    """
    out_dir = Path(out_dir)
    encoder_path = out_dir / ENCODER_FILE
    # A run finished before heads were kept has no heads.safetensors: its last.ckpt (written at the
    # last step) still holds them, so "training" resumes at the end and only the files are written.
    heads_lost = not (out_dir / HEADS_FILE).exists() and (out_dir / CHECKPOINT_FILE).exists()
    if resume and encoder_path.exists() and not heads_lost:
        log.info("%s: pretraining already finished (%s), skipped", spec.label, encoder_path)
        return encoder_path
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()

    data = PretrainingData.of(recipe, spec, train_table)
    objective = build_objective(recipe, spec, data, out_dir, dist)
    steps = spec.train.max_steps if spec.train.max_steps is not None else spec.train.epochs
    if objective.pretrains and steps:
        trainer = build_trainer(
            recipe,
            spec,
            objective,
            data,
            out_dir,
            device,
            dist,
            workers,
            device_views,
            metrics_hook=metrics_hook,
        )
        trainer.fit(resume=resume)

    if dist.is_main:
        save_encoder(objective.encoder, encoder_path, {"objective": spec.name, "label": spec.label})
        log.info("%s: encoder written to %s", spec.label, encoder_path)
        if save_heads(objective, out_dir / HEADS_FILE, {"objective": spec.name, "label": spec.label}):
            log.info("%s: heads written to %s", spec.label, out_dir / HEADS_FILE)
    dist.barrier()
    return encoder_path


# -- the whole pretrained model ----------------------------------------------------------------------

#: ``format`` metadata of ``heads.safetensors``: the objective's own state-dict keys, encoder left out.
HEADS_FORMAT = "radtex_bench.heads"


def save_heads(objective: Objective, path: Path, metadata: dict[str, str]) -> bool:
    """Write ``heads.safetensors`` (:meth:`Objective.heads_state_dict`), atomically and byte-reproducibly.

    Metadata: ``objective`` (registry name), ``label``, ``format`` (:data:`HEADS_FORMAT`), keys sorted.
    An objective without heads (``random``, ``imagenet``) writes nothing (and a stale file is removed);
    returns whether a file was written.
    """
    from safetensors.torch import save

    state = objective.heads_state_dict()
    if not state:
        path.unlink(missing_ok=True)
        return False
    # Copies: tied weights (captioning's output layer is its token embedding) share storage, which
    # safetensors refuses; both names are stored and both load back into the one parameter.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    data = canonical_safetensors(save(tensors, metadata={**metadata, "format": HEADS_FORMAT}))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return True


def load_heads(objective: Objective, path: Path) -> None:
    """Load ``heads.safetensors`` into ``objective``; a file that does not fit it is a UserError."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    expected = set(objective.heads_state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise UserError(
            f"{path} does not fit the objective ({'missing' if missing else 'unexpected'} weight '{first}'); "
            "it was written by other settings: delete the objective's folder to retrain it"
        )
    objective.load_state_dict(state, strict=False)


def load_pretrained(
    recipe: Recipe, spec: ObjectiveSpec, table: ImageTable, out_dir: Path, device: torch.device
) -> Objective:
    """The whole pretrained objective of ``spec``: encoder and heads, in eval mode, on ``device``.

    Built exactly as for training (:class:`PretrainingData` of ``table``, the images it pretrained on,
    then :meth:`Objective.setup`, which re-reads the tokenizer from ``out_dir``), then the weights of
    ``encoder.safetensors`` and ``heads.safetensors`` are loaded. The global random state is left as it
    was (building an objective seeds it).
    """
    out_dir = Path(out_dir)
    data = PretrainingData.of(recipe, spec, table)
    saved = rng_state()
    try:
        objective = build_objective(recipe, spec, data, out_dir, DistInfo())
    finally:
        set_rng_state(saved)
    trained = load_encoder(out_dir / ENCODER_FILE)
    objective.encoder.load_state_dict(trained.state_dict())
    objective.encoder.normalization = trained.normalization  # from the weights' metadata
    if (out_dir / HEADS_FILE).exists():
        load_heads(objective, out_dir / HEADS_FILE)
    elif objective.heads_state_dict():
        raise UserError(f"{out_dir / HEADS_FILE} not found; rerun with --resume to write it")
    return objective.to(device).eval()


@dataclass(frozen=True)
class PretrainedModel:
    """How evaluation reaches one objective's whole model (the ``load_model``, ``capabilities`` and
    ``model_hash`` of :class:`~radtex_bench.evaluation.protocols.EncoderUnderTest`)."""

    load: Callable[[], Objective] | None
    capabilities: frozenset[str]
    #: Hash of the heads and tokenizer files: a cell that used the model is recomputed when they change.
    model_hash: str
    #: Why ``load`` is None although the objective implements text methods (shown in report.md).
    note: str = ""


def model_hash(out_dir: Path) -> str:
    """Identifies what the whole model adds to the encoder: ``heads.safetensors`` and ``tokenizer.json``."""
    digest = hashlib.sha256()
    for name in (HEADS_FILE, TOKENIZER_FILE):
        path = Path(out_dir) / name
        digest.update(f"{name}:".encode())
        if path.exists():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def pretrained_model(
    recipe: Recipe, spec: ObjectiveSpec, table: ImageTable, out_dir: Path, device: torch.device
) -> PretrainedModel:
    """The text capabilities of ``spec``'s class and a loader of its whole model (loaded once, on demand)."""
    capabilities = OBJECTIVES.get(spec.name).capabilities()
    if not capabilities:
        return PretrainedModel(None, frozenset(), "")
    out_dir = Path(out_dir)
    if not (out_dir / HEADS_FILE).exists():
        return PretrainedModel(
            None,
            frozenset(),
            "",
            f"{out_dir / HEADS_FILE} is missing (and no last.ckpt to recover it from); retrain the objective",
        )
    loaded: list[Objective] = []

    def load() -> Objective:
        if not loaded:
            loaded.append(load_pretrained(recipe, spec, table, out_dir, device))
        return loaded[0]

    return PretrainedModel(load, capabilities, model_hash(out_dir))
