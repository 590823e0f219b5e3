"""report.md sections of the text side: zero labels, retrieval, report generation, skipped protocols.

Built from files alone (summary.csv, results.csv, retrieval.csv, retrieval_chance.csv, generation.csv,
generations.csv, text_comparisons.csv, protocol_skips.csv and the stored recipe), like the rest of
report.md.
"""

from __future__ import annotations

import pandas as pd

from ..data.labels import CHEXPERT_14
from ..rundir import RunDir
from .tables import fmt as _fmt
from .tables import p_text, read_table

#: Example generations shown in report.md (generations.csv has them all).
EXAMPLES = 3
#: Characters of a report shown in an example before it is cut.
EXAMPLE_CHARS = 400


def _with_ci(row: pd.Series, digits: int = 3) -> str:
    text = _fmt(row["value"], digits)
    if not pd.isna(row["ci_low"]):
        text += f" [{_fmt(row['ci_low'], digits)}, {_fmt(row['ci_high'], digits)}]"
    return text


#: The metrics whose paired differences report.md shows (text_comparisons.csv has them all).
PAIRED_SHOWN = {"retrieval": ("R@10", "median_rank"), "generation": ("bleu_4", "rouge_l", "cider", "ce_f1")}


def paired(paths: RunDir, protocol: str) -> list[str]:
    """Paired differences between objectives of ``protocol``'s headline metrics (empty with one objective
    or no bootstrap)."""
    table = read_table(paths.text_comparisons, required=False)
    if table is None or table.empty:
        return []
    table = table[(table["protocol"] == protocol) & table["metric"].isin(PAIRED_SHOWN[protocol])]
    if table.empty:
        return []
    with_direction = protocol == "retrieval"
    head = "| A − B |" + (" direction |" if with_direction else "") + " metric | difference | p (Holm) |"
    lines = [
        "",
        "Paired differences (the same queries and images, the same patient resamples; * Holm-adjusted "
        f"p < 0.05 within all of `{protocol}`'s comparisons in text_comparisons.csv"
        + ("; median rank: lower is better" if with_direction else "")
        + "):\n",
        head,
        "|---|---|---|---|" + ("---|" if with_direction else ""),
    ]
    for r in table.itertuples():
        star = " *" if not pd.isna(r.p_holm) and r.p_holm < 0.05 else ""
        interval = (
            f"{r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
            if not pd.isna(r.ci_low)
            else f"{r.diff:+.3f}"
        )
        direction = f" {str(r.direction).replace('_', ' ')} |" if with_direction else ""
        lines.append(
            f"| {r.objective_a} − {r.objective_b} |{direction} {r.metric} | {interval} | "
            f"{p_text(r.p_holm, r.n_boot)}{star} |"
        )
    return lines


def _one_line(text: str) -> str:
    flat = " ".join(str(text).split()).replace("|", "/")
    return flat if len(flat) <= EXAMPLE_CHARS else flat[: EXAMPLE_CHARS - 1] + "…"


def zero_labels(summary: pd.DataFrame, results: pd.DataFrame, order: list[str]) -> list[str]:
    """The "Zero labels" section: budget-0 (zero-shot) macro and per-pathology AUROC."""
    zero = summary[summary["budget"] == 0]
    if zero.empty:
        return []
    per = results[results["budget"] == 0]
    pathologies = list(dict.fromkeys(per["pathology"]))
    lines = [
        "## Zero labels\n",
        "No labelled image at all: each pathology is scored by comparing the image with positive and "
        "negative report prompts through the objective's `text_scores` (see docs/evaluation.md, "
        "`zeroshot`). These are the `budget 0` rows of summary.csv and comparisons.csv, and the stars at "
        "0 labels in the plot. Macro AUROC [95% patient-bootstrap interval], then per pathology:\n",
        "| objective | protocol | macro AUROC | " + " | ".join(pathologies) + " |",
        "|---|---|---|" + "---|" * len(pathologies),
    ]
    for protocol in dict.fromkeys(zero["protocol"]):
        for label in order:
            row = zero[(zero["protocol"] == protocol) & (zero["objective"] == label)]
            if row.empty:
                continue
            r = row.iloc[0]
            macro = _fmt(r.macro_auc)
            if not pd.isna(r.ci_low):
                macro += f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
            aucs = per[(per["protocol"] == protocol) & (per["objective"] == label)].set_index("pathology")[
                "auc"
            ]
            cells = [_fmt(aucs.get(p)) for p in pathologies]
            lines.append(f"| {label} | {protocol} | {macro} | " + " | ".join(cells) + " |")
    return ["\n".join(lines) + "\n"]


