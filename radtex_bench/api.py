"""The Python API behind the CLI; a notebook can call the same functions.

    from radtex_bench import run
    run_dir = run("recipes/captioning_vs_clip.yaml", out="runs/demo")

Data flows one way: recipe -> datasets -> objective training -> encoders -> evaluator -> results.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Recipe, dump_recipe, load_recipe
from .errors import ConfigError, UserError, is_out_of_memory
from .io import write_csv, write_json, write_text
from .rundir import RunDir, fresh_plan

log = logging.getLogger("radtex_bench")


def default_out(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(out: Path, recipe: Recipe, resume: bool) -> None:
    """Refuse to mix two different recipes' results in one folder (see :meth:`RunDir.check`)."""
    RunDir(out).check(recipe, resume)


def _names(values: str | Sequence[str], what: str) -> list[str]:
    """A list of strings; a single string is one item (not its characters)."""
    if isinstance(values, str):
        return [values]
    if isinstance(values, Sequence) and all(isinstance(v, str) for v in values):
        return list(values)
    raise UserError(f"{what} must be a string or a list of strings, got {type(values).__name__}")


def run(
    recipe: Recipe | Mapping[str, Any] | str | Path,
    out: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    overrides: str | Sequence[str] = (),
    exclude: str | Sequence[str] = (),
    only: str | Sequence[str] = (),
) -> Path:
    """Pretrain every objective of ``recipe``, evaluate every encoder, write tables, plots and report.

    ``recipe``: a recipe file, a dict in the recipe format (as a notebook builds it) or a :class:`Recipe`.
    ``overrides``: ``"dotted.key=value"`` settings (the CLI's ``--set``), ``exclude``: labels to leave
    out; each a string or a list of them. ``only``: pretrain and score only the objectives with these
    labels (one cluster job per objective; ``merge`` combines the folders). recipe.yaml still records
    the whole recipe and ``objectives.json`` the labels the folder holds (:mod:`radtex_bench.rundir`).

    Raises :class:`~radtex_bench.errors.UserError` (``ConfigError``, ``DataError``) for a mistake in the
    recipe or the data, before any work where it can be found then.
    """
    from .config import check_only, naming_override, recipe_from_dict
    from .engine.distributed import init_distributed, resolve_device
    from .engine.pretrain import pretrain_objective, resolve_workers
    from .tracking import TrackedRun, open_trackers
    from .ui import attach_log_file, detach_log_file, info, log_run_end, release_warnings

    overrides, exclude = _names(overrides, "overrides"), _names(exclude, "exclude")
    if isinstance(recipe, Mapping):
        recipe = recipe_from_dict(recipe, overrides, exclude)
    elif not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides, exclude)
    elif overrides or exclude:
        recipe = recipe_from_dict(recipe.to_plain(), overrides, exclude)
    only = check_only(recipe, _names(only, "only"))
    # Before any work, and read by every process before any process writes (writes follow the rendezvous).
    if out:
        RunDir(Path(out)).check(recipe, resume)
    plan = RunDir(Path(out)).plan(recipe, only, resume) if out else fresh_plan(recipe, only)
    try:
        preflight(recipe, plan.train)
    except ConfigError as exc:
        raise naming_override(exc, overrides) from None
    torch_device = resolve_device(device)
    dist = init_distributed(torch_device)
    default = out is None
    out = _agree_on_out(Path(out) if out else default_out(recipe), dist)
    paths = RunDir(out)

    if default and dist.is_main:
        paths.check(recipe, resume)
    dist.barrier()
    try:
        out.mkdir(parents=True, exist_ok=True)
        handler = attach_log_file(paths.rank_log(dist.rank))
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}; choose a writable --out") from None
    tracker = None
    try:
        log.info(
            "radtex-bench run %s -> %s (device %s, %d process(es), resume=%s%s)",
            recipe.name,
            out,
            torch_device,
            dist.world_size,
            resume,
            f", only {', '.join(plan.train)}" if plan.selection else "",
        )
        data = load_run_data(recipe, plan.hold)
        recipe = data.recipe  # recipe.yaml records what each "f%" budget became
        # Every objective's images and batches, before the first one trains (or any file is written).
        pretraining = pretraining_tables(recipe, data.train_table, plan.hold)
        check_batches(recipe, pretraining, plan.train, dist.world_size)
        # Before the run's files: a tracker that cannot start leaves a folder that can simply be reused.
        tracker = open_trackers(
            recipe.logging.trackers, TrackedRun(out, recipe.name, plan.hold, plan.selection), dist.is_main
        )
        tracker.log_config(recipe.to_plain())
        release_warnings()  # every up-front check passed: the data warnings matter from here on
        if dist.is_main:
            write_run_files(paths, data, plan)
            objectives = f"{len(plan.hold)} objective" + ("s" if len(plan.hold) != 1 else "")
            info(
                f"[bold]{recipe.name}[/]: {len(data.train_table)} pretraining images, evaluation on "
                f"{len(data.eval_data.pool)} / {len(data.eval_data.val)} / {len(data.eval_data.test)} "
                f"train-pool / val / test images, {objectives} -> {out}"
            )

        encoders = {}
        for index, spec in enumerate(recipe.objectives):
            if spec.label not in plan.hold:
                continue
            if spec.label not in plan.train:  # held from an earlier start, finished (RunDir.plan)
                encoders[spec.label] = paths.encoder(spec.label)
                continue
            try:
                encoders[spec.label] = pretrain_objective(
                    recipe,
                    spec,
                    pretraining[spec.label],
                    paths.pretrain(spec.label),
                    torch_device,
                    dist,
                    resume=resume,
                    metrics_hook=_metrics_hook(tracker, spec.label),
                )
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                raise pretraining_out_of_memory(paths, index, spec, dist.is_main) from exc
        dist.barrier()
        if dist.is_main:
            workers = resolve_workers(recipe, torch_device)
            evaluate_and_report(
                recipe, out, data.eval_data, data.subsets, encoders, torch_device, workers, pretraining
            )
            tracker.log_summary(read_rows(paths.summary))
            tracker.log_artifacts(report_files(paths))
            info(f"done: {out / 'report.md'}")
        dist.barrier()
        tracker.close(success=True)
        return out
    except BaseException as exc:
        log_run_end(exc)
        raise
    finally:
        if tracker is not None:
            tracker.close(success=False)  # a no-op once closed
        detach_log_file(handler)
        if dist.enabled:
            from .engine.distributed import shutdown

            shutdown()  # NCCL warns (and may leak) when a process exits with its group alive


