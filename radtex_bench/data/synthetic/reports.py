"""The report writer: FINDINGS and IMPRESSION of a study, and the labels read from them.

Findings sentences come from :mod:`.wording`; this module adds devices, pertinent negatives and
chronic findings, orders them, and aggregates the sentences' label records the way CheXpert's
labeler does, so the manifest labels agree with the text by construction.
"""

from __future__ import annotations

from ..labels import RADTEX_9
from .model import SIDE_NAME, Study
from .stream import Stream
from .wording import Sent, cap, describe, pick

#: Label columns written to the manifest: the 9 RadTex pathologies, then two CheXpert extras.
LABEL_COLUMNS = RADTEX_9 + ("No Finding", "Support Devices")


def _aggregate(records: list[tuple[str, int]]) -> dict[str, int]:
    """CheXpert's rule for several mentions of a category: positive > uncertain > negative."""
    out: dict[str, int] = {}
    for cat, val in records:
        prev = out.get(cat)
        if prev is None:
            out[cat] = val
        elif 1 in (prev, val):
            out[cat] = 1
        elif -1 in (prev, val):
            out[cat] = -1
    return out


def _describe_devices(s: Study, rng) -> list[Sent]:
    d, out, SD = s.devices, [], ("Support Devices", 1)
    if "ett" in d:
        cm = d["ett"]["above_carina_cm"]
        out.append(
            Sent(
                pick(
                    rng,
                    (
                        f"Endotracheal tube terminates approximately {cm:.0f} cm above the carina.",
                        f"The endotracheal tube tip is {cm:.1f} cm above the carina.",
                    ),
                ),
                [SD],
            )
        )
    if "ng" in d:
        out.append(
            Sent(
                pick(
                    rng,
                    (
                        "Enteric tube courses below the diaphragm with its tip in the stomach.",
                        "Nasogastric tube tip is in the stomach.",
                    ),
                ),
                [SD],
            )
        )
    if "cvc" in d:
        route, tip = d["cvc"]["route"], d["cvc"]["tip"]
        noun = "PICC line" if "PICC" in route else "central venous catheter"
        route = route.replace(" PICC", "")
        out.append(
            Sent(
                pick(
                    rng,
                    (
                        f"{cap(route)} {noun} terminates in the {tip}.",
                        f"{cap(route)} {noun} with tip in the {tip}.",
                    ),
                ),
                [SD],
            )
        )
    if "pacemaker" in d:
        out.append(
            Sent(
                pick(
                    rng,
                    (
                        "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
                        "Dual-lead pacemaker with leads in expected position.",
                    ),
                ),
                [SD],
            )
        )
    if "chest_tube" in d:
        out.append(Sent(f"{cap(SIDE_NAME[d['chest_tube']['side']])} chest tube in place.", [SD]))
    return out


#: How reports negate absent lung findings.
_NEGATE_LUNG = {
    "Consolidation": "focal consolidation",
    "Edema": "pulmonary edema",
    "Lung Opacity": "focal airspace opacity",
    "Atelectasis": "atelectasis",
}
#: Probability of negating an absent finding (otherwise it stays unmentioned: label missing).
_P_NEGATE = {
    "Consolidation": 0.45,
    "Edema": 0.3,
    "Lung Opacity": 0.15,
    "Atelectasis": 0.03,
    "Pneumonia": 0.15,
    "Pleural Effusion": 0.65,
    "Pneumothorax": 0.7,
    "Cardiomegaly": 0.7,
    "Enlarged Cardiomediastinum": 0.45,
}


