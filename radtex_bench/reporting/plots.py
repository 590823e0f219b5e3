"""Plots of a run (matplotlib, headless). Each function takes data frames read from the CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    _pyplot().close(fig)


def auc_vs_budget(summary: pd.DataFrame, path: Path, order: list[str]) -> None:
    """Macro AUROC against budget (log axis) per objective, with the bootstrap interval as a band.

    One panel per labelled protocol. Zero-label results (budget 0: ``zeroshot``) cannot sit on a log
    axis, so each panel shows them left of an axis break (a dotted line), at a tick labelled ``0``, as a
    star with its interval as an error bar, in the objective's colour.
    """
    plt = _pyplot()
    zero = summary[summary["budget"] == 0]
    curves = summary[summary["budget"] > 0]
    protocols = list(dict.fromkeys(curves["protocol"])) or [None]
    colour = {label: f"C{i % 10}" for i, label in enumerate(order)}
    fig, axes = plt.subplots(1, len(protocols), figsize=(6 * len(protocols), 4.2), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        part = curves[curves["protocol"] == protocol]
        for label in order:
            rows = part[part["objective"] == label].sort_values("budget")
            if rows.empty:
                continue
            ax.plot(rows["budget"], rows["macro_auc"], marker="o", label=label, color=colour[label])
            if rows["ci_low"].notna().all():
                ax.fill_between(
                    rows["budget"],
                    rows["ci_low"],
                    rows["ci_high"],
                    alpha=0.18,
                    color=colour[label],
                    linewidth=0,
                )
        budgets = sorted(part["budget"].unique())
        ticks, names = list(budgets), [str(b) for b in budgets]
        if not zero.empty:
            x0 = budgets[0] / 3.0 if budgets else 1.0
            shown = [label for label in order if label in set(zero["objective"])]
            for k, (name, group) in enumerate(zero.groupby("protocol", sort=False)):
                for i, label in enumerate(shown):
                    row = group[group["objective"] == label]
                    if row.empty:
                        continue
                    # Side by side around the tick, so that the intervals do not hide each other.
                    x = x0 * 1.12 ** (i - (len(shown) - 1) / 2 + 0.5 * k)
                    r = row.iloc[0]
                    err = None
                    if pd.notna(r.ci_low) and pd.notna(r.ci_high):
                        err = [[max(r.macro_auc - r.ci_low, 0.0)], [max(r.ci_high - r.macro_auc, 0.0)]]
                    ax.errorbar(
                        [x],
                        [r.macro_auc],
                        yerr=err,
                        fmt="*",
                        markersize=11,
                        capsize=3,
                        color=colour[label],
                        label=f"{label} ({name}, 0 labels)",
                    )
            ticks, names = [x0, *ticks], ["0", *names]
            if budgets:
                ax.axvline((x0 * budgets[0]) ** 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels(names)
        ax.minorticks_off()
        ax.set_xlabel(
            "labelled training images (log scale"
            + ("; 0 = zero-shot, left of the break)" if len(zero) else ")")
        )
        ax.set_ylabel("macro AUROC (test)")
        ax.set_title(f"{protocol} protocol" if protocol else "zero labels")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def pathology_heatmap(
    results: pd.DataFrame, budget: int, protocol: str, path: Path, order: list[str]
) -> None:
    """Mean AUROC over seeds, objective x pathology, at one budget."""
    plt = _pyplot()
    part = results[(results["budget"] == budget) & (results["protocol"] == protocol)]
    table = part.groupby(["objective", "pathology"])["auc"].mean().unstack("pathology")
    table = table.reindex([o for o in order if o in table.index])
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * table.shape[1], 0.9 + 0.45 * table.shape[0]))
    values = table.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
    ax.set_xticks(range(table.shape[1]))
    ax.set_xticklabels(table.columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]))
    ax.set_yticklabels(table.index, fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            text = "—" if not np.isfinite(values[i, j]) else f"{values[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white")
    ax.set_title(f"AUROC per pathology, {protocol}, budget {budget}")
    fig.colorbar(image, ax=ax, fraction=0.03)
    _save(fig, path)


def win_loss(comparisons: pd.DataFrame, path: Path, order: list[str], alpha: float = 0.05) -> None:
    """Cell (a, b): in how many (protocol, budget) comparisons a is significantly better than b (on the
    Holm-adjusted p when comparisons.csv has it)."""
    plt = _pyplot()
    labels = [o for o in order if o in set(comparisons["objective_a"]) | set(comparisons["objective_b"])]
    index = {label: i for i, label in enumerate(labels)}
    wins = np.zeros((len(labels), len(labels)), dtype=int)
    column = "p_holm" if "p_holm" in comparisons.columns else "p_value"
    for row in comparisons.itertuples():
        if getattr(row, column) < alpha:
            a, b = (row.objective_a, row.objective_b) if row.diff > 0 else (row.objective_b, row.objective_a)
            wins[index[a], index[b]] += 1
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(labels), 1.0 + 0.7 * len(labels)))
    ax.imshow(wins, cmap="Greens")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            dark = wins[i, j] > wins.max() / 2  # white on the dark greens, black on the pale ones
            colour = "white" if dark else "black"
            ax.text(
                j, i, "" if i == j else str(wins[i, j]), ha="center", va="center", fontsize=9, color=colour
            )
    ax.set_xlabel("loses")
    ax.set_ylabel("wins")
    adjusted = "Holm-adjusted " if column == "p_holm" else ""
    ax.set_title(f"significant wins (paired bootstrap, {adjusted}p < {alpha})")
    _save(fig, path)
