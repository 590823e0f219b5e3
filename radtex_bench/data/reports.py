"""Turning radiology reports into training text.

Works on the MIMIC-CXR style (``FINDINGS:`` / ``IMPRESSION:`` headers in free text) and the OpenI
style (sections given separately, joined here as ``FINDINGS: ... IMPRESSION: ...``).
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"(?im)^[ \t]*([A-Z][A-Z /&-]{2,40}?)[ \t]*:")
_FINDINGS = ("FINDINGS", "FINDING")
_IMPRESSION = ("IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS")
_DEID = re.compile(r"_{2,}|\bX{2,}\b|\[\*\*[^\]]*\*\*\]")
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
#: Sentences about comparison with earlier studies; RadTex found dropping them helps captioning.
_PRIOR = re.compile(
    r"\b(compared (to|with)|comparison|prior (study|exam|examination|radiograph|film|image)s?|"
    r"previous|previously|unchanged|interval(ly)?|since the|again (seen|noted|demonstrated)|"
    r"no (significant )?change|stable|redemonstrat\w*|persist\w*)\b",
    re.IGNORECASE,
)


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
        name = _SPACE.sub(" ", m.group(1).strip().upper())
        out[name] = (out.get(name, "") + " " + body).strip()
    return out


def _pick(parts: dict[str, str], names: tuple[str, ...]) -> str:
    return " ".join(parts[n] for n in names if parts.get(n))


def normalise(text: str) -> str:
    """Collapse whitespace and de-identification placeholders (``___``, ``XXXX``, ``[** **]``)."""
    text = _DEID.sub(" ", text)
    text = re.sub(r"\s+([.,;:])", r"\1", _SPACE.sub(" ", text))
    return text.strip()


def drop_prior_sentences(text: str) -> str:
    return " ".join(s for s in _SENTENCE.split(text) if not _PRIOR.search(s)).strip()


def extract(text: str, section: str = "both", drop_prior: bool = False) -> str:
    """The report text used for training.

    ``findings`` / ``impression``: that section; ``both``: FINDINGS then IMPRESSION with their headers
    (falling back to whichever exists, then to the full text when neither header is present);
    ``full``: the whole report.
    """
    if not text:
        return ""
    parts = sections(text)
    findings, impression = _pick(parts, _FINDINGS), _pick(parts, _IMPRESSION)
    if section == "full":
        chosen = text
    elif section == "findings":
        chosen = findings
    elif section == "impression":
        chosen = impression
    elif section == "both":
        pieces = []
        if findings:
            pieces.append(f"FINDINGS: {findings}")
        if impression:
            pieces.append(f"IMPRESSION: {impression}")
        chosen = " ".join(pieces) if pieces else text
    else:
        raise ValueError(f"unknown report section {section!r}")
    chosen = normalise(chosen)
    if drop_prior:
        chosen = drop_prior_sentences(chosen)
    return chosen
