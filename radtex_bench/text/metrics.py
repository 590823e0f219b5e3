"""Report-generation metrics (BLEU-1..4, ROUGE-L, CIDEr) with per-image sufficient statistics.

The ``generation`` protocol scores generated reports against one reference report per image and
needs patient-bootstrap intervals: every metric for every one of ``B`` replicates, each replicate
giving the ``N`` test images integer weights (weight ``k`` = the image counted ``k`` times). Every
metric here is therefore a function of *per-image statistics*, computed once from the text
(:func:`generation_stats`), and of the image weights, applied by a matrix product
(:func:`bootstrap_scores`); :func:`corpus_scores` is the all-ones replicate.

Conventions are those of the COCO caption evaluation (the ``pycocoevalcap`` package, version 1.2,
https://github.com/salaniz/pycocoevalcap, itself the code of https://github.com/tylin/coco-caption),
so the numbers are comparable with published report-generation results computed with it:

**Tokenizer** (:func:`tokenize`). pycocoevalcap runs Stanford CoreNLP 3.4.1's ``PTBTokenizer``
(``-preserveLines -lowerCase``, a Java program) and then drops the tokens in its ``PUNCTUATIONS`` list.
:func:`tokenize` re-implements, without Java, the rules of that lexer that matter for report text
(longest match over the lexer's token classes, as JFlex does), then lower-cases and drops the same
list. What that means in practice, all as the Java pipeline does:

- punctuation is split off and removed: ``. , ; : ? ! - -- ...`` (``--`` covers en/em dashes and
  runs of 2-4 hyphens; 5 or more stay a token), and all quote marks (``"`` ``'`` ````` `` and the curly ones);
- hyphenated words (``left-sided``, ``x-ray``, ``5-mm``), slashed words (``ap/pa``, ``s/p``, up to three
  parts), numbers (``4.5``, ``1,000``, ``10:30``, dates) and words run together over a missing space
  (``normal.the``) stay single tokens; a number glued to a unit splits only after a decimal
  (``3cm`` stays, ``2.5cm`` -> ``2.5 cm``);
- a sentence-final period stays attached to an abbreviation of the lexer's lists: single letters
  (``a.``), acronyms (``e.g.``, ``a.m.``), titles (``dr.``, ``st.``), ``vs. etc. cf.``, months, US
  states (so ``CT.``, ``MD.``, ``PA.`` and ``MASS.`` in capitals keep their period: ``ct.``, ``md.``,
  ``pa.``, ``mass.``), ``no. fig. pp.`` only before a number; every other word loses it;
- clitics split: ``it's`` -> ``it 's``, ``don't`` -> ``do n't``, ``cannot`` -> ``can not``;
- brackets become ``-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-`` and are **kept**: pycocoevalcap's list holds
  the upper-case ``-LRB-`` etc. but the tokens come out lower-cased (a quirk of the COCO pipeline that
  matching it means keeping);
- other symbols are tokens of their own and kept: ``%`` ``/`` (when not inside a word) ``+ = * # $ & ~``
  ``°`` ``±`` ``≥``, runs ``?!`` or ``!!``, and de-identification blanks ``___``; ``½`` becomes ``1/2``.

Known differences from the Java tokenizer (none of which occurs in report text we checked): URLs,
e-mail addresses, phone numbers and SGML tags containing spaces are not recognised as single tokens;
an integer followed by a space and a fraction (``3 1/2``) gives two tokens where Java gives one
containing a no-break space (which pycocoevalcap's BLEU/CIDEr split and its ROUGE does not); a few
odd glued forms differ (``<word`` without ``>``, ``1.x``, an em dash between two words); the
letter/digit/symbol classes are Python's rather than Java's, so rare non-ASCII characters may be kept
or dropped differently; all whitespace (including ``\\r`` and other line separators, which would
break the Java pipeline's one-line-per-caption protocol) separates tokens. Against the Java
tokenizer, every one of 3,600 synthetic reports and 60 hand-written MIMIC-style report lines gave
identical tokens, and 2,990 of 3,000 lines of randomly glued words and punctuation did.
``tests/test_text_metrics.py`` repeats the comparison on its sentences when ``java`` is on PATH.

**BLEU-n** (Papineni et al., 2002; pycocoevalcap ``Bleu(4)``). Per image: clipped n-gram matches and
candidate n-gram counts for n = 1..4 and candidate and reference lengths in tokens. Corpus BLEU-n is
computed from the *summed* statistics: ``prod_{k<=n} ((m_k + 1e-15) / (c_k + 1e-9)) ** (1/n)`` times
the brevity penalty ``exp(1 - r/c)`` when ``c < r`` (with the same ``1e-15``/``1e-9`` guards as
pycocoevalcap), i.e. no smoothing: a corpus without any matching 4-gram scores ~0, not 0. The
reference length is pycocoevalcap's "closest" option, which with one reference is its length.

**ROUGE-L** (Lin, 2004; pycocoevalcap ``Rouge``). Per image: the LCS F-measure with beta = 1.2,
``(1 + b^2) P R / (R + b^2 P)`` (0 when P or R is 0); corpus = mean over images. As in pycocoevalcap
an empty text counts as one empty token, so an empty candidate scores 1 against an empty reference
and 0 against any other.

**CIDEr** (Vedantam et al., 2015) exactly as pycocoevalcap 1.2's ``Cider`` class computes it, which is
the CIDEr-D variant (the package has no separate ``CiderD``): TF-IDF vectors of 1..4-grams with raw
counts as term frequency and ``log(N) - log(max(1, df))`` as IDF, where ``df`` is the number of
images whose reference contains the n-gram and ``N`` the number of images (the "corpus" is the
references of the evaluated set); per n, the clipped cosine ``sum min(v_c, v_r) v_r / (|v_c||v_r|)``
times the Gaussian length penalty ``exp(-d^2 / (2 * 6^2))``; mean over n, times 10. Faithful to the
package, ``d`` is the difference in *bigram* counts (``max(0, len - 1)``), not in words. Corpus =
mean over images. The document frequencies are a :class:`DocumentFrequency` held in the statistics.

**Bootstrap** (:func:`bootstrap_scores`). A replicate's BLEU is the corpus formula on the weighted sums
of the per-image counts, and its ROUGE-L and CIDEr the weighted means of the per-image scores: for
BLEU and ROUGE-L exactly what recomputing them on the resampled list of pairs gives. For CIDEr the
document frequencies stay those of the full evaluated set: *the bootstrap resamples images, not the
IDF*. (Recomputing pycocoevalcap's CIDEr on a resampled list would change the IDF with the sample --
an image drawn twice would count twice in ``df`` and ``N`` -- so the replicates would mix test-set
sampling with a changing metric definition.) A replicate whose weights are all zero gives NaN.

**Why not build on pycocoevalcap at run time.** The project prefers well-kept libraries to rewrites,
and pycocoevalcap stays the reference: the tests check every metric against it to 1e-9. But it is
not a good run-time dependency here: (1) the per-image statistics live in module-level helpers
(``bleu_scorer.cook_test``) and inside ``CiderScorer.compute_cider``, which recomputes the IDF from
whatever list it is given and offers no way to fix it, so fixed-IDF scoring would need monkey-patching
its internals; (2) its ROUGE-L is a pure-Python O(n*m) dynamic programme, ~35x slower than the
bit-parallel LCS used here on 45-word reports (one corpus score of 5,000 reports: ~6 s for its three
scorers on pre-tokenised text, ~2 s here for tokenizing and all statistics); (3) its last release
(1.2) is from 2020, it is ~100 MB (Java jars for its tokenizer, METEOR and SPICE, none usable here)
and pulls in pycocotools; (4) it fails on a set whose references are all empty (CIDEr's ``max()`` of
no document frequencies), where this module gives CIDEr 0. The statistics are a few hundred lines of
arithmetic defined by the formulas above, so the module implements them and keeps pycocoevalcap
(``pip install -e .[test]``) as the test oracle.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "METRICS",
    "DocumentFrequency",
    "GenerationStats",
    "bootstrap_scores",
    "corpus_scores",
    "generation_stats",
    "tokenize",
]

#: Metric names, in the order of ``corpus_scores`` and ``bootstrap_scores`` (``generation.csv`` rows).
METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider")

#: Longest n-gram for BLEU and CIDEr.
MAX_N = 4
#: ROUGE-L's recall weight (pycocoevalcap ``Rouge.beta``).
ROUGE_BETA = 1.2
#: Standard deviation, in bigrams, of CIDEr-D's Gaussian length penalty (pycocoevalcap ``Cider``).
CIDER_SIGMA = 6.0

#: BLEU's guards against 0/0, exactly pycocoevalcap's ``tiny`` and ``small``.
_TINY, _SMALL = 1e-15, 1e-9

#: At most this many (replicate x image) weights are converted to float64 at once (16 MiB).
_CHUNK_CELLS = 1 << 21

# ----------------------------------------------------------------------------------------------
# Tokenizer: a JFlex-style longest-match scanner over the token classes of CoreNLP 3.4.1's PTBLexer.
# ----------------------------------------------------------------------------------------------

#: pycocoevalcap's ``PUNCTUATIONS``; the upper-case bracket names never match lower-cased tokens.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

_LET = r"[^\W\d_\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2150-\u218f\u2460-\u24ff]"
_ALN = r"[^\W_\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2150-\u218f\u2460-\u24ff]"
_APOS = r"(?:['\u0092\u2019]|&apos;)"
_APOSETC = r"(?:['\u0092\u2019\u0091\u2018\u201B]|&apos;)"
_WORD = rf"{_LET}{_ALN}*(?:[.!?]{_LET}{_ALN}*)*"
_REDAUX = rf"{_APOS}(?:[msd]|re|ve|ll)"
_ACRO = r"[A-Za-z](?:\.[A-Za-z])+"


def _cs(word: str) -> str:
    """JFlex ``%caseless`` with a bracketed first letter: that letter case-sensitive, the rest not."""
    return f"(?-i:{word[0]}){word[1:]}"


_FUNC_WORDS = (
    "About According Additionally After An A As At But Earlier He Her Here However If In It Last Many More "
    r"Mr\. Ms\. Now Once One Other Our She Since So Some Such That The Then There These They This We When "
    "While What Yet You"
).split()
_FUNC = "|".join(_cs(w) for w in _FUNC_WORDS)
_ABMONTH = "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
_ABDAYS = "mon|tue|tues|wed|thu|thurs|fri"
_ABSTATE = "|".join(
    ["ala", "ariz", _cs("Ark"), "calif", "colo", "conn", "ct", "dak", _cs("Del"), "fla", "ga", _cs("Ill"),
     "ind", "kans?", "ky", _cs("La"), _cs("Mass"), "md", "mich", "minn", _cs("Miss"), "mo", "mont", "neb",
     "nev", "okla", _cs("Ore"), _cs("Pa"), "penn", "tenn", _cs("Tex"), "va", "vt", _cs("Wash"), "wisc?",
     "wyo"]
)  # fmt: skip
_ABCOMP = r"inc|cos?|corp|pp?tys?|ltd|plc|bancorp|dept|bhd|assn|univ|intl|sys"
_ABNUM = r"tel|est|ext|sq|ft|ph"
_ABPTIT = r"jr|sr|bros|(?:ed|ph)\.d|blvd|rd|esq"
_ABTITLE = (
    r"mr|mrs|ms|(?-i:M)iss|drs?|profs?|sens?|reps?|attys?|lt|rt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl"
    r"|pvt|mt|capt|ste?|ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det"
)
_ABCOMP2 = r"invt|elec|natl|m(?-i:[ft])g"
_ABBREV1 = rf"(?:{_ABPTIT}|{_ABMONTH}|{_ABDAYS}|{_ABSTATE}|{_ABCOMP}|{_ABNUM}|etc|al|seq|bldg)\."
_ABBREV2 = rf"(?:{_ACRO}|a\.k\.a|[A-Za-z]|{_ABTITLE}|vs|alex|wm|jos|cie|cf|treas|{_ABCOMP2})\."
_HYPHEN = r"[-_\u058A\u2010\u2011]"
_THING = rf"(?:[dol]{_APOSETC}{_ALN})?{_ALN}+(?:{_HYPHEN}(?:[dol]{_APOSETC}{_ALN})?{_ALN}+)*"
_HTHING = rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|{_ACRO}\.))+"
_THINGA = r"(?-i:[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+)"
_APOWORD = (
    rf"{_LET}+(?-i:[aeiouyAEIOUY]){_APOSETC}(?-i:[aeiouA-Z]){_LET}*|(?-i:[A-HJ-XZn]){_APOSETC}{_LET}{{2,}}"
    rf"|{_APOS}n{_APOS}?|(?-i:[lLdDjJ]){_APOS}|dunkin{_APOS}|somethin{_APOS}|ol{_APOS}|{_APOS}em"
    rf"|{_APOS}[2-9]0s|{_APOS}till?|{_APOS}cause|cont'd\.?|'twas"
    r"|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l"
)
_MISC = (
    "[\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00ba\u00d7\u00f7\u0387\u2020-\u2023\u2032-\u2038"
    "\u2044\u207a-\u207f\u208a-\u208e\u2100-\u214f\u2190-\u21ff\u2200-\u23ff\u2600-\u26ff\u3012\u30fb"
    "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]"
)
_LATEX_QUOTES = (
    (re.compile(r"&apos;|'"), "'"),
    (re.compile(r"\"|&quot;"), "''"),
    (re.compile("[\u0091\u2018\u201b\u2039]"), "`"),
    (re.compile("[\u0092\u2019\u203a]"), "'"),
    (re.compile("[\u0093\u201c\u00ab]"), "``"),
    (re.compile("[\u0094\u201d\u00bb]"), "''"),
)
_QUOTES = "[`\u2018\u2019\u201a\u201b\u201c\u201d\u0091-\u0094\u201e\u201f\u2039\u203a\u00ab\u00bb]"
_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_ASSIMILATIONS = ("cannot", "gonna", "gotta", "wanna", "lemme", "gimme")


def _latex_quotes(tok: str) -> list[str]:
    for pattern, repl in _LATEX_QUOTES:
        tok = pattern.sub(repl, tok)
    return [tok]


def _keep(tok: str) -> list[str]:
    return [tok]


def _drop(tok: str) -> list[str]:
    return []


def _hyphens(tok: str) -> list[str]:
    return ["--"] if 3 <= len(tok) <= 4 else [tok]


def _acronym_before_function_word(tok: str) -> list[str]:
    # CoreNLP's processAcronym: "I." + "The" -> "I" "."; "U.S." + "The" -> "U.S." "." (periods dropped later).
    return [tok[0]] if len(tok) == 2 else [tok]


def _smiley(tok: str) -> list[str]:
    return [tok.replace("(", "-LRB-").replace(")", "-RRB-")]


def _currency(tok: str) -> list[str]:
    return [{"\u00a2": "cents", "\u00a3": "#"}.get(tok, "$")]


# (pattern, action). A pattern's named group ``t`` (default: the whole match) is the token; the rest of
# the match is trailing context, counted for the longest match as JFlex counts it. Ties go to the
# earlier rule. Actions return the token's output tokens (before lower-casing).
_RULES: list = [
    (r"(?P<t>can)not|(?P<t2>gon|got|wan|lem|gim)(?:na|ta|me)|(?P<t3>['\u2019]t)is", _keep),
    (r"<\/?[A-Za-z!][^>\s]*>", _keep),
    (rf"(?P<t>{_ABBREV1})[\s\S]", _keep),  # beats a run-on word on ties: "Mass.A" -> "mass." "a"
    (r"(?P<t>[<>]?[:;=](?-i:[-o*'])?(?-i:[()DPdpO\\{@|\[\]]))(?:[^\w]|$)", _smiley),
    (r"&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", lambda t: ["--"]),
    (r"&amp;", lambda t: ["&"]),
    (r"&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);", _keep),
    (rf"(?P<t>{_WORD}){_REDAUX}", _keep),
    (rf"(?P<t>[A-Za-z]*[A-MO-Za-mo-z])n{_APOSETC}t", _keep),
    (_WORD, _keep),
    (_APOWORD, _keep),
    (rf"(?P<t>y{_APOS}){_LET}", _keep),
    (rf"(?P<t>{_REDAUX})(?:[^A-Za-z]|$)", _latex_quotes),
    (rf"n{_APOSETC}t", _latex_quotes),
    (r"\d{1,2}[-/]\d{1,2}[-/]\d{2,4}", _keep),
    (r"[-+]?(?:\d*(?:[.:,\u066B\u066C]\d+)+|\d+)", _keep),
    (r"(?:\d{1,4}-)?\d{1,4}(?:\\?/|\u2044)\d{1,4}", _keep),
    ("[\u00bc\u00bd\u00be\u2153-\u215e]", lambda t: [_FRACTIONS.get(t, t)]),
    (r"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls", _keep),
    (r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}", _keep),
    (r"(?-i:[A-Z]*)\$|#", _keep),
    ("[\u00a2-\u00a5\u0080\u20a0\u20ac]", _currency),
    (rf"(?P<t>[A-Za-z](?:\.[A-Za-z])*\.)[ \t\u00a0]+(?:{_FUNC})(?=\s|$)", _acronym_before_function_word),
    (_ABBREV1, _keep),
    (_ABBREV2, _keep),
    (r"(?P<t>(?:ca|figs?|prop|nos?|art|pp|op)\.)\s*\d", _keep),
    (rf"(?P<t>{_APOS}\d\d)(?:\s|$)", _keep),
    (rf"(?P<t>{_WORD}\.)[,;:]", _keep),
    (r"\"|&quot;", _drop),
    (r"\+|[%&\u2030\u2031]|[~^]|[|\\]", _keep),
    (r"[(){}\[\]]", lambda t: [_BRACKETS[t]]),
    (r"[<>]", _keep),
    (r"-+", _hyphens),
    (r"\.{3,5}|[\u0085\u2026]", lambda t: ["..."]),
    (r"@+|#+|_+", _keep),
    (rf"@[A-Za-z_][A-Za-z_0-9]*|#{_LET}{_ALN}*", _keep),  # Twitter names and hashtags
    (r"\*+", _keep),
    (r"[,;:]", _keep),
    (r"[?!]+", _keep),
    ("[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa]", _keep),
    (r"=", _keep),
    (r"/", _keep),
    (rf"(?P<t>{_HTHING}\.)[,;:]", _keep),
    (_HTHING, _keep),
    (rf"(?P<t>{_THING}\.)[,;:]", _keep),
    (_THING, _keep),
    (rf"(?P<t>{_THINGA}\.)[,;:]", _keep),
    (_THINGA, _keep),
    (r"(?P<t>')[A-Za-z][^ \t\n\r\u00a0]", _drop),
    (_REDAUX, _latex_quotes),
    (rf"''|{_APOS}|{_QUOTES}{{1,2}}", _latex_quotes),
    (_MISC, _keep),
]  # fmt: skip
_RULES = [(re.compile(p, re.IGNORECASE), a) for p, a in _RULES]
_PLAIN_WORD = re.compile(r"[A-Za-z]+")
_ABBREV3_NEXT = re.compile(r"\d")
_FUNC_NEXT = re.compile(rf"(?:{_FUNC})$", re.IGNORECASE)


@lru_cache(maxsize=1 << 16)
def _scan_chunk(chunk: str, context: str) -> tuple[str, ...]:
    """Tokens (lower-cased, punctuation removed) of one whitespace-free chunk.

    ``context`` is ``" " + next chunk`` where the next chunk can change this one's tokens (only after a
    final period: ``no. 5``, ``A. The``), else ``""``.
    """
    if _PLAIN_WORD.fullmatch(chunk) and chunk.lower() not in _ASSIMILATIONS:
        return (chunk.lower(),)
    text = chunk + context
    end, pos, out = len(chunk), 0, []
    while pos < end:
        best_len, best = 0, None
        for pattern, action in _RULES:
            m = pattern.match(text, pos)
            if m is None or m.end() - pos <= best_len:
                continue
            group = next((g for g in ("t", "t2", "t3") if g in pattern.groupindex and m.group(g)), None)
            tok_end = m.end(group) if group else m.end()
            if pos < tok_end <= end:
                best_len, best = m.end() - pos, (action, text[pos:tok_end])
        if best is None:  # untokenizable character: CoreNLP's default deletes it
            pos += 1
            continue
        action, tok = best
        out.extend(action(tok))
        pos += len(tok)
    return tuple(t for t in (t.lower() for t in out) if t not in PUNCTUATIONS)


def tokenize(text: str) -> list[str]:
    """COCO-caption tokens of one report: PTB tokens, lower-cased, pycocoevalcap's punctuation removed.

    See the module docstring for the rules and their known differences from the Java tokenizer.
    ``tokenize("Mild cardiomegaly (stable). No effusion.")`` is
    ``['mild', 'cardiomegaly', '-lrb-', 'stable', '-rrb-', 'no', 'effusion']``.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    chunks = text.split()
    out: list[str] = []
    for i, chunk in enumerate(chunks):
        context = ""
        if chunk.endswith(".") and i + 1 < len(chunks):
            nxt = chunks[i + 1]
            if _ABBREV3_NEXT.match(nxt) or _FUNC_NEXT.match(nxt):
                context = " " + nxt
        out.extend(_scan_chunk(chunk, context))
    return out


