"""Sentence templates for one finding: how a report words it, and what a labeler reads from it.

Every sentence carries the label records a CheXpert-style labeler would read from it (positive,
negated or hedged); :data:`HEDGE_CUES` lists the uncertainty cues the hedged templates use.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import LOBES, SIDE_NAME, Finding, Study
from .stream import Stream

#: Words that make a mention uncertain (CheXpert's uncertainty cues, the subset the templates use).
HEDGE_CUES = (
    "possible",
    "possibly",
    "may represent",
    "may be",
    "cannot be excluded",
    "cannot exclude",
    "questionable",
    "could represent",
    "concerning for",
    "suspicious for",
    "borderline",
)


@dataclass
class Sent:
    """A sentence and the (category, value) records a CheXpert-style labeler would read from it."""

    text: str
    records: list[tuple[str, int]]


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def pick(rng: Stream, options):
    return options[rng.integers(0, len(options))]


def _side_words(sides: tuple[int, ...]) -> str:
    return "bilateral" if len(sides) == 2 else SIDE_NAME[sides[0]]


def _severity_word(kind: str, sev: float) -> str:
    scale = {
        "Pleural Effusion": ("small", "moderate", "large"),
        "Pneumothorax": ("small", "moderate", "large"),
        "Cardiomegaly": ("mild", "moderate", "severe"),
        "Edema": ("mild", "moderate", "severe"),
        "Enlarged Cardiomediastinum": ("mild", "moderate", "marked"),
        "Atelectasis": ("mild", "moderate", "severe"),
        "Consolidation": ("patchy", "focal", "dense"),
        "Pneumonia": ("patchy", "multifocal patchy", "extensive"),
    }[kind]
    return scale[0 if sev < 0.35 else 1 if sev < 0.68 else 2]


def _lobe_name(rng, lobe: str) -> str:
    return pick(rng, LOBES[lobe][3])


def _prior_note(s: Study, f: Finding, rng) -> str:
    """ ", new since the prior study" and the like. Not used for the heart and mediastinum, where
    CheXpert's labeler reads "stable" / "unchanged" as uncertain."""
    if s.index == 1 or f.hedged or rng.random() < 0.5:
        return ""
    if f.kind not in s.prior_kinds:
        return pick(rng, (", new since the prior study", ", new compared with the prior radiograph"))
    before = s.prior_kinds[f.kind]
    if f.sev > before * 1.15:
        return ", increased since the prior study"
    if f.sev < before * 0.85:
        return ", decreased compared with the prior radiograph"
    return pick(rng, (", unchanged from the prior study", ", similar to the prior radiograph"))


_Described = tuple[list[Sent], "Sent | None"]  # findings sentences, impression phrase
_LO = ("Lung Opacity", 1)


def describe(f: Finding, s: Study, rng) -> _Described:
    """Findings-section sentences for one finding and a short impression phrase (same hedging)."""
    if f.kind in ("Consolidation", "Pneumonia", "Opacity"):
        return _describe_airspace(f, s, rng)
    return {
        "Cardiomegaly": _describe_heart,
        "Enlarged Cardiomediastinum": _describe_mediastinum,
        "Pleural Effusion": _describe_effusion,
        "Pneumothorax": _describe_ptx,
        "Edema": _describe_edema,
        "Atelectasis": _describe_atelectasis,
        "Nodule": _describe_nodule,
    }[f.kind](f, s, rng)


def _describe_heart(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    if f.hedged:
        t = pick(
            rng,
            (
                "Borderline heart size.",
                "The cardiac silhouette is possibly mildly enlarged.",
                "Heart size may be mildly enlarged, accentuated by technique.",
                "Mild cardiomegaly cannot be excluded.",
            ),
        )
        imp = pick(rng, ("Possible mild cardiomegaly.", "Borderline heart size.", None))
        return [Sent(t, [(k, -1)])], imp and Sent(imp, [(k, -1)])
    sw = _severity_word(k, f.sev)
    ly = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}[sw]
    t = pick(
        rng,
        (
            f"{cap(sw)} cardiomegaly.",
            f"The heart is {ly} enlarged.",
            f"{cap(sw)} enlargement of the cardiac silhouette.",
            f"Heart size is {ly} enlarged.",
            "Enlarged cardiac silhouette.",
        ),
    )
    return [Sent(t, [(k, 1)])], Sent(pick(rng, (f"{cap(sw)} cardiomegaly.", "Cardiomegaly.")), [(k, 1)])