@dataclass
class RunData:
    """The data half of a run, found before any training: everything that can be wrong with the data
    is found while building it."""

    #: The recipe with ``evaluation.resolved_budgets`` recorded.
    recipe: Recipe
    pretrain_table: Any
    #: The pretraining split, evaluation validation/test images (and their patients) left out.
    train_table: Any
    eval_table: Any
    eval_data: Any
    #: ``{seed: {budget: table rows}}``: the labelled subsets.
    subsets: dict
    overlap: Any

    def splits_json(self) -> dict[str, list[str]]:
        """What ``splits.json`` holds."""
        d = self.eval_data
        return {"train": d.ids(d.pool), "val": d.ids(d.val), "test": d.ids(d.test)}

    def subsets_json(self) -> dict[str, dict[str, list[str]]]:
        """What ``subsets.json`` holds."""
        return {
            str(s): {str(b): self.eval_data.ids(rows) for b, rows in by_b.items()}
            for s, by_b in self.subsets.items()
        }


def load_run_data(recipe: Recipe, labels: Sequence[str] | None = None) -> RunData:
    """Read the pretraining and evaluation datasets of ``recipe``, build the evaluation split and the
    labelled subsets, and leave evaluation images out of pretraining. ``labels``: the objectives that
    will be trained or scored (their needs are checked against the data; all when None)."""
    from .data.loading import load_table
    from .evaluation.data import build_eval_data, draw_subsets, record_budgets
    from .evaluation.protocols import PROTOCOLS

    size = recipe.encoder.image_size
    pretrain_table = load_table(
        recipe.data.pretrain, recipe.data.on_bad_image, "data.pretrain", image_size=size
    )
    train_table = pretrain_table.take(pretrain_table.split_rows("train"))
    if len(train_table) == 0:
        raise UserError("data.pretrain: the pretraining dataset has no 'train' split images")
    check_pretraining_labels(recipe, train_table, labels)
    if recipe.data.evaluate is None:
        eval_table, eval_where = pretrain_table, "data.pretrain"
    else:
        eval_table = load_table(
            recipe.data.evaluate, recipe.data.on_bad_image, "data.evaluate", image_size=size
        )
        eval_where = "data.evaluate"
    eval_data = build_eval_data(recipe, eval_table, eval_where)
    for name in recipe.evaluation.protocols:  # e.g. retrieval on a dataset without reports
        PROTOCOLS.get(name).check_data(eval_data, eval_where)
    recipe = record_budgets(recipe, eval_data)
    subsets = draw_subsets(recipe, eval_data)
    train_table, overlap = exclude_overlap(recipe, train_table, eval_table, eval_data)
    return RunData(recipe, pretrain_table, train_table, eval_table, eval_data, subsets, overlap)


