"""``radtex-bench label``: label a CSV's report column, keeping every input row and column.

The output is the input table (same rows, same order, every cell as read: the CSV module, not pandas,
so nothing is re-typed or turned into ``NaN``) followed by one column per CheXpert observation
(``CHEXPERT_14`` order) holding ``1``, ``0``, ``-1`` or blank. An input column that already has a
label's name (a manifest's own labels) is kept, renamed ``"<name> (input)"``, so both sit side by side.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

from ...data.labels import CHEXPERT_14
from ...errors import DataError, UserError
from ...io import write_csv

_TEXT = {1.0: "1", 0.0: "0", -1.0: "-1"}
#: Appended to an input column that has a label's name (a manifest's own ``Cardiomegaly``).
INPUT_SUFFIX = " (input)"
log = logging.getLogger("radtex_bench")


def read_reports(path: Path, column: str) -> tuple[list[str], list[list[str]], int]:
    """(header, rows, index of ``column``) of the CSV at ``path``; one-line errors the user can fix.

    Short rows are padded with blanks; blank lines are skipped (as pandas does).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    csv.field_size_limit(2**31 - 1)  # reports can be long; the default limit is 128 KiB per cell
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            # strict: a quote left open would otherwise swallow every later row into one report
            table = [row for row in csv.reader(f, strict=True) if row]
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot read {path}: not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(
            f'cannot read {path} as CSV: {" ".join(str(exc).split())}; a quote (") is probably left open — '
            'close it, or double quotes inside a quoted report ("")'
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not table:
        raise DataError(f"cannot read {path} as CSV: the file is empty (a header row is needed)")
    header, rows = table[0], table[1:]
    if column not in header:
        found = ", ".join(repr(c) for c in header[:20]) + (" ..." if len(header) > 20 else "")
        raise UserError(f"{path}: no column {column!r}; choose one with --column (columns: {found})")
    if header.count(column) > 1:
        raise UserError(f"{path}: {header.count(column)} columns are named {column!r}; rename all but one")
    clash = [c for c in CHEXPERT_14 if c in header]
    if clash:
        # The input's own labels (a manifest's) stay, renamed, beside the labeler's: side by side is what
        # an agreement check needs, and neither column is lost or duplicated.
        renamed = {c: f"{c}{INPUT_SUFFIX}" for c in clash}
        taken = [n for n in renamed.values() if n in header]
        if taken:
            raise UserError(
                f"{path}: column(s) {', '.join(repr(c) for c in clash)} would be renamed to "
                f"{', '.join(repr(n) for n in taken)}, which already exist; rename or drop them first"
            )
        log.warning(
            "%s: its own column(s) %s are kept, renamed %s, beside the labeler's columns of that name",
            path,
            ", ".join(clash),
            ", ".join(repr(renamed[c]) for c in clash),
        )
        header = [renamed.get(c, c) for c in header]
    for i, row in enumerate(rows):
        if len(row) > len(header):
            raise DataError(
                f"{path}: row {i + 2} has {len(row)} fields but the header has {len(header)}; "
                "quote fields that contain commas"
            )
        row.extend([""] * (len(header) - len(row)))
    return header, rows, header.index(column)


def label_table(path: Path, column: str = "report", out: Path | None = None, labeler: str = "rule") -> int:
    """Label ``column`` of the CSV at ``path``; write to ``out`` (atomically) or to stdout. Returns rows."""
    if out is not None and Path(out).exists() and Path(out).resolve() == Path(path).resolve():
        raise UserError(f"--out {out} is the input file; write the labels to another file")
    from . import get_labeler

    header, rows, j = read_reports(path, column)
    labels = get_labeler(labeler).label_reports([row[j] for row in rows])  # [N, 14]
    out_rows = (row + [_TEXT.get(float(v), "") for v in values] for row, values in zip(rows, labels))
    out_header = header + list(CHEXPERT_14)
    if out is None:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(out_header)
        writer.writerows(out_rows)
    else:
        write_csv(Path(out), out_header, out_rows)
    return len(rows)