def _join_or(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + (", or " if len(items) > 2 else " or ") + items[-1]


def _negations(s: Study, rng, present: set[str]) -> tuple[list[Sent], list[Sent], list[Sent]]:
    """Sentences negating some absent findings, for the lung, pleura and heart groups."""
    boost = 0.2 if not present else 0.0  # normal reports list more pertinent negatives
    parenchymal = bool(present & {"Consolidation", "Pneumonia", "Atelectasis", "Edema", "Lung Opacity"})

    def negate(k: str) -> bool:
        return k not in present and bool(rng.random() < _P_NEGATE[k] + boost)

    lung, pleura, heart = [], [], []
    neg = [
        k
        for k in _NEGATE_LUNG
        if negate(k)
        and not (k == "Lung Opacity" and parenchymal)
        and not (k == "Consolidation" and "Pneumonia" in present)
    ]
    if neg:
        phrase = _join_or([_NEGATE_LUNG[k] for k in neg])
        lung.append(Sent(pick(rng, (f"No {phrase}.", f"There is no {phrase}.")), [(k, 0) for k in neg]))
    if not parenchymal and negate("Pneumonia"):
        lung.append(
            Sent(
                pick(rng, ("No evidence of pneumonia.", "No radiographic evidence of pneumonia.")),
                [("Pneumonia", 0)],
            )
        )
    neg = [k for k in ("Pleural Effusion", "Pneumothorax") if negate(k)]
    if neg:
        words = (
            ["pleural effusion", "pneumothorax"]
            if len(neg) == 2
            else ["pleural effusion" if neg[0] == "Pleural Effusion" else "pneumothorax"]
        )
        if len(neg) == 2 and rng.random() < 0.5:
            words = ["effusion", "pneumothorax"]
        phrase = _join_or(words)
        pleura.append(Sent(pick(rng, (f"No {phrase}.", f"There is no {phrase}.")), [(k, 0) for k in neg]))
    card = s.anat["ctr"] < 0.49 and negate("Cardiomegaly")  # never call a large heart normal
    ec = negate("Enlarged Cardiomediastinum")
    if card and ec and rng.random() < 0.6:
        t = pick(
            rng,
            (
                "Heart size and mediastinal contours are normal.",
                "Heart size is normal and the mediastinal silhouette is unremarkable.",
            ),
        )
        heart.append(Sent(t, [("Cardiomegaly", 0), ("Enlarged Cardiomediastinum", 0)]))
    else:
        if card:
            t = pick(
                rng,
                (
                    "Heart size is normal.",
                    "The heart is normal in size.",
                    "The cardiac silhouette is within normal limits.",
                ),
            )
            heart.append(Sent(t, [("Cardiomegaly", 0)]))
        if ec:
            t = pick(
                rng,
                (
                    "The mediastinal contours are normal.",
                    "The cardiomediastinal silhouette is unremarkable.",
                    "Normal mediastinal silhouette.",
                ),
            )
            heart.append(Sent(t, [("Enlarged Cardiomediastinum", 0)]))
    return lung, pleura, heart


def _describe_chronic(s: Study, rng) -> list[Sent]:
    """What the 9 labels do not carry: aorta, sternotomy, spine, old rib fractures."""
    c, out = s.chronic, []
    if c["tortuous_aorta"]:
        out.append(
            Sent(pick(rng, ("The thoracic aorta is tortuous.", "Tortuous and unfolded thoracic aorta.")), [])
        )
    if c["sternotomy"]:
        out.append(
            Sent(pick(rng, ("Median sternotomy wires are intact.", "Intact median sternotomy wires.")), [])
        )
    if c["scoliosis"]:
        word = "dextroscoliosis" if c["scoliosis"] > 0 else "levoscoliosis"
        degree = "Mild" if abs(c["scoliosis"]) < 0.06 else "Moderate"
        out.append(Sent(f"{degree} {word} of the thoracic spine.", [("Other", 1)]))
    if c["fracture"]:
        fr = c["fracture"]
        nth, side = f"{fr['rib']}th", SIDE_NAME[fr["side"]]
        t = pick(
            rng, (f"Healed {side} lateral {nth} rib fracture.", f"Old {side} {nth} rib fracture deformity.")
        )
        out.append(Sent(t, [("Fracture", 1)]))
    elif not c["scoliosis"] and rng.random() < 0.25:
        out.append(
            Sent(pick(rng, ("No acute osseous abnormality.", "The osseous structures are intact.")), [])
        )
    return out


_ORDER = (
    "Consolidation",
    "Pneumonia",
    "Edema",
    "Atelectasis",
    "Opacity",
    "Nodule",
    "Pleural Effusion",
    "Pneumothorax",
    "Cardiomegaly",
    "Enlarged Cardiomediastinum",
)
_GROUP = {
    "Cardiomegaly": "heart",
    "Enlarged Cardiomediastinum": "heart",
    "Pleural Effusion": "pleura",
    "Pneumothorax": "pleura",
}


def write_report(s: Study, rng: Stream) -> tuple[str, dict[str, float | None]]:
    """FINDINGS and IMPRESSION text, and the labels a CheXpert-style labeler reads from it."""
    findings: list[Sent] = []
    if s.index > 1 and rng.random() < 0.5:
        findings.append(
            Sent(
                pick(
                    rng, ("Comparison is made with the prior radiograph.", "Compared with the prior study.")
                ),
                [],
            )
        )
    if rng.random() < 0.4:
        findings.append(
            Sent("Portable AP upright view of the chest." if s.view == "AP" else "PA view of the chest.", [])
        )
    devices = _describe_devices(s, rng)
    findings += devices
    groups: dict[str, list[Sent]] = {"lung": [], "pleura": [], "heart": []}
    impression: list[Sent] = []
    for f in sorted(s.findings, key=lambda f: _ORDER.index(f.kind)):
        sents, imp = describe(f, s, rng)
        groups[_GROUP.get(f.kind, "lung")] += sents
        if imp is not None:
            impression.append(imp)
    present = {k for sents in groups.values() for x in sents for k, v in x.records if v != 0}
    neg_lung, neg_pleura, neg_heart = _negations(s, rng, present & set(RADTEX_9))
    if not groups["lung"]:
        clear = pick(
            rng,
            (
                "The lungs are clear.",
                "The lungs are well expanded and clear.",
                "Lungs are clear bilaterally.",
                "",
            ),
        )
        if clear:
            findings.append(Sent(clear, []))
    findings += groups["lung"] + neg_lung + groups["pleura"] + neg_pleura + groups["heart"] + neg_heart
    findings += _describe_chronic(s, rng)

    if not impression:
        if devices and rng.random() < 0.5:
            impression.append(
                Sent(
                    pick(
                        rng,
                        (
                            "Support lines and tubes as described above.",
                            "Lines and tubes in appropriate position.",
                        ),
                    ),
                    [("Support Devices", 1)],
                )
            )
        impression.append(
            Sent(
                pick(
                    rng,
                    (
                        "No acute cardiopulmonary process.",
                        "No acute cardiopulmonary abnormality.",
                        "No acute intrathoracic process.",
                    ),
                ),
                [],
            )
        )
    if len(impression) > 1 and rng.random() < 0.5:
        imp_text = " ".join(f"{i}. {x.text}" for i, x in enumerate(impression, 1))
    else:
        imp_text = " ".join(x.text for x in impression)
    text = "FINDINGS: " + " ".join(x.text for x in findings) + "\n\nIMPRESSION: " + imp_text

    agg = _aggregate([r for x in findings + impression for r in x.records])
    labels: dict[str, float | None] = {c: agg.get(c) for c in LABEL_COLUMNS}
    # CheXpert: No Finding is positive when nothing but support devices is positive or uncertain.
    found = any(v != 0 for c, v in agg.items() if c != "Support Devices")
    labels["No Finding"] = None if found else 1
    return text, labels