# ----------------------------------------------------------------------------------------------
# Per-image statistics.
# ----------------------------------------------------------------------------------------------

NGram = tuple[str, ...]
Grams = tuple[Counter[NGram], ...]


def _ngram_counts(tokens: Sequence[str]) -> Grams:
    """n-gram counts of one token list, one Counter per n = 1..4 (pycocoevalcap's ``precook``)."""
    return tuple(Counter(zip(*(tokens[i:] for i in range(n)))) for n in range(1, MAX_N + 1))


@dataclass(frozen=True)
class DocumentFrequency:
    """CIDEr's document frequencies: in how many of ``n_documents`` images' references each n-gram occurs.

    ``counts`` maps n-gram tuples (n = 1..4) to an integer count ``<= n_documents``. The IDF of n-gram
    ``g`` is ``log(n_documents) - log(max(1, counts.get(g, 0)))`` (pycocoevalcap ``CiderScorer``).
    """

    counts: Mapping[NGram, int]
    n_documents: int

    @classmethod
    def from_references(cls, references: Sequence[Sequence[str]]) -> DocumentFrequency:
        """From tokenised references, one per image (``[N]`` token lists)."""
        return cls._from_counts([_ngram_counts(ref) for ref in references])

    @classmethod
    def _from_counts(cls, counts: Sequence[Grams]) -> DocumentFrequency:
        df: Counter[NGram] = Counter()
        for per_order in counts:
            for c in per_order:
                df.update(c.keys())
        return cls(counts=dict(df), n_documents=len(counts))

    def __post_init__(self) -> None:
        if self.n_documents < 0:
            raise ValueError(f"n_documents must be >= 0, got {self.n_documents}")
        if self.counts and max(self.counts.values()) > self.n_documents:
            raise ValueError("a document frequency exceeds n_documents")


