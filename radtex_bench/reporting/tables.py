"""Markdown pieces shared by report.md's sections: number format and the objective × budget table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..errors import UserError

#: Marks a cell whose macro averages fewer pathologies than the others (see ``report.partial_cells``).
PARTIAL_MARK = "†"


def fmt(x: float | None, digits: int = 3) -> str:
    """``x`` to ``digits`` decimals; a missing value (NaN, None) as an em dash."""
    return "—" if pd.isna(x) else f"{float(x):.{digits}f}"


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


#: The columns of a paired comparison that report.md reads (``n_boot`` and ``p_holm`` came later).
_PAIRED = ("objective_a", "objective_b", "diff", "ci_low", "ci_high", "p_value")
#: The columns report.md reads from each table (later additions, such as ``macro_auprc`` or ``p_holm``,
#: are optional: a folder written before them still gets its report).
COLUMNS = {
    "summary.csv": ("objective", "protocol", "budget", "macro_auc", "macro_auc_std", "ci_low", "ci_high"),
    "results.csv": ("objective", "protocol", "budget", "seed", "pathology", "auc"),
    "comparisons.csv": ("protocol", "budget", *_PAIRED),
    "aubc.csv": ("objective", "protocol", "aubc", "ci_low", "ci_high"),
    "aubc_comparisons.csv": ("protocol", *_PAIRED),
    "efficiency.csv": ("objective", "reference", "budget", "labels_to_match", "ci_low", "ci_high"),
    "retrieval.csv": ("objective", "direction", "metric", "value", "ci_low", "ci_high"),
    "retrieval_chance.csv": ("direction", "metric", "value"),
    "generation.csv": ("objective", "metric", "value", "ci_low", "ci_high"),
    "generations.csv": ("objective", "image_id", "reference", "generated"),
    "text_comparisons.csv": ("protocol", "direction", "metric", *_PAIRED, "n_boot", "p_holm"),
    "protocol_skips.csv": ("objective", "protocol", "reason"),
}


def read_table(path: Path, required: bool = True, text: bool = False) -> pd.DataFrame | None:
    """A table of the run folder, checked before anything is drawn or written: a missing required
    file, an empty or unreadable one, or one without the columns report.md reads is one
    :class:`UserError` naming it (not a half-rebuilt report). ``text``: every column as text, empty
    cells kept as "" (an empty generated report is not missing)."""
    if not path.exists():
        if required:
            raise UserError(f"{path} not found; is {path.parent} a finished radtex-bench run?")
        return None
    fix = "it is not the table a radtex-bench run writes; rerun the run with --resume to rewrite it"
    try:
        table = pd.read_csv(path, keep_default_na=not text, dtype=str if text else None)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty; {fix}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise UserError(
            f"cannot read {path} ({type(exc).__name__}: {first[0] if first else ''}); {fix}"
        ) from None
    missing = [c for c in COLUMNS.get(path.name, ()) if c not in table.columns]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}; {fix}")
    return table


def p_text(p: float, n_boot: float | None) -> str:
    """A bootstrap p-value; at the smallest value B replicates can give, 2/(B+1), it is an upper bound."""
    if pd.isna(p):
        return "n/a"
    # comparisons.csv rounds p to 5 decimals, hence the tolerance.
    if n_boot is not None and not pd.isna(n_boot) and p <= 2.0 / (n_boot + 1) + 1e-5:
        return f"≤ {p:.4f}"
    return f"{p:.4f}"
