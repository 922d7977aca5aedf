"""Scatter plot of predictions against MOS as a PNG, drawn with Pillow (no plotting library)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_W, _H, _MARGIN = 640, 480, 60


def _ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    return np.linspace(low, high, count)


def scatter_png(
    pred: np.ndarray,
    mos: np.ndarray,
    path: str | Path,
    title: str = "",
    fit: np.ndarray | None = None,
) -> Path:
    """Draw ``mos`` (y) against ``pred`` (x) with axis ticks and ``title``; ``fit``: the
    mapped predictions, drawn as a curve over the sorted predictions."""
    pred, mos = np.asarray(pred, float), np.asarray(mos, float)
    image = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(image)
    x0, x1 = float(pred.min()), float(pred.max())
    y0, y1 = float(mos.min()), float(mos.max())
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def to_px(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        px = _MARGIN + (x - x0) / (x1 - x0) * (_W - 2 * _MARGIN)
        py = _H - _MARGIN - (y - y0) / (y1 - y0) * (_H - 2 * _MARGIN)
        return px, py

    draw.rectangle([_MARGIN, _MARGIN, _W - _MARGIN, _H - _MARGIN], outline="black")
    xs, ys = _ticks(x0, x1), _ticks(y0, y1)
    for value, px in zip(xs, to_px(xs, np.full_like(xs, y0))[0]):
        draw.line([px, _H - _MARGIN, px, _H - _MARGIN + 5], fill="black")
        draw.text((px - 15, _H - _MARGIN + 8), f"{value:.3g}", fill="black")
    for value, py in zip(ys, to_px(np.full_like(ys, x0), ys)[1]):
        draw.line([_MARGIN - 5, py, _MARGIN, py], fill="black")
        draw.text((8, py - 6), f"{value:.3g}", fill="black")
    draw.text((_W // 2 - 30, _H - 22), "prediction", fill="black")
    draw.text((8, 20), "MOS", fill="black")
    draw.text((_MARGIN, 20), title, fill="black")
    for px, py in zip(*to_px(pred, mos)):
        draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=(31, 119, 180))
    if fit is not None:
        order = np.argsort(pred)
        px, py = to_px(pred[order], np.clip(np.asarray(fit, float)[order], y0, y1))
        draw.line(list(zip(px.tolist(), py.tolist())), fill=(214, 39, 40), width=2)
    path = Path(path)
    image.save(path)
    return path