def write_run_files(paths: RunDir, data: RunData, plan) -> None:
    """recipe.yaml, splits.json, subsets.json, pretrain/images.csv, the overlap and caveat notes, the
    skipped images and ``objectives.json`` (``plan``: an :class:`~radtex_bench.rundir.ObjectivePlan`)."""
    write_text(paths.recipe, dump_recipe(data.recipe))
    write_json(paths.splits, data.splits_json())
    write_json(paths.subsets, data.subsets_json())
    write_csv(
        paths.pretrain_images,
        ("image_id", "path"),
        zip(data.train_table.image_ids, (os.path.realpath(p) for p in data.train_table.frame["path"])),
    )
    for path, content in (
        (paths.overlap, data.overlap.found and data.overlap.to_json()),
        (paths.caveats, data.eval_data.validation_gaps),
        (paths.held, plan.selection and list(plan.hold)),
    ):
        if content:
            write_json(path, content)
        elif path.exists():  # a resumed run whose data (or selection) no longer has it
            path.unlink()
    skipped = data.pretrain_table.skipped + (
        data.eval_table.skipped if data.eval_table is not data.pretrain_table else []
    )
    if skipped:
        write_text(paths.skipped_images, "".join(f"{p}\t{why}\n" for p, why in skipped))


def _metrics_hook(tracker, label: str):
    """Training metrics of ``label`` to the trackers (None when none is on: the trainer then does nothing)."""
    if not tracker:
        return None
    return lambda record: tracker.log_metrics(record["step"], record, prefix=f"pretrain/{label}")


