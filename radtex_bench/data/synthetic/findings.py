"""Painting the findings: every abnormality adds a localised change to the attenuation map.

Instances of one kind are painted together across a chunk (see :class:`_Group`), each on the rows it
can reach, in a fixed order, so an image never depends on the other images of its chunk.
"""

from __future__ import annotations

import math

import numpy as np

from .canvas import Canvas, bump, col, frac_dist, ramp
from .model import LOBES, RIGHT, Study


def _lobe_point(a: dict[str, float], lobe: str, du: float = 0.0, dv: float = 0.0) -> tuple[int, float, float]:
    """(sigma, S, Y) of a lobe centre in the patient frame of anatomy ``a``."""
    sigma, u, v, _ = LOBES[lobe]
    S = a["lung_x"] + (u + du) * a["lung_ax"]
    dia = a["dia_r"] - a["elev_r"] if sigma == RIGHT else a["dia_l"] - a["elev_l"]
    return sigma, S, a["apex"] + (v + dv) * (dia + 0.04 - a["apex"])


class _Group:
    """Instances of one painter across a chunk, in layers that each hold an image at most once
    (so ``A[idx] += ...`` is safe without the slow ``np.add.at``). ``ylo``/``yhi`` bound the rows an
    instance can touch."""

    def __init__(self) -> None:
        self.layers: list[tuple[list[int], dict[str, list[float]]]] = []

    def add(self, i: int, sigma: int, ylo: float, yhi: float, **vals: float) -> None:
        for layer in self.layers:
            if i not in layer[0]:
                break
        else:
            layer = ([], {})
            self.layers.append(layer)
        idx, vv = layer
        idx.append(i)
        for k, v in dict(vals, sigma=sigma, ylo=ylo, yhi=yhi).items():
            vv.setdefault(k, []).append(v)

    def paint(self, c: Canvas, painter) -> None:
        for idx, vals in self.layers:
            ii = np.asarray(idx)
            q = {k: col(v) for k, v in vals.items()}
            rows = c.rows(q["ylo"], q["yhi"], ii)
            if rows.start >= rows.stop:
                continue
            add, quiet = painter(
                c,
                ii,
                rows,
                q["sigma"] * c.X[ii],
                c.Y[ii, rows],
                c.lung[ii, rows],
                c.level[ii, rows],
                c.dome[ii, rows],
                q,
            )
            c.A[ii, rows] += add
            if quiet is not None:
                c.quiet[ii, rows] = np.maximum(c.quiet[ii, rows], quiet)


