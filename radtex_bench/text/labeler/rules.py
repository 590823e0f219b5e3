"""The rule labeler: mentions + NegEx-style cue scopes + CheXpert aggregation, over a whole batch at once.

How one batch is labelled (Irvin et al. 2019's CheXpert labeler stages: extract, classify, aggregate):

1. **Text.** Each report goes through :func:`radtex_bench.data.reports.extract` (FINDINGS and
   IMPRESSION; administrative sections such as INDICATION are dropped, de-identification placeholders
   removed), is lower-cased, and its section headers become clause breaks. The reports are joined into
   one string with line breaks, so every regex runs **once per batch**, not once per report.
2. **Mentions.** Each observation's phrases (:mod:`.vocabulary`) are matched; observations are matched
   independently, so "nodular opacity" is both a Lung Lesion and a Lung Opacity mention (as in CheXpert).
3. **Scope.** Text is cut into clauses at sentence ends, ``;``, ``:`` and termination terms ("but",
   "however", "which", ...). A cue governs mentions of its own clause: a forward cue ("no", "possible")
   the first mention within :data:`FORWARD_WINDOW` words after it, a backward cue ("is not seen",
   "cannot be excluded") the first within :data:`BACKWARD_WINDOW` words before it, and then further
   mentions of a list ("no effusion, pneumothorax, or consolidation") while each is within :data:`CHAIN`
   words of the previous one, unless another cue stands between them ("no pneumothorax, possible
   effusion"; Chapman et al. 2001, NegEx; ConText). A cue inside a mention's span governs it ("heart
   size **may be** mildly enlarged"). Windows are counted in whitespace-separated words.
4. **Value of a mention** (CheXpert's order): pre-negation uncertainty -> -1; else negation or a mention
   that states absence ("heart size is normal") -> 0; else uncertainty or an uncertain mention
   ("vascular congestion") -> -1; else 1.
5. **Aggregation per report and observation** (CheXpert ``aggregate.py``): positive wins over uncertain,
   uncertain over negative (1 > -1 > 0); no mention -> NaN. **No Finding** is 1 when no observation
   other than Support Devices (including CheXpert's list of other findings, e.g. scoliosis) is positive
   or uncertain, else NaN. An empty report is NaN everywhere.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence

try:  # the regex parser, to read the possible first characters of a pattern (see _guarded)
    from re import _constants as _sre_c
    from re import _parser as _sre_parse
except ImportError:  # Python 3.10
    import sre_constants as _sre_c
    import sre_parse as _sre_parse
import numpy as np

from ...data.labels import CHEXPERT_14
from ...data.reports import extract
from . import vocabulary as V

#: Everything except No Finding and Support Devices: a positive or uncertain one rules out No Finding.
_PATHOLOGY = tuple(c for c in CHEXPERT_14 if c not in ("No Finding", "Support Devices"))
_LABELS = tuple(c for c in CHEXPERT_14 if c != "No Finding") + ("_other",)
_HEADER = re.compile(
    r"\b(?:findings and impressions?|findings|impressions?|conclusions?|findings/impression)\s*:"
)
_SPACE = re.compile(r"\s+")
_KNOWN_HEADER = re.compile(r"(?:FINDINGS|IMPRESSION)\s*:", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"_{2,}|XXXX|\[\*\*")  # MIMIC, OpenI and older de-identification
#: Rank of a mention value for aggregation: 1 > -1 > 0, and 0 means "not mentioned".
_RANK = {0: 1, -1: 2, 1: 3}
_FROM_RANK = np.array([np.nan, 0.0, -1.0, 1.0], dtype=np.float32)


class _LabelMentions:
    """One observation's phrases: which phrase group (value 1 / -1 / 0, kept when negated or not) a
    matched text belongs to, and a regex to find the observation's mentions inside a text."""

    def __init__(self, label: int, phrases: tuple[V.Phrase, ...]):
        groups: dict[tuple[int, bool], list[str]] = {}
        for p in phrases:
            groups.setdefault((p.value, p.keep_negated), []).append(p.pattern)
        self.label = label
        self.groups = [(key, re.compile("|".join(f"(?:{p})" for p in pats))) for key, pats in groups.items()]
        self.body = "(?:" + "|".join(f"(?:{r.pattern})" for _, r in self.groups) + ")"
        self.regex = re.compile(rf"\b{self.body}\b")

    def value_of(self, text: str) -> tuple[int, bool]:
        """The first group, in regex order, matching all of ``text``: the alternative the scan chose."""
        return next((key for key, r in self.groups if r.fullmatch(text)), self.groups[0][0])