def read_rows(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts (empty when the file is absent)."""
    import csv

    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def report_files(paths: RunDir) -> list[Path]:
    """What the trackers attach: report.md, the tables, the plots."""
    tables = (
        paths.summary,
        paths.results,
        paths.comparisons,
        paths.efficiency,
        paths.aubc,
        paths.aubc_comparisons,
        paths.retrieval,
        paths.generation,
    )
    plots = sorted(paths.plots.glob("*.png")) if paths.plots.is_dir() else []
    return [p for p in (paths.report, paths.recipe, *tables, *plots) if p.exists()]


def exclude_overlap(recipe: Recipe, train_table, eval_table, eval_data):
    """Leave evaluation validation/test images (and their patients) out of pretraining, or refuse.

    Returns the pretraining table to use and the :class:`~radtex_bench.data.overlap.Overlap` found.
    """
    import numpy as np

    from .data.overlap import find_overlap
    from .errors import DataError

    overlap = find_overlap(train_table, eval_table, np.concatenate([eval_data.val, eval_data.test]))
    if not overlap.found:
        if recipe.data.evaluate is not None:
            log.info("data.pretrain / data.evaluate: no shared image or patient (compared by %s)", overlap.by)
        return train_table, overlap
    where = "data.pretrain / data.evaluate" if recipe.data.evaluate is not None else "data.pretrain"
    if recipe.data.overlap == "error":
        raise DataError(
            f"{where}: {overlap.describe()}; pretraining on evaluation images inflates every result. Use "
            "datasets with disjoint images and patients, or set data.overlap: exclude to leave them out"
        )
    log.warning("%s: %s; they are left out of pretraining (data.overlap: exclude)", where, overlap.describe())
    kept = train_table.take(~overlap.drop)
    if len(kept) == 0:
        raise DataError(
            f"{where}: every pretraining image is an evaluation validation/test image or shares a patient with "
            "one; use a pretraining dataset that is disjoint from the evaluation set"
        )
    return kept, overlap


def preflight(recipe: Recipe, labels: Sequence[str] | None = None) -> None:
    """Checks that must pass before any work: the trackers' libraries (installed?), objectives' (e.g.
    ImageNet weights present offline; only those with ``labels`` when given: the ones this start
    trains) and protocols' (e.g. the clinical-efficacy labeler's weights)."""
    from .evaluation.protocols import PROTOCOLS
    from .objectives import OBJECTIVES
    from .tracking import check_trackers

    check_trackers(recipe.logging.trackers)
    for i, spec in enumerate(recipe.objectives):
        if labels is None or spec.label in labels:
            try:
                OBJECTIVES.get(spec.name).preflight(recipe.encoder.name, dict(spec.params))
            except UserError as exc:
                if not str(exc).startswith("params."):
                    raise
                raise UserError(f"objectives.{i}.{exc}") from None  # the recipe key, as validation names it
    for name in recipe.evaluation.protocols:
        protocol, config = PROTOCOLS.get(name), recipe.evaluation.section(name)
        protocol.preflight(config)
        for i, spec in enumerate(recipe.objectives):
            protocol.check_objective(config, OBJECTIVES.get(spec.name), f"objectives.{i} ({spec.label})")


def pretraining_images(spec, train_table, where: str | None = None):
    """Text objectives train on the images that have a report; an empty report teaches nothing.

    ``where``: the objective's recipe key (``objectives.1``), named by the error when none has a report.
    """
    from .objectives import OBJECTIVES

    if "report" not in OBJECTIVES.get(spec.name).needs:
        return train_table
    has_report = (train_table.frame["report"].str.strip() != "").to_numpy()
    if not has_report.any():
        who = f"{where} ({spec.label})" if where else f"objective '{spec.label}'"
        raise UserError(
            f"{who}: needs reports, but no pretraining image has one; use a dataset with reports (a report "
            f"column or report files) or leave this objective out (--exclude {spec.label})"
        )
    if not has_report.all():
        log.warning(
            "%s: %d of %d pretraining images have no report and are left out of this objective",
            spec.label,
            int((~has_report).sum()),
            len(has_report),
        )
    return train_table.take(has_report)


def pretraining_tables(recipe: Recipe, train_table, labels: Sequence[str]) -> dict:
    """``{label: pretraining images}`` of the objectives with ``labels`` (:func:`pretraining_images`)."""
    return {
        spec.label: pretraining_images(spec, train_table, f"objectives.{i}")
        for i, spec in enumerate(recipe.objectives)
        if spec.label in labels
    }


def check_batches(recipe: Recipe, pretraining: dict, labels: Sequence[str], world_size: int) -> None:
    """Each objective with ``labels`` that trains fills one optimiser step per epoch of its images.

    ``train.batch_size`` is per process (:class:`~radtex_bench.data.pipeline.EpochBatchSampler` drops the
    last incomplete batch); checked for every objective before the first trains, so a late one cannot fail
    after the others have run. The sampler and the trainer check again.
    """
    from .objectives import OBJECTIVES

    for i, spec in enumerate(recipe.objectives):
        train = spec.train
        steps = train.max_steps if train.max_steps is not None else train.epochs
        if spec.label not in labels or not OBJECTIVES.get(spec.name).pretrains or not steps:
            continue
        n = len(pretraining[spec.label])
        per_process = n // world_size
        batches = n // (train.batch_size * world_size)
        if batches == 0:
            fix = (
                f"lower it to at most {per_process}"
                if per_process >= 2
                else "use more pretraining images or fewer processes"
            )
            raise ConfigError(
                f"objectives.{i}.train.batch_size",
                f"{n} pretraining images of '{spec.label}' cannot fill one batch of {train.batch_size} per "
                f"process x {world_size} process(es); {fix}",
            )
        if batches < train.grad_accum:
            raise ConfigError(
                f"objectives.{i}.train.grad_accum",
                f"one epoch of '{spec.label}' has {batches} batch(es) of {train.batch_size} per process "
                f"({n} pretraining images, {world_size} process(es)), fewer than grad_accum="
                f"{train.grad_accum}; lower it to at most {batches} (or lower objectives.{i}.train.batch_size)",
            )


def pretraining_out_of_memory(paths: RunDir, index: int, spec, is_main: bool) -> UserError:
    """The error for an objective that ran out of memory while pretraining.

    Its folder is removed when it holds no checkpoint (nothing to resume from): ``--resume`` with lower
    settings then starts it afresh instead of refusing a folder "trained with other settings".
    """
    import shutil

    from .rundir import CHECKPOINT_FILE

    folder = paths.pretrain(spec.label)
    kept = (folder / CHECKPOINT_FILE).exists()
    if is_main and not kept:
        shutil.rmtree(folder, ignore_errors=True)
    where = f"objectives.{index}"
    then = (
        f"delete {folder} (it holds the checkpoint of the old settings) and rerun with --resume"
        if kept
        else "rerun with --resume"
    )
    return UserError(
        f"{where} ({spec.label}): out of memory while pretraining; lower {where}.train.batch_size (raise "
        f"{where}.train.grad_accum to keep the effective batch) or the model sizes in {where}.params (e.g. "
        f"width), then {then}"
    )


def check_pretraining_labels(recipe: Recipe, train_table, labels: Sequence[str] | None = None) -> None:
    """Objectives that train on labels (of those with ``labels``, all when None) need every pathology."""
    from .objectives import OBJECTIVES

    users = [
        s.label
        for s in recipe.objectives
        if "labels" in OBJECTIVES.get(s.name).needs and (labels is None or s.label in labels)
    ]
    absent = [p for p in recipe.data.pathologies if not train_table.has_label(p)]
    if users and absent:
        raise UserError(
            f"data.pathologies: {', '.join(absent)} not labelled in the pretraining dataset, which objective(s) "
            f"{', '.join(users)} train on; remove them from data.pathologies or the objective"
        )


def _agree_on_out(out: Path, dist) -> Path:
    """Under torchrun every rank must write to rank 0's folder (default names carry a timestamp)."""
    if not dist.enabled:
        return out
    import torch.distributed as tdist

    holder = [str(out)]
    tdist.broadcast_object_list(holder, src=0)
    return Path(holder[0])


