"""LPVQ local-perception metrics (docs/design.md, *Evaluation*; supplement §3.2 and Tab. 9).

Every image has a labelled 7×7 grid of patch MOS and a predicted 7×7 grid (the model's local
quality map Q averaged over time and pooled to 7×7, see :func:`kvq.lpvq.grid.local_grid`).
Cells pair up by position (row-major, ``(r, c)`` from 0).

* **Intra-sample** SRCC / PLCC: the correlation between the 49 predicted and the 49 labelled
  cells of *one* image, computed per image and then averaged (arithmetic mean) over images. It
  asks whether the model ranks the regions *within* an image correctly. An image whose
  predicted or labelled grid is constant has no defined correlation; it is left out of the mean
  and counted in ``num_undefined``.
* **Inter-sample** SRCC / PLCC: one correlation over the cells of *all* images pooled
  (49 × num_images pairs). It also asks whether a region of a good image scores above a region
  of a bad one.

PLCC is the Pearson correlation of the raw values: the linear rescale of the FAST-VQA protocol
does not change it. SRCC ranks ties by their average rank (scores come in 0.5 steps, so ties
are common). Both come from :mod:`kvq.eval.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kvq.eval.metrics import MetricError, plcc, srcc
from kvq.lpvq.grid import LPVQ_GRID


@dataclass(frozen=True)
class LpvqImageResult:
    """Intra-sample correlations of one image (NaN where undefined)."""

    name: str
    srcc: float
    plcc: float


@dataclass(frozen=True)
class LpvqMetrics:
    """Inter- and intra-sample SRCC/PLCC over ``num_images`` images, with per-image rows."""

    inter_srcc: float
    inter_plcc: float
    intra_srcc: float
    intra_plcc: float
    num_images: int
    num_undefined: int
    per_image: tuple[LpvqImageResult, ...]


def _grid(name: str, what: str, grid: np.ndarray) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64)
    if g.shape != (LPVQ_GRID, LPVQ_GRID):
        raise MetricError(f"{name}: the {what} grid must be 7×7, got shape {g.shape}")
    if not np.isfinite(g).all():
        raise MetricError(f"{name}: the {what} grid has non-finite values")
    return g.ravel()


def lpvq_metrics(
    predicted: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]
) -> LpvqMetrics:
    """Inter- and intra-sample SRCC/PLCC of ``predicted`` against ``labels``.

    Both map an image name to a (7, 7) grid. Every labelled image needs a prediction;
    predictions of unlabelled images are ignored. Raises :class:`MetricError` on bad input.
    """
    if not labels:
        raise MetricError("no labelled images")
    missing = [name for name in labels if name not in predicted]
    if missing:
        raise MetricError(f"{len(missing)} labelled images have no prediction, e.g. {missing[0]}")
    pred = {name: _grid(name, "predicted", predicted[name]) for name in labels}
    true = {name: _grid(name, "labelled", labels[name]) for name in labels}
    rows = tuple(
        LpvqImageResult(name, srcc(pred[name], true[name]), plcc(pred[name], true[name]))
        for name in labels
    )
    intra_s = np.array([r.srcc for r in rows])
    intra_p = np.array([r.plcc for r in rows])
    defined = ~(np.isnan(intra_s) | np.isnan(intra_p))
    all_pred = np.concatenate(list(pred.values()))
    all_true = np.concatenate(list(true.values()))
    return LpvqMetrics(
        inter_srcc=srcc(all_pred, all_true),
        inter_plcc=plcc(all_pred, all_true),
        intra_srcc=float(intra_s[defined].mean()) if defined.any() else float("nan"),
        intra_plcc=float(intra_p[defined].mean()) if defined.any() else float("nan"),
        num_images=len(rows),
        num_undefined=int((~defined).sum()),
        per_image=rows,
    )
