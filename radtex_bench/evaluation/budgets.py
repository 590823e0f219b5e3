"""Label-budget subsets: which labelled training images each evaluation cell may use.

A *budget* is a number of labelled training images (``evaluation.budgets`` in the recipe, e.g. 10, 50,
100, 250), or a percentage of the labelled training pool (``"1%"``, ``"10%"``, as in ConVIRT and the
papers after it), resolved by :func:`resolve_budgets`: ``"f%"`` of a pool of N images is
``max(2, floor(f * N / 100 + 1/2))`` images (nearest integer, halves rounded up, exact decimal
arithmetic; at least 2, so that a subset can hold a positive and a negative). Entries that resolve to
the same count are one budget (one cell per seed). For each evaluation seed, :func:`sample_budget_subsets` draws one subset per
budget from the labelled training pool. The rule, which is exact and deterministic given the pool
(its rows, in order), the budgets and the seed, is:

1. **Pool.** The pool is the set of *labelled* training images, one row per image, each with a
   patient id and a label vector over the P evaluated pathologies (1 positive, 0 negative, NaN
   missing; uncertain labels already mapped by the recipe's policy). An image whose labels are all
   missing is not labelled and must not be in the pool; the caller removes such rows. Patients in the
   pool are disjoint from the validation and test patients (also the caller's responsibility).
2. **Random source.** ``numpy.random.default_rng(numpy.random.SeedSequence([seed, 0x5EED]))``;
   patients are indexed by their sorted unique ids, so the patient ordering does not depend on how
   the pool's rows are arranged (the order of images within a patient does).
3. **Positive pass (stratification).** Pathologies are visited in ascending order of their number
   of positive images in the pool (rarest first; ties in the order of the label columns); those with
   no positive image in the pool are skipped. For each pathology, if none of the patients chosen so
   far has a positive image for it, one patient is drawn uniformly at random among the *eligible*
   patients and appended to the patient ordering: the eligible patients are those not yet chosen
   that have at least one positive image for the pathology and, among these, the fewest images in
   the pool (so that the stratification prefix costs as few images as possible; in a pool where
   such patients have one image each, this is a draw among the single-image patients with a
   positive). One of the drawn patient's positive images for the pathology, drawn uniformly at
   random, becomes the patient's *lead image*.
4. **Negative pass.** The same for negatives: pathologies in ascending order of their number of
   negative images in the pool, skipping those with none; a patient is drawn for each pathology not
   yet covered by a negative image of a chosen patient (chosen in step 3 or earlier in step 4).
5. **Remaining patients.** All patients not chosen in steps 3-4 follow in a uniformly random order.
6. **Images.** Each patient contributes all of its images, consecutively: its lead image first (if
   it has one), then its other images in a uniformly random order. This gives one ordering of all
   pool images.
7. **Subsets.** The subset for budget *b* is the first *b* images of that ordering (returned as
   sorted row indices into the pool).

Consequences: subsets are **nested** (for one seed, the subset of a smaller budget is contained in
that of every larger budget); each subset consists of **whole patients except at most one** (the last
patient reached, truncated to hit *b* exactly); and a pathology with at least one positive (negative)
image in the pool has a positive (negative) image in every subset whose budget reaches the lead image
of the patient drawn for it. The stratification prefix is short (at most 2P patients, usually far
fewer because one patient covers several pathologies). If every pathology with a positive in the pool
has one in a single-image patient, the positive pass consists of at most P single-image patients, so
every budget >= P contains a positive for every such pathology. After the stratification prefix,
patients are a simple random sample, so larger budgets approach the pool's prevalence. Different
seeds give different subsets; the same seed always gives the same subsets.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from radtex_bench.errors import ConfigError, UserError

__all__ = [
    "image_ordering",
    "sample_budget_subsets",
    "subset_summary",
    "parse_percent",
    "canonical_percent",
    "resolve_budget",
    "resolve_budgets",
    "check_budget_entries",
]

#: Second entropy word of the seed sequence, so budget draws never share a stream with other uses of
#: the same evaluation seed (for instance the bootstrap in :mod:`radtex_bench.evaluation.stats`).
_STREAM = 0x5EED


#: ``"10%"``, ``"2.5 %"``: a decimal percentage (no exponent, no sign).
_PERCENT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*")

#: The smallest budget: a subset needs room for a positive and a negative.
MIN_BUDGET = 2


def parse_percent(text: str) -> Fraction | None:
    """``"2.5%"`` -> ``Fraction(5, 2)`` (the percentage, exact); None when ``text`` is not ``"<number>%"``."""
    match = _PERCENT.fullmatch(text) if isinstance(text, str) else None
    return Fraction(match.group(1)) if match else None


def canonical_percent(text: str) -> str:
    """The one spelling of a percentage budget: ``" 2.50 %"`` -> ``"2.5%"``, ``"010%"`` -> ``"10%"``."""
    value = parse_percent(text)
    if value is None:
        raise ValueError(f"not a percentage: {text!r}")
    if value.denominator == 1:
        return f"{value.numerator}%"
    digits = _PERCENT.fullmatch(text).group(1).rstrip("0")
    whole, _, decimals = digits.partition(".")
    return f"{int(whole or 0)}.{decimals}%"


def resolve_budget(entry: int | str, n_pool: int) -> int:
    """The image count of one ``evaluation.budgets`` entry for a pool of ``n_pool`` labelled images.

    An integer is itself; ``"f%"`` is ``max(2, floor(f * n_pool / 100 + 1/2))`` (see the module docstring).
    """
    if isinstance(entry, str):
        percent = parse_percent(entry)
        if percent is None:
            raise ValueError(f"budget {entry!r} is neither an image count nor a percentage")
        return max(MIN_BUDGET, int(percent * n_pool / 100 + Fraction(1, 2)))  # int() floors a positive
    return int(entry)


def resolve_budgets(entries: Sequence[int | str], n_pool: int) -> tuple[tuple[int, ...], dict[str, int]]:
    """Resolve ``evaluation.budgets`` against the labelled training pool.

    Returns the distinct image counts, ascending (entries that resolve to the same count give one
    budget), and ``{percentage entry: count}`` for the percentage entries (what recipe.yaml records as
    ``evaluation.resolved_budgets``).
    """
    counts = {entry: resolve_budget(entry, n_pool) for entry in entries}
    percents = {canonical_percent(e): c for e, c in counts.items() if isinstance(e, str)}
    return tuple(sorted(set(counts.values()))), dict(
        sorted(percents.items(), key=lambda kv: parse_percent(kv[0]))
    )


def check_budget_entries(
    entries: Sequence[int | str], recorded: dict[str, int] | None
) -> tuple[tuple[int | str, ...], dict[str, int] | None]:
    """Validate ``evaluation.budgets`` (ints already checked >= 2) and ``evaluation.resolved_budgets``.

    Returns the budgets in canonical order (counts ascending, then percentages ascending, each
    percentage spelt by :func:`canonical_percent`) and the record restricted to those percentages.

    Raises:
        ConfigError: an entry that is neither a count nor a percentage in (0%, 100%], a repeated entry,
            an empty list, or a record whose key is not a percentage.
    """
    if not entries:
        raise ConfigError("budgets", "needs at least one budget")
    counts: list[int] = []
    percents: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, str):
            counts.append(int(entry))
            continue
        value = parse_percent(entry)
        if value is None:
            raise ConfigError(
                f"budgets.{i}",
                f"{entry!r} is neither a whole number of images nor a percentage of the labelled "
                'training pool such as "10%"',
            )
        if not 0 < value <= 100:
            raise ConfigError(
                f"budgets.{i}", f"a percentage must be above 0% and at most 100%, got {entry!r}"
            )
        percents.append(canonical_percent(entry))
    for listed in (counts, percents):
        repeated = sorted({str(b) for b in listed if listed.count(b) > 1})
        if repeated:
            raise ConfigError("budgets", f"each budget may appear once ({', '.join(repeated)} is repeated)")
    percents.sort(key=parse_percent)
    budgets = (*sorted(counts), *percents)
    if recorded is None:
        return budgets, None
    record = {}
    for key, count in recorded.items():
        if parse_percent(key) is None:
            raise ConfigError(
                f"resolved_budgets.{key}", 'keys are the percentage budgets (such as "10%"); delete the entry'
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < MIN_BUDGET:
            raise ConfigError(
                f"resolved_budgets.{key}", f"must be a whole number >= {MIN_BUDGET}, got {count!r}"
            )
        record[canonical_percent(key)] = count
    return budgets, {p: record[p] for p in percents if p in record}


def _check_pool(patient_ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pids = np.asarray(patient_ids)
    y = np.asarray(labels, dtype=np.float64)
    if pids.ndim != 1:
        raise ValueError(f"patient_ids must be 1-D, got shape {pids.shape}")
    if y.ndim != 2 or y.shape[0] != pids.shape[0]:
        raise ValueError(f"labels must have shape [N={pids.shape[0]}, P], got {y.shape}")
    bad = ~(np.isnan(y) | (y == 0) | (y == 1))
    if bad.any():
        raise ValueError(
            f"labels must be 1, 0 or NaN (map uncertain labels first); found {np.unique(y[bad])[:5]}"
        )
    return pids, y


def image_ordering(patient_ids: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """The full image ordering of steps 2-6 of the module rule: a permutation of ``range(N)``.

    The subset for budget ``b`` is ``np.sort(image_ordering(...)[:b])``.
    """
    pids, y = _check_pool(patient_ids, labels)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    n = pids.shape[0]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM]))
    if n == 0:
        return np.zeros(0, dtype=np.int64)

    uniq, inv = np.unique(pids, return_inverse=True)
    inv = inv.reshape(-1)
    n_pat = uniq.shape[0]
    n_images = np.bincount(inv, minlength=n_pat)
    chosen = np.zeros(n_pat, dtype=bool)
    order: list[int] = []
    lead = np.full(n_pat, -1, dtype=np.int64)  # row index of each patient's lead image, -1 if none

    for value in (1.0, 0.0):  # positive pass, then negative pass
        hit = y == value  # [N, P]
        # per patient, number of images with this label value, per pathology: [n_pat, P]
        per_patient = np.zeros((n_pat, y.shape[1]), dtype=np.int64)
        for p in range(y.shape[1]):
            per_patient[:, p] = np.bincount(inv, weights=hit[:, p], minlength=n_pat)
        counts = hit.sum(axis=0)
        for p in np.argsort(counts, kind="stable"):
            if counts[p] == 0 or (per_patient[chosen, p] > 0).any():
                continue  # impossible, or already covered by a chosen patient
            candidates = np.flatnonzero((per_patient[:, p] > 0) & ~chosen)
            # keep the prefix short: only the candidates with the fewest images are eligible
            candidates = candidates[n_images[candidates] == n_images[candidates].min()]
            u = int(candidates[rng.integers(candidates.size)])
            rows = np.flatnonzero((inv == u) & hit[:, p])
            lead[u] = rows[rng.integers(rows.size)]
            chosen[u] = True
            order.append(u)

    rest = np.flatnonzero(~chosen)
    patient_order = np.concatenate([np.asarray(order, dtype=np.int64), rng.permutation(rest)])

    # Rank of each patient in the ordering; images sorted by (patient rank, random key), with the
    # lead image's key forced below every random key so it comes first within its patient.
    rank = np.empty(n_pat, dtype=np.int64)
    rank[patient_order] = np.arange(n_pat)
    key = rng.random(n)
    has_lead = lead >= 0
    key[lead[has_lead]] = -1.0
    return np.lexsort((key, rank[inv])).astype(np.int64)


def sample_budget_subsets(
    patient_ids: np.ndarray, labels: np.ndarray, budgets: Sequence[int], seed: int
) -> dict[int, np.ndarray]:
    """Nested, patient-wise, stratified subsets of the labelled training pool, one per budget.

    Args:
        patient_ids: ``[N]`` patient id of each pool image (str or int).
        labels: ``[N, P]`` float labels: 1 positive, 0 negative, NaN missing. Only labelled images
            (at least one non-missing label) belong in the pool; this function does not filter.
        budgets: absolute numbers of labelled images, each ``1 <= b <= N``.
        seed: non-negative evaluation seed.

    Returns:
        ``{b: rows}`` in the order of ``budgets``, where ``rows`` are the sorted int64 row indices into
        the pool of exactly ``b`` images, chosen by the rule in the module docstring.

    Raises:
        UserError: a budget is not a positive integer or exceeds the number of pool images.
    """
    pids, y = _check_pool(patient_ids, labels)
    n = pids.shape[0]
    clean: list[int] = []
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1:
            raise UserError(f"evaluation.budgets: budget {b!r} must be a positive integer")
        if b > n:
            raise UserError(
                f"evaluation.budgets: budget {int(b)} is larger than the {n} labelled training images "
                "available; lower it or use a larger dataset"
            )
        clean.append(int(b))
    ordering = image_ordering(pids, y, seed)
    return {b: np.sort(ordering[:b]) for b in clean}


def subset_summary(
    labels: np.ndarray,
    rows: np.ndarray,
    pathologies: Sequence[str] | None = None,
    patient_ids: np.ndarray | None = None,
) -> dict:
    """Per-pathology label counts of a subset, for logs and the report.

    Returns a JSON-serialisable dict::

        {"n_images": int, "n_patients": int | None,
         "positives": {name: int}, "negatives": {name: int}, "missing": {name: int},
         "without_positive": [name, ...], "without_negative": [name, ...]}

    Names are ``pathologies`` when given, else the column indices as strings. ``n_patients`` is given
    only when ``patient_ids`` (the pool's, ``[N]``) is passed.
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"labels must be [N, P], got shape {y.shape}")
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    names = [str(p) for p in pathologies] if pathologies is not None else [str(i) for i in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise ValueError(f"{len(names)} pathology names for {y.shape[1]} label columns")
    sub = y[idx]
    pos = (sub == 1).sum(axis=0)
    neg = (sub == 0).sum(axis=0)
    miss = np.isnan(sub).sum(axis=0)
    n_patients = None if patient_ids is None else int(np.unique(np.asarray(patient_ids)[idx]).size)
    return {
        "n_images": int(idx.size),
        "n_patients": n_patients,
        "positives": {k: int(v) for k, v in zip(names, pos, strict=True)},
        "negatives": {k: int(v) for k, v in zip(names, neg, strict=True)},
        "missing": {k: int(v) for k, v in zip(names, miss, strict=True)},
        "without_positive": [k for k, v in zip(names, pos, strict=True) if v == 0],
        "without_negative": [k for k, v in zip(names, neg, strict=True) if v == 0],
    }