def evaluate_and_report(
    recipe: Recipe,
    out: Path,
    eval_data,
    subsets,
    encoders: dict[str, Path],
    device,
    workers: int,
    pretraining: dict | None = None,
) -> None:
    """Score every encoder by every protocol and write the tables, plots and report.

    ``pretraining``: each objective's pretraining table (label -> ImageTable), needed to rebuild the
    whole pretrained model for the text protocols (zeroshot, retrieval, generation); without it those
    protocols are skipped.
    """
    from .evaluation.efficiency import write_efficiency_tables
    from .evaluation.evaluator import Evaluator, build_protocols
    from .evaluation.results import (
        COMPARISONS_HEADER,
        RESULTS_HEADER,
        SUMMARY_HEADER,
        Summariser,
        results_rows,
    )
    from .evaluation.text_tables import BootstrapSettings, write_skips, write_text_tables
    from .reporting import build_report

    evaluation = recipe.evaluation
    protocols = build_protocols(
        evaluation.protocols,
        evaluation.sections,
        eval_data,
        recipe.seed,
        device,
        evaluation.batch_size,
        workers,
    )
    evaluator = Evaluator(out, eval_data, subsets, protocols, device, evaluation.batch_size, workers)
    cells = []
    for label, path in encoders.items():
        model = _pretrained_model(recipe, label, out, device, pretraining)
        encoder = evaluator.encoder_under_test(
            label, path, model.load, model.capabilities, model.model_hash, model.note
        )
        try:
            cells.extend(evaluator.evaluate(encoder))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            raise UserError(
                f"evaluation of '{label}': out of memory; lower evaluation.batch_size (and "
                "evaluation.finetune.batch_size when finetune runs), then rerun with --resume"
            ) from exc
    paths = RunDir(out)
    write_text_tables(
        paths,
        cells,
        eval_data.test_patients,
        eval_data.pathologies,
        BootstrapSettings(evaluation.bootstrap, evaluation.confidence, recipe.seed),
        order=list(encoders),
    )
    write_skips(paths, evaluator.skipped)
    cells = [c for c in cells if protocols[c.protocol].auroc]  # the others wrote their own tables
    summariser = Summariser(recipe, eval_data, cells, order=list(encoders))
    write_csv(
        paths.results, RESULTS_HEADER, results_rows(cells, eval_data.pathologies, summariser.test_labels)
    )
    write_csv(paths.summary, SUMMARY_HEADER, summariser.summary_rows())
    write_csv(paths.comparisons, COMPARISONS_HEADER, summariser.comparison_rows())
    write_efficiency_tables(paths, summariser)
    build_report(out)


