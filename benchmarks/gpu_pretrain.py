"""Images/s of captioning, clip and simclr pretraining on one GPU: resnet50, 224 px, uint8 pixel cache.

    python benchmarks/gpu_pretrain.py --out results.json             # one H200: well under 5 minutes
    python benchmarks/gpu_pretrain.py --out results.json --compile   # + torch.compile (adds compile time)
    python benchmarks/gpu_pretrain.py --smoke --out smoke.json       # tiny sizes; runs on the CPU too

It writes its own data: ``--images`` synthetic radiographs (``radtex-bench synth``) prepared into a
uint8 cache at ``--size`` px (``radtex-bench prepare``), listed ``--repeat`` times so an epoch is long
enough that loader restarts do not show. Each objective then trains through the toolkit's own
:class:`~radtex_bench.engine.trainer.Trainer` (bf16 autocast, channels_last, fused AdamW, pinned
non-blocking copies, simclr's views augmented on the GPU) for ``--warmup`` untimed and ``--steps``
timed steps. Reported per objective: images/s (source images; simclr makes 2 views of each), seconds per
step, peak GPU memory, and GPU utilisation sampled every 0.1 s during the timed steps (pynvml via
``torch.cuda.utilization``; null when unavailable). One JSON object goes to ``--out`` and stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radtex_bench.data.labels import RADTEX_9

OBJECTIVES = ("captioning", "clip", "simclr")
FULL_PARAMS = {
    "captioning": {"bidirectional": True, "decoder_layers": 1, "width": 512, "heads": 8, "vocab_size": 4096},
    "clip": {"embed_dim": 512, "width": 512, "layers": 4, "heads": 8, "vocab_size": 4096},
    "simclr": {"hidden_dim": 2048, "projection_dim": 128},
}
SMOKE_PARAMS = {
    "captioning": {"width": 32, "heads": 2, "vocab_size": 300, "min_frequency": 1},
    "clip": {"width": 32, "heads": 2, "layers": 1, "embed_dim": 16, "vocab_size": 300, "min_frequency": 1},
    "simclr": {"hidden_dim": 64, "projection_dim": 32},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="JSON results file")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (resnet18, 32 px, a few steps): a test")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated subset")
    p.add_argument("--encoder", default=None, help="[resnet50; smoke: resnet18]")
    p.add_argument("--size", type=int, default=None, help="image side [224; smoke: 32]")
    p.add_argument("--batch-size", type=int, default=None, help="per step [256; smoke: 4]")
    p.add_argument("--images", type=int, default=None, help="distinct synthetic images [1024; smoke: 48]")
    p.add_argument("--repeat", type=int, default=None, help="times each image is listed [16; smoke: 1]")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps [10; smoke: 1]")
    p.add_argument("--steps", type=int, default=None, help="timed steps [30; smoke: 2]")
    p.add_argument("--workers", type=int, default=None, help="loader processes [min(8, CPUs - 1); smoke: 0]")
    p.add_argument(
        "--views",
        default="auto",
        choices=["auto", "device", "workers"],
        help="simclr views: batched on the training device (auto on CUDA) or per image in the workers",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default]")
    p.add_argument("--compile", action="store_true", help="torch.compile each objective (train.compile)")
    p.add_argument("--work", type=Path, default=None, help="keep the data and runs here [a temporary folder]")
    args = p.parse_args(argv)
    smoke = {
        "encoder": "resnet18",
        "size": 32,
        "batch_size": 4,
        "images": 48,
        "repeat": 1,
        "warmup": 1,
        "steps": 2,
        "workers": 0,
    }
    full = {
        "encoder": "resnet50",
        "size": 224,
        "batch_size": 256,
        "images": 1024,
        "repeat": 16,
        "warmup": 10,
        "steps": 30,
        "workers": None,
    }
    for key, value in (smoke if args.smoke else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def build_cache(work: Path, images: int, size: int, workers: int | None) -> tuple[Path, Path, float]:
    """Synthetic radiographs at ``size`` px -> a prepared uint8 cache; returns (manifest, cache, seconds)."""
    from radtex_bench.data.cache import prepare
    from radtex_bench.data.synthetic import generate_synthetic

    start = time.perf_counter()
    data = generate_synthetic(work / "synth", n=images, size=size, seed=0)
    prepare("manifest", str(data / "manifest.csv"), work / "cache", size=size, workers=workers)
    return data / "manifest.csv", work / "cache", time.perf_counter() - start


def make_recipe(args: argparse.Namespace, manifest: Path, cache: Path, names: list[str]):
    from radtex_bench.config import recipe_from_dict

    params = SMOKE_PARAMS if args.smoke else FULL_PARAMS
    train = {
        "max_steps": args.warmup + args.steps,
        "batch_size": args.batch_size,
        "checkpoint_every": 0,
        "log_every": args.warmup + args.steps,
        "lr": 1e-4,
        "compile": args.compile,
    }
    return recipe_from_dict(
        {
            "name": "gpu_pretrain",
            "data": {
                "pretrain": {"kind": "manifest", "root": str(manifest), "cache": str(cache)},
                "pathologies": list(RADTEX_9),
                "workers": args.workers,
            },
            "encoder": {"name": args.encoder, "image_size": args.size},
            "objectives": [{"name": n, "params": params[n], "train": train} for n in names],
        }
    )


class UtilisationSampler:
    """GPU utilisation (%) sampled every ``period`` seconds in a thread between start() and stop()."""

    def __init__(self, device: torch.device, period: float = 0.1):
        self.read = gpu_utilisation_reader(device)
        self.period = period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.samples.append(float(self.read()))

    def start(self) -> None:
        if self.read is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return round(statistics.mean(self.samples), 1) if self.samples else None


def gpu_utilisation_reader(device: torch.device) -> Callable[[], float] | None:
    """``torch.cuda.utilization`` (pynvml underneath), or pynvml directly; None where neither works."""
    if device.type != "cuda":
        return None
    try:
        torch.cuda.utilization(device)
        return lambda: torch.cuda.utilization(device)
    except Exception:  # noqa: BLE001 - any failure means "not available"
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        return lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    except Exception:  # noqa: BLE001
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_objective(recipe, spec, table, device: torch.device, args: argparse.Namespace, work: Path) -> dict:
    """Train ``spec`` for warmup + steps; time the last ``steps`` between two device synchronisations."""
    from radtex_bench.engine.distributed import DistInfo
    from radtex_bench.engine.pretrain import PretrainingData, build_objective, build_trainer

    marks: dict[str, float] = {}
    sampler = UtilisationSampler(device)

    def clock(trainer) -> None:
        if trainer.pos.step == args.warmup:
            sync(device)
            marks["start"] = time.perf_counter()
            sampler.start()
        elif trainer.pos.step == args.warmup + args.steps:
            sync(device)
            marks["end"] = time.perf_counter()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    out_dir = work / "runs" / spec.label
    data = PretrainingData.of(recipe, spec, table)
    objective = build_objective(recipe, spec, data, out_dir, DistInfo())
    device_views = {"auto": None, "device": True, "workers": False}[args.views]
    trainer = build_trainer(
        recipe,
        spec,
        objective,
        data,
        out_dir,
        device,
        DistInfo(),
        device_views=device_views,
        step_hook=clock,
    )
    trainer.fit()
    utilisation = sampler.stop()
    seconds = marks["end"] - marks["start"]
    views = "views" in objective.needs
    return {
        "objective": spec.name,
        "batch_size": spec.train.batch_size,
        "precision": str(trainer.amp_dtype or torch.float32).removeprefix("torch."),
        "images_per_s": round(args.steps * spec.train.batch_size / seconds, 1),
        "views_per_image": objective.n_views if views else 1,
        "views_made_on": ("device" if trainer.view_augment is not None else "workers") if views else None,
        "step_s": round(seconds / args.steps, 4),
        "peak_mem_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
        "gpu_util_mean": utilisation,
        "gpu_util_samples": len(sampler.samples),
        "seconds_total": round(time.perf_counter() - started, 1),
    }


def pretrain_rows(recipe, repeat: int):
    """The pretraining split, each image listed ``repeat`` times (long epochs from a small cache)."""
    from radtex_bench.data.loading import load_table

    table = load_table(recipe.data.pretrain, where="data.pretrain")
    train = table.take(table.split_rows("train"))
    return train.take(np.tile(np.arange(len(train)), repeat))


def main(argv: list[str] | None = None) -> int:
    from radtex_bench.engine.distributed import resolve_device
    from radtex_bench.ui import set_quiet

    args = parse_args(argv)
    set_quiet(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = [n.strip() for n in args.objectives.split(",") if n.strip()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="radtex-gpu-bench-") as tmp:
        work = args.work or Path(tmp)
        manifest, cache, data_s = build_cache(work, args.images, args.size, args.workers)
        recipe = make_recipe(args, manifest, cache, names)
        table = pretrain_rows(recipe, args.repeat)
        results = []
        for spec in recipe.objectives:
            results.append(bench_objective(recipe, spec, table, device, args, work))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    report: dict[str, Any] = {
        "benchmark": "gpu_pretrain",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "encoder": args.encoder,
        "image_size": args.size,
        "channels_last": device.type == "cuda",
        "compile": args.compile,
        "pretraining_rows": len(table),
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "data_seconds": round(data_s, 1),
        "results": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
