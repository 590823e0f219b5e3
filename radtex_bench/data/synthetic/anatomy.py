"""Normal anatomy as an attenuation map: body, mediastinum and heart, lungs, bones, lung markings.

Painted in the patient's own frame (so position, size and rotation vary between images) and on the
rows each structure can reach. Attenuation units: soft tissue through the whole body ~1, air-filled
lung removes ~0.9 of it.
"""

from __future__ import annotations

import numpy as np

from .canvas import Canvas, bump, frac_dist, ramp


def paint_body(c: Canvas) -> None:
    """Soft tissue: trunk with sloping shoulders and a neck, thicker centrally; breasts; humeral heads."""
    Y, p, ax = c.Y, c.p, c.ax
    bw = p["body_w"]
    wb = bw * (1.0 - 0.04 * Y)
    t = np.clip(ax * (1.0 / bw) - 0.2, 0.0, 1.0)
    trunk = ramp(wb - ax, 0.025) * ramp(Y + (0.9 - 0.28 * t * t), 0.05)
    body = np.maximum(trunk, ramp(0.2 - ax, 0.03)) * p["soft"]
    c.A += body - (0.38 * ax * ax) * (1.0 / (wb * wb)) * body  # thicker centrally
    # Breast shadows over the lower lateral lungs: extra density that is not disease.
    if p["breast"].any():
        rows = c.rows(-0.3, 0.75)
        Yr = Y[:, rows]
        bx, by = (ax - 0.47) * (1 / 0.34), (Yr - p["dia_r"] + 0.05) * (1 / 0.27)
        mound = np.sqrt(np.clip(1.0 - bx * bx - by * by, 0.0, 1.0))
        c.A[:, rows] += (p["breast"] * ramp(p["dia_r"] + 0.17 - Yr, 0.03)) * mound
    # Humeral heads, partly outside the field.
    rows = c.rows(-2.0, -0.55)
    hx, hy = ax - bw - 0.06, Y[:, rows] + 0.8
    c.A[:, rows] += 0.35 * np.sqrt(np.clip(1.0 - (hx * hx + hy * hy) * (1 / 0.03), 0.0, 1.0))


def _spine_line(c: Canvas) -> np.ndarray:
    """Spine centre line (per row); scoliosis bends it (dextro: convex to the patient's right)."""
    t = np.clip((c.Y + 0.9) * (1 / 1.7), 0.0, 1.0)
    return c.p["spine_x"] - c.p["scol"] * 4.0 * t * (1.0 - t)


def paint_mediastinum(c: Canvas) -> np.ndarray:
    """Heart (2/3 on the patient's left), upper mediastinum, aortic knob, trachea, hila.

    Returns where heart and mediastinum displace the lungs."""
    X, Y, p = c.X, c.Y, c.p
    c.mx[...] = mx = _spine_line(c)
    occupied = np.zeros_like(c.A)
    # Heart: width = CTR x internal thoracic width, lower-left bulge of the left ventricle.
    yc = p["dia_l"] - 0.14
    hh = 0.25 + 0.4 * (p["ctr"] - 0.44)
    rows = c.rows(yc - 1.35 * hh - 0.05, yc + 1.35 * hh + 0.05)  # the soft edge included
    W = p["ctr"] * (2.0 * (p["lung_x"] + p["lung_ax"] * 1.04))
    u = X - p["spine_x"] - 0.04
    a = u * ((u < 0) * (1.0 / (0.37 * W) - 1.0 / (0.63 * W)) + 1.0 / (0.63 * W))  # per column
    v = (Y[:, rows] - yc) / hh
    uu = a - (0.35 * a) * v
    e = uu * uu + v * v
    occupied[:, rows] = ramp(1.0 - e, max(0.05, 10 * c.px))
    # Upper mediastinum (widened in Enlarged Cardiomediastinum via med_w), merging into the heart.
    rows = c.rows(-2.0, yc + 0.12)
    Yr = Y[:, rows]
    wm = p["med_w"] * (1.0 + 0.35 * np.clip((Yr + 0.35) * (1 / 0.45), 0.0, 1.0))
    med = ramp(wm - np.abs(X - mx[:, rows] - 0.01), 1.5 * c.px) * ramp(yc - Yr, 0.2)
    np.maximum(occupied[:, rows], med, out=occupied[:, rows])
    rows = c.rows(-0.33 - 1.15 * p["aorta"] - c.px, -0.33 + 1.15 * p["aorta"] + c.px)  # aortic knob
    ky, wk = (
        Y[:, rows] + 0.33,
        p["med_w"] * (1.0 + 0.35 * np.clip((Y[:, rows] + 0.35) * (1 / 0.45), 0.0, 1.0)),
    )
    kx = X - mx[:, rows] - wk * 0.8
    knob = ramp(1.0 - (kx * kx + ky * ky) * (1.0 / (p["aorta"] * p["aorta"])), 0.35)
    np.maximum(occupied[:, rows], knob, out=occupied[:, rows])
    c.A += 0.12 * occupied
    # Trachea (air) down to the carina, hila (pulmonary arteries).
    carina = p["apex"] + 0.48
    rows = c.rows(-2.0, carina + 0.03)
    c.A[:, rows] -= 0.28 * ramp(0.026 - np.abs(X - mx[:, rows]), c.px) * ramp(carina - Y[:, rows], 0.03)
    rows = c.rows(carina - 0.01, carina + 0.36)
    hx, hy = c.ax - 0.23, Y[:, rows] - carina - 0.17
    c.A[:, rows] += (p["hilum"] * p["hila_boost"]) * bump(hx * hx * (1 / 0.02) + hy * hy * (1 / 0.03))
    return occupied


