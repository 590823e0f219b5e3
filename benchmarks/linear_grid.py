"""What the linear evaluation grid costs next to one feature-extraction pass.

The linear protocol extracts frozen features once per encoder; every (budget, seed, pathology) probe
then works on those features. This script times, on the synthetic set, one extraction pass and the
full grid of probes (default 6 budgets x 5 seeds x 9 pathologies) for one encoder, and prints one JSON
object.

    python benchmarks/linear_grid.py --n 3000 --size 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from radtex_bench.config import recipe_from_dict
from radtex_bench.data.loading import load_table
from radtex_bench.encoders import file_sha256, save_encoder
from radtex_bench.engine.pretrain import initial_encoder
from radtex_bench.evaluation.data import build_eval_data, draw_subsets
from radtex_bench.evaluation.evaluator import Evaluator, build_protocols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 25, 50, 100, 250, 1000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = recipe_from_dict(
        {
            "name": "grid",
            "objectives": [{"name": "random"}],
            "data": {"pretrain": {"kind": "synthetic", "n": args.n, "size": args.size}},
            "encoder": {"name": "resnet18", "image_size": args.size},
            "evaluation": {"budgets": args.budgets, "seeds": args.seeds, "bootstrap": 0},
        }
    )
    table = load_table(recipe.data.pretrain)
    data = build_eval_data(recipe, table, "data.pretrain")
    subsets = draw_subsets(recipe, data)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        encoder = initial_encoder(recipe)
        path = Path(tmp) / "encoder.safetensors"
        save_encoder(encoder, path)
        protocols = build_protocols(
            ("linear",), recipe.evaluation.sections, data, recipe.seed, device, 128, 0
        )
        evaluator = Evaluator(Path(tmp), data, subsets, protocols, device)
        start = time.perf_counter()
        evaluator.features("random", path, file_sha256(path))  # one pass, cached on disk like in a run
        extraction_s = time.perf_counter() - start
        start = time.perf_counter()
        # reuses the cached features: every probe of the grid
        cells = evaluator.evaluate(evaluator.encoder_under_test("random", path))
        grid_s = time.perf_counter() - start
    n_probes = len(cells) * len(data.pathologies)
    print(
        json.dumps(
            {
                "images": len(data.table),
                "image_size": args.size,
                "budgets": args.budgets,
                "seeds": args.seeds,
                "pathologies": len(data.pathologies),
                "cells": len(cells),
                "probes": n_probes,
                "extraction_s": round(extraction_s, 2),
                "grid_s": round(grid_s, 2),
                "grid_over_extraction": round(grid_s / extraction_s, 2),
                "ms_per_probe": round(1000 * grid_s / n_probes, 1),
                "threads": args.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