def retrieval(paths: RunDir) -> list[str]:
    table = read_table(paths.retrieval, required=False)
    if table is None or table.empty:
        return []
    chance = read_table(paths.retrieval_chance, required=False)
    metrics = ["R@1", "R@5", "R@10", "median_rank"]
    lines = [
        "## Image–report retrieval\n",
        "Recall@K (share of queries whose correct candidate ranks in the top K) and median rank, among "
        "candidate pools of at most `evaluation.retrieval.max_candidates` test images; a candidate is "
        "correct when its report text equals the query's, and ties count against the model "
        "(docs/evaluation.md, `retrieval`). [95% patient-bootstrap interval]\n",
        "| objective | direction | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for label in paths.objective_order(list(dict.fromkeys(table["objective"]))):
        for direction in dict.fromkeys(table["direction"]):
            part = table[(table["objective"] == label) & (table["direction"] == direction)].set_index(
                "metric"
            )
            if part.empty:
                continue
            cells = [
                _with_ci(part.loc[m], 1 if m == "median_rank" else 3) if m in part.index else ""
                for m in metrics
            ]
            lines.append(f"| {label} | {direction.replace('_', ' ')} | " + " | ".join(cells) + " |")
    if chance is not None and not chance.empty:
        for direction in dict.fromkeys(chance["direction"]):
            part = chance[chance["direction"] == direction].set_index("metric")["value"]
            cells = [_fmt(part.get(m)) if m in part.index else "—" for m in metrics]
            lines.append(f"| *chance* | {direction.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines += paired(paths, "retrieval")
    return ["\n".join(lines) + "\n"]


def _scored_pathologies(paths: RunDir) -> list[str]:
    try:
        stored = paths.stored_recipe() or {}
    except Exception:
        return []
    evaluation, data = stored.get("evaluation") or {}, stored.get("data") or {}
    return list(evaluation.get("pathologies") or data.get("pathologies") or [])


def generation(paths: RunDir) -> list[str]:
    table = read_table(paths.generation, required=False)
    if table is None or table.empty:
        return []
    labels = paths.objective_order(list(dict.fromkeys(table["objective"])))
    language = ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"]
    clinical = ["ce_f1", "ce_precision", "ce_recall", "ce_f1_micro"]
    lines = [
        "## Report generation\n",
        "Reports written for the test images that have one (`evaluation.generation`: greedy decoding or "
        "beam search), scored against the reference report. Language: BLEU-1..4, ROUGE-L and CIDEr "
        "(pycocoevalcap conventions). Clinical efficacy (CE): the report labeler's CheXpert labels of "
        "the generated and the reference report, positive = label 1; macro precision, recall and F1 over "
        "the pathologies, and micro F1 (docs/evaluation.md, `generation`). [95% patient-bootstrap "
        "interval]\n",
    ]
    for names in (language, clinical):
        lines += ["| objective | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for label in labels:
            part = table[table["objective"] == label].set_index("metric")
            cells = [_with_ci(part.loc[m]) if m in part.index else "" for m in names]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    per = table[table["metric"].str.startswith("ce_f1/")]
    pathologies = list(dict.fromkeys(per["metric"].str.removeprefix("ce_f1/")))
    if pathologies:
        lines += [
            "CE F1 per pathology:\n",
            "| objective | " + " | ".join(pathologies) + " |",
            "|---|" + "---|" * len(pathologies),
        ]
        for label in labels:
            part = per[per["objective"] == label].set_index("metric")["value"]
            lines.append(
                f"| {label} | " + " | ".join(_fmt(part.get(f"ce_f1/{p}")) for p in pathologies) + " |"
            )
        lines.append("")
        undefined = sorted(set(per.loc[per["value"].isna(), "metric"].str.removeprefix("ce_f1/")))
        if undefined:
            defined = len(pathologies) - len(undefined)
            lines.append(
                f"**Undefined CE F1** (no reference report of a scored test image is positive for it, so "
                f"no generation could be right): {', '.join(undefined)}. `ce_f1`, `ce_precision` and "
                f"`ce_recall` average the other {defined} pathologies; `ce_f1_micro` counts their false "
                "positives.\n"
            )
    outside = [p for p in _scored_pathologies(paths) if p not in CHEXPERT_14]
    if outside:
        lines.append(
            f"Not scored for clinical efficacy (not CheXpert labels, which the labeler extracts): "
            f"{', '.join(outside)}.\n"
        )
    paired_lines = paired(paths, "generation")
    if paired_lines:
        lines += [*paired_lines[1:], ""]
    generated = read_table(paths.generations, required=False, text=True)
    lines += degenerate(generated, labels)
    lines += examples(generated, labels)
    return ["\n".join(lines) + "\n"]


def degenerate(generated: pd.DataFrame | None, labels: list[str]) -> list[str]:
    """A warning for objectives whose generations (generations.csv) are all empty or all one text (an
    undertrained decoder writes [EOS] first, or one report for every image): their scores say so only
    implicitly."""
    if generated is None or generated.empty:
        return []
    lines = []
    for label in labels:
        texts = generated.loc[generated["objective"] == label, "generated"].fillna("").str.strip()
        if len(texts) < 2:
            continue
        if (texts == "").all():
            lines.append(
                f"**{label} wrote an empty report for every test image** (its decoder emits the end token "
                "first; typically too little training): its generation scores are those of empty text.\n"
            )
        elif texts.nunique() == 1:
            lines.append(
                f'**{label} wrote the same report for every test image** ("{_one_line(texts.iloc[0])}"): '
                "its scores measure how well one fixed report matches the references, not the images.\n"
            )
    return lines


def examples(generated: pd.DataFrame | None, labels: list[str]) -> list[str]:
    """A few test images' reference and generated reports (``generated``: generations.csv)."""
    if generated is None or generated.empty:
        return []
    ids = list(dict.fromkeys(generated["image_id"]))[:EXAMPLES]
    lines = [f"Example generations (the first {len(ids)} test images; all are in `generations.csv`):\n"]
    for image_id in ids:
        rows = generated[generated["image_id"] == image_id]
        lines += [f"**{image_id}**\n", "| | report |", "|---|---|"]
        lines.append(f"| reference | {_one_line(rows.iloc[0]['reference'])} |")
        for label in labels:
            row = rows[rows["objective"] == label]
            if not row.empty:
                lines.append(f"| {label} | {_one_line(row.iloc[0]['generated']) or '*(empty)*'} |")
        lines.append("")
    return lines


def skipped_protocols(paths: RunDir) -> list[str]:
    table = read_table(paths.protocol_skips, required=False, text=True)
    if table is None or table.empty:
        return []
    lines = ["## Protocols not run for some objectives\n"]
    lines += [f"- `{r.objective}`: `{r.protocol}` skipped: {r.reason}." for r in table.itertuples()]
    return ["\n".join(lines) + "\n"]


def text_protocols(paths: RunDir) -> list[str]:
    """Retrieval, generation and skipped-protocol sections (empty when those protocols did not run)."""
    return retrieval(paths) + generation(paths) + skipped_protocols(paths)
