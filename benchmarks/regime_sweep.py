"""Map the RadTex regime: captioning minus supervised against pretraining-label noise, at every budget.

Runs ``recipes/radtex_regime.yaml`` once per noise level (``--set data.pretrain.label_flip=<level>`` by
default; ``--key`` sweeps another key, ``--set`` adds settings to every run), each into its own run
folder, then reads the runs' own ``summary.csv`` and ``comparisons.csv`` into one table:

    OUT/<name>-<level>/   one ordinary run folder per level (resumed when it exists)
    OUT/regime.csv        level,budget,<objective>,...,diff,ci_low,ci_high,p_holm   (A - B, paired)
    OUT/regime.md         the same as a markdown table, with the command and the crossover
    OUT/times.json        wall seconds of each run (a record of time: not reproducible)

``diff`` is the paired macro-AUROC difference A - B (default captioning - supervised) from the run's
comparisons.csv: same test patients, same labelled subsets, its 95% patient-bootstrap interval and Holm
p-value. Nothing is computed here that the runs did not write.

When the swept key is a pretraining-label key (:data:`LABEL_KEYS`), objectives that never read labels
(captioning, clip, report_labels: no ``labels`` in their ``needs``) would train to the same bytes at every
level, so they are trained once, at the first level, and the other levels score that level's
``encoder.safetensors`` through the ``checkpoint`` objective under the same label (``OUT/recipes/`` holds
the recipes run; each run's recipe.yaml records it). The sweep then costs one full run plus one
``supervised`` run per further level. ``--no-reuse`` trains everything at every level; ``--reuse-from
RUN`` scores the label-free encoders of an earlier finished run at every level (a second sweep of
another key).

    python benchmarks/regime_sweep.py                 # label_flip 0, 0.1, ..., 0.5 into runs/regime_sweep
    python benchmarks/regime_sweep.py --levels 0 0.25 --out runs/sweep2
    python benchmarks/regime_sweep.py --key data.pretrain.label_missing --levels 0.5 0.9 \
        --reuse-from runs/regime_sweep/label_flip-0 --out runs/regime_missing
    python benchmarks/regime_sweep.py --collect-only                   # re-read finished runs
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Keys that change only what label-reading objectives see (docs/synthetic.md, "Pretraining labels").
LABEL_KEYS = tuple(
    f"data.pretrain.{k}"
    for k in (
        "pretrain_labels",
        "label_flip",
        "label_uncertain",
        "label_missing",
        "unlabelled_images",
        "label_seed",
    )
)


def reusing_recipe(
    recipe: Path, first: Path, out: Path, sets: list[str] = (), exclude: list[str] = ()
) -> Path:
    """``recipe`` with the ``--set`` settings and ``--exclude`` labels applied, then every objective that
    reads no labels replaced by a ``checkpoint`` of its encoder from the run folder ``first`` (same
    label, so the run's tables name it as before). The settings are applied here, not again on the
    command line: a ``--set objectives.0.params...`` would not fit the checkpoint entry."""
    import yaml

    from radtex_bench.config import load_recipe
    from radtex_bench.objectives import OBJECTIVES

    raw = load_recipe(recipe, sets, exclude).to_plain()
    objectives = []
    for spec in raw["objectives"]:
        cls = OBJECTIVES.get(spec["name"])
        label = spec.get("label", spec["name"])
        if cls.pretrains and "labels" not in cls.needs:
            path = (first / "pretrain" / label / "encoder.safetensors").resolve()
            spec = {"name": "checkpoint", "label": label, "params": {"path": str(path)}}
        objectives.append(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump({**raw, "objectives": objectives}, sort_keys=False), encoding="utf-8")
    return out


def run_level(
    recipe: Path, out: Path, key: str, level: str, sets: list[str], device: str, exclude: list[str] = ()
) -> float:
    """One ordinary ``radtex-bench run`` of ``recipe`` at ``key=level``; returns its wall seconds."""
    cmd = [sys.executable, "-m", "radtex_bench", "--quiet", "run", str(recipe), "--out", str(out)]
    cmd += ["--set", f"{key}={level}", "--device", device]
    for setting in sets:
        cmd += ["--set", setting]
    for label in exclude:
        cmd += ["--exclude", label]
    if (out / "recipe.yaml").exists():
        cmd.append("--resume")  # an interrupted sweep continues; a finished level is only re-read
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def paired(comparisons: list[dict[str, str]], protocol: str, budget: str, a: str, b: str) -> dict[str, float]:
    """A - B at ``budget`` from a run's comparisons.csv (its rows hold the recipe order; B - A is negated)."""
    for row in comparisons:
        if row["protocol"] != protocol or row["budget"] != budget:
            continue
        sign = {(a, b): 1.0, (b, a): -1.0}.get((row["objective_a"], row["objective_b"]))
        if sign is None:
            continue
        low, high = sign * float(row["ci_low"]), sign * float(row["ci_high"])
        return {
            "diff": sign * float(row["diff"]),
            "ci_low": min(low, high),
            "ci_high": max(low, high),
            "p_holm": float(row["p_holm"]),
        }
    raise SystemExit(f"no {a} vs {b} comparison at budget {budget} ({protocol}); are both in the recipe?")


def collect(folders: dict[str, Path], protocol: str, a: str, b: str) -> tuple[list[str], list[dict]]:
    """Rows of the sweep table, one per (level, budget)."""
    rows, objectives = [], []
    for level, folder in folders.items():
        summary = [r for r in read_csv(folder / "summary.csv") if r["protocol"] == protocol]
        comparisons = read_csv(folder / "comparisons.csv")
        for r in summary:
            if r["objective"] not in objectives:
                objectives.append(r["objective"])
        for budget in sorted({r["budget"] for r in summary}, key=float):
            auc = {r["objective"]: float(r["macro_auc"]) for r in summary if r["budget"] == budget}
            rows.append(
                {
                    "level": level,
                    "budget": int(float(budget)),
                    **auc,
                    **paired(comparisons, protocol, budget, a, b),
                }
            )
    return objectives, rows


def crossover(rows: list[dict], a: str, b: str) -> list[str]:
    """Per budget: the lowest level at which A beats B (point estimate, and with the interval above 0)."""
    lines = []
    for budget in sorted({r["budget"] for r in rows}):
        at = [r for r in rows if r["budget"] == budget]
        point = next((r["level"] for r in at if r["diff"] > 0), None)
        sure = next((r["level"] for r in at if r["ci_low"] > 0), None)
        lines.append(
            f"- {budget} labels: {a} ahead from level {point if point is not None else '— (never)'}; "
            f"interval above 0 from {sure if sure is not None else '— (never)'}"
        )
    return lines


def markdown(objectives: list[str], rows: list[dict], key: str, a: str, b: str, command: str) -> str:
    head = ["level", "budget", *objectives, f"{a} − {b} [95% CI]", "p_holm"]
    lines = [
        f"`{command}`",
        "",
        f"level = `{key}`",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [str(r["level"]), str(r["budget"]), *(f"{r[o]:.3f}" if o in r else "" for o in objectives)]
        cells += [f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", f"{r['p_holm']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", "Crossover:", *crossover(rows, a, b)]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "radtex_regime.yaml")
    parser.add_argument("--out", type=Path, default=Path("runs") / "regime_sweep")
    parser.add_argument("--key", default="data.pretrain.label_flip", help="the recipe key swept")
    parser.add_argument("--levels", nargs="+", default=["0", "0.1", "0.2", "0.3", "0.4", "0.5"])
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE for every run")
    parser.add_argument(
        "--exclude", action="append", default=[], help="an objective label left out of every run"
    )
    parser.add_argument("--a", default="captioning", help="objective label A of the difference A - B")
    parser.add_argument("--b", default="supervised", help="objective label B")
    parser.add_argument("--protocol", default="linear")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--collect-only", action="store_true", help="only read the finished runs")
    parser.add_argument("--no-reuse", action="store_true", help="train every objective at every level")
    parser.add_argument(
        "--reuse-from",
        type=Path,
        help="a finished run of the same recipe whose label-free encoders every level scores",
    )
    args = parser.parse_args()

    name = args.key.rsplit(".", 1)[-1]
    folders = {level: args.out / f"{name}-{level}" for level in args.levels}
    args.out.mkdir(parents=True, exist_ok=True)
    times_path = args.out / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    if not args.collect_only:
        first = args.reuse_from or next(iter(folders.values()))
        reuse = args.key in LABEL_KEYS and not args.no_reuse
        for i, (level, folder) in enumerate(folders.items()):
            recipe, sets, exclude = args.recipe, args.sets, args.exclude
            if reuse and (i > 0 or args.reuse_from):
                path = args.out / "recipes" / f"{name}-{level}.yaml"
                recipe, sets, exclude = reusing_recipe(args.recipe, first, path, sets, exclude), [], []
            finished = (folder / "report.md").exists()
            seconds = round(run_level(recipe, folder, args.key, level, sets, args.device, exclude), 1)
            if not (finished and level in times):  # a finished level is only re-read: keep its time
                times[level] = seconds
            times_path.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")

    objectives, rows = collect(folders, args.protocol, args.a, args.b)
    with open(args.out / "regime.csv", "w", newline="", encoding="utf-8") as f:
        fields = ["level", "budget", *objectives, "diff", "ci_low", "ci_high", "p_holm"]
        writer = csv.DictWriter(f, fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    command = " ".join(["python benchmarks/regime_sweep.py", *sys.argv[1:]])
    text = markdown(objectives, rows, args.key, args.a, args.b, command)
    (args.out / "regime.md").write_text(text, encoding="utf-8")
    print(text)
    if times:
        print("wall seconds per level:", json.dumps(times, sort_keys=True))


if __name__ == "__main__":
    main()
