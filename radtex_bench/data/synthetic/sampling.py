"""Sampling patients, studies, findings and devices: what every image shows and its report says.

One random stream per (seed, patient), so image ``k`` does not depend on ``n``. A patient has 1-3
studies, a split, a body (anatomy parameters) and chronic conditions; each study draws acute findings
(with realistic correlations), devices, a view and its positioning. The report is written right after
a study is sampled, from the same stream, so text and labels agree with the painted findings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .model import LEFT, LOBES, RIGHT, Finding, Study
from .reports import write_report
from .stream import Stream
from .textures import PIX_DRAWS

#: Fractions of *patients* in train / validate / test.
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)

_SALT_PATIENT = 0x5EED  # salt of a patient's stream
_LOBE_KEYS = tuple(LOBES)
_LOBE_WEIGHTS = (0.14, 0.14, 0.28, 0.1, 0.08, 0.26)  # infections favour the lower lobes


def iter_studies(seed: int, n: int) -> Iterator[Study]:
    """Studies in order, patient after patient, until ``n``; the last patient may be cut short."""
    done, patient = 0, 1
    while done < n:
        for study in _sample_patient(seed, patient)[: n - done]:
            yield study
            done += 1
        patient += 1


def _sample_patient(seed: int, patient: int) -> list[Study]:
    rng = Stream([seed, patient, _SALT_PATIENT])
    u = rng.random()
    split = "train" if u < SPLIT_FRACTIONS[0] else "validate" if u < sum(SPLIT_FRACTIONS[:2]) else "test"
    n_studies = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
    body = _sample_body(rng)
    chronic = _sample_chronic(rng)
    studies: list[Study] = []
    prev: Study | None = None
    for index in range(1, n_studies + 1):
        study = _sample_study(rng, patient, index, split, body, chronic, prev)
        study.report, study.labels = write_report(study, rng)
        studies.append(study)
        prev = study
    return studies


def _sample_body(rng: Stream) -> dict[str, float]:
    """Patient anatomy that stays the same across the patient's studies."""
    u = rng.uniform
    dia_r = u(0.30, 0.44)
    return {
        "scale": u(0.92, 1.04),
        "body_w": u(0.80, 0.96),
        "soft": u(0.85, 1.2),
        "lung_x": u(0.38, 0.43),
        "lung_ax": u(0.29, 0.335),
        "apex": u(-0.80, -0.70),
        "dia_r": dia_r,
        "dia_l": dia_r + u(0.02, 0.07),
        "ctr": min(max(rng.normal(0.435, 0.022), 0.38), 0.475),
        "med_w0": u(0.085, 0.112),  # upper mediastinal half-width (med_w: after findings)
        "aorta0": u(0.035, 0.055),  # aortic knob radius (aorta: after findings)
        "spine_x": rng.normal(0.0, 0.01),
        "rib_sp": u(0.118, 0.14),
        "rib_curv": u(0.75, 1.15),
        "rib_y0": u(-0.86, -0.80),
        "clav_y": u(-0.66, -0.58),
        "clav_slope": u(0.2, 0.32),
        "breast": u(0.1, 0.25) if rng.random() < 0.5 else 0.0,
        "bubble": u(0.5, 1.0) if rng.random() < 0.65 else 0.0,
        "v_amp": u(0.09, 0.14),
        "hilum": u(0.08, 0.15),
    }


def _sample_chronic(rng: Stream) -> dict[str, Any]:
    """Conditions a patient keeps across studies (they drive correlations between studies)."""
    r = rng.random
    cardiac = r() < 0.2
    c: dict[str, Any] = {
        "cardiac": cardiac,
        "ctr_cardiac": rng.uniform(0.5, 0.68) if cardiac else 0.0,
        "icu_prone": r() < 0.18,
        "pacemaker": r() < (0.3 if cardiac else 0.015),
        "sternotomy": r() < (0.25 if cardiac else 0.015),
        "tortuous_aorta": r() < 0.08,
        "scoliosis": rng.choice([-1, 1]) * rng.uniform(0.035, 0.08) if r() < 0.06 else 0.0,
        "fracture": None,
        "nodule": None,
    }
    if r() < 0.05:
        c["fracture"] = {
            "side": int(rng.choice([RIGHT, LEFT])),
            "rib": int(rng.integers(4, 9)),
            "s": rng.uniform(0.5, 0.68),
        }
    if r() < 0.05:
        c["nodule"] = {
            "lobe": str(rng.choice(_LOBE_KEYS)),
            "mm": int(rng.integers(6, 28)),
            "du": rng.uniform(-0.4, 0.4),
            "dv": rng.uniform(-0.12, 0.12),
        }
    return c


def _sev(rng: Stream, hedged: bool) -> float:
    """Severity: hedged findings are borderline, positives skew mild so many are subtle."""
    return rng.uniform(0.0, 0.1) if hedged else 0.12 + 0.88 * rng.random() ** 1.6


