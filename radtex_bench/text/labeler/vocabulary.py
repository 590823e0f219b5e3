"""What the rule labeler reads: mention phrases per observation, and negation / uncertainty cues.

The lists follow the CheXpert labeler (Irvin et al., *CheXpert: A Large Chest Radiograph Dataset with
Uncertainty Labels and Expert Comparison*, AAAI 2019; github.com/stanfordmlgroup/chexpert-labeler,
``phrases/mention`` and ``patterns/*.txt``) and NegEx (Chapman et al., *A Simple Algorithm for
Identifying Negated Findings and Diseases in Discharge Summaries*, J Biomed Inform 2001). CheXpert
decides negation and uncertainty on a dependency parse; here the same cues act on a word window inside
the clause (NegEx), so some of CheXpert's grammatical rules become phrase patterns (``heart size is
normal`` is a negative Cardiomegaly mention rather than "heart size" + a parse rule). Deviations from
CheXpert are marked ``# deviation:`` and listed in docs/labeler.md.

Every pattern is a regular expression over **lower-cased** text with single spaces; the engine wraps
each list in ``\\b(?:...)\\b``. A mention's ``value`` is what it asserts before any cue: ``1`` present,
``-1`` uncertain (CheXpert reads "vascular congestion" or "stable heart size" as uncertain), ``0``
absent ("heart size is normal").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phrase:
    """One mention pattern of an observation.

    ``keep_negated=False`` drops the mention when a cue negates it: CheXpert adds an uncertain
    Cardiomegaly for "CHF" / "heart failure" only when those are positive or uncertain.
    """

    pattern: str
    value: int = 1
    keep_negated: bool = True


@dataclass(frozen=True)
class Cue:
    """A negation / uncertainty trigger.

    ``kind``: ``pre`` (uncertain, checked before negation: "cannot exclude", "no new"), ``neg``
    (negation), ``unc`` (uncertain, checked after negation), ``pseudo`` (looks like a trigger but is
    none: "no change"; it only stops other cues' scope). ``direction``: ``f`` the cue governs mentions
    after it ("no effusion"), ``b`` before it ("effusion is not seen"), ``fb`` both ("versus").
    ``cuts``: whether the cue ends the scope of the cues around it (NegEx/ConText: "no pneumothorax,
    possible effusion" must not negate the effusion). Coordinators ("or") never cut: "no effusion or
    pneumothorax" negates both.
    """

    pattern: str
    kind: str
    direction: str
    cuts: bool = True


def _any(*alternatives: str) -> str:
    """One pattern matching any of ``alternatives`` (kept apart in the source for readability)."""
    return "|".join(alternatives)


def _not_after(words: tuple[str, ...], head: str, pattern: str) -> str:
    """``pattern``, unless one of ``words`` precedes it ("pericardial effusion" is no pleural effusion).

    ``(?=head)`` first: Python's ``re`` then rejects most positions before trying the look-behinds.
    """
    return f"(?={head})" + "".join(f"(?<!{w} )" for w in words) + pattern


# --------------------------------------------------------------------------------------------------
# Anatomy + state: the heart and the mediastinum are labelled from what is said about their size.

_HEART = (
    r"(?:heart(?: size| shadow| contours?)?|cardiac (?:silhouette|shadow|contours?|size|diameter|outline|"
    r"borders?|dimensions?)|cardiac and mediastinal (?:silhouettes?|contours?)|size of the (?:heart|cardiac "
    r"silhouette)|cardiothoracic ratio)"
)
_MED = (
    r"(?:(?:superior )?mediastinum(?: size)?|(?:cardio)?mediastinal (?:silhouettes?|contours?|width|size|"
    r"configuration|shadows?|structures|borders?|outlines?)|cardiomediastinum|cardiac and mediastinal "
    r"(?:silhouettes?|contours?)|(?:hilar and mediastinal|mediastinal and hilar) (?:contours?|silhouettes?))"
)
#: "heart size and mediastinal contours are normal": more subjects joined by "," / "and".
_COORD = r"(?:(?:,|,? and) (?:the )?[a-z]+(?: [a-z]+)?){0,3}?"
_VERB = r"(?: (?:is|are|appears?|remains?|seems?|looks?|was|were))?"
_ADV = r"(?: (?:otherwise|overall|again|now|still|grossly|essentially|entirely|also|probably|likely))?"
#: up to three words between subject and state ("is possibly mildly", "may be mildly", "is not")
_GAP = r"(?: [a-z-]+){0,3}?"
_NORMAL = (
    r"(?:normal(?: in (?:size|contour|contours|configuration|appearance))?|unremarkable|within normal "
    r"limits|within the normal range|of normal size|normal size|(?:at )?(?:the )?upper limits? of normal|"
    r"top[- ]normal|high[- ]normal)"
)
_STABLE = r"(?:stable|unchanged|similar(?: to (?:the )?prior)?|not changed)"


def _organ(anatomy: str, positive: str, positive_noun: str) -> tuple[Phrase, ...]:
    """Mentions of an organ's size: enlarged (1), borderline / stable (-1), normal (0)."""
    return (
        Phrase(rf"{anatomy}{_VERB}{_GAP} {positive}"),
        Phrase(rf"{positive_noun}(?: of)?(?: the)? (?:[a-z]+ )?{anatomy}"),
        Phrase(rf"borderline (?:[a-z]+ ){{0,2}}?{anatomy}", -1),
        Phrase(rf"{anatomy}{_VERB}(?: at the)? borderline(?: in size| enlarged)?", -1),
        # CheXpert (post-negation uncertainty): "stable / unchanged cardiomediastinal silhouette".
        Phrase(rf"{anatomy}{_COORD}{_VERB}{_ADV} {_STABLE}", -1),
        Phrase(rf"{_STABLE} (?:[a-z]+ ){{0,2}}?{anatomy}", -1),
        Phrase(rf"{anatomy}{_COORD}{_VERB}{_ADV} {_NORMAL}", 0),
        Phrase(rf"{_NORMAL} (?:[a-z]+ ){{0,3}}?{anatomy}", 0),
    )


# --------------------------------------------------------------------------------------------------
#: label -> mention phrases. ``_other`` holds CheXpert's "No Finding" list: findings outside the 13
#: observations (scoliosis, emphysema, hemidiaphragm elevation, ...) that still make a study abnormal.
MENTIONS: dict[str, tuple[Phrase, ...]] = {
    "Enlarged Cardiomediastinum": _organ(
        _MED,
        r"(?:widened|widening|wide|enlarged|enlargement|prominent)",
        r"(?:widen(?:ed|ing)|enlarged|enlargement|wide|prominent|prominence)",
    )
    + (Phrase(r"(?:cardio)?mediastinal (?:widening|enlargement|prominence)"),),
    "Cardiomegaly": _organ(
        _HEART,
        r"(?:enlarged|enlargement|large|increased|prominent)",
        r"(?:enlarged|enlargement|large|increased)",
    )
    + (
        Phrase(r"cardiomegaly|cardiac enlargement"),
        # CheXpert's aggregate stage: a positive / uncertain "chf" or "heart failure" adds an uncertain
        # Cardiomegaly (and is an Edema mention below).
        Phrase(r"(?:congestive )?heart failure|chf", -1, keep_negated=False),
    ),
    "Lung Opacity": (
        Phrase(
            _any(
                r"opaci\w*",
                r"decreased translucency",
                r"increased (?:density|densities)",
                r"air[- ]?space (?:disease|process|densit(?:y|ies))",
                r"infiltrat\w*",
                r"interstitial (?:markings?|pattern|lung|prominence)",
                r"reticular (?:pattern|markings?)|reticulation",
                r"parenchymal scarring|peribronchial thickening",
                _not_after(
                    ("pleural", "pleuro-parenchymal", "pleuroparenchymal", "pleural-parenchymal"),
                    "scar",
                    r"scar(?:s|ring)?",
                ),
            )
        ),
    ),
    "Lung Lesion": (
        Phrase(
            _any(
                r"mass(?:es)?",
                _not_after(("calcified", "granulomatous"), "nodul", r"nodul(?:e|es|arity)"),
                r"nodular (?:densit(?:y|ies)|opaci\w*)",
                r"lump|cavitary lesions?|carcinoma|neoplasms?|tumou?rs?",
            )
        ),
    ),
    "Edema": (
        Phrase(
            _any(
                _not_after(
                    ("soft tissue", "subcutaneous", "peripheral", "extremity", "facial"),
                    "o?edema",
                    r"o?edema",
                ),
                r"(?:congestive )?heart failure|chf",
            )
        ),
        # CheXpert: these alone are uncertain edema.
        Phrase(
            _any(
                r"(?:pulmonary )?vascular congestion|pulmonary congestion",
                r"(?:vascular )?indistinctness|(?:pulmonary )?vascular prominence",
            ),
            -1,
        ),
    ),
    "Consolidation": (Phrase(r"consolidat\w*"),),
    "Pneumonia": (Phrase(r"(?:broncho)?pneumonias?|infections?|infectious(?: process)?"),),
    "Atelectasis": (
        Phrase(
            _any(
                r"atelecta\w*",
                _not_after(("vertebral", "vertebral body", "compression"), "collapse", r"collapsed?")
                + r"(?! of the \w* ?vertebr)",
            )
        ),
    ),
    "Pneumothorax": (Phrase(r"(?:hydro|hemo|haemo|hydropneumo)?pneumothora(?:x|ces)"),),
    "Pleural Effusion": (
        Phrase(
            _any(
                _not_after(("pericardial", "joint"), "effusion", r"effusions?"),
                r"pleural fluid|hydrothorax",
            )
        ),
        # CheXpert: blunting of a costophrenic angle is an uncertain effusion.
        Phrase(
            _any(
                r"blunt(?:ing|ed)? (?:of )?(?:the )?(?:[a-z]+ ){0,2}?costophrenic (?:angles?|sulc(?:us|i))",
                r"costophrenic (?:angle |sulcus )?blunting",
            ),
            -1,
        ),
    ),
    "Pleural Other": (
        Phrase(
            _any(
                r"pleural thickening|pleural (?:based )?(?:scar\w*|plaques?)|fibrothorax",
                r"pleuro-?(?:parenchymal|pericardial) scar\w*|pleural-parenchymal scar\w*",
                r"fibrosis",
            )
        ),
    ),
    "Fracture": (Phrase(r"fractur\w*"),),
    "Support Devices": (
        Phrase(
            # deviation: CheXpert's "marker" and "plate" also catch nipple markers and plate-like
            # atelectasis; both are left out. Sternotomy wires are not devices (CheXpert has no "wire").
            _any(
                r"pacemakers?|pacers?|(?:pacing|pacer|epicardial|guide) ?wires?",
                r"picc|tubes?|valves?|catheters?|hardware|arthroplast\w*",
                r"(?<!nipple )markers?|a?icds?|defibrillators?|devices?|drains?",
                r"plates?(?!-?like)|screws?|cannulas?|apparatus|coils?|stents?|clips?",
                r"mediport|port-?a-?cath|(?:chest|power|infusion|venous) port",
                _not_after(
                    ("pleural", "septal", "kerley b", "kerley", "skin", "fold", "fissural", "junction"),
                    "line",
                    _not_after(("paraspinal", "azygoesophageal", "lung"), "line", r"(?<!b-)lines?"),
                ),
                r"leads(?! to)|(?:pacemaker|pacer|pacing|icd|defibrillator|monitor|monitoring|ecg|ekg) lead",
                r"(?:cardiac|pacemaker|pacer|battery|icd) generator|generator pack|stimulators?",
            )
        ),
    ),
    "_other": (
        Phrase(
            _any(
                r"emphysema\w*|blunt\w*|densit(?:y|ies)|elevat\w*|eventration",
                r"(?:dextro|levo|kypho)?scolio\w*",
                r"degenera\w*|calcifi\w*|hyperinflat\w*|hyperexpan\w*|bronchospasm|asthma|hernia\w*|copd",
                r"plaques?|osteophyt\w*|aortic disease|bronchiolitis|airways? disease|thickening",
                r"cephalization|aspiration|bullae|bullous|contusions?|atherosclero\w*|osteopenia",
                r"metasta\w*|granulomas?|granulomatous|pneumomediastinum|pneumoperitoneum|osteodystrophy",
                r"cuffing|irregular lucency|inflam\w*|fissur\w*|hypertension|prominen\w*|kyphos\w*",
                r"kyphotic|bullets?|reticula\w*|thoracentesis|bronchitis|volume loss|deformit\w*",
                r"hemorrhage|hematoma|radiopaque|aerophagia|arthropathy|tracheostomy",
            )
        ),
    ),
}

# --------------------------------------------------------------------------------------------------
_SEEN = (
    r"(?:seen|identified|visualized|visible|present|evident|appreciated|demonstrated|detected|noted|"
    r"apparent)"
)
_BE = r"(?:(?:is|are|was|were|has been|have been|had been) )?"
_EXCLUDED = r"(?:entirely |completely |definitely |totally )?(?:excluded|ruled out)"

CUES: tuple[Cue, ...] = (
    # ---- pseudo-triggers (NegEx): they look like negations but negate nothing
    Cue(
        r"no (?:significant |interval |appreciable |definite |substantial |substantial interval |"
        r"significant interval )?(?:change|increase|decrease|worsening|improvement|progression)",
        "pseudo",
        "f",
    ),
    Cue(r"without (?:significant |interval )?(?:change|increase|decrease)", "pseudo", "f"),
    Cue(r"not only|not necessarily|gram[- ]negative", "pseudo", "f"),
    # ---- CheXpert pre-negation uncertainty: decided before negation
    Cue(rf"(?:cannot|can not|can't|could not|may not) (?:be )?{_EXCLUDED}", "pre", "fb"),
    Cue(r"(?:cannot|can not|can't|could not) (?:exclude|rule out)", "pre", "f"),
    Cue(r"difficult to (?:exclude|rule out)|no evidence to rule out", "pre", "f"),
    Cue(rf"{_BE}not (?:be )?{_EXCLUDED}", "pre", "b"),
    Cue(r"no new", "pre", "f"),  # CheXpert: "no new consolidation" is uncertain (old one may remain)
    # ---- negation
    Cue(
        r"no|not|without|nor|never|negative for|free of|clear of|absence of|no evidence of|no signs? of|"
        r"resolution of|removal of|interval resolution of|rather than|instead of|history of|to suggest",
        "neg",
        "f",
    ),
    Cue(rf"{_BE}(?:not|no longer) (?:be )?{_SEEN}", "neg", "b"),
    Cue(
        rf"(?:has|have|had) (?:since |now |completely |nearly )?(?:resolved|cleared)|"
        rf"(?:is|are|was|were|has been|have been|had been) (?:resolved|cleared|removed|{_EXCLUDED})",
        "neg",
        "b",
    ),
    Cue(r"resolved|cleared|removed|absent|none|ruled out", "neg", "fb"),
    Cue(r"excluded", "neg", "b"),
    # ---- uncertainty
    Cue(
        r"possible|possibly|possibility of|probable|probably|likely|presumed|presumably|questionable|"
        r"question of|question|suspect|suspicious(?: for| of)?|favou?r(?:s|ed)?(?: to represent| as)?|"
        r"suspicion (?:for|of)|concerning for|concern for|worrisome for|may|might|could|suggest|suggests|"
        r"suggesting|suggestive of|suggestion of|equivocal|"
        r"borderline|differential(?: diagnosis)?(?: includes?| considerations? includes?)?|consider|"
        r"considered|"
        # deviation: request language ("to rule out pneumonia") is uncertain, CheXpert reads it as negated.
        r"(?:to )?(?:evaluate|assess) for|evaluation for|rule out|r/o|to exclude",
        "unc",
        "f",
    ),
    Cue(
        r"(?:is|are) (?:likely|possible|probable|questionable|equivocal|favou?red|"
        r"considered)|(?:may|might|could) be present|less likely|"
        r"(?:(?:is|are) )?(?:not (?:well|clearly)|poorly|incompletely)[- ]"
        r"(?:seen|evaluated|visualized|assessed)",
        "unc",
        "b",
    ),
    Cue(r"suspected|questioned", "unc", "fb"),
    # CheXpert: "X or Y", "X versus Y" are uncertain unless negated.
    Cue(r"or|and/or|versus|vs\.?", "unc", "fb", cuts=False),
)

#: Clause ends: sentence punctuation (not decimals, not "vs."), ";", ":", line breaks, and NegEx
#: termination terms. "and the/there ..." starts a new clause ("no effusion and the heart is enlarged").
TERMINATORS = (
    r"[;:\n]|[.!?](?<!\bvs\.)(?<!\bdr\.)(?<!\bapprox\.)(?=\s|$)|\b(?:but|however|although|though|whereas|"
    r"which|except|aside from|apart from|other than|there (?:is|are)|and (?=(?:the|there|this|these|it)\b))"
)

#: Word windows (NegEx scans 5 words; CheXpert's list of negated items can be longer, so a scope also
#: runs on through a list: a mention within ``CHAIN`` words of the previous one in scope is in scope).
FORWARD_WINDOW = 6
BACKWARD_WINDOW = 3
CHAIN = 3
