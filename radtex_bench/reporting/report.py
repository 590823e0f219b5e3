"""``report.md``: the summary table (best per budget in bold), comparisons and plots.

Built from ``summary.csv``, ``results.csv`` and ``comparisons.csv`` alone, so ``radtex-bench report DIR``
can rebuild it anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from ..errors import UserError
from ..io import write_text
from . import plots


def _read(path: Path, required: bool = True) -> pd.DataFrame | None:
    if not path.exists():
        if required:
            raise UserError(f"{path} not found; is {path.parent} a finished radtex-bench run?")
        return None
    try:
        return pd.read_csv(path)
    except Exception as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if pd.isna(x) else f"{x:.{digits}f}"


def _objective_order(run_dir: Path, summary: pd.DataFrame) -> list[str]:
    recipe_path = run_dir / "recipe.yaml"
    seen = list(dict.fromkeys(summary["objective"]))
    if recipe_path.exists():
        try:
            recipe = yaml.safe_load(recipe_path.read_text())
            order = [o.get("label") or o.get("name") for o in recipe.get("objectives", [])]
            return [o for o in order if o in seen] + [o for o in seen if o not in order]
        except Exception:
            pass
    return seen


def summary_markdown(summary: pd.DataFrame, order: list[str]) -> str:
    lines = []
    for protocol in dict.fromkeys(summary["protocol"]):
        part = summary[summary["protocol"] == protocol]
        budgets = sorted(part["budget"].unique())
        lines.append(
            f"**{protocol} protocol**: macro AUROC on the test split, mean ± std over seeds "
            "[95% patient-bootstrap interval]\n"
        )
        lines.append("| objective | " + " | ".join(f"{b} labels" for b in budgets) + " |")
        lines.append("|---|" + "---|" * len(budgets))
        best = part.groupby("budget")["macro_auc"].max()
        for label in order:
            cells = []
            for b in budgets:
                row = part[(part["objective"] == label) & (part["budget"] == b)]
                if row.empty:
                    cells.append("")
                    continue
                r = row.iloc[0]
                text = f"{_fmt(r.macro_auc)} ± {_fmt(r.macro_auc_std)}"
                if not pd.isna(r.macro_auc) and r.macro_auc == best[b]:
                    text = f"**{text}**"
                if not pd.isna(r.ci_low):
                    text += f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
                cells.append(text)
            if any(cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _p_text(p: float, n_boot: float | None) -> str:
    """A bootstrap p-value; at the smallest value B replicates can give, 2/(B+1), it is an upper bound."""
    if pd.isna(p):
        return "n/a"
    # comparisons.csv rounds p to 5 decimals, hence the tolerance.
    if n_boot is not None and not pd.isna(n_boot) and p <= 2.0 / (n_boot + 1) + 1e-5:
        return f"≤ {p:.4f}"
    return f"{p:.4f}"


def comparisons_markdown(comparisons: pd.DataFrame) -> str:
    lines = ["| protocol | budget | A | B | A − B | 95% CI | p |", "|---|---|---|---|---|---|---|"]
    for r in comparisons.itertuples():
        mark = " *" if r.p_value < 0.05 else ""
        p = _p_text(r.p_value, getattr(r, "n_boot", None))
        lines.append(
            f"| {r.protocol} | {r.budget} | {r.objective_a} | {r.objective_b} | {r.diff:+.3f} | "
            f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {p}{mark} |"
        )
    return "\n".join(lines)


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(
            f"{run_dir} is not a folder; pass the run directory (the --out of `radtex-bench run`)"
        )
    summary = _read(run_dir / "summary.csv")
    results = _read(run_dir / "results.csv")
    comparisons = _read(run_dir / "comparisons.csv", required=False)
    order = _objective_order(run_dir, summary)
    plot_dir = run_dir / "plots"
    plots.auc_vs_budget(summary, plot_dir / "auc_vs_budget.png", order)
    heatmaps = []
    for protocol in dict.fromkeys(summary["protocol"]):  # summary.csv keeps the recipe's order
        for budget in sorted(results["budget"].unique()):
            name = f"heatmap_{protocol}_b{budget}.png"
            plots.pathology_heatmap(results, int(budget), protocol, plot_dir / name, order)
            heatmaps.append((protocol, int(budget), name))
    has_comparisons = comparisons is not None and not comparisons.empty
    if has_comparisons:
        plots.win_loss(comparisons, plot_dir / "win_loss.png", order)

    name = run_dir.name
    recipe_path = run_dir / "recipe.yaml"
    if recipe_path.exists():
        try:
            name = yaml.safe_load(recipe_path.read_text()).get("name", name)
        except Exception:
            pass
    parts = [
        f"# radtex-bench report: {name}\n",
        "Per-pathology AUROC of a probe trained on each labelled budget, averaged over pathologies "
        "(macro) and over seeds. Intervals resample test patients. See docs/evaluation.md for the protocol.\n",
        "## Summary\n",
        summary_markdown(summary, order),
        "![macro AUROC vs budget](plots/auc_vs_budget.png)\n",
    ]
    if has_comparisons:
        parts += [
            "## Paired comparisons\n",
            "Difference in seed-averaged macro AUROC, paired bootstrap over the same test patients "
            "and labelled subsets (* p < 0.05; with B bootstrap replicates no p below 2/(B+1) can be "
            "shown, so that value is written as an upper bound, ≤).\n",
            comparisons_markdown(comparisons),
            "",
            "![wins](plots/win_loss.png)\n",
        ]
    parts.append("## Per-pathology AUROC\n")
    for protocol, budget, file in heatmaps:
        parts.append(f"### {protocol}, budget {budget}\n\n![heatmap](plots/{file})\n")
    skipped = run_dir / "skipped_images.txt"
    if skipped.exists():
        lines = [line for line in skipped.read_text().splitlines() if line.strip()]
        parts.append(
            f"## Skipped images\n\n{len(lines)} images were skipped (`data.on_bad_image: skip`); "
            "the list is in `skipped_images.txt`.\n"
        )
    path = run_dir / "report.md"
    write_text(path, "\n".join(parts))
    return path