def _sample_study(rng, patient, index, split, body, chronic, prev) -> Study:
    r = rng.random
    icu = (chronic["icu_prone"] and r() < 0.7) or r() < 0.04
    view = "AP" if icu or r() < 0.1 else "PA"
    anat = dict(body)
    _jitter_anatomy(rng, anat, view)
    findings: list[Finding] = []

    def hedge(p: float) -> bool:
        return bool(r() < p)

    # Heart: chronic, so a cardiac patient keeps an enlarged heart in every study.
    if chronic["cardiac"]:
        anat["ctr"] = (chronic["ctr_cardiac"] + rng.normal(0, 0.01)) * (1.06 if view == "AP" else 1.0)
    elif r() < 0.03:  # a borderline heart
        anat["ctr"] = rng.uniform(0.49, 0.52)
    # CTR >= 0.52 is called enlarged; 0.49-0.52 (AP magnification included) is hedged.
    if anat["ctr"] >= 0.52:
        findings.append(Finding("Cardiomegaly", (), sev=min(max((anat["ctr"] - 0.5) / 0.18, 0.0), 1.0)))
    elif anat["ctr"] >= 0.49:
        findings.append(Finding("Cardiomegaly", (), sev=0.05, hedged=True))

    carry = prev is not None and r() < 0.5  # acute findings often persist into the next study
    if carry:
        for f in prev.findings:
            if f.kind not in ("Cardiomegaly", "Nodule"):
                sev = min(f.sev * rng.uniform(0.6, 1.3), 1.0)
                findings.append(Finding(f.kind, f.sides, f.where, sev, f.hedged, dict(f.extra)))
    else:
        findings += _sample_acute(rng, icu, chronic, view, hedge)

    if chronic["nodule"]:
        nod = chronic["nodule"]
        side = LOBES[nod["lobe"]][0]
        findings.append(Finding("Nodule", (side,), nod["lobe"], min(1.0, nod["mm"] / 30), extra=dict(nod)))

    devices = _sample_devices(rng, icu, chronic, findings)
    study = Study(patient, index, split, view, anat, findings, devices, chronic)
    study.pix = [rng.random() for _ in range(PIX_DRAWS)]  # texture crops (see Canvas)
    if prev is not None:
        study.prior_kinds = {f.kind: f.sev for f in prev.findings}
    _apply_to_anatomy(study)
    return study


def _sample_acute(rng, icu, chronic, view, hedge) -> list[Finding]:
    r = rng.random
    out: list[Finding] = []
    side = lambda: int(rng.choice([RIGHT, LEFT]))  # noqa: E731

    # Fluid overload: edema with effusions (and a wide mediastinum), mostly in cardiac patients.
    overload = (chronic["cardiac"] and r() < 0.5) or r() < 0.03
    if overload:
        h = hedge(0.15)
        out.append(Finding("Edema", (RIGHT, LEFT), "perihilar", _sev(rng, h), h))
        if r() < 0.7:
            sides = (RIGHT, LEFT) if r() < 0.55 else ((RIGHT,) if r() < 0.6 else (LEFT,))
            h = hedge(0.1)
            out.append(Finding("Pleural Effusion", sides, "base", _sev(rng, h), h, {"layer": view == "AP"}))
        if r() < 0.35:
            h = hedge(0.2)
            out.append(Finding("Enlarged Cardiomediastinum", (), "", _sev(rng, h), h))
    # Infection: pneumonia with (often) consolidation in the same lobe, sometimes a second lobe.
    if r() < 0.13 + 0.1 * icu:
        lobes = [str(rng.choice(_LOBE_KEYS, p=_LOBE_WEIGHTS))]
        if r() < 0.15:
            lobes.append(str(rng.choice(_LOBE_KEYS, p=_LOBE_WEIGHTS)))
        for lobe in dict.fromkeys(lobes):
            s = (LOBES[lobe][0],)
            h_pna = hedge(0.28)
            out.append(Finding("Pneumonia", s, lobe, _sev(rng, h_pna), h_pna))
            if r() < 0.6:
                h = hedge(0.12) and not h_pna
                out.append(Finding("Consolidation", s, lobe, _sev(rng, h), h))
        if r() < 0.15:
            out.append(Finding("Pleural Effusion", (LOBES[lobes[0]][0],), "base", _sev(rng, False) * 0.6))
    # Atelectasis: at the bases, more likely with effusions and in ICU patients.
    p_atel = 0.08 + 0.2 * icu + 0.25 * any(f.kind == "Pleural Effusion" for f in out)
    if r() < p_atel:
        sides = (RIGHT, LEFT) if r() < 0.4 else (side(),)
        h = hedge(0.15)
        bands = {
            sg: (rng.uniform(0.74, 0.88), rng.uniform(-0.1, 0.45), rng.uniform(-0.25, 0.25)) for sg in sides
        }
        out.append(Finding("Atelectasis", sides, "base", _sev(rng, h), h, {"bands": bands}))
    if r() < 0.085 + 0.1 * icu:
        h = hedge(0.15)
        out.append(Finding("Pneumothorax", (side(),), "apex", _sev(rng, h), h))
    if r() < 0.07:
        h = hedge(0.25)
        out.append(Finding("Enlarged Cardiomediastinum", (), "", _sev(rng, h), h))
    if not any(f.kind == "Pleural Effusion" for f in out) and r() < 0.11:
        h = hedge(0.15)
        out.append(Finding("Pleural Effusion", (side(),), "base", _sev(rng, h), h, {"layer": view == "AP"}))
    if r() < 0.025:
        h = hedge(0.2)
        lobe = str(rng.choice(_LOBE_KEYS))
        out.append(Finding("Opacity", (LOBES[lobe][0],), lobe, _sev(rng, h) * 0.7, h))
    # Merge duplicates of a kind (e.g. two effusion sources) into one finding covering both sides.
    merged: dict[tuple[str, str], Finding] = {}
    for f in out:
        key = (f.kind, f.where if f.kind in ("Pneumonia", "Consolidation", "Opacity") else "")
        if key in merged:
            g = merged[key]
            g.sides = tuple(sorted(set(g.sides) | set(f.sides)))
            g.sev, g.hedged = max(g.sev, f.sev), g.hedged and f.hedged
        else:
            merged[key] = f
    return list(merged.values())


