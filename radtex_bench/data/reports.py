"""Turning radiology reports into training text: sections, de-identification placeholders, prior sentences.

Report styles handled:

* MIMIC-CXR: free text; a ``FINAL REPORT`` banner, administrative sections (``EXAMINATION:``,
  ``INDICATION:``, ``TECHNIQUE:``, ``COMPARISON:``) and then ``FINDINGS:`` / ``IMPRESSION:``, each header
  upper case at the start of a line, its body on the following lines. Some reports use
  ``FINDINGS AND IMPRESSION:``, others ``CONCLUSION:``, others no header at all.
* OpenI / IU X-ray: sections stored separately in the XML; the reader joins them as
  ``COMPARISON: ...\\nINDICATION: ...\\nFINDINGS: ...\\nIMPRESSION: ...``.
* Flattened text where known headers follow each other on one line (``FINDINGS: ... IMPRESSION: ...``).

De-identification placeholders (MIMIC ``___``, OpenI ``XXXX``, older ``[** ... **]``) are removed, and
OpenI's over-redacted ``x-XXXX`` is restored to ``x-ray``.
"""

from __future__ import annotations

import functools
import re

_FINDINGS = ("FINDINGS", "FINDING")
_IMPRESSION = ("IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS")
_COMBINED = (
    "FINDINGS AND IMPRESSION",
    "FINDINGS AND IMPRESSIONS",
    "FINDINGS/IMPRESSION",
    "IMPRESSION AND FINDINGS",
)
#: Sections about the request and the exam, not the image: never training text unless ``full``.
_ADMIN = (
    "EXAMINATION",
    "EXAM",
    "TYPE OF EXAMINATION",
    "INDICATION",
    "INDICATIONS",
    "CLINICAL INDICATION",
    "HISTORY",
    "CLINICAL HISTORY",
    "CLINICAL INFORMATION",
    "REASON FOR EXAM",
    "REASON FOR EXAMINATION",
    "TECHNIQUE",
    "COMPARISON",
    "COMPARISONS",
    "WET READ",
    "NOTIFICATION",
    "PROCEDURE",
    "RECOMMENDATION",
    "RECOMMENDATIONS",
    "ADDENDUM",
)
_KNOWN = sorted(_FINDINGS + _IMPRESSION + _COMBINED + _ADMIN, key=len, reverse=True)
_KNOWN_RE = "|".join(re.escape(k).replace(r"\ ", r"[ \t]+") for k in _KNOWN)
#: A header is an upper-case name at the start of a line followed by ``:`` (known names in any case
#: there), or a known upper-case name anywhere after a non-word character.
_HEADER = re.compile(
    rf"(?m)(?:^[ \t]*(?P<line>(?i:{_KNOWN_RE})|[A-Z][A-Z0-9 /&(),'-]{{2,60}}?)"
    rf"|(?<![\w-])(?P<inline>{_KNOWN_RE}))[ \t]*:"
)
_BANNER = re.compile(r"^\s*(?:FINAL REPORT|PRELIMINARY REPORT)\b", re.IGNORECASE)
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


def _name(header: str) -> str:
    return _SPACE.sub(" ", header.strip().upper())


def sections(text: str) -> dict[str, str]:
    """Map upper-case section header -> body text (the text before any header under ``""``)."""
    out: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    if not matches:
        return {"": text.strip()}
    if matches[0].start() > 0:
        out[""] = text[: matches[0].start()].strip()
    for m, nxt in zip(matches, matches[1:] + [None]):
        body = text[m.end() : nxt.start() if nxt else len(text)].strip()
        name = _name(m.group("line") or m.group("inline"))
        out[name] = (out.get(name, "") + " " + body).strip()
    return out


def _pick(parts: dict[str, str], names: tuple[str, ...]) -> str:
    return " ".join(parts[n] for n in names if parts.get(n))


def _body_without_admin(parts: dict[str, str]) -> str:
    """Every section except the administrative ones, without headers and the ``FINAL REPORT`` banner."""
    keep = [body for name, body in parts.items() if name not in _ADMIN and body]
    return _BANNER.sub("", " ".join(keep)).strip()


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
    """The report text used for training.

    ``findings`` / ``impression``: that section (a ``FINDINGS AND IMPRESSION:`` section counts as both;
    ``""`` when the report lacks it). ``both``: ``FINDINGS: ... IMPRESSION: ...`` with their headers,
    falling back to whichever exists, then, for reports with neither header, to every
    non-administrative section (no EXAMINATION / INDICATION / TECHNIQUE / COMPARISON text).
    ``full``: the whole report. The result is normalised (:func:`normalise`); with ``drop_prior``,
    sentences about prior studies are removed (this can leave an empty report).
    """
    if not text:
        return ""
    if section not in ("findings", "impression", "both", "full"):
        raise ValueError(f"unknown report section {section!r}")
    return _extract(str(text), section, bool(drop_prior))


@functools.lru_cache(maxsize=4096)  # images of one study share a report: parse it once
def _extract(text: str, section: str, drop_prior: bool) -> str:
    def clean(body: str) -> str:
        body = normalise(body)
        return drop_prior_sentences(body) if drop_prior else body

    if section == "full":
        return clean(text)
    parts = sections(text)
    findings, impression = _pick(parts, _FINDINGS), _pick(parts, _IMPRESSION)
    combined = _pick(parts, _COMBINED)
    if section == "findings":
        return clean(findings or combined)
    if section == "impression":
        return clean(impression or combined)
    if not (findings or combined or impression):
        return clean(_body_without_admin(parts) or text)
    findings, impression = clean(findings or combined), clean(impression)
    pieces = ([f"FINDINGS: {findings}"] if findings else []) + (
        [f"IMPRESSION: {impression}"] if impression else []
    )
    return " ".join(pieces)
