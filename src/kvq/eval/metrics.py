"""Correlation metrics of video quality assessment (docs/design.md, *Evaluation*).

SRCC and KRCC compare rankings and need no mapping. PLCC and RMSE compare values, so the
predictions are first mapped onto the MOS scale, either

* ``"linear"`` — rescaled to the labels' mean and standard deviation (the FAST-VQA/KVQ
  protocol; PLCC is unchanged by it, RMSE becomes meaningful), or
* ``"logistic"`` — the VQEG four-parameter logistic
  ``f(x) = (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2`` fitted by least squares.

:class:`QualityMetrics` records which mapping produced its PLCC and RMSE.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import optimize, stats

Mapping = Literal["linear", "logistic"]
MAPPINGS: tuple[str, ...] = ("linear", "logistic")
# The fewest videos the metrics are computed on (a rank correlation of two is always ±1).
MIN_SAMPLES = 3


class MetricError(ValueError):
    """Inputs a metric cannot be computed on (length mismatch, too few or non-finite values)."""


@dataclass(frozen=True)
class QualityMetrics:
    """SRCC, PLCC, KRCC and RMSE of ``n`` predictions; PLCC/RMSE after ``mapping``."""

    srcc: float
    plcc: float
    krcc: float
    rmse: float
    mapping: str
    n: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _as_pair(pred: np.ndarray, mos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).ravel()
    mos = np.asarray(mos, dtype=np.float64).ravel()
    if pred.shape != mos.shape:
        raise MetricError(f"{pred.size} predictions for {mos.size} labels")
    if pred.size < MIN_SAMPLES:
        raise MetricError(f"need at least {MIN_SAMPLES} samples, got {pred.size}")
    if not (np.isfinite(pred).all() and np.isfinite(mos).all()):
        raise MetricError("predictions and labels must be finite")
    return pred, mos


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (the correlation is undefined)."""
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson of the ranks (ties get their average rank), without :func:`srcc`'s size check:
    groups of a few videos use it too."""
    return _pearson(stats.rankdata(a), stats.rankdata(b))


def plcc(pred: np.ndarray, mos: np.ndarray) -> float:
    """Pearson linear correlation coefficient."""
    return _pearson(*_as_pair(pred, mos))


def srcc(pred: np.ndarray, mos: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of the ranks, ties get their average rank)."""
    return _spearman(*_as_pair(pred, mos))


def krcc(pred: np.ndarray, mos: np.ndarray) -> float:
    """Kendall rank correlation, tau-b (tie-corrected)."""
    pred, mos = _as_pair(pred, mos)
    if np.ptp(pred) == 0 or np.ptp(mos) == 0:
        return float("nan")
    return float(stats.kendalltau(pred, mos, variant="b").statistic)


def rmse(pred: np.ndarray, mos: np.ndarray) -> float:
    """Root mean squared error (no mapping; map the predictions first)."""
    pred, mos = _as_pair(pred, mos)
    return float(np.sqrt(np.mean((pred - mos) ** 2)))


def linear_rescale(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Predictions shifted and scaled to the labels' mean and standard deviation."""
    pred, mos = _as_pair(pred, mos)
    std = pred.std()
    centred = pred - pred.mean() if std == 0 else (pred - pred.mean()) / std
    return centred * mos.std() + mos.mean()


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG four-parameter logistic: ``(b1 − b2) / (1 + exp(−(x − b3)/|b4|)) + b2``."""
    z = np.clip(-(np.asarray(x, dtype=np.float64) - b3) / abs(b4), -500.0, 500.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def fit_logistic(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Least-squares fit of :func:`logistic4` mapping ``pred`` onto ``mos`` → ``[b1..b4]``.

    Starts from the VQEG initial guess (asymptotes at the label extremes, centre at the
    prediction mean, slope from the prediction spread; asymptotes swapped for a negative
    correlation) and from a steeper and a flatter slope, keeping the fit with the least
    squared error. Raises :class:`MetricError` when no start converges.
    """
    pred, mos = _as_pair(pred, mos)
    spread = pred.std() or 1.0
    high, low = mos.max(), mos.min()
    if _pearson(pred, mos) < 0:
        high, low = low, high
    best, best_sse = None, np.inf
    for slope in (spread, spread / 4, spread * 4):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                params, _ = optimize.curve_fit(
                    logistic4, pred, mos, p0=[high, low, pred.mean(), slope], maxfev=20000
                )
        except RuntimeError:
            continue
        sse = float(((logistic4(pred, *params) - mos) ** 2).sum())
        if np.isfinite(sse) and sse < best_sse:
            best, best_sse = params, sse
    if best is None:
        raise MetricError("the four-parameter logistic fit did not converge")
    return best


def map_predictions(pred: np.ndarray, mos: np.ndarray, mapping: Mapping) -> np.ndarray:
    """Predictions mapped onto the MOS scale with ``mapping`` (``"linear"`` or ``"logistic"``)."""
    if mapping == "linear":
        return linear_rescale(pred, mos)
    if mapping == "logistic":
        return logistic4(np.asarray(pred, dtype=np.float64), *fit_logistic(pred, mos))
    raise MetricError(f"unknown mapping {mapping!r}; choose one of {MAPPINGS}")


def compute_metrics(
    pred: np.ndarray, mos: np.ndarray, mapping: Mapping = "linear"
) -> QualityMetrics:
    """All four metrics; PLCC and RMSE are taken after ``mapping``."""
    pred, mos = _as_pair(pred, mos)
    mapped = map_predictions(pred, mos, mapping)
    return QualityMetrics(
        srcc=srcc(pred, mos),
        plcc=_pearson(mapped, mos),
        krcc=krcc(pred, mos),
        rmse=rmse(mapped, mos),
        mapping=mapping,
        n=int(pred.size),
    )


@dataclass(frozen=True)
class WithinGroupSRCC:
    """Mean SRCC inside groups of the same content (e.g. one source at graded severities).

    ``groups``: groups with at least two videos and labels that differ (the rest have no
    order to get right); ``undefined``: groups left out for that reason.
    """

    srcc: float
    groups: int
    undefined: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def within_group_srcc(pred: np.ndarray, mos: np.ndarray, groups: Sequence[str]) -> WithinGroupSRCC:
    """SRCC of the predictions inside each group, averaged over groups.

    It asks whether versions of the same content are ranked as their labels are, whatever
    the model's offset between contents; the global SRCC also asks that every content sits at
    the right level. A group whose predictions are all equal counts 0 (it orders nothing).
    """
    pred = np.asarray(pred, dtype=np.float64).ravel()
    mos = np.asarray(mos, dtype=np.float64).ravel()
    if not pred.shape == mos.shape == (len(groups),):
        raise MetricError(f"{pred.size} predictions, {mos.size} labels, {len(groups)} groups")
    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    values, undefined = [], 0
    for idx in members.values():
        p, m = pred[idx], mos[idx]
        if len(idx) < 2 or np.ptp(m) == 0:
            undefined += 1
            continue
        r = _spearman(p, m)
        values.append(0.0 if np.isnan(r) else r)
    if not values:
        raise MetricError("no group has two videos with different labels")
    return WithinGroupSRCC(float(np.mean(values)), len(values), undefined)