def paint_lungs(c: Canvas, occupied: np.ndarray) -> None:
    """Air in both lungs (less at the periphery and behind the heart), the domes, gastric bubble."""
    p, ax = c.p, c.ax
    lx, apex = p["lung_x"], p["apex"]
    dr, dl = p["dia_r"] - p["elev_r"], p["dia_l"] - p["elev_l"]
    rows = c.lung_rows()
    Y = c.Y[:, rows]
    d = ax - lx + 0.03
    dome = c.left * (dl - dr) + dr + 0.9 * d * d  # per column: peaks mid-lung, deep lateral recess
    inv_w = 1.0 / (p["lung_ax"] * (0.86 + 0.18 * np.clip((Y - apex) * 0.9, 0.0, 1.0)))  # wider at the base
    q = np.abs(ax - lx) * inv_w
    vert = np.maximum(apex + 0.7 - Y, 0.0) * (1 / 0.7)
    L = q * q * np.sqrt(q) + vert * vert  # level: < 1 inside the thoracic cavity
    mask = ramp(1.0 - L, max(0.04, 11 * c.px)) * ramp(dome - Y, 1.5 * c.px)
    # c.lung: how much aerated lung a pixel sees (some retrocardiac lung shows through the heart).
    lung = mask * (1.0 - 0.82 * occupied[:, rows])
    c.lung[:, rows], c.level[:, rows], c.dome[:, rows] = lung, L, dome
    c.A[:, rows] -= lung * (0.63 + 0.27 * np.clip(1.0 - L, 0.0, 1.0))  # less air at the periphery
    rows = c.rows(p["dia_l"], p["dia_l"] + 0.2)  # gastric air under the left hemidiaphragm
    gx, gy = (c.X - p["spine_x"] - 0.33) * (1 / 0.09), (c.Y[:, rows] - p["dia_l"] - 0.12) * (1 / 0.05)
    c.A[:, rows] -= (0.4 * p["bubble"]) * ramp(1.0 - gx * gx - gy * gy, 0.5)


def paint_bones(c: Canvas) -> None:
    """Spine, posterior and anterior ribs, clavicles, scapulae (both sides at once)."""
    p, ax = c.p, c.ax
    rows = c.rows(-2.0, 0.95)  # the spine reaches the top edge
    Y = c.Y[:, rows]
    vertebrae = (1.0 - 0.5 * frac_dist(Y * (1 / 0.115))) * ramp(0.45 - Y, 0.2)  # disc spaces
    spine = ramp(0.06 - np.abs(c.X - c.mx[:, rows]), c.px) * vertebrae
    S = np.abs(c.X - p["spine_x"])  # ribs hang off the (straight) spine: per column
    wall = p["lung_x"] + p["lung_ax"] + 0.05
    inside = ramp(S - 0.05, 0.03) * ramp(wall - S, 0.04)
    # Posterior ribs: a short rise from the spine, then falling steeply to the lateral wall.
    inv = 1.0 / p["rib_sp"]
    row = (Y - p["rib_y0"]) * inv
    ribs = np.clip(1.8 - 8.0 * frac_dist(row + S * (0.35 * inv - (p["rib_curv"] * inv) * S)), 0.0, 1.0)
    ribs *= np.clip(np.minimum(row + 0.6, 10.5 - row), 0.0, 1.0)  # ten ribs
    # Anterior ribs: fainter, sloping down towards the sternum.
    inv = 1.0 / (1.1 * p["rib_sp"])
    row = (Y - p["rib_y0"] - 0.3) * inv
    front = np.clip(1.0 - 10.0 * frac_dist(row + S * (0.5 * inv - (0.3 * inv) * S)), 0.0, 1.0)
    front *= np.clip(np.minimum(row + 0.5, 6.0 - row), 0.0, 1.0)
    c.A[:, rows] += 0.13 * spine + (0.11 * inside) * ribs + (0.05 * inside * ramp(S - 0.15, 0.05)) * front
    # Clavicles: from the sternal notch, rising laterally with a gentle S curve.
    rows = c.rows(-2.0, p["clav_y"] + 0.06 + c.px)
    t = ax - 0.07
    u = np.clip(t * (1 / 0.58), 0.0, 1.0)
    yc = p["clav_y"] - p["clav_slope"] * t + 0.26 * u * (1.0 - u) * (1.0 - 2.0 * u)
    ends = 0.3 * ramp(t, 0.03) * ramp(0.62 - t, 0.05)
    c.A[:, rows] += ends * ramp(0.028 - np.abs(c.Y[:, rows] - yc), c.px)
    # Scapulae: the medial border crosses the upper lateral lung on AP films.
    rows = c.rows(-0.9, -0.05)
    Y = c.Y[:, rows]
    edge = wall - 0.04 - 0.16 * p["ap"] - 0.12 * (Y + 0.7)
    band = (0.04 + 0.08 * p["ap"]) * ramp(-0.1 - Y, 0.08) * ramp(Y + 0.85, 0.05)
    c.A[:, rows] += band * ramp(ax - edge, 0.02)


def paint_vessels(c: Canvas) -> None:
    """Lung markings (from the vessel bank), larger in the lower zones; edema redistributes them."""
    p = c.p
    rows = c.lung_rows()
    dy = c.Y[:, rows] - p["apex"] - 0.63
    zone = (p["v_amp"] * p["v_boost"]) * (1.0 + 0.5 * ramp(dy, 0.3) + p["ceph"] * ramp(-dy, 0.3))
    c.A[:, rows] += (zone * c.vessels[:, rows]) * ((1.0 - c.quiet[:, rows]) * c.lung[:, rows])
