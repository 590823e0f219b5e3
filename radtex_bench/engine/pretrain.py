"""Pretraining one recipe entry: build the encoder and objective, train, export the encoder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..config import ObjectiveSpec, Recipe
from ..data.pipeline import PixelSource, RadiographDataset
from ..data.table import ImageTable
from ..encoders import Encoder, build_encoder, save_encoder
from ..errors import UserError
from ..objectives import BATCH_KEYS, OBJECTIVES, Objective, SetupContext
from ..seeds import derive_seed
from .distributed import DistInfo
from .trainer import StepHook, Trainer

log = logging.getLogger("radtex_bench")

ENCODER_FILE = "encoder.safetensors"


def default_workers(device: torch.device) -> int:
    # On the CPU, loader processes compete with the model for the same cores.
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def initial_encoder(recipe: Recipe) -> Encoder:
    """Every objective starts from the same randomly initialised encoder (fixed by the recipe seed)."""
    torch.manual_seed(derive_seed(recipe.seed, "encoder-init"))
    return build_encoder(recipe.encoder.name)


def use_device_views(objective: Objective, device: torch.device, choice: bool | None = None) -> bool:
    """Augment views in one batched pass on the GPU when training there and the objective offers it."""
    available = "views" in objective.needs and hasattr(objective, "batch_view_transform")
    return available and (device.type == "cuda" if choice is None else choice)


def build_objective(
    recipe: Recipe, spec: ObjectiveSpec, train_table: ImageTable, out_dir: Path, dist: DistInfo
) -> Objective:
    """The objective of ``spec`` around the recipe's initial encoder, after its data-dependent ``setup``."""
    cls = OBJECTIVES.get(spec.name)
    unknown = set(cls.needs) - BATCH_KEYS
    if unknown:
        raise UserError(
            f"objective '{spec.name}' declares needs {sorted(unknown)}; allowed: {sorted(BATCH_KEYS)}"
        )
    encoder = initial_encoder(recipe)
    seed = derive_seed(recipe.seed, "objective", spec.label)
    torch.manual_seed(seed)
    try:
        objective = cls(encoder, **spec.params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"objectives[{spec.label}].params: {exc}") from None
    pathologies = list(recipe.data.pathologies)
    reports = train_table.frame["report"].tolist()
    if "report" in cls.needs and not any(r.strip() for r in reports):
        raise UserError(
            f"objective '{spec.label}' needs reports, but the pretraining split has none; "
            "use a dataset with reports or drop this objective"
        )
    context = SetupContext(
        reports=reports,
        labels=train_table.label_matrix(pathologies, recipe.data.uncertain),
        pathologies=pathologies,
        out_dir=out_dir,
        image_size=recipe.encoder.image_size,
        seed=seed,
        rank=dist.rank,
        world_size=dist.world_size,
        barrier=dist.barrier,
    )
    objective.setup(context)
    return objective


def build_dataset(
    recipe: Recipe,
    spec: ObjectiveSpec,
    objective: Objective,
    train_table: ImageTable,
    device_views: bool = False,
) -> RadiographDataset:
    """Pretraining items for ``objective``; with ``device_views`` the workers only draw view parameters."""
    size = recipe.encoder.image_size
    return RadiographDataset(
        PixelSource(train_table, size, recipe.data.pretrain.options.cache),
        needs=sorted(objective.needs),
        reports=train_table.frame["report"].tolist(),
        labels=train_table.label_matrix(list(recipe.data.pathologies), recipe.data.uncertain),
        view_transform=None if device_views else objective.view_transform(size),
        n_views=objective.n_views,
        seed=derive_seed(recipe.seed, "objective", spec.label),
        view_augment=objective.batch_view_transform(size) if device_views else None,
    )


def build_trainer(
    recipe: Recipe,
    spec: ObjectiveSpec,
    objective: Objective,
    train_table: ImageTable,
    out_dir: Path,
    device: torch.device,
    dist: DistInfo,
    workers: int | None = None,
    device_views: bool | None = None,
    step_hook: StepHook | None = None,
) -> Trainer:
    """A :class:`Trainer` for ``objective`` on the pretraining split (benchmarks build one directly)."""
    dataset = build_dataset(
        recipe, spec, objective, train_table, use_device_views(objective, device, device_views)
    )
    if workers is None:
        workers = recipe.data.workers if recipe.data.workers is not None else default_workers(device)
    seed = derive_seed(recipe.seed, "objective", spec.label)
    return Trainer(
        objective, dataset, spec.train, out_dir, device, dist, seed, workers, spec.label, step_hook
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
) -> Path:
    """Train ``spec`` on ``train_table`` (the pretraining split) and write ``encoder.safetensors``.

    ``device_views``: None = batched view augmentation on the GPU when training there (see
    :class:`~radtex_bench.data.pipeline.ViewAugment`); True/False force it on or off.
    """
    out_dir = Path(out_dir)
    encoder_path = out_dir / ENCODER_FILE
    if resume and encoder_path.exists():
        log.info("%s: pretraining already finished (%s), skipped", spec.label, encoder_path)
        return encoder_path
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()

    objective = build_objective(recipe, spec, train_table, out_dir, dist)
    steps = spec.train.max_steps if spec.train.max_steps is not None else spec.train.epochs
    if objective.pretrains and steps:
        trainer = build_trainer(
            recipe, spec, objective, train_table, out_dir, device, dist, workers, device_views
        )
        trainer.fit(resume=resume)

    if dist.is_main:
        save_encoder(objective.encoder, encoder_path, {"objective": spec.name, "label": spec.label})
        log.info("%s: encoder written to %s", spec.label, encoder_path)
    dist.barrier()
    return encoder_path
