"""Why captioning does (not) beat supervised in a run of ``recipes/radtex_regime.yaml``: three measurements.

1. **Pretraining steps**: each objective's loss curve from its ``metrics.jsonl`` (first, last, and the
   relative fall over the last quarter of the steps: a loss still falling fast was stopped early).
2. **How much the captioner reads the image**: the trained captioning model's forward loss (nats per
   report token) on test images with their own reports, and with the reports of other images (the
   batch rolled by one). The gap is what the image tells the decoder, i.e. the part of the captioning
   signal that reaches the encoder; the rest of the loss is language the decoder learns from text alone.
3. **What the reports carry beyond the labels**: the share of pretraining reports that state
   laterality, severity, location, devices, measurements, comparisons, incidental findings (none of which
   is one of the 9 labels), and how many words a report has.

    python benchmarks/regime_why.py runs/regime_sweep/label_flip-0

Prints one JSON object. CPU, about a minute for 512 test images.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

#: Report content the 9 labels do not carry, as regular expressions over the lower-cased report.
CONTENT = {
    "laterality": r"\b(?:left|right|bilateral|bibasilar)\b",
    "severity": r"\b(?:trace|tiny|small|mild|mildly|moderate|moderately|large|severe|marked|extensive)\b",
    "location": r"\b(?:upper|middle|lower|lobe|lingula|base|bases|apical|apex|perihilar|retrocardiac|zone)\b",
    "devices": r"\b(?:tube|line|catheter|pacemaker|picc|wires)\b",
    "measurements": r"\d+(?:\.\d+)? ?(?:cm|mm)\b",
    "comparison": r"\b(?:prior|since|unchanged|increased|decreased|new)\b",
    "incidental (nodule, fracture, scoliosis, aorta, sternotomy)": (
        r"\b(?:nodule|mass|fracture|scoliosis|dextroscoliosis|levoscoliosis|tortuous|sternotomy)\b"
    ),
}


def loss_curves(run: Path) -> dict[str, dict[str, float]]:
    """Per objective: steps, first and last logged loss, and the relative fall over the last quarter of
    the steps (the learning rate decays there too, so a large fall means training was cut short)."""
    out = {}
    for metrics in sorted((run / "pretrain").glob("*/metrics.jsonl")):
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        records = [r for r in records if "loss" in r]
        if not records:
            continue
        last = records[-1]
        start = next(r for r in records if r["step"] >= 0.75 * last["step"])
        out[metrics.parent.name] = {
            "steps": last["step"],
            "first_loss": round(records[0]["loss"], 4),
            "loss_at_3/4": round(start["loss"], 4),
            "last_loss": round(last["loss"], 4),
            "fall_over_last_quarter": round((start["loss"] - last["loss"]) / start["loss"], 4),
        }
    return out


@torch.no_grad()
def image_use(run: Path, label: str, n: int) -> dict[str, float]:
    from radtex_bench.api import load_run_data, pretraining_images
    from radtex_bench.config import load_recipe
    from radtex_bench.engine.inference import image_batches
    from radtex_bench.engine.pretrain import load_pretrained

    recipe = load_recipe(run / "recipe.yaml")
    spec = next(s for s in recipe.objectives if s.label == label)
    data = load_run_data(recipe)
    device = torch.device("cpu")
    model = load_pretrained(
        recipe, spec, pretraining_images(spec, data.train_table), run / "pretrain" / label, device
    )
    test = data.eval_data.table.take(data.eval_data.test[:n])
    reports = test.frame["report"].tolist()
    own, other = [], []
    for rows, images in image_batches(
        test, recipe.encoder.image_size, device, 64, normalization=model.encoder.normalization
    ):
        texts = [reports[int(i)] for i in rows]
        own.append(float(model({"image": images, "report": texts})["forward_loss"]) * len(rows))
        other.append(float(model({"image": images.roll(1, 0), "report": texts})["forward_loss"]) * len(rows))
    count = len(reports)
    return {
        "images": count,
        "loss_own_image": round(sum(own) / count, 4),
        "loss_other_image": round(sum(other) / count, 4),
        "gap": round((sum(other) - sum(own)) / count, 4),
    }


def report_content(run: Path) -> dict[str, float]:
    from radtex_bench.api import load_run_data
    from radtex_bench.config import load_recipe

    table = load_run_data(load_recipe(run / "recipe.yaml")).train_table
    reports = [r.lower() for r in table.frame["report"]]
    shares = {
        k: round(float(np.mean([bool(re.search(p, r)) for r in reports])), 3) for k, p in CONTENT.items()
    }
    words = [len(re.findall(r"[a-z]+", r)) for r in reports]
    return {"reports": len(reports), "words_per_report": round(float(np.mean(words)), 1), **shares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder of recipes/radtex_regime.yaml")
    parser.add_argument("--label", default="captioning", help="the captioning objective's label")
    parser.add_argument("--n", type=int, default=512, help="test images for the image-use measurement")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "loss_curves": loss_curves(args.run),
        "captioning_image_use": image_use(args.run, args.label, args.n),
        "report_content": report_content(args.run),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