class _Scan:
    """Several observations found in one pass over the batch (each pass costs the same, however few
    the phrases), then told apart per distinct matched text (cached: once per wording, not per mention).

    A match of one observation may contain mentions of others ("nodular opacity": Lung Lesion and Lung
    Opacity; "pleural thickening": Pleural Other and CheXpert's "thickening"), so every observation of
    the scan is looked for inside each matched text. The order of ``labels`` decides which phrase wins
    where two start at the same place; a mention that starts inside another observation's match but
    runs past its end would be lost, which is why the heart and the mediastinum, whose phrases are
    long and overlap each other, get passes of their own, and CheXpert's short "other findings" come
    last.
    """

    def __init__(self, labels: list[_LabelMentions]):
        self.labels = labels
        self.regex = _guarded("(?:" + "|".join(lm.body for lm in labels) + ")", r"\b")
        self._cache: dict[str, list[tuple[int, int, bool, int, int]]] = {}

    def mentions(self, text: str) -> list[tuple[int, int, bool, int, int]]:
        """(label, value, keep_negated, start, end) of every mention inside a matched ``text``."""
        found = self._cache.get(text)
        if found is None:
            found = [
                (lm.label, *lm.value_of(m.group()), m.start(), m.end())
                for lm in self.labels
                for m in lm.regex.finditer(text)
            ]
            self._cache[text] = found
        return found