def _sample_devices(rng, icu, chronic, findings) -> dict[str, dict[str, Any]]:
    r, u = rng.random, rng.uniform
    d: dict[str, dict[str, Any]] = {}
    if icu and r() < 0.55:
        d["ett"] = {"above_carina_cm": round(u(2.0, 7.0), 1)}
    if icu and r() < (0.7 if "ett" in d else 0.25):
        d["ng"] = {}
    if (icu and r() < 0.6) or r() < 0.04:
        d["cvc"] = {
            "route": str(rng.choice(["right internal jugular", "left subclavian", "right PICC"])),
            "tip": str(rng.choice(["mid SVC", "lower SVC", "cavoatrial junction"])),
        }
    if chronic["pacemaker"]:
        d["pacemaker"] = {}
    ptx = [f for f in findings if f.kind == "Pneumothorax" and not f.hedged]
    if ptx and (icu or ptx[0].sev > 0.45) and r() < 0.6:
        d["chest_tube"] = {"side": ptx[0].sides[0]}
    return d


def _jitter_anatomy(rng: Stream, a: dict[str, float], view: str) -> None:
    """Positioning, inspiration and exposure of one study; AP (portable, often supine) differs."""
    u = rng.uniform
    a.update(tx=rng.normal(0, 0.03), ty=rng.normal(0, 0.03), rot=rng.normal(0, 0.035))
    insp = u(-0.05, 0.05)
    a["dia_r"] += insp
    a["dia_l"] += insp
    a.update(
        tone=u(-0.35, 0.35),
        t_mean=u(0.42, 0.58),
        t_std=u(0.17, 0.23),
        noise=u(0.012, 0.03),
        blur=u(0.3, 1.0),
        heel=u(-0.05, 0.05),
        field=u(0.015, 0.045),
        ap=0.0,
    )
    if view == "AP":
        # Portable AP: lower lung volumes, magnified heart, clavicles higher, scapulae over the lungs.
        a.update(
            ap=1.0,
            ctr=a["ctr"] * u(1.04, 1.1),
            clav_y=a["clav_y"] - u(0.04, 0.09),
            clav_slope=a["clav_slope"] * 0.5,
            scale=a["scale"] * 1.03,
        )
        a["dia_r"] -= u(0.0, 0.08)
        a["dia_l"] = max(a["dia_l"] - u(0.0, 0.08), a["dia_r"] + 0.01)


def _apply_to_anatomy(s: Study) -> None:
    """Findings that change anatomy rather than add density (mediastinum, diaphragm, vessels).
    Idempotent: everything is derived from the patient's base values."""
    a, c = s.anat, s.chronic
    a.update(scol=c["scoliosis"], ceph=0.0, v_boost=1.0, hila_boost=1.0, elev_r=0.0, elev_l=0.0)
    a["aorta"] = a["aorta0"] * (1.45 if c["tortuous_aorta"] else 1.0)
    a["med_w"] = a["med_w0"]
    for f in s.findings:
        if f.kind == "Enlarged Cardiomediastinum":
            a["med_w"] = a["med_w0"] * (1.12 + f.sev if f.hedged else 1.25 + 0.45 * f.sev)
        elif f.kind == "Atelectasis" and f.sev > 0.3:
            for side in f.sides:  # volume loss: the hemidiaphragm rises
                a["elev_r" if side == RIGHT else "elev_l"] = 0.02 + 0.08 * f.sev
        elif f.kind == "Edema":
            # Vascular redistribution to the upper zones and fuller hila, even when mild.
            a["ceph"] = 0.2 + 0.8 * f.sev
            a["v_boost"] = 1.0 + 0.2 * f.sev
            a["hila_boost"] = 1.0 + 0.3 * f.sev
