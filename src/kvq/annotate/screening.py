"""Observer screening of ITU-R BT.500 ("screening of the observers", Annex 2 §2.3.1 of BT.500-13).

Every rated item (here: one cell of one image) is a *presentation* ``j``. For each presentation,
over the observers who rated it, take the mean ``ū_j``, the sample standard deviation ``S_j``
and the kurtosis ``β2_j = m4 / m2²`` (moments about the mean, ``m_k = Σ(u − ū)^k / n``). The
scores are taken as normally distributed when ``2 ≤ β2_j ≤ 4``, and the outlier threshold is
then ``2·S_j``; otherwise it is ``√20·S_j``. For observer ``i``::

    P_i += 1 when u_ij ≥ ū_j + threshold_j
    Q_i += 1 when u_ij ≤ ū_j − threshold_j

and the observer is rejected when ``(P_i + Q_i) / N_i > 0.05`` **and**
``|(P_i − Q_i) / (P_i + Q_i)| < 0.3``, where ``N_i`` is the number of screened scores the
observer gave. The second condition keeps observers who are consistently stricter or more
lenient than the others: their scores shift but do not scatter.

Missing scores (NaN) are allowed. Presentations with fewer than two scores cannot be screened
and count for nobody. A presentation whose scores all agree (``S_j = 0``) has no outliers (the
literal ``≥`` rule would otherwise flag every observer on it). With ``n`` observers no score can
lie further than ``(n − 1)/√n`` standard deviations from the mean, so the 2·S rule needs at
least 6 observers per presentation to flag anyone, and the √20·S rule 22: BT.500 asks for 15 or
more observers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NORMAL_KURTOSIS_RANGE = (2.0, 4.0)
REJECT_OUTLIER_FRACTION = 0.05
REJECT_MAX_ASYMMETRY = 0.3


@dataclass(frozen=True)
class ScreeningResult:
    """Per observer: outliers above (``p``) and below (``q``), screened scores ``n`` and verdict.

    All arrays have shape (num_observers,).
    """

    p: np.ndarray
    q: np.ndarray
    n: np.ndarray
    rejected: np.ndarray


def bt500_screen(scores: np.ndarray) -> ScreeningResult:
    """Screen observers with the BT.500 procedure.

    ``scores``: (num_observers, num_presentations) float, NaN where an observer gave no score.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (observers, presentations), got shape {scores.shape}")
    given = ~np.isnan(scores)
    count = given.sum(axis=0)
    screened = count >= 2
    x = np.where(given, scores, 0.0)
    safe_count = np.maximum(count, 1)
    mean = x.sum(axis=0) / safe_count
    dev = np.where(given, scores - mean, 0.0)
    m2 = (dev**2).sum(axis=0) / safe_count
    m4 = (dev**4).sum(axis=0) / safe_count
    std = np.sqrt((dev**2).sum(axis=0) / np.maximum(count - 1, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        kurtosis = np.where(m2 > 0, m4 / np.where(m2 > 0, m2, 1.0) ** 2, np.nan)
    lo, hi = NORMAL_KURTOSIS_RANGE
    normal = (kurtosis >= lo) & (kurtosis <= hi)
    threshold = np.where(normal, 2.0, math.sqrt(20.0)) * std
    active = given & (screened & (std > 0))[None, :]
    p = (active & (scores >= mean + threshold)).sum(axis=1)
    q = (active & (scores <= mean - threshold)).sum(axis=1)
    n = (given & screened[None, :]).sum(axis=1)
    outliers = p + q
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(n > 0, outliers / np.maximum(n, 1), 0.0)
        asymmetry = np.where(outliers > 0, np.abs(p - q) / np.maximum(outliers, 1), 1.0)
    rejected = (fraction > REJECT_OUTLIER_FRACTION) & (asymmetry < REJECT_MAX_ASYMMETRY)
    return ScreeningResult(p=p, q=q, n=n, rejected=rejected)