def _describe_mediastinum(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    if f.hedged:
        t = pick(
            rng,
            (
                "Possible mild widening of the mediastinum.",
                "The mediastinal silhouette may be mildly widened, possibly due to technique.",
                "Questionable widening of the mediastinum.",
            ),
        )
        return [Sent(t, [(k, -1)])], None
    sw = _severity_word(k, f.sev)
    ly = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}[sw]
    t = pick(
        rng,
        (
            f"The mediastinum is {ly} widened.",
            f"{cap(sw)} widening of the mediastinal silhouette.",
            f"The cardiomediastinal silhouette is {ly} enlarged.",
            f"The mediastinal contours are {ly} widened.",
        ),
    )
    imp = pick(rng, ("Widened mediastinum.", "Enlarged cardiomediastinal silhouette."))
    return [Sent(t, [(k, 1)])], Sent(imp, [(k, 1)])


def _describe_effusion(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    side = _side_words(f.sides)
    pl = "s" if len(f.sides) == 2 else ""
    if f.hedged:
        t = pick(
            rng,
            (
                f"Possible small {side} pleural effusion{pl}.",
                f"Minimal blunting of the {side} costophrenic angle{pl} may represent trace "
                f"pleural effusion{pl}.",
                f"Trace {side} pleural effusion{pl} cannot be excluded.",
            ),
        )
        imp = pick(rng, (f"Possible small {side} pleural effusion{pl}.", None))
        return [Sent(t, [(k, -1)])], imp and Sent(imp, [(k, -1)])
    sw = _severity_word(k, f.sev)
    note = _prior_note(s, f, rng)
    options = [
        f"{cap(sw)} {side} pleural effusion{pl}{note}.",
        f"There {'are' if pl else 'is a'} {sw} {side} pleural effusion{pl}{note}.",
        f"{cap(sw)} {side} effusion{pl} with a meniscus at the base{note}.",
    ]
    if sw == "small":
        options.append(
            f"Blunting of the {side} costophrenic angle{pl}, consistent with small effusion{pl}{note}."
        )
    if f.extra.get("layer"):
        options.append(f"{cap(sw)} layering {side} pleural effusion{pl}{note}.")
    return [Sent(pick(rng, options), [(k, 1)])], Sent(f"{cap(sw)} {side} pleural effusion{pl}.", [(k, 1)])


def _describe_ptx(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    side = _side_words(f.sides)
    if f.hedged:
        t = pick(
            rng,
            (
                f"Possible tiny {side} apical pneumothorax.",
                f"A tiny {side} apical pneumothorax cannot be excluded.",
                f"Questionable small {side} apical pneumothorax.",
            ),
        )
        imp = pick(
            rng,
            (
                f"Possible tiny {side} apical pneumothorax; consider repeat imaging.",
                f"Questionable tiny {side} apical pneumothorax.",
            ),
        )
        return [Sent(t, [(k, -1)])], Sent(imp, [(k, -1)])
    sw = _severity_word(k, f.sev)
    note = _prior_note(s, f, rng)
    where = "apical" if f.sev < 0.35 else "apicolateral"
    t = pick(
        rng,
        (
            f"{cap(sw)} {side} {where} pneumothorax{note}.",
            f"There is a {sw} {side} pneumothorax with a visible visceral pleural edge{note}.",
            f"{cap(side)} pneumothorax, {sw} in size, most apparent at the apex{note}.",
        ),
    )
    return [Sent(t, [(k, 1)])], Sent(f"{cap(sw)} {side} pneumothorax.", [(k, 1)])


def _describe_edema(f: Finding, s: Study, rng) -> _Described:
    k = f.kind
    if f.hedged:
        # "vascular congestion" alone reads as uncertain to CheXpert; it only appears here.
        t = pick(
            rng,
            (
                "Possible mild interstitial edema.",
                "Mild interstitial edema cannot be excluded.",
                "Mild pulmonary vascular congestion, possibly early interstitial edema.",
                "Perihilar haziness may represent mild pulmonary edema.",
            ),
        )
        imp = pick(rng, ("Possible mild pulmonary edema.", None))
        return [Sent(t, [(k, -1)])], imp and Sent(imp, [(k, -1)])
    sw = _severity_word(k, f.sev)
    note = _prior_note(s, f, rng)
    options = {
        "mild": (
            "Increased interstitial opacities with septal thickening, compatible with mild "
            "interstitial edema",
            "Mild pulmonary edema with perihilar opacities",
        ),
        "moderate": (
            "Bilateral perihilar hazy opacities consistent with moderate pulmonary edema",
            "Moderate pulmonary edema with bilateral perihilar opacities",
        ),
        "severe": (
            "Diffuse bilateral airspace opacities consistent with severe alveolar edema",
            "Severe pulmonary edema with confluent bilateral perihilar opacities",
        ),
    }[sw]
    return [Sent(pick(rng, options) + note + ".", [(k, 1), _LO])], Sent(
        f"{cap(sw)} pulmonary edema.", [(k, 1)]
    )


def _describe_nodule(f: Finding, s: Study, rng) -> _Described:
    mm = f.extra["mm"]
    loc = _lobe_name(rng, f.where)
    size = f"{mm} mm" if mm < 20 else f"{mm / 10:.1f} cm"
    noun = "nodular opacity" if mm < 20 else "mass-like opacity"
    t = pick(
        rng, (f"There is a {size} {noun} in the {loc}.", f"A {size} rounded {noun} projects over the {loc}.")
    )
    recs = [("Lung Lesion", 1), _LO]
    imp = f"{cap(size)} {noun} in the {loc}; recommend chest CT for further evaluation."
    return [Sent(t, recs)], Sent(imp, recs)


def _describe_airspace(f: Finding, s: Study, rng) -> _Described:
    """Consolidation (with the pneumonia of the same lobe, if any), pneumonia alone, or an opacity."""
    k, h = f.kind, f.hedged
    loc = _lobe_name(rng, f.where)
    note = _prior_note(s, f, rng)
    if k == "Opacity":
        if h:
            t = pick(
                rng, (f"Possible subtle opacity in the {loc}.", f"Questionable faint opacity in the {loc}.")
            )
            return [Sent(t, [("Lung Opacity", -1)])], None
        t = pick(
            rng,
            (
                f"Small patchy opacity in the {loc}{note}.",
                f"Subtle hazy opacity in the {loc}{note}.",
                f"There is a faint nonspecific opacity in the {loc}{note}.",
            ),
        )
        imp = pick(rng, (f"Nonspecific {loc} opacity; follow-up recommended.", None))
        return [Sent(t, [_LO])], imp and Sent(imp, [_LO])
    pna = next((g for g in s.findings if g.kind == "Pneumonia" and g.where == f.where), None)
    if k == "Pneumonia" and any(g.kind == "Consolidation" and g.where == f.where for g in s.findings):
        return [], None  # described with the consolidation of the same lobe
    sw = _severity_word(k, f.sev)
    if k == "Consolidation":
        bronch = " with air bronchograms" if f.sev > 0.4 and rng.random() < 0.6 else ""
        if h:
            t = pick(
                rng,
                (
                    f"Faint opacity in the {loc}, possibly early consolidation.",
                    f"Subtle {loc} opacity; consolidation cannot be excluded.",
                ),
            )
            sents = [Sent(t, [_LO, (k, -1)])]
            imp = Sent(f"Possible early consolidation in the {loc}.", [(k, -1)])
        else:
            t = pick(
                rng,
                (
                    f"There is {sw} consolidative opacity in the {loc}{bronch}{note}.",
                    f"{cap(sw)} airspace opacity in the {loc} consistent with consolidation{bronch}{note}.",
                    f"The {loc} is opacified, consistent with {sw} consolidation{bronch}{note}.",
                ),
            )
            sents = [Sent(t, [_LO, (k, 1)])]
            imp = Sent(f"{cap(loc)} consolidation.", [(k, 1)])
        if pna is not None:  # pneumonia in the same lobe: say what the consolidation means
            if pna.hedged:
                t = pick(
                    rng,
                    (
                        "This may represent pneumonia.",
                        "Pneumonia cannot be excluded.",
                        "Findings are concerning for pneumonia in the appropriate clinical setting.",
                    ),
                )
                sents.append(Sent(t, [("Pneumonia", -1)]))
                imp = Sent(
                    f"{cap(loc)} consolidation, concerning for pneumonia.", [(k, 1), ("Pneumonia", -1)]
                )
            else:
                t = pick(
                    rng, ("Findings are consistent with pneumonia.", "This is compatible with pneumonia.")
                )
                sents.append(Sent(t, [("Pneumonia", 1)]))
                imp = Sent(f"{cap(loc)} pneumonia.", [("Pneumonia", 1)])
        return sents, imp
    # Pneumonia without consolidation: patchy and less dense.
    if h:
        t = pick(
            rng,
            (
                f"Patchy opacity in the {loc}, which may represent atelectasis or pneumonia.",
                f"Hazy {loc} opacity; early pneumonia cannot be excluded.",
                f"Ill-defined opacity in the {loc}, possibly infectious.",
            ),
        )
        recs = [_LO, ("Pneumonia", -1)] + ([("Atelectasis", -1)] if "atelectasis" in t else [])
        imp = pick(
            rng,
            (
                (f"{cap(loc)} opacity, possibly pneumonia.", [_LO, ("Pneumonia", -1)]),
                (f"Possible early {loc} pneumonia.", [("Pneumonia", -1)]),
            ),
        )
        return [Sent(t, recs)], Sent(*imp)
    t = pick(
        rng,
        (
            f"{cap(sw)} opacity in the {loc} consistent with pneumonia{note}.",
            f"{cap(sw)} airspace opacities in the {loc}, compatible with infectious process{note}.",
            f"There are {sw} opacities in the {loc} compatible with pneumonia{note}.",
        ),
    )
    return [Sent(t, [_LO, ("Pneumonia", 1)])], Sent(f"{cap(loc)} pneumonia.", [("Pneumonia", 1)])


def _describe_atelectasis(f: Finding, s: Study, rng) -> _Described:
    k = "Atelectasis"
    both = len(f.sides) == 2
    side = "" if both else SIDE_NAME[f.sides[0]]
    loc = pick(rng, ("bibasilar", "bilateral basilar")) if both else f"{side} basilar"
    base = "both lung bases" if both else f"the {side} lung base"
    if f.hedged:
        t = pick(
            rng,
            (
                f"Minimal streaky opacity at {base}, which may represent atelectasis.",
                f"Possible minimal {loc} atelectasis.",
            ),
        )
        return [Sent(t, [(k, -1)] + ([_LO] if "opacity" in t else []))], None
    sw = _severity_word(k, f.sev)
    note = _prior_note(s, f, rng)
    if sw == "severe" and not both:
        lobe = f"{side} lower lobe"
        where = "Dense retrocardiac opacification" if side == "left" else "Dense opacity at the right base"
        t = pick(
            rng,
            (
                f"{where} with volume loss, consistent with {lobe} collapse{note}.",
                f"{cap(lobe)} atelectasis with associated opacity and elevation of the {side} "
                f"hemidiaphragm{note}.",
            ),
        )
        return [Sent(t, [(k, 1), _LO])], Sent(f"{cap(lobe)} collapse.", [(k, 1)])
    if sw == "severe":  # both bases
        t = pick(
            rng,
            (
                f"Dense bibasilar opacities with volume loss, consistent with severe atelectasis{note}.",
                f"Severe bibasilar atelectasis with associated opacities{note}.",
            ),
        )
        return [Sent(t, [(k, 1), _LO])], Sent("Severe bibasilar atelectasis.", [(k, 1)])
    kind = "subsegmental" if sw == "mild" else sw
    t = pick(
        rng,
        (
            f"Linear opacity at {base} consistent with {kind} atelectasis{note}.",
            f"{cap(sw)} {loc} atelectasis with band-like opacity{note}.",
            f"Band-like opacit{'ies' if both else 'y'} at {base} compatible with discoid atelectasis{note}.",
        ),
    )
    sents = [Sent(t, [(k, 1), _LO])]
    if f.sev > 0.3 and not both and rng.random() < 0.5:
        sents.append(Sent(f"Mild elevation of the {side} hemidiaphragm.", [("Other", 1)]))
    imp = pick(rng, (f"{cap(loc)} atelectasis.", None))
    return sents, imp and Sent(imp, [(k, 1)])