class _Idf(dict):
    """n-gram -> IDF ``log(N) - log(max(1, df))``, computed on first use (pycocoevalcap ``counts2vec``)."""

    def __init__(self, df: DocumentFrequency):
        super().__init__()
        self._counts = df.counts
        self._log_n = math.log(float(df.n_documents)) if df.n_documents > 0 else 0.0

    def __missing__(self, gram: NGram) -> float:
        value = self._log_n - math.log(max(1.0, float(self._counts.get(gram, 0))))
        self[gram] = value
        return value


Vector = tuple[dict[NGram, float], ...]


def _tfidf(grams: Grams, idf: _Idf) -> tuple[Vector, list[float]]:
    """One text's CIDEr vectors {n-gram: tf * idf} and their norms, per order n = 1..4."""
    vec = tuple({g: float(tf) * idf[g] for g, tf in c.items()} for c in grams)
    norms = []
    for v in vec:
        sq = 0.0
        for x in v.values():
            sq += x * x
        norms.append(math.sqrt(sq))
    return vec, norms


def _cider(hyp: tuple[Vector, list[float], int], ref: tuple[Vector, list[float], int]) -> float:
    """CIDEr-D of one candidate against one reference (pycocoevalcap ``CiderScorer.compute_cider``).

    ``hyp``/``ref``: (TF-IDF vectors, norms, number of bigrams), the last being pycocoevalcap's
    "length" in the Gaussian penalty.
    """
    (vh, nh, lh), (vr, nr, lr) = hyp, ref
    penalty = math.exp(-(float(lh - lr) ** 2) / (2 * CIDER_SIGMA**2))
    total = 0.0
    for k in range(MAX_N):
        val, ref_k = 0.0, vr[k]
        for gram, v in vh[k].items():
            r = ref_k.get(gram)
            if r:
                val += min(v, r) * r
        if nh[k] != 0 and nr[k] != 0:
            val /= nh[k] * nr[k]
        total += val * penalty
    return total / MAX_N * 10.0


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison & Dix 1986; Hyyro 2004)."""
    if len(a) < len(b):
        a, b = b, a
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def _rouge_l(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """pycocoevalcap ``Rouge.calc_score`` with one reference; an empty text is one empty token."""
    hyp, ref = hyp or [""], ref or [""]
    lcs = _lcs_length(ref, hyp)
    prec, rec = lcs / float(len(hyp)), lcs / float(len(ref))
    if prec == 0 or rec == 0:
        return 0.0
    return ((1 + ROUGE_BETA**2) * prec * rec) / float(rec + ROUGE_BETA**2 * prec)


@dataclass(frozen=True)
class GenerationStats:
    """Per-image sufficient statistics of generated vs reference reports (``N`` images).

    ``bleu_matches[i, k]``: clipped (k+1)-gram matches of image i's candidate (int64 ``[N, 4]``);
    ``bleu_counts[i, k]``: its number of (k+1)-grams, ``max(0, len - k)`` (``[N, 4]``);
    ``hyp_len``, ``ref_len``: candidate and reference lengths in tokens (int64 ``[N]``);
    ``rouge_l``: per-image ROUGE-L F (float64 ``[N]``, in [0, 1]);
    ``cider``: per-image CIDEr-D (float64 ``[N]``, 0 to 10 x 4-gram-order mean, unbounded above in theory);
    ``document_frequency``: the IDF those CIDEr values used.
    """

    bleu_matches: np.ndarray
    bleu_counts: np.ndarray
    hyp_len: np.ndarray
    ref_len: np.ndarray
    rouge_l: np.ndarray
    cider: np.ndarray
    document_frequency: DocumentFrequency

    @property
    def n_images(self) -> int:
        return int(self.hyp_len.shape[0])

    def _columns(self) -> np.ndarray:
        """``[N, 12]`` float64: matches 1..4, counts 1..4, hyp_len, ref_len, rouge_l, cider."""
        return (
            np.column_stack(
                [self.bleu_matches, self.bleu_counts, self.hyp_len, self.ref_len, self.rouge_l, self.cider]
            )
            .astype(np.float64, copy=False)
            .reshape(self.n_images, 2 * MAX_N + 4)
        )


def _check_texts(name: str, texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of strings (one per image), got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(t).__name__}")
    return list(texts)


def generation_stats(
    generated: Sequence[str],
    references: Sequence[str],
    *,
    document_frequency: DocumentFrequency | None = None,
) -> GenerationStats:
    """Tokenise ``generated[i]`` and ``references[i]`` (``[N]`` each) and compute per-image statistics.

    ``document_frequency``: CIDEr's IDF; default (``None``) is pycocoevalcap's, from these ``N``
    references. Pass a fixed one (e.g. ``stats.document_frequency`` of the full test set) to score a
    subset or a resampled list with the full set's IDF. Empty strings are allowed (empty reports).
    """
    gen = _check_texts("generated", generated)
    refs = _check_texts("references", references)
    if len(gen) != len(refs):
        raise ValueError(f"generated and references must have one entry per image: {len(gen)} vs {len(refs)}")
    if document_frequency is not None and not isinstance(document_frequency, DocumentFrequency):
        raise TypeError("document_frequency must be a DocumentFrequency")
    hyp_toks = [tokenize(t) for t in gen]
    ref_toks = [tokenize(t) for t in refs]
    grams: dict[tuple[str, ...], Grams] = {}  # tokens -> n-gram counts, once per distinct text
    for toks in hyp_toks + ref_toks:
        key = tuple(toks)
        if key not in grams:
            grams[key] = _ngram_counts(toks)
    df = document_frequency
    if df is None:
        df = DocumentFrequency._from_counts([grams[tuple(r)] for r in ref_toks])
    idf = _Idf(df)
    n = len(gen)
    matches = np.zeros((n, MAX_N), dtype=np.int64)
    counts = np.zeros((n, MAX_N), dtype=np.int64)
    hyp_len = np.array([len(h) for h in hyp_toks], dtype=np.int64)
    ref_len = np.array([len(r) for r in ref_toks], dtype=np.int64)
    for k in range(MAX_N):
        counts[:, k] = np.maximum(hyp_len - k, 0)
    rouge = np.zeros(n, dtype=np.float64)
    cider = np.zeros(n, dtype=np.float64)
    texts: dict[tuple[str, ...], tuple] = {}  # tokens -> (n-gram counts, CIDEr vector, norms, bigrams)

    def cooked(tokens: list[str]) -> tuple:
        key = tuple(tokens)
        out = texts.get(key)
        if out is None:
            out = texts[key] = (grams[key], *_tfidf(grams[key], idf), max(0, len(tokens) - 1))
        return out

    pairs: dict[tuple[int, int], tuple] = {}
    for i, (h, r) in enumerate(zip(hyp_toks, ref_toks)):
        hc, rc = cooked(h), cooked(r)
        key = (id(hc), id(rc))
        row = pairs.get(key)
        if row is None:
            m = [sum(min(c, rk.get(g, 0)) for g, c in hk.items()) for hk, rk in zip(hc[0], rc[0])]
            row = pairs[key] = (m, _rouge_l(h, r), _cider(hc[1:], rc[1:]))
        matches[i] = row[0]
        rouge[i], cider[i] = row[1], row[2]
    return GenerationStats(matches, counts, hyp_len, ref_len, rouge, cider, df)


# ----------------------------------------------------------------------------------------------
# Corpus scores and bootstrap replicates.
# ----------------------------------------------------------------------------------------------


def _scores_from_sums(sums: np.ndarray, total_weight: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from weighted column sums ``[b, 12]`` (``GenerationStats._columns``) and ``[b]`` weights."""
    matches, counts = sums[:, :MAX_N], sums[:, MAX_N : 2 * MAX_N]
    testlen, reflen = sums[:, 2 * MAX_N], sums[:, 2 * MAX_N + 1]
    out: dict[str, np.ndarray] = {}
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        ratio = (testlen + _TINY) / (reflen + _SMALL)
        brevity = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
        prod = np.ones(sums.shape[0])
        for k in range(MAX_N):
            prod = prod * ((matches[:, k] + _TINY) / (counts[:, k] + _SMALL))
            out[f"bleu_{k + 1}"] = prod ** (1.0 / (k + 1)) * brevity
        out["rouge_l"] = sums[:, 2 * MAX_N + 2] / total_weight
        out["cider"] = sums[:, 2 * MAX_N + 3] / total_weight
    empty = total_weight == 0
    for v in out.values():
        v[empty] = np.nan
    return out


