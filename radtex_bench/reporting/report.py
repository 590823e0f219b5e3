"""``report.md``: the summary table (best per budget in bold), comparisons and plots.

Built from ``summary.csv``, ``results.csv`` and ``comparisons.csv`` alone, so ``radtex-bench report DIR``
can rebuild it anywhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..io import write_text
from ..rundir import RunDir
from . import efficiency as label_efficiency
from . import plots, text_report
from .tables import PARTIAL_MARK, budget_table, p_text, read_table
from .tables import fmt as _fmt


def partial_cells(results: pd.DataFrame) -> set[tuple[str, str, int]]:
    """``(objective, protocol, budget)`` whose macro AUROC, in some seed, averages fewer than all the
    pathologies (a labelled subset held one class of one)."""
    gaps = results[results["auc"].isna()]
    return {(str(o), str(p), int(b)) for o, p, b in zip(gaps["objective"], gaps["protocol"], gaps["budget"])}


def summary_markdown(
    summary: pd.DataFrame,
    order: list[str],
    names: dict[int, str] | None = None,
    partial: set[tuple[str, str, int]] = frozenset(),
) -> str:
    """``names``: how a budget was written in the recipe (``{6: "2%"}``), shown beside its count.
    ``partial``: cells marked † (:func:`partial_cells`), with a footnote."""
    names = names or {}
    lines = []
    for protocol in dict.fromkeys(summary["protocol"]):
        part = summary[summary["protocol"] == protocol]
        best = part.groupby("budget")["macro_auc"].max()

        def cell(r: pd.Series, budget: int, best: pd.Series = best) -> str:
            text = _fmt(r.macro_auc)
            if not pd.isna(r.macro_auc_std):  # one seed (or zero-shot): no spread to show
                text += f" ± {_fmt(r.macro_auc_std)}"
            if not pd.isna(r.macro_auc) and r.macro_auc == best[budget]:
                text = f"**{text}**"
            if not pd.isna(r.ci_low):
                text += f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
            return text

        # "± std" only where a spread is shown: not with one seed, nor for zero-shot's single cell.
        spread = ", mean ± std over seeds" if part["macro_auc_std"].notna().any() else ""
        lines.append(
            f"**{protocol} protocol**: macro AUROC on the test split{spread} [95% patient-bootstrap interval]\n"
        )
        lines += budget_table(part, protocol, order, names, partial, cell)
        lines.append("")
    if any(key[1] in set(summary["protocol"]) for key in partial):
        lines.append(
            f"{PARTIAL_MARK} In some seed the labelled subset could not score every pathology (one class "
            "only): that macro AUROC (and AUPRC) averages fewer pathologies than the others (see "
            '"Pathologies a labelled subset could not score").\n'
        )
    return "\n".join(lines)


def comparisons_markdown(comparisons: pd.DataFrame) -> str:
    """The comparison table; significance (*) is marked on the Holm-adjusted p when the file has it."""
    holm = "p_holm" in comparisons.columns
    lines = [
        "| protocol | budget | A | B | A − B | 95% CI | p |" + (" p (Holm) |" if holm else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if holm else ""),
    ]
    for r in comparisons.itertuples():
        p = p_text(r.p_value, getattr(r, "n_boot", None))
        if holm:
            p += f" | {p_text(r.p_holm, None)}" + (" *" if r.p_holm < 0.05 else "")
        elif r.p_value < 0.05:
            p += " *"
        lines.append(
            f"| {r.protocol} | {r.budget} | {r.objective_a} | {r.objective_b} | {r.diff:+.3f} | "
            f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {p} |"
        )
    return "\n".join(lines)


def holm_floor_note(comparisons: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """A warning when a protocol's family is so large that no comparison *can* reach Holm p < ``alpha``:
    the smallest bootstrap p is 2/(B+1), so the smallest adjusted one is m·2/(B+1) for m tests."""
    if "p_holm" not in comparisons.columns or "n_boot" not in comparisons.columns:
        return []
    notes = []
    for protocol, family in comparisons.groupby("protocol", sort=False):
        m, b = len(family), int(family["n_boot"].max())
        if b > 0 and m * 2.0 / (b + 1) >= alpha:
            needed = math.ceil(2.0 * m / alpha)
            notes.append(
                f"**No {protocol} comparison can be significant after Holm's adjustment**: {m} comparisons "
                f"and {b} bootstrap replicates put the smallest adjusted p at {m} × 2/({b}+1) = "
                f"{min(1.0, m * 2.0 / (b + 1)):.3f}. Raise `evaluation.bootstrap` to at least {needed:,} "
                "(then rerun with `--resume`: only the tables are recomputed), or compare fewer objectives "
                "or budgets; the intervals above are unaffected.\n"
            )
    return notes


def missing_markdown(results: pd.DataFrame, order: list[str]) -> str:
    """Cells where a pathology's AUROC is missing because its labelled subset held one class only.

    Their macro AUROC averages the remaining pathologies; this section says so instead of letting the
    mean quietly cover fewer pathologies.
    """
    gaps = results[results["auc"].isna()]
    if gaps.empty:
        return ""
    rank = {label: i for i, label in enumerate(order)}
    lines = [
        "A pathology whose labelled subset held only positives or only negatives cannot be learnt by a "
        "probe: its AUROC and AUPRC are missing (never counted as 0.5) and the macro AUROC and AUPRC of that "
        "cell average the other pathologies. Larger budgets, or fewer rare pathologies, avoid this.\n",
        "| objective | protocol | budget | pathology | seeds |",
        "|---|---|---|---|---|",
    ]
    grouped = gaps.groupby(["objective", "protocol", "budget", "pathology"], sort=False)["seed"]
    rows = sorted(grouped, key=lambda g: (rank.get(g[0][0], len(rank)), g[0][1], g[0][2], g[0][3]))
    for (objective, protocol, budget, pathology), seeds in rows:
        listed = ", ".join(str(int(s)) for s in sorted(seeds))
        lines.append(f"| {objective} | {protocol} | {budget} | {pathology} | {listed} |")
    return "\n".join(lines) + "\n"


def overlap_markdown(path: Path) -> str:
    """The evaluation images found in the pretraining data and left out of it (``data.overlap: exclude``)."""
    import json

    info = json.loads(path.read_text(encoding="utf-8"))
    examples = ", ".join(f"`{e}`" for e in info.get("examples", [])[:3])
    return (
        "## Evaluation images left out of pretraining\n\n"
        f"{info['shared_images']} pretraining image(s) were evaluation validation/test images and "
        f"{info['shared_patients']} patient(s) appeared on both sides (matched by {info['matched_by']}); "
        f"{info['excluded_images']} image(s) were left out of pretraining (`data.overlap: exclude`)"
        + (f", e.g. {examples}" if examples else "")
        + ". `pretrain/images.csv` lists the images pretraining used.\n"
        + (f"\nNote: {info['note']}.\n" if info.get("note") else "")
    )


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(
            f"{run_dir} is not a folder; pass the run directory (the --out of `radtex-bench run`)"
        )
    paths = RunDir(run_dir)
    summary = read_table(paths.summary)
    results = read_table(paths.results)
    comparisons = read_table(paths.comparisons, required=False)
    # every table is read (and checked) before the first plot is drawn
    aubc_tables = read_table(paths.aubc, required=False), read_table(paths.aubc_comparisons, required=False)
    efficiency_table = read_table(paths.efficiency, required=False)
    order = paths.objective_order(list(dict.fromkeys(summary["objective"])))
    plot_dir = paths.plots
    scores_auroc = not summary.empty  # a run of text-side protocols only (retrieval, generation) has none
    if scores_auroc:
        plots.auc_vs_budget(summary, plot_dir / "auc_vs_budget.png", order)
    heatmaps = []
    for protocol in dict.fromkeys(summary["protocol"]):  # summary.csv keeps the recipe's order
        for budget in sorted(results.loc[results["protocol"] == protocol, "budget"].unique()):
            name = f"heatmap_{protocol}_b{budget}.png"
            plots.pathology_heatmap(results, int(budget), protocol, plot_dir / name, order)
            heatmaps.append((protocol, int(budget), name))
    has_comparisons = comparisons is not None and not comparisons.empty
    if has_comparisons:
        plots.win_loss(comparisons, plot_dir / "win_loss.png", order)

    try:
        stored = paths.stored_recipe() or {}
    except UserError:
        stored = {}
    name = stored.get("name", run_dir.name)
    names = label_efficiency.budget_names(stored)  # {6: "2%"}: budgets given as percentages
    partial = partial_cells(results)
    parts = [f"# radtex-bench report: {name}\n"]
    if scores_auroc:
        parts += [
            "Per-pathology AUROC of a probe trained on each labelled budget, averaged over pathologies "
            "(macro) and over seeds. Intervals resample test patients. See docs/evaluation.md for the "
            "protocol.\n",
            "## Summary\n",
            summary_markdown(summary, order, names, partial),
            "![macro AUROC vs budget](plots/auc_vs_budget.png)\n",
        ]
    else:
        parts.append("No protocol of this run scores AUROC: its results are the text-side sections below.\n")
    parts += text_report.zero_labels(summary, results, order)
    auprc = label_efficiency.auprc_markdown(summary, order, names, partial)
    if auprc:
        parts += ["## Macro AUPRC\n", auprc]
    if has_comparisons:
        parts += [
            "## Paired comparisons\n",
            "Difference in seed-averaged macro AUROC, paired bootstrap over the same test patients "
            "and labelled subsets (* Holm-adjusted p < 0.05, the family being all comparisons of one "
            "protocol; with B bootstrap replicates no p below 2/(B+1) can be shown, so that value is "
            "written as an upper bound, ≤).\n",
            comparisons_markdown(comparisons),
            "",
            *holm_floor_note(comparisons),
            "![wins](plots/win_loss.png)\n",
        ]
    aubc = label_efficiency.aubc_markdown(*aubc_tables, order)
    efficiency = label_efficiency.efficiency_markdown(
        efficiency_table, order, label_efficiency.efficiency_protocol(summary)
    )
    if aubc or efficiency:
        parts.append("## Label efficiency\n")
        uneven = sorted({b for _, protocol, b in partial if protocol in set(summary["protocol"])})
        if uneven:
            parts.append(
                f"Budget(s) {', '.join(str(b) for b in uneven)} ({PARTIAL_MARK} in the summary) enter the "
                "area under the budget curve and labels-to-match with a macro AUROC over fewer pathologies "
                "for some objectives and seeds: at those budgets the curves compare unlike averages, so "
                "read the numbers that use them with care (larger budgets avoid it).\n"
            )
    if aubc:
        parts += ["### Area under the budget curve (AUBC)\n", aubc]
    if efficiency:
        parts += ["### Labels to match\n", efficiency]
    missing = missing_markdown(results, order)
    if missing:
        parts += ["## Pathologies a labelled subset could not score\n", missing]
    parts += text_report.text_protocols(paths)
    parts.append("## Per-pathology AUROC\n")
    for protocol, budget, file in heatmaps:
        parts.append(f"### {protocol}, budget {budget}\n\n![heatmap](plots/{file})\n")
    if paths.overlap.exists():
        parts.append(overlap_markdown(paths.overlap))
    if paths.caveats.exists():
        import json

        notes = json.loads(paths.caveats.read_text(encoding="utf-8"))
        parts.append("## Caveats\n\n" + "".join(f"- {note}\n" for note in notes))
    skipped = paths.skipped_images
    if skipped.exists():
        lines = [line for line in skipped.read_text().splitlines() if line.strip()]
        parts.append(
            f"## Skipped images\n\n{len(lines)} images were skipped (`data.on_bad_image: skip`); "
            "the list is in `skipped_images.txt`.\n"
        )
    path = paths.report
    write_text(path, "\n".join(parts))
    return path