def paint_findings(c: Canvas, studies: list[Study]) -> None:
    groups: dict[str, _Group] = {}

    def g(name: str) -> _Group:
        return groups.setdefault(name, _Group())

    for i, s in enumerate(studies):
        a = s.anat
        # Every painter's rows must hold all of its non-zero support: then the rows shared with the
        # other images of a layer only add exact zeros, and an image never depends on its neighbours.
        low = max(a["dia_r"], a["dia_l"]) + 0.25  # below the costophrenic recesses
        top_lung = a["apex"] + 0.7 - 0.7 * math.sqrt(1.0 + max(0.04, 11 * c.px) / 2) - 0.01
        for f in s.findings:
            k, sev = f.kind, f.sev
            if k in ("Consolidation", "Pneumonia", "Opacity"):
                sigma, cx, cy = _lobe_point(a, f.where)
                size = {
                    "Consolidation": 0.09 + 0.14 * sev,
                    "Pneumonia": 0.1 + 0.16 * sev,
                    "Opacity": 0.06 + 0.08 * sev,
                }[k]
                dens = {
                    "Consolidation": 0.32 + 0.4 * sev,
                    "Pneumonia": 0.16 + 0.22 * sev,
                    "Opacity": 0.14 + 0.2 * sev,
                }[k]
                if f.hedged:
                    dens *= 0.55
                fiss = {"RUL": -1.0, "RML": 1.0}.get(f.where, 0.0)  # the minor fissure bounds these lobes
                patch = 0.9 if k == "Pneumonia" else 0.5
                reach = size * math.sqrt(1.5 + 2.5 * patch) + 0.01  # how far the (clipped) texture extends it
                g("airspace").add(
                    i,
                    sigma,
                    cy - reach,
                    cy + reach,
                    cx=cx,
                    cy=cy,
                    rx=size * 1.15,
                    ry=size,
                    dens=dens,
                    fiss=fiss,
                    fy=a["apex"] + 0.5,
                    patch=patch,
                    bronch=0.6 if k == "Consolidation" and sev > 0.4 else 0.0,
                )
            elif k == "Nodule":
                sigma, cx, cy = _lobe_point(a, f.where, f.extra["du"], f.extra["dv"])
                r = f.extra["mm"] / 1000 * 2.0 / 0.36  # the image is ~36 cm across
                g("nodule").add(i, sigma, cy - r, cy + r, cx=cx, cy=cy, r=r, amp=0.3 + 0.1 * sev)
            elif k == "Pleural Effusion":
                for sigma in f.sides:
                    h = 0.035 + 0.03 * sev / 0.1 if f.hedged else 0.07 + 0.5 * sev
                    dia = a["dia_r"] - a["elev_r"] if sigma == RIGHT else a["dia_l"] - a["elev_l"]
                    recess = dia + 0.9 * (a["lung_ax"] + 0.03) ** 2  # lowest point: lateral angle
                    layer = float(f.extra.get("layer", False)) * sev
                    top = top_lung if layer else recess - h - 0.1
                    g("effusion").add(
                        i, sigma, top, low, h=h, soft=0.02 + 0.06 * sev, recess=recess, layer=layer
                    )
            elif k == "Pneumothorax":
                for sigma in f.sides:
                    width = 0.022 + 0.012 * sev / 0.1 if f.hedged else 0.035 + 0.16 * sev
                    qe = max(0.05, 1.0 - width / a["lung_ax"])  # level of the edge: L = qe ** 2.5
                    reach = 0.22 + 0.8 * (0.0 if f.hedged else sev)
                    g("ptx").add(
                        i,
                        sigma,
                        top_lung,
                        a["apex"] + reach + 0.1,
                        edge=qe * qe * math.sqrt(qe),
                        grad=2.5 * qe * math.sqrt(qe) / a["lung_ax"],
                        reach=reach,
                    )
            elif k == "Atelectasis":
                for sigma in f.sides:
                    v, u, slope = f.extra["bands"].get(sigma, (0.8, 0.2, 0.0))
                    g("atel").add(
                        i,
                        sigma,
                        a["apex"] + 0.5,
                        low,
                        v=v,
                        u=u,
                        slope=slope,
                        th=0.009 + 0.018 * sev,
                        amp=(0.13 if f.hedged else 0.2 + 0.14 * sev),
                        wedge=max(0.0, sev - 0.6) / 0.4,
                    )
            elif k == "Edema":
                g("edema").add(i, 1, top_lung, low, sev=sev * (0.5 if f.hedged else 1.0))
        if s.chronic["fracture"]:
            fr = s.chronic["fracture"]
            # On the centre line of rib number fr["rib"] (see the rib phase in paint_bones).
            y = a["rib_y0"] + fr["rib"] * a["rib_sp"] - 0.35 * fr["s"] + a["rib_curv"] * fr["s"] ** 2
            g("fracture").add(i, fr["side"], y - 0.04, y + 0.04, cx=fr["s"], cy=y)
    for name, painter in _PAINTERS.items():  # a fixed order: sums are bit-identical whatever the chunk
        if name in groups:
            groups[name].paint(c, painter)


# Painters: (canvas, image indices, rows, S = sigma * X, Y, lung, level, dome, parameters) ->
# (attenuation to add on those rows, pixels whose lung markings vanish or None).


def _paint_airspace(c, idx, rows, S, Y, lung, L, dome, q):
    """Consolidation / pneumonia / nonspecific opacity: a patchy lobar density, air bronchograms."""
    patches = np.clip(0.35 * c.tex[idx, rows] + 0.75 * c.fine[idx, rows], -2.5, 2.5)
    gx, gy = (S - q["cx"]) / q["rx"], (Y - q["cy"]) / q["ry"]
    region = ramp((1.0 - gy * gy) - gx * gx + q["patch"] * patches, 0.9) * (
        0.75 + 0.25 * np.clip(patches, -1.0, 1.0)
    )
    bounded = q["fiss"] != 0  # the minor fissure: a sharp lower (RUL) or upper (RML) edge
    region *= 1.0 - bounded + bounded * ramp((q["fy"] - Y) * q["fiss"], 1.5 * c.px)
    # Air bronchograms: dark airways radiating from the hilum (the vessel pattern) in dense areas.
    br = np.clip(2.0 * c.vessels[idx, rows] - 0.4, 0.0, 1.0) * q["bronch"] * ramp(region - 0.6, 0.3)
    return q["dens"] * region * lung * (1.0 - br), None


def _paint_nodule(c, idx, rows, S, Y, lung, L, dome, q):
    dx, dy = S - q["cx"], Y - q["cy"]
    d2 = (dx * dx + dy * dy) / (q["r"] * q["r"])
    return q["amp"] * np.sqrt(np.clip(1.0 - d2, 0.0, 1.0)) * ramp(1.0 - d2, 0.3) * np.minimum(
        lung * 4, 1.0
    ), None