def _validate_weights(weights, n: int) -> np.ndarray:
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights must have shape [B, N={n}], got {w.shape}")
    if w.dtype == bool:
        w = w.astype(np.int64)
    if not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
        raise TypeError(f"weights must be integer counts, got dtype {w.dtype}")
    if w.size:
        if np.issubdtype(w.dtype, np.floating) and not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite")
        if w.min() < 0:
            raise ValueError("weights must be non-negative")
    return w


def bootstrap_scores(stats: GenerationStats, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric for every replicate: ``weights`` ``[B, N]`` (image i counted ``weights[b, i]`` times).

    Returns ``{name: float64 [B]}`` for the names in :data:`METRICS`. BLEU is the corpus formula on the
    weighted sums of the per-image counts and ROUGE-L/CIDEr the weighted means, so replicate ``b``
    equals the corpus score of the list in which each (generated, reference) pair is repeated
    ``weights[b, i]`` times -- with CIDEr's IDF held at ``stats.document_frequency`` (the bootstrap
    resamples images, not the IDF). A replicate with all weights zero gives NaN. Non-integer weights act
    as fractional counts; negative or non-finite ones are refused. Memory is bounded by
    processing replicates in chunks of about 2 M weights; time is one ``[b, N] x [N, 12]`` product per
    chunk (N = 5000, B = 1000: well under a second).
    """
    if not isinstance(stats, GenerationStats):
        raise TypeError("stats must come from generation_stats()")
    n = stats.n_images
    w = _validate_weights(weights, n)
    cols = stats._columns()
    n_boot = w.shape[0]
    out = {name: np.full(n_boot, np.nan) for name in METRICS}
    step = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        wc = w[start : start + step].astype(np.float64)
        part = _scores_from_sums(wc @ cols, wc.sum(axis=1))
        for name in METRICS:
            out[name][start : start + wc.shape[0]] = part[name]
    return out


def corpus_scores(stats: GenerationStats) -> dict[str, float]:
    """Corpus BLEU-1..4, ROUGE-L and CIDEr of all ``N`` images, as pycocoevalcap computes them.

    Keys: :data:`METRICS`. BLEU and ROUGE-L in [0, 1], CIDEr on pycocoevalcap's x10 scale. NaN for
    every metric when ``N = 0``.
    """
    scores = bootstrap_scores(stats, np.ones((1, stats.n_images), dtype=np.int64))
    return {name: float(v[0]) for name, v in scores.items()}