def _split_alternatives(pattern: str) -> list[str]:
    """Top-level ``|`` alternatives of a pattern (so cue alternatives can be ordered longest first)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _compile_cues() -> tuple[re.Pattern, list[tuple[re.Pattern, V.Cue]]]:
    """One regex for every cue alternative, longest first, so "no new" wins over "no", "is not seen"
    over "not", "cannot be excluded" over "excluded" at the same place.

    The regex has no groups (named groups per alternative make Python's ``re`` about ten times
    slower); :func:`_cue_of` finds which alternative matched.
    """
    alts = [(alt, cue) for cue in V.CUES for alt in _split_alternatives(cue.pattern)]
    alts.sort(key=lambda a: -len(a[0]))
    body = "|".join(f"(?:{alt})" for alt, _ in alts)
    return _guarded(f"(?:{body})", r"(?!\w)"), [(re.compile(alt), cue) for alt, cue in alts]


_PREFIX_LEN = 3


def _prefixes(items, k: int) -> set[tuple[str, bool]] | None:
    """Possible first ``k`` characters of a parsed pattern, as (prefix, complete) pairs.

    ``complete`` means nothing can be appended (``k`` reached, or an unknown item such as ``\\w``
    follows). An empty prefix means the pattern may start with anything (or match nothing).
    """
    cur = {("", False)}
    for op, av in items:
        if op in (_sre_c.AT, _sre_c.ASSERT, _sre_c.ASSERT_NOT):
            continue  # zero width: they only restrict where a match starts
        if op is _sre_c.LITERAL:
            options = {(chr(av), False)}
        elif op is _sre_c.IN and all(o is _sre_c.LITERAL for o, _ in av):
            options = {(chr(c), False) for _, c in av}
        elif op is _sre_c.SUBPATTERN:
            options = _prefixes(av[-1], k)
        elif op is _sre_c.BRANCH:
            parts = [_prefixes(branch, k) for branch in av[1]]
            options = None if any(p is None for p in parts) else set().union(*parts)
        elif op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT):
            lo, hi, sub = av
            inner = _prefixes(sub, k)
            if inner is None:
                options = None
            else:  # after one repetition another may follow: those prefixes end there
                options = {(p, done or hi > 1) for p, done in inner} | ({("", False)} if lo == 0 else set())
        else:
            options = None
        if options is None:
            options = {("", True)}
        nxt = set()
        for p, done in cur:
            if done or len(p) >= k:
                nxt.add((p[:k], True))
                continue
            for q, q_done in options:
                joined = p + q
                nxt.add((joined[:k], q_done or len(joined) >= k))
        cur = nxt
        if all(done for _, done in cur):
            break
    return cur


def _guarded(body: str, suffix: str) -> re.Pattern:
    """``\\b(?=<possible prefixes>)body suffix``: the lookahead of literal prefixes lets Python's
    ``re`` reject most word starts before trying dozens of alternatives (about 3x faster)."""
    try:
        found = _prefixes(_sre_parse.parse(body), _PREFIX_LEN)
    except Exception:  # noqa: BLE001 - an unreadable pattern only loses the speed-up
        found = None
    guard = ""
    if found and all(p for p, _ in found):  # a possible empty prefix: no guard can be built
        prefixes = sorted({p for p, _ in found}, key=lambda p: (-len(p), p))
        guard = "(?=" + "|".join(re.escape(p) for p in prefixes) + ")"
    return re.compile(rf"\b{guard}{body}{suffix}")


_BY_NAME = {label: _LabelMentions(i, V.MENTIONS[label]) for i, label in enumerate(_LABELS)}
_OWN_PASS = ("Enlarged Cardiomediastinum", "Cardiomegaly")
_SCANS = [_Scan([_BY_NAME[name]]) for name in _OWN_PASS] + [
    _Scan([_BY_NAME[name] for name in _LABELS if name not in _OWN_PASS])  # _LABELS ends with _other
]
_CUE_RE, _CUE_ALTS = _compile_cues()


@functools.lru_cache(maxsize=4096)
def _cue_of(text: str) -> V.Cue:
    """The cue whose alternative the scan chose for ``text``: the first, in scan order, matching all of it."""
    return next(cue for regex, cue in _CUE_ALTS if regex.fullmatch(text))


_TERMINATOR_RE = re.compile(V.TERMINATORS)
_KIND = {"pseudo": 0, "pre": 1, "neg": 2, "unc": 3}


def prepare(text) -> str:
    """One report -> lower-case FINDINGS + IMPRESSION text on one line (headers become ``;``).

    Anything that is not a non-empty string (``None``, ``NaN``) becomes ``""``.
    """
    if not isinstance(text, str) or not text.strip():
        return ""
    # Text that is already extracted (no other section, no placeholder) skips the section parser.
    needs_extract = text.count(":") != len(_KNOWN_HEADER.findall(text)) or _PLACEHOLDER.search(text)
    body = (extract(text, "both") if needs_extract else text).lower()
    return _SPACE.sub(" ", _HEADER.sub(" ; ", body)).strip()


def _word_index(corpus: str) -> np.ndarray:
    """``[len(corpus)]`` int32: index of the whitespace-separated word each character belongs to."""
    codes = np.frombuffer(corpus.encode("utf-32-le"), dtype=np.uint32)
    is_word = ~np.isin(codes, (32, 9, 10, 13))
    starts = is_word.copy()
    starts[1:] &= ~is_word[:-1]
    return np.cumsum(starts, dtype=np.int32)


def _cue_spans(corpus: str) -> tuple[np.ndarray, np.ndarray, list[V.Cue]]:
    """Start, end and Cue of every cue in ``corpus``."""
    starts, ends, info = [], [], []
    for m in _CUE_RE.finditer(corpus):
        starts.append(m.start())
        ends.append(m.end())
        info.append(_cue_of(m.group()))
    return np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64), info


#: Reports per pass: bounds memory (the joined text and a per-character word index) on big corpora.
BATCH = 4096


def label_matrix(texts: Sequence) -> np.ndarray:
    """``[N, 14]`` float32 CheXpert labels (1 / 0 / -1 / NaN, columns in ``CHEXPERT_14`` order)."""
    texts = list(texts)
    if len(texts) > BATCH:
        return np.concatenate([_label_batch(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)])
    return _label_batch(texts)


def _label_batch(texts: list) -> np.ndarray:
    docs = [prepare(t) for t in texts]
    n = len(docs)
    out = np.full((n, len(CHEXPERT_14)), np.nan, dtype=np.float32)
    if n == 0:
        return out
    corpus = "\n".join(docs)
    lengths = np.fromiter((len(d) + 1 for d in docs), dtype=np.int64, count=n)
    doc_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    word = _word_index(corpus) if corpus else np.zeros(1, dtype=np.int32)
    bounds = np.array([m.start() for m in _TERMINATOR_RE.finditer(corpus)], dtype=np.int64)

    # ---- mentions: [M] arrays
    m_start, m_end, m_label, m_value, m_keep = [], [], [], [], []
    for scan in _SCANS:
        for m in scan.regex.finditer(corpus):
            for label, value, keep, start, end in scan.mentions(m.group()):
                m_start.append(m.start() + start)
                m_end.append(m.start() + end)
                m_label.append(label)
                m_value.append(value)
                m_keep.append(keep)
    m_start, m_end = np.array(m_start, dtype=np.int64), np.array(m_end, dtype=np.int64)
    m_label, m_value = np.array(m_label, dtype=np.int16), np.array(m_value, dtype=np.int8)
    m_keep = np.array(m_keep, dtype=bool)
    order = np.lexsort((m_end, m_start))
    m_start, m_end, m_label, m_value, m_keep = (a[order] for a in (m_start, m_end, m_label, m_value, m_keep))
    m_clause = np.searchsorted(bounds, m_start, side="right")
    m_w0, m_w1 = word[m_start], word[np.maximum(m_end - 1, 0)]

    # ---- cues: [C] arrays
    c_start, c_end, info = _cue_spans(corpus)
    c_clause = np.searchsorted(bounds, c_start, side="right")
    c_w0, c_w1 = word[c_start], word[np.maximum(c_end - 1, 0)]

    flags = _scope(
        (m_start, m_end, m_clause, m_w0, m_w1),
        (c_start, c_end, c_clause, c_w0, c_w1, info),
    )
    pre, neg, unc = flags[:, 1], flags[:, 2], flags[:, 3]
    value = np.where(pre, -1, np.where(neg | (m_value == 0), 0, np.where(unc | (m_value == -1), -1, 1)))
    keep = m_keep | (value != 0)

    # ---- aggregate per (report, label): the highest rank wins
    doc = np.searchsorted(doc_start, m_start, side="right") - 1
    rank = np.zeros((n, len(_LABELS)), dtype=np.int8)
    ranks = np.select([value == 1, value == -1], [_RANK[1], _RANK[-1]], _RANK[0]).astype(np.int8)
    np.maximum.at(rank, (doc[keep], m_label[keep]), ranks[keep])
    labels = _FROM_RANK[rank]  # [N, len(_LABELS)]
    col = {name: i for i, name in enumerate(_LABELS)}
    for j, name in enumerate(CHEXPERT_14):
        if name != "No Finding":
            out[:, j] = labels[:, col[name]]
    finding = (rank[:, [col[c] for c in _PATHOLOGY + ("_other",)]] >= _RANK[-1]).any(axis=1)
    empty = np.array([not d for d in docs])
    out[:, CHEXPERT_14.index("No Finding")] = np.where(finding | empty, np.nan, 1.0)
    return out


def _scope(mentions, cues) -> np.ndarray:
    """``[M, 4]`` bool: whether a pseudo / pre / neg / unc cue governs each mention (see module doc).

    Mentions are sorted by start and carry their clause; a cue's scope is the first mention in its
    window, then each following (preceding, for backward cues) mention of the same clause within
    ``CHAIN`` words of the last one, until another cue that cuts scopes stands between them. Cues
    between a cue and its first mention do not cut ("no suspicious mass": the mass is negated).
    """
    m_start, m_end, m_clause, m_w0, m_w1 = mentions
    c_start, c_end, c_clause, c_w0, c_w1, info = cues
    flags = np.zeros((len(m_start), 4), dtype=bool)
    if not len(c_start) or not len(m_start):
        return flags
    lo = np.searchsorted(m_clause, c_clause, side="left")
    hi = np.searchsorted(m_clause, c_clause, side="right")
    # Python lists: indexing them is several times faster than numpy scalars in the loop below.
    ms, me, mw0, mw1 = m_start.tolist(), m_end.tolist(), m_w0.tolist(), m_w1.tolist()
    cs, ce, cw0, cw1 = c_start.tolist(), c_end.tolist(), c_w0.tolist(), c_w1.tolist()
    cut_starts = [cs[k] for k in range(len(cs)) if info[k].cuts]
    cut_ends = [ce[k] for k in range(len(cs)) if info[k].cuts]

    def cut_between(a: int, b: int, edges: list) -> bool:  # a cutting cue edge in [a, b)
        j = bisect.bisect_left(edges, a)
        return j < len(edges) and edges[j] < b

    for k in range(len(cs)):
        a, b = int(lo[k]), int(hi[k])
        if a == b:
            continue  # no mention in this clause
        cue, kind = info[k], _KIND[info[k].kind]
        if "f" in cue.direction:
            last, end = None, 0  # word index and character where the scope has reached
            for i in range(a, b):
                if me[i] < ce[k]:
                    continue  # before the cue
                if last is None:
                    if mw0[i] - cw1[k] - 1 > V.FORWARD_WINDOW:
                        break
                elif mw0[i] - last - 1 > V.CHAIN or cut_between(end, ms[i], cut_starts):
                    break
                flags[i, kind] = True
                last = mw1[i] if last is None else max(last, mw1[i])
                end = me[i] if last == mw1[i] else end
        if "b" in cue.direction:
            first, begin = None, 0
            for i in range(b - 1, a - 1, -1):
                if ms[i] > cs[k]:
                    continue  # after the cue
                if first is None:
                    if cw0[k] - mw1[i] - 1 > V.BACKWARD_WINDOW:
                        break
                elif first - mw1[i] - 1 > V.CHAIN or cut_between(me[i] + 1, begin + 1, cut_ends):
                    break
                flags[i, kind] = True
                first = mw0[i] if first is None else min(first, mw0[i])
                begin = ms[i] if first == mw0[i] else begin
    return flags