def _paint_effusion(c, idx, rows, S, Y, lung, L, dome, q):
    """Fluid at the base: meniscus (higher laterally), blunted costophrenic angle, lost dome."""
    p = c.p
    lx, ax, apex = p["lung_x"][idx], p["lung_ax"][idx], p["apex"][idx]
    lateral = np.clip((S - 0.1) / (lx + ax - 0.1), 0.0, 1.0)
    top = q["recess"] - q["h"] * (0.3 + 0.7 * lateral * lateral * lateral)
    # Fluid replaces aerated lung, so the base turns as dense as the abdomen and the dome vanishes.
    fluid = ramp(Y - top, q["soft"]) * (ramp(S - 0.06, 0.05) * lung)
    # Supine (AP) films: fluid layers posteriorly and veils the whole hemithorax.
    veil = (q["layer"] * 0.3) * np.clip((Y - apex) / (q["recess"] - apex), 0.0, 1.0) * (lung * ramp(S, c.px))
    return 0.8 * fluid + veil, None


def _paint_ptx(c, idx, rows, S, Y, lung, L, dome, q):
    """Pneumothorax: a lucent rim without lung markings at the apex/lateral wall, thin pleural edge."""
    p = c.p
    zone = ramp(p["apex"][idx] + q["reach"] - Y, 0.1) * ramp(
        S - p["lung_x"][idx] + 0.5 * p["lung_ax"][idx], 0.06
    )
    zone = zone * lung
    lw = max(0.006, 0.6 * c.px) * q["grad"]  # line half-width (normalised -> level units)
    inside = ramp(L - q["edge"], 2.0 * lw) * zone
    dl = (L - q["edge"]) / lw
    return 0.3 * bump(dl * dl * 0.25) * zone - 0.2 * inside, inside


def _paint_atel(c, idx, rows, S, Y, lung, L, dome, q):
    """Atelectasis: a thin, tapering linear (discoid) band at the base; a dense medial wedge when
    lobar (collapse)."""
    p = c.p
    lx, ax, apex = p["lung_x"][idx], p["lung_ax"][idx], p["apex"][idx]
    cS = lx + q["u"] * ax
    cY = apex + q["v"] * (dome - apex)  # follows the (possibly elevated) hemidiaphragm
    d = np.abs((Y - cY) - q["slope"] * (S - cS))
    along = np.abs(S - cS) * (1 / 0.17)
    band = ramp(q["th"] * (1.0 - along * along) - d, c.px) * (
        0.7 + 0.3 * np.clip(c.fine[idx, rows], -1.0, 1.0)
    )
    wedge = ramp(S - 0.06, 0.03) * ramp(Y - apex - 0.62 - 1.6 * (S - 0.08), 0.04) * q["wedge"]
    return (q["amp"] * band + 0.45 * wedge) * lung, None


def _paint_edema(c, idx, rows, S, Y, lung, L, dome, q):
    """Edema (both lungs): perihilar haze (bat wing), septal (Kerley B) lines at the lateral bases."""
    p = c.p
    sev, ax = q["sev"], c.ax[idx]
    hx, hy = ax - 0.26, Y - p["apex"][idx] - 0.65
    haze = bump((hx * hx + 0.7 * hy * hy) / (0.08 + 0.25 * sev)) * np.maximum(
        1.0 + 0.5 * sev * c.tex[idx, rows], 0.3
    )
    kerley = np.clip(1.0 - 10.0 * frac_dist(Y * (1.0 / max(0.045, 3.2 * c.px))), 0.0, 1.0)
    kerley = (
        kerley * ramp(ax - p["lung_x"][idx] - p["lung_ax"][idx] + 0.07, 0.03) * ramp(Y - dome + 0.22, 0.05)
    )
    return ((0.03 + 0.24 * sev) * haze + (0.07 * np.minimum(1.0, 0.4 + sev)) * kerley) * lung, None


def _paint_fracture(c, idx, rows, S, Y, lung, L, dome, q):
    """Old rib fracture: a focal callus on a lateral rib."""
    dx, dy = S - q["cx"], Y - q["cy"]
    return 0.3 * np.clip(1.0 - (dx * dx + dy * dy) * (1 / 0.028**2), 0.0, 1.0), None


_PAINTERS = {
    "airspace": _paint_airspace,
    "nodule": _paint_nodule,
    "effusion": _paint_effusion,
    "ptx": _paint_ptx,
    "atel": _paint_atel,
    "edema": _paint_edema,
    "fracture": _paint_fracture,
}
