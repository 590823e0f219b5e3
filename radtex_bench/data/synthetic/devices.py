"""Painting support devices: tubes and lines, the pacemaker generator, sternotomy wires.

Devices are radiopaque polylines in the patient frame; one pass per device signature across a
chunk, inside the bounding box of the paths.
"""

from __future__ import annotations

import numpy as np

from .canvas import Canvas, col, ramp
from .model import Study


def _seg_dist(X, Y, x0, y0, x1, y1):
    """Distance from every pixel to the segment (x0, y0)-(x1, y1); arguments broadcast."""
    dx, dy = x1 - x0, y1 - y0
    inv = 1.0 / (dx * dx + dy * dy + 1e-9)
    t = np.clip((X - x0) * (dx * inv) + (Y - y0) * (dy * inv), 0.0, 1.0)
    ex, ey = X - x0 - t * dx, Y - y0 - t * dy
    return np.sqrt(ex * ex + ey * ey)


def _device_paths(s: Study) -> list[tuple[list[list[float]], float, float]]:
    """Polylines (patient frame) of one study's devices, with half-width and brightness."""
    a, d = s.anat, s.devices
    x0, carina, dia_l = a["spine_x"], a["apex"] + 0.48, a["dia_l"]
    out = []
    if "ett" in d:
        tip = carina - d["ett"]["above_carina_cm"] / 18.0  # ~18 cm per unit
        out.append(([[x0 + 0.01, -1.1], [x0, -0.7], [x0 - 0.005, tip]], 0.01, 0.9))
    if "ng" in d:
        out.append(
            (
                [
                    [x0 + 0.03, -1.1],
                    [x0 + 0.015, -0.4],
                    [x0 + 0.05, dia_l],
                    [x0 + 0.2, dia_l + 0.12],
                    [x0 + 0.32, dia_l + 0.1],
                ],
                0.008,
                0.8,
            )
        )
    if "cvc" in d:
        ty = carina + {"mid SVC": 0.02, "lower SVC": 0.1, "cavoatrial junction": 0.2}[d["cvc"]["tip"]]
        path = {
            "right internal jugular": [[x0 - 0.26, -1.1], [x0 - 0.16, -0.7], [x0 - 0.08, -0.45]],
            "left subclavian": [[0.8, -0.78], [0.45, -0.66], [0.15, -0.58], [x0 - 0.06, -0.45]],
            "right PICC": [[-0.99, -0.55], [-0.7, -0.68], [-0.3, -0.62], [x0 - 0.08, -0.45]],
        }[d["cvc"]["route"]]
        out.append((path + [[x0 - 0.07, ty]], 0.008, 0.75))
    if "pacemaker" in d:
        out.append(
            (
                [
                    [0.45, -0.56],
                    [0.2, -0.5],
                    [x0 - 0.04, -0.36],
                    [x0 - 0.07, carina + 0.28],
                    [x0 + 0.12, dia_l - 0.04],
                ],
                0.009,
                1.0,
            )
        )
    if "chest_tube" in d:
        sg = d["chest_tube"]["side"]
        out.append(([[sg * 0.95, 0.4], [sg * 0.72, 0.3], [sg * 0.62, -0.2], [sg * 0.45, -0.58]], 0.016, 0.7))
    return out


def paint_devices(c: Canvas, studies: list[Study]) -> None:
    """Radiopaque tubes and lines, the pacemaker generator, sternotomy wires: one pass per device
    signature (paths with the same number of points) across the chunk, inside its bounding box."""
    paths: dict[tuple[int, float, float], tuple[list[int], list[list[list[float]]]]] = {}
    boxes, wires = [], []
    for i, s in enumerate(studies):
        for pts, half, amp in _device_paths(s):
            idx, pp = paths.setdefault((len(pts), half, amp), ([], []))
            idx.append(i)
            pp.append(pts)
        if "pacemaker" in s.devices:
            boxes.append(i)
        if s.chronic["sternotomy"]:
            wires.append(i)
    for (_, half, amp), (idx, pp) in sorted(paths.items()):  # a fixed order, whatever the chunk
        m = half + c.px
        for layer in _unique_layers(idx):  # two devices of one signature in an image: two passes
            ii = np.asarray([idx[j] for j in layer])
            pts = np.asarray([pp[j] for j in layer], dtype=np.float32)  # [k, points, 2]
            rows = c.rows(float(pts[..., 1].min()) - m, float(pts[..., 1].max()) + m, ii)
            cols = c.cols(float(pts[..., 0].min()) - m, float(pts[..., 0].max()) + m, ii)
            X, Y = c.X[ii][:, :, cols], c.Y[ii, rows]
            d = None
            for j in range(pts.shape[1] - 1):
                seg = [col(pts[:, j + a, b]) for a in (0, 1) for b in (0, 1)]
                dj = _seg_dist(X, Y, seg[0], seg[1], seg[2], seg[3])
                d = dj if d is None else np.minimum(d, dj)
            c.A[ii, rows, cols] += amp * ramp(half - d, c.px)
    if boxes:  # pacemaker generator in the left upper chest
        ii = np.asarray(boxes)
        rows, cols = c.rows(-0.64 - c.px, -0.52 + c.px, ii), c.cols(0.415 - c.px, 0.585 + c.px, ii)
        c.A[ii, rows, cols] += (
            1.6
            * ramp(0.085 - np.abs(c.X[ii][:, :, cols] - 0.5), c.px)
            * ramp(0.06 - np.abs(c.Y[ii, rows] + 0.58), c.px)
        )
    if wires:  # sternotomy wires: small loops down the midline
        ii = np.asarray(wires)
        rows, cols = c.rows(-0.55 - c.px, 0.22 + c.px, ii), c.cols(-0.15 - c.px, 0.15 + c.px, ii)
        dx = c.X[ii][:, :, cols] - c.p["spine_x"][ii]
        for k in range(6):
            dy = (c.Y[ii, rows] + 0.48 - 0.12 * k) * 1.6
            c.A[ii, rows, cols] += 0.9 * ramp(0.008 - np.abs(np.sqrt(dx * dx + dy * dy) - 0.02), c.px)


def _unique_layers(idx: list[int]) -> list[list[int]]:
    """Split positions of ``idx`` into layers in which every image index occurs once."""
    layers: list[list[int]] = []
    seen: list[set[int]] = []
    for j, i in enumerate(idx):
        for layer, used in zip(layers, seen):
            if i not in used:
                layer.append(j)
                used.add(i)
                break
        else:
            layers.append([j])
            seen.append({i})
    return layers
