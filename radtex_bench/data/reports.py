"""Turning radiology reports into training text: sections, de-identification placeholders, prior sentences.

This module is the one definition of "the report" a text objective, the report labeler and
``radtex-bench data summary`` (its ``reports`` count) all see: :func:`extract`.

Report styles handled:

* MIMIC-CXR: free text; a ``FINAL REPORT`` banner, often an exam title line (``CHEST RADIOGRAPH
  PERFORMED ON ___``), administrative sections (``EXAMINATION:``, ``INDICATION:``, ``TECHNIQUE:``,
  ``COMPARISON:``, ``CLINICAL HISTORY:``, ...) and then ``FINDINGS:`` / ``IMPRESSION:``, each header upper
  case at the start of a line, its body on the same or the following lines, paragraphs separated by
  blank lines. Some reports use ``FINDINGS AND IMPRESSION:``, others ``CONCLUSION:``, others neither: then
  the findings are the paragraph(s) written after the administrative sections without a header of their
  own (MIMIC-CXR's ``section_parser.py`` calls them ``last_paragraph``).
* OpenI / IU X-ray: sections stored separately in the XML; the reader joins them as
  ``COMPARISON: ...\\nINDICATION: ...\\nFINDINGS: ...\\nIMPRESSION: ...``.
* Flattened text where known headers follow each other on one line (``FINDINGS: ... IMPRESSION: ...``).

De-identification placeholders (MIMIC ``___``, OpenI ``XXXX``, older ``[** ... **]``) are removed, and
OpenI's over-redacted ``x-XXXX`` is restored to ``x-ray``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import NamedTuple

_FINDINGS = ("FINDINGS", "FINDING")
_IMPRESSION = ("IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS")
_COMBINED = (
    "FINDINGS AND IMPRESSION",
    "FINDINGS AND IMPRESSIONS",
    "FINDINGS/IMPRESSION",
    "IMPRESSION AND FINDINGS",
)
#: Sections about the request, the patient's history and the exam, not the image: never training text
#: unless ``full``. The names are those of MIMIC-CXR's ``section_parser.normalize_section_names`` that
#: map to examination / indication / history / technique / comparison / notification / recommendations.
_ADMIN = (
    "EXAMINATION",
    "EXAM",
    "TYPE OF EXAMINATION",
    "INDICATION",
    "INDICATIONS",
    "CLINICAL INDICATION",
    "HISTORY",
    "CLINICAL HISTORY",
    "PATIENT HISTORY",
    "CLINICAL INFORMATION",
    "REASON FOR EXAM",
    "REASON FOR EXAMINATION",
    "TECHNIQUE",
    "COMPARISON",
    "COMPARISONS",
    "COMPARISON EXAM",
    "COMPARISON FILM",
    "REFERENCE EXAM",
    "WET READ",
    "WETREAD",
    "NOTIFICATION",
    "PROCEDURE",
    "RECOMMENDATION",
    "RECOMMENDATIONS",
    "RECOMMENDATION(S)",
    "ADDENDUM",
)
_KNOWN = sorted(_FINDINGS + _IMPRESSION + _COMBINED + _ADMIN, key=len, reverse=True)
_KNOWN_RE = "|".join(re.escape(k).replace(r"\ ", r"[ \t]+") for k in _KNOWN)
#: A header is an upper-case name at the start of a line followed by ``:`` (known names in any case
#: there), or a known upper-case name anywhere after a non-word character. A colon followed by a digit
#: is a clock time (``AP CHEST 8:03 A.M.``), not a header.
_HEADER = re.compile(
    rf"(?m)(?:^[ \t]*(?P<line>(?i:{_KNOWN_RE})|[A-Z][A-Z0-9 /&(),'-]{{2,60}}?)"
    rf"|(?<![\w-])(?P<inline>{_KNOWN_RE}))[ \t]*:(?!\d)"
)
_BANNER = re.compile(r"^\s*(?:FINAL REPORT|PRELIMINARY REPORT)\b", re.IGNORECASE)
#: A paragraph break: a blank line (MIMIC's blank lines hold one space).
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_LOWER = re.compile(r"[a-z]")
_SENTENCE_END = re.compile(r"[.!?]\s*$")
_SPACE = re.compile(r"\s+")

_XRAY = re.compile(r"\bx-(?:XXXX|_{2,})", re.IGNORECASE)
#: OpenI's placeholder may touch digits or units ("4XXXX", "XXXXPM"): any run of X not inside a word.
_X = r"(?<![A-Za-z])X{2,}(?![a-z])"
_DEID_HYPHEN = re.compile(rf"(?:_{{2,}}|{_X})-")
_DEID = re.compile(rf"_{{2,}}|{_X}|\[\*\*[^\]]*\*\*\]")
#: Sentence ends, except after a list number ("1.") or a one-letter initial.
_SENTENCE = re.compile(r"(?<=[.!?])(?<!\b\d\.)(?<!\b[A-Za-z]\.)\s+(?=[A-Z0-9(])")
#: Sentences about comparison with earlier studies; RadTex found dropping them helps captioning.
_PRIOR = re.compile(
    r"\b(compared (to|with)|comparison|prior (study|studies|exam|examination|radiograph|film|image|imaging|"
    r"chest|x-ray)s?|(on|from|with|since) (the )?prior|previous|previously|unchanged|interval(ly)?|"
    r"since the|as before|again (seen|noted|demonstrated)|no (significant |substantial )?change|"
    r"stable|redemonstrat\w*|persist\w*|improv\w*|worsen\w*|resolv\w*|resolution|than (on|before|at)|"
    r"(earlier|recent|last|preceding) (study|exam|examination|radiograph|film))\b",
    re.IGNORECASE,
)

#: Kinds of :class:`_Piece`.
_PREAMBLE, _SECTION, _UNHEADED = "preamble", "section", "unheaded"


class _Piece(NamedTuple):
    """One stretch of a report, in report order.

    ``kind``: ``preamble`` (text before the first header), ``section`` (a header's body; ``name`` is
    the upper-case header) or ``unheaded`` (paragraphs after an administrative section's first
    paragraph, up to the next header: text the radiologist wrote without a header of its own).
    """

    kind: str
    name: str
    body: str


def _name(header: str) -> str:
    return _SPACE.sub(" ", header.strip().upper())


def _pieces(text: str) -> list[_Piece]:
    """Split ``text`` at its headers; an administrative section keeps only its first paragraph.

    Why the first paragraph only: in MIMIC-CXR a report without FINDINGS / IMPRESSION is typically
    ``CLINICAL HISTORY:  <request>`` followed by a blank line and the findings; reading everything up to
    the next header as the history would throw the findings away with it (MIMIC-CXR's own
    ``section_parser.py`` splits the last section the same way). A header alone on its line followed by
    a blank line (``INDICATION: \\n \\n <text>``) has that text as its first paragraph.
    """
    matches = list(_HEADER.finditer(text))
    if not matches:
        return [_Piece(_PREAMBLE, "", text.strip())]
    out = []
    if text[: matches[0].start()].strip():
        out.append(_Piece(_PREAMBLE, "", text[: matches[0].start()].strip()))
    for m, nxt in zip(matches, matches[1:] + [None]):
        body = text[m.end() : nxt.start() if nxt else len(text)].strip()
        name = _name(m.group("line") or m.group("inline"))
        if name in _ADMIN:
            first, *rest = _PARAGRAPH.split(body, maxsplit=1)
            out.append(_Piece(_SECTION, name, first.strip()))
            if rest and rest[0].strip():
                out.append(_Piece(_UNHEADED, "", rest[0].strip()))
        else:
            out.append(_Piece(_SECTION, name, body))
    return out


def sections(text: str) -> dict[str, str]:
    """Map upper-case section header -> body text; text under no header under ``""``.

    ``""`` holds the text before the first header and the paragraphs that follow an administrative
    section's first paragraph (see :func:`_pieces`); a repeated header's bodies are joined.
    """
    out: dict[str, str] = {}
    for piece in _pieces(text):
        if piece.body:
            out[piece.name] = (out.get(piece.name, "") + "\n\n" + piece.body).strip()
    return out or {"": ""}


def _pick(pieces: list[_Piece], names: tuple[str, ...]) -> str:
    return " ".join(p.body for p in pieces if p.kind == _SECTION and p.name in names and p.body)


def _strip_titles(preamble: str) -> str:
    """The preamble without the ``FINAL REPORT`` banner and exam title lines.

    A title line has no lower-case letter and no sentence end (``CHEST RADIOGRAPH PERFORMED ON ___``,
    ``PORTABLE AP CHEST``): it names the exam, as ``EXAMINATION:`` does in newer reports.
    """
    lines = [line for line in _BANNER.sub("", preamble).splitlines() if line.strip()]
    return "\n".join(line for line in lines if _LOWER.search(line) or _SENTENCE_END.search(line)).strip()


def _unheaded_findings(pieces: list[_Piece]) -> str:
    """Paragraphs written without a header after the administrative sections and before the first
    FINDINGS / IMPRESSION header (later ones continue a trailing NOTIFICATION or RECOMMENDATION)."""
    out = []
    for p in pieces:
        if p.kind == _SECTION and p.name in _FINDINGS + _IMPRESSION + _COMBINED:
            break
        if p.kind == _UNHEADED:
            out.append(p.body)
    return " ".join(out)


def _without_headers(pieces: list[_Piece]) -> str:
    """A report with no FINDINGS / IMPRESSION header: every non-administrative piece, in report order.

    That is the preamble without banner and title lines, sections under headers that are not
    administrative (``PA AND LATERAL VIEWS OF THE CHEST:``) and the unheaded paragraphs. A report with
    no header at all whose only line is a title (``NORMAL CHEST``) keeps it: it is the whole report.
    """
    keep = []
    for p in pieces:
        if p.kind == _PREAMBLE:
            body = _strip_titles(p.body)
            if not body and len(pieces) == 1:
                body = _BANNER.sub("", p.body).strip()
            keep.append(body)
        elif p.kind == _UNHEADED or p.name not in _ADMIN:
            keep.append(p.body)
    return " ".join(b for b in keep if b)


def normalise(text: str) -> str:
    """Collapse whitespace and remove de-identification placeholders (``___``, ``XXXX``, ``[** **]``)."""
    text = _XRAY.sub("x-ray", text)
    text = _DEID_HYPHEN.sub(" ", text)
    text = _DEID.sub(" ", text)
    text = re.sub(r"\s+([.,;:])", r"\1", _SPACE.sub(" ", text))
    text = re.sub(r"([.,;:])(?:\s*[,;:])+", r"\1", text)  # "at ___, ." -> "at."
    text = re.sub(r"[,;:]+(?=\.)", "", text)  # "male, XXXX." -> "male."
    text = re.sub(r"(?<!\.)\.\.(?!\.)", ".", text)  # "abnormality.." -> "abnormality."
    return text.strip()


def drop_prior_sentences(text: str) -> str:
    """Drop sentences that refer to earlier studies ("compared to the prior", "unchanged", "interval")."""
    return " ".join(s for s in _SENTENCE.split(text) if not _PRIOR.search(s)).strip()


def extract(text: str, section: str = "both", drop_prior: bool = False) -> str:
    """The report text used for training (and counted by ``data summary``): one line, normalised.

    * ``findings``: the FINDINGS section; else a ``FINDINGS AND IMPRESSION:`` section; else the
      paragraphs written without a header after the administrative sections and before any IMPRESSION
      (MIMIC-CXR's ``last_paragraph``); ``""`` when the report has none of these.
    * ``impression``: the IMPRESSION (or CONCLUSION) section; else a ``FINDINGS AND IMPRESSION:`` section.
    * ``both``: ``FINDINGS: <findings> IMPRESSION: <impression>``, whichever exist. A report with neither
      header gives every non-administrative piece in report order, without headers: the text before
      the first header less the ``FINAL REPORT`` banner and exam title lines, sections under other
      headers (``PA AND LATERAL VIEWS OF THE CHEST:``) and the unheaded paragraphs. A report made only
      of administrative sections (examination, indication, history, technique, comparison,
      notification, ...) gives ``""``: no request text ever becomes a caption.
    * ``full``: the whole report.

    The result is normalised (:func:`normalise`); with ``drop_prior``, sentences about prior studies
    are removed (this can leave an empty report).
    """
    if not text or not isinstance(text, str):
        return ""
    if section not in ("findings", "impression", "both", "full"):
        raise ValueError(f"unknown report section {section!r}")
    return _extract(text, section, bool(drop_prior))


def extract_all(texts: Iterable, section: str = "both", drop_prior: bool = False) -> list[str]:
    """:func:`extract` of every raw report of a dataset (one per image; non-strings such as NaN -> ``""``).

    The single entry point :func:`radtex_bench.data.loading.load_table` (what text objectives and text
    protocols read) and ``data summary`` (its ``reports`` count) share.
    """
    return [extract(t, section, drop_prior) for t in texts]


@functools.lru_cache(maxsize=4096)  # images of one study share a report: parse it once
def _extract(text: str, section: str, drop_prior: bool) -> str:
    def clean(body: str) -> str:
        body = normalise(body)
        return drop_prior_sentences(body) if drop_prior else body

    if section == "full":
        return clean(text)
    pieces = _pieces(text)
    findings, impression = _pick(pieces, _FINDINGS), _pick(pieces, _IMPRESSION)
    combined = _pick(pieces, _COMBINED)
    headed = bool(findings or impression or combined)
    findings = findings or combined or _unheaded_findings(pieces)
    if section == "findings":
        return clean(findings)
    if section == "impression":
        return clean(impression or combined)
    if not headed:
        return clean(_without_headers(pieces))
    findings, impression = clean(findings), clean(impression)
    parts = ([f"FINDINGS: {findings}"] if findings else []) + (
        [f"IMPRESSION: {impression}"] if impression else []
    )
    return " ".join(parts)
