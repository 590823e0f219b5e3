"""The Python API behind the CLI; a notebook can call the same functions.

    from radtex_bench import run
    run_dir = run("recipes/captioning_vs_clip.yaml", out="runs/demo")

Data flows one way: recipe -> datasets -> objective training -> encoders -> evaluator -> results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from .config import Recipe, dump_recipe, load_recipe
from .errors import UserError
from .io import write_csv, write_json, write_text

log = logging.getLogger("radtex_bench")

#: Recipe sections that must not change when a run is resumed (evaluation settings may).
FROZEN_ON_RESUME = ("seed", "data", "encoder", "plugins")


def default_out(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _first_difference(a: object, b: object, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            diff = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _first_difference(x, y, f"{path}.{i}")
            if diff:
                return diff
        return None
    return None if a == b else (path or "<root>")


def check_run_dir(out: Path, recipe: Recipe, resume: bool) -> None:
    """Refuse to mix two different recipes' results in one folder."""
    stored_path = out / "recipe.yaml"
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    if not stored_path.exists():
        # A folder holding only the log of a start that failed validation can be reused.
        if any(p for p in out.iterdir() if not (p.name.startswith("run.") and p.name.endswith(".log"))):
            raise UserError(
                f"--out {out} is not empty and holds no radtex-bench run; choose a new or empty folder"
            )
        return
    if not resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    try:
        stored = yaml.safe_load(stored_path.read_text(encoding="utf-8")) or {}
    except Exception as exc:
        raise UserError(f"{stored_path} is unreadable ({exc}); choose another --out") from None
    new = recipe.to_plain()
    for key in FROZEN_ON_RESUME:
        diff = _first_difference(stored.get(key), new.get(key), key)
        if diff:
            raise UserError(
                f"{out} holds a run of a different recipe ({diff} differs from {stored_path}); resume it with "
                "the same recipe, or choose another --out"
            )
    old = {o.get("label"): o for o in stored.get("objectives", [])}
    for i, spec in enumerate(new["objectives"]):
        if spec["label"] in old:
            diff = _first_difference(old[spec["label"]], spec, f"objectives.{i}")
            if diff:
                raise UserError(
                    f"{out}: objective '{spec['label']}' was trained with other settings ({diff} differs); "
                    "give it a new label or choose another --out"
                )


def run(
    recipe: Recipe | str | Path,
    out: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    overrides: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Path:
    """Pretrain every objective of ``recipe``, evaluate every encoder, write tables, plots and report."""
    from .data.loading import load_table
    from .engine.distributed import init_distributed, resolve_device
    from .engine.pretrain import default_workers, pretrain_objective
    from .evaluation.data import build_eval_data, draw_subsets
    from .ui import attach_log_file, detach_log_file, info

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides, exclude)
    elif overrides or exclude:
        from .config import recipe_from_dict

        recipe = recipe_from_dict(recipe.to_plain(), overrides, exclude)
    preflight(recipe)
    torch_device = resolve_device(device)
    dist = init_distributed(torch_device)
    out = _agree_on_out(Path(out) if out else default_out(recipe), dist)

    if dist.is_main:
        check_run_dir(out, recipe, resume)
    dist.barrier()
    try:
        out.mkdir(parents=True, exist_ok=True)
        handler = attach_log_file(out / ("run.log" if dist.is_main else f"run.rank{dist.rank}.log"))
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}; choose a writable --out") from None
    try:
        log.info(
            "radtex-bench run %s -> %s (device %s, %d process(es), resume=%s)",
            recipe.name,
            out,
            torch_device,
            dist.world_size,
            resume,
        )
        # Everything that can be wrong with the data is found before any training starts.
        size = recipe.encoder.image_size
        pretrain_table = load_table(
            recipe.data.pretrain, recipe.data.on_bad_image, "data.pretrain", image_size=size
        )
        train_table = pretrain_table.take(pretrain_table.split_rows("train"))
        if len(train_table) == 0:
            raise UserError("data.pretrain: the pretraining dataset has no 'train' split images")
        check_pretraining_labels(recipe, train_table)
        if recipe.data.evaluate is None:
            eval_table, eval_where = pretrain_table, "data.pretrain"
        else:
            eval_table = load_table(
                recipe.data.evaluate, recipe.data.on_bad_image, "data.evaluate", image_size=size
            )
            eval_where = "data.evaluate"
        eval_data = build_eval_data(recipe, eval_table, eval_where)
        subsets = draw_subsets(recipe, eval_data)

        if dist.is_main:
            write_text(out / "recipe.yaml", dump_recipe(recipe))
            write_json(
                out / "splits.json",
                {
                    "train": eval_data.ids(eval_data.pool),
                    "val": eval_data.ids(eval_data.val),
                    "test": eval_data.ids(eval_data.test),
                },
            )
            write_json(
                out / "subsets.json",
                {
                    str(s): {str(b): eval_data.ids(rows) for b, rows in by_b.items()}
                    for s, by_b in subsets.items()
                },
            )
            skipped = pretrain_table.skipped + (
                eval_table.skipped if eval_table is not pretrain_table else []
            )
            if skipped:
                write_text(out / "skipped_images.txt", "".join(f"{p}\t{why}\n" for p, why in skipped))
            info(
                f"[bold]{recipe.name}[/]: {len(train_table)} pretraining images, evaluation on "
                f"{len(eval_data.pool)} / {len(eval_data.val)} / {len(eval_data.test)} train-pool / val / test "
                f"images, {len(recipe.objectives)} objectives -> {out}"
            )

        encoders = {}
        for spec in recipe.objectives:
            encoders[spec.label] = pretrain_objective(
                recipe,
                spec,
                pretraining_images(spec, train_table),
                out / "pretrain" / spec.label,
                torch_device,
                dist,
                resume=resume,
            )
        dist.barrier()
        if dist.is_main:
            workers = (
                recipe.data.workers if recipe.data.workers is not None else default_workers(torch_device)
            )
            evaluate_and_report(recipe, out, eval_data, subsets, encoders, torch_device, workers)
            info(f"done: {out / 'report.md'}")
        dist.barrier()
        return out
    except UserError:
        raise
    except Exception:
        log.exception("internal error")
        raise
    finally:
        detach_log_file(handler)
        if dist.enabled:
            from .engine.distributed import shutdown

            shutdown()  # NCCL warns (and may leak) when a process exits with its group alive