def _pretrained_model(recipe: Recipe, label: str, out: Path, device, pretraining: dict | None):
    """How the evaluation reaches ``label``'s whole pretrained model (none without its pretraining table)."""
    from .engine.pretrain import PretrainedModel, pretrained_model

    spec = next((s for s in recipe.objectives if s.label == label), None)
    if spec is None or pretraining is None or label not in pretraining:
        return PretrainedModel(None, frozenset(), "")
    return pretrained_model(recipe, spec, pretraining[label], RunDir(out).pretrain(label), device)


def merge(dirs: str | Path | Sequence[str | Path], out: str | Path, device: str = "auto") -> Path:
    """Combine run folders of one recipe (e.g. one ``run --only LABEL`` job each) into the run folder that
    one run of all their objectives would have written: same results, summary, paired comparisons,
    efficiency and text-side tables, report and plots (:mod:`radtex_bench.merging`).

    Folders that differ in anything that breaks pairing are refused (:class:`UserError` naming the first
    difference). The datasets are re-read from the recipe to rebuild the tables; cached evaluation cells
    are reused, so nothing is retrained and normally nothing is rescored (``device`` is used only for a
    cell that no folder has).
    """
    from .config import recipe_from_dict
    from .engine.distributed import resolve_device
    from .engine.pretrain import resolve_workers
    from .merging import check_out, copy_objectives, plan_merge, read_source
    from .rundir import ObjectivePlan
    from .ui import attach_log_file, detach_log_file, info, log_run_end, release_warnings

    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    sources = [read_source(Path(d)) for d in dirs]
    plan = plan_merge(sources)
    out = Path(out)
    check_out(out, sources)
    recipe = recipe_from_dict(plan.recipe)
    torch_device = resolve_device(device)
    try:
        out.mkdir(parents=True, exist_ok=True)
        handler = attach_log_file(RunDir(out).log)
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}; choose a writable --out") from None
    try:
        log.info("radtex-bench merge %s -> %s", " ".join(str(s.dir) for s in sources), out)
        data = load_run_data(recipe, plan.hold)
        first = RunDir(sources[0].dir)
        for path, derived in ((first.splits, data.splits_json()), (first.subsets, data.subsets_json())):
            name = path.name
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored != derived:
                raise UserError(
                    f"merge: the evaluation data changed since {sources[0].dir} ran ({name} differs from "
                    "what the recipe's datasets give now); merge on the data the runs used"
                )
        release_warnings()
        paths = RunDir(out)
        copy_objectives(plan, out)
        write_run_files(paths, data, ObjectivePlan((), plan.hold, plan.selection))
        spec_of = {spec.label: spec for spec in data.recipe.objectives}
        encoders = {label: paths.encoder(label) for label in plan.hold}
        pretraining = {label: pretraining_images(spec_of[label], data.train_table) for label in plan.hold}
        evaluate_and_report(
            data.recipe,
            out,
            data.eval_data,
            data.subsets,
            encoders,
            torch_device,
            resolve_workers(data.recipe, torch_device),
            pretraining,
        )
        info(f"merged {len(plan.hold)} objectives of {len(sources)} folders: {out / 'report.md'}")
        return out
    except BaseException as exc:
        log_run_end(exc)
        raise
    finally:
        detach_log_file(handler)


def summary_table(run_dir: str | Path):
    """``summary.csv`` of a finished run as a pandas DataFrame."""
    import pandas as pd

    path = RunDir(Path(run_dir)).summary
    if not path.exists():
        raise UserError(f"{path} not found; has the run finished?")
    return pd.read_csv(path)


__all__ = ["run", "merge", "summary_table", "default_out", "check_run_dir"]
