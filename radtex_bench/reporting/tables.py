"""Markdown pieces shared by report.md's sections: number format and the objective × budget table."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

#: Marks a cell whose macro averages fewer pathologies than the others (see ``report.partial_cells``).
PARTIAL_MARK = "†"


def fmt(x: float, digits: int = 3) -> str:
    return "—" if pd.isna(x) else f"{x:.{digits}f}"


def budget_table(
    part: pd.DataFrame,
    protocol: str,
    order: list[str],
    names: dict[int, str],
    partial: set[tuple[str, str, int]],
    cell: Callable[[pd.Series, int], str],
) -> list[str]:
    """Lines of one protocol's table: a row per objective of ``order`` (rows with no cell left out), a
    column per budget of ``part`` (``names``: how a budget was written, ``{6: "2%"}``). ``cell(row,
    budget)`` writes one summary.csv row; cells in ``partial`` get :data:`PARTIAL_MARK`."""
    budgets = sorted(part["budget"].unique())
    header = [f"{b} labels" + (f" ({names[b]})" if b in names else "") for b in budgets]
    lines = ["| objective | " + " | ".join(header) + " |", "|---|" + "---|" * len(budgets)]
    for label in order:
        cells = []
        for b in budgets:
            row = part[(part["objective"] == label) & (part["budget"] == b)]
            if row.empty:
                cells.append("")
                continue
            text = cell(row.iloc[0], b)
            if (label, protocol, int(b)) in partial:
                text += f" {PARTIAL_MARK}"
            cells.append(text)
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def p_text(p: float, n_boot: float | None) -> str:
    """A bootstrap p-value; at the smallest value B replicates can give, 2/(B+1), it is an upper bound."""
    if pd.isna(p):
        return "n/a"
    # comparisons.csv rounds p to 5 decimals, hence the tolerance.
    if n_boot is not None and not pd.isna(n_boot) and p <= 2.0 / (n_boot + 1) + 1e-5:
        return f"≤ {p:.4f}"
    return f"{p:.4f}"