def preflight(recipe: Recipe) -> None:
    """Objective-specific checks that must pass before any work (e.g. ImageNet weights present offline)."""
    from .objectives import OBJECTIVES

    for spec in recipe.objectives:
        OBJECTIVES.get(spec.name).preflight(recipe.encoder.name, dict(spec.params))


def pretraining_images(spec, train_table):
    """Text objectives train on the images that have a report; an empty report teaches nothing."""
    from .objectives import OBJECTIVES

    if "report" not in OBJECTIVES.get(spec.name).needs:
        return train_table
    has_report = (train_table.frame["report"].str.strip() != "").to_numpy()
    if not has_report.any():
        raise UserError(
            f"objective '{spec.label}' needs reports, but no pretraining image has one; use a dataset "
            "with reports (a report column or report files) or drop this objective"
        )
    if not has_report.all():
        log.warning(
            "%s: %d of %d pretraining images have no report and are left out of this objective",
            spec.label,
            int((~has_report).sum()),
            len(has_report),
        )
    return train_table.take(has_report)


def check_pretraining_labels(recipe: Recipe, train_table) -> None:
    from .objectives import OBJECTIVES

    users = [s.label for s in recipe.objectives if "labels" in OBJECTIVES.get(s.name).needs]
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
    recipe: Recipe, out: Path, eval_data, subsets, encoders: dict[str, Path], device, workers: int
) -> None:
    from .evaluation.evaluator import Evaluator
    from .evaluation.results import (
        COMPARISONS_HEADER,
        RESULTS_HEADER,
        SUMMARY_HEADER,
        Summariser,
        results_rows,
    )
    from .reporting import build_report

    evaluator = Evaluator(recipe, out, eval_data, subsets, device, workers)
    cells = []
    for label, path in encoders.items():
        cells.extend(evaluator.evaluate(label, path))
    summariser = Summariser(recipe, eval_data, cells, order=list(encoders))
    write_csv(out / "results.csv", RESULTS_HEADER, results_rows(cells, eval_data.pathologies))
    write_csv(out / "summary.csv", SUMMARY_HEADER, summariser.summary_rows())
    write_csv(out / "comparisons.csv", COMPARISONS_HEADER, summariser.comparison_rows())
    build_report(out)


def summary_table(run_dir: str | Path):
    """``summary.csv`` of a finished run as a pandas DataFrame."""
    import pandas as pd

    path = Path(run_dir) / "summary.csv"
    if not path.exists():
        raise UserError(f"{path} not found; has the run finished?")
    return pd.read_csv(path)


__all__ = ["run", "summary_table", "default_out", "check_run_dir"]
