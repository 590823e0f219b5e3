"""report.md sections on label efficiency: macro AUPRC, area under the budget curve, labels-to-match.

Built from summary.csv, aubc.csv, aubc_comparisons.csv and efficiency.csv alone (each optional, so a run
folder written before these files existed still gets a report). The definitions are in
:mod:`radtex_bench.evaluation.efficiency` and docs/evaluation.md.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .tables import budget_table, p_text
from .tables import fmt as _fmt


def budget_names(stored_recipe: dict[str, Any] | None) -> dict[int, str]:
    """``{image count: "2%"}`` from recipe.yaml's ``evaluation.resolved_budgets`` (several percentages
    that resolved to one count are joined with " = ")."""
    evaluation = (stored_recipe or {}).get("evaluation") or {}
    resolved = evaluation.get("resolved_budgets") or {}
    names: dict[int, list[str]] = {}
    if isinstance(resolved, dict):
        for percent, count in resolved.items():
            if isinstance(count, int):
                names.setdefault(count, []).append(str(percent))
    return {count: " = ".join(percents) for count, percents in names.items()}


def auprc_markdown(
    summary: pd.DataFrame,
    order: list[str],
    names: dict[int, str] | None = None,
    partial: set[tuple[str, str, int]] = frozenset(),
) -> str:
    """Macro AUPRC per protocol and budget, mean over seeds [patient-bootstrap interval]; "" when
    summary.csv has no AUPRC. ``partial``: cells marked † as in the AUROC summary (same footnote)."""
    if "macro_auprc" not in summary.columns or summary.empty:
        return ""
    names = names or {}
    lines = [
        "Average precision (area under the precision-recall curve) on the same cells, pathologies and "
        "resamples as the AUROC: mean over seeds [95% patient-bootstrap interval]. Its chance level is "
        "the test prevalence of each pathology, so it is read within a pathology set, not against 0.5.\n"
    ]

    def cell(r: pd.Series, budget: int) -> str:
        text = _fmt(r.macro_auprc)
        if not pd.isna(r.get("auprc_ci_low")):
            text += f" [{_fmt(r.auprc_ci_low)}, {_fmt(r.auprc_ci_high)}]"
        return text

    for protocol in dict.fromkeys(summary["protocol"]):
        lines.append(f"**{protocol} protocol**\n")
        lines += budget_table(summary[summary["protocol"] == protocol], protocol, order, names, partial, cell)
        lines.append("")
    return "\n".join(lines)


def _p(p: float, n_boot: float | None, holm: float) -> str:
    text = p_text(p, n_boot) + " | " + p_text(holm, None)
    return text + (" *" if not pd.isna(holm) and holm < 0.05 else "")


def aubc_markdown(aubc: pd.DataFrame | None, comparisons: pd.DataFrame | None, order: list[str]) -> str:
    """The AUBC table and its paired comparisons; "" without aubc.csv rows."""
    if aubc is None or aubc.empty:
        return ""
    rank = {label: i for i, label in enumerate(order)}
    lines = [
        "One number per objective for the whole budget range: macro AUROC averaged over log budget "
        "between the smallest and the largest budget (trapezoids on log budget, divided by its range; "
        "in [0, 1]). Empty when a budget has no defined macro AUROC.\n",
        "| protocol | objective | budgets | AUBC [95% CI] |",
        "|---|---|---|---|",
    ]
    for protocol in dict.fromkeys(aubc["protocol"]):
        part = aubc[aubc["protocol"] == protocol]
        best = part["aubc"].max()
        for r in sorted(part.itertuples(), key=lambda r: rank.get(r.objective, len(rank))):
            value = _fmt(r.aubc)
            if not pd.isna(r.aubc) and r.aubc == best:
                value = f"**{value}**"
            if not pd.isna(r.ci_low):
                value += f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
            budgets = f"{int(r.budget_min)}–{int(r.budget_max)} ({int(r.n_budgets)})"
            lines.append(f"| {protocol} | {r.objective} | {budgets} | {value} |")
    lines.append("")
    if comparisons is not None and not comparisons.empty:
        lines += [
            "Paired differences of AUBC (same resamples and subsets; * Holm-adjusted p < 0.05 within "
            "the protocol's AUBC comparisons):\n",
            "| protocol | A | B | A − B | 95% CI | p | p (Holm) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in comparisons.itertuples():
            p = _p(r.p_value, getattr(r, "n_boot", None), getattr(r, "p_holm", math.nan))
            lines.append(
                f"| {r.protocol} | {r.objective_a} | {r.objective_b} | {r.diff:+.3f} | "
                f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {p} |"
            )
        lines.append("")
    return "\n".join(lines)


def _labels(x: float, low: int, high: int) -> str:
    """A labels-to-match value: ``inf`` is "> largest budget", the smallest budget "≤ smallest budget"."""
    if pd.isna(x):
        return "n/a"
    if math.isinf(x):
        return f"> {high}"
    if x <= low:
        return f"≤ {low}"
    return f"{x:.0f}"


def efficiency_markdown(efficiency: pd.DataFrame | None, order: list[str], protocol: str | None) -> str:
    """One sentence per ordered pair (objective, reference): at each budget, the labels the reference
    needs to match the objective [95% interval]; "" without efficiency.csv rows."""
    if efficiency is None or efficiency.empty:
        return ""
    low, high = int(efficiency["budget"].min()), int(efficiency["budget"].max())
    rank = {label: i for i, label in enumerate(order)}
    lines = [
        f"How many labels the reference objective needs to reach each objective's macro AUROC"
        f"{f' ({protocol} protocol)' if protocol else ''}, interpolated on the reference's isotonic "
        f"macro-AUROC-vs-log-budget curve [95% patient-bootstrap interval]; “> {high}” means the "
        f"reference never gets there within the budgets, “≤ {low}” that it gets there with the fewest.\n"
    ]
    pairs = dict.fromkeys(zip(efficiency["objective"], efficiency["reference"], strict=True))
    for objective, reference in sorted(
        pairs, key=lambda p: (rank.get(p[0], len(rank)), rank.get(p[1], len(rank)))
    ):
        rows = efficiency[(efficiency["objective"] == objective) & (efficiency["reference"] == reference)]
        clauses = []
        for r in rows.sort_values("budget").itertuples():
            interval = (
                ""
                if pd.isna(r.ci_low)
                else f" [{_labels(r.ci_low, low, high)}, {_labels(r.ci_high, low, high)}]"
            )
            clauses.append(
                f"with {int(r.budget)} labels ≈ {reference} with {_labels(r.labels_to_match, low, high)}{interval}"
            )
        lines.append(f"- **{objective}** " + "; ".join(clauses) + ".")
    return "\n".join(lines) + "\n"


def efficiency_protocol(summary: pd.DataFrame) -> str | None:
    """The protocol efficiency.csv is computed on: the first (in summary.csv's recipe order) with budgets > 0."""
    labelled = summary[summary["budget"] > 0]
    return None if labelled.empty else str(labelled["protocol"].iloc[0])
