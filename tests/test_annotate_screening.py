"""ITU-R BT.500 observer screening and the MOS export built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kvq.annotate.export import compute_mos
from kvq.annotate.screening import bt500_screen
from kvq.annotate.storage import Rating


def reference_screen(scores: np.ndarray) -> tuple[list[int], list[int], list[int], list[bool]]:
    """The procedure as the standard words it, one observer and presentation at a time."""
    observers, presentations = scores.shape
    p, q, n = [0] * observers, [0] * observers, [0] * observers
    for j in range(presentations):
        column = [(i, scores[i, j]) for i in range(observers) if not math.isnan(scores[i, j])]
        if len(column) < 2:
            continue
        values = np.array([u for _, u in column])
        mean = values.mean()
        std = values.std(ddof=1)
        beta2 = stats.kurtosis(values, fisher=False) if std > 0 else float("nan")
        threshold = (2 if 2 <= beta2 <= 4 else math.sqrt(20)) * std
        for i, u in column:
            n[i] += 1
            if std > 0 and u >= mean + threshold:
                p[i] += 1
            if std > 0 and u <= mean - threshold:
                q[i] += 1
    rejected = [
        (p[i] + q[i]) / n[i] > 0.05 and abs((p[i] - q[i]) / (p[i] + q[i])) < 0.3
        if n[i] and p[i] + q[i]
        else False
        for i in range(observers)
    ]
    return p, q, n, rejected


def panel(rng: np.random.Generator, honest: int, presentations: int = 200) -> np.ndarray:
    """Honest observers: a true quality per presentation plus noise, on the 0.5-step scale."""
    truth = rng.uniform(1.5, 4.5, size=presentations)
    noisy = truth + rng.normal(scale=0.4, size=(honest, presentations))
    return np.clip(np.round(noisy * 2) / 2, 1, 5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_the_literal_procedure_on_random_data_with_gaps(seed):
    rng = np.random.default_rng(seed)
    scores = panel(rng, honest=14, presentations=120)
    scores[:3] = rng.integers(2, 11, size=(3, 120)) / 2  # three careless observers
    scores[rng.random(scores.shape) < 0.15] = np.nan  # not everybody rated everything
    scores[:, :4] = 3.0  # presentations everybody agrees on
    got = bt500_screen(scores)
    p, q, n, rejected = reference_screen(scores)
    np.testing.assert_array_equal(got.p, p)
    np.testing.assert_array_equal(got.q, q)
    np.testing.assert_array_equal(got.n, n)
    np.testing.assert_array_equal(got.rejected, rejected)
    assert got.p.sum() + got.q.sum() > 0  # the comparison above is not vacuous


def test_careless_observers_are_rejected_and_consistent_ones_kept():
    rng = np.random.default_rng(7)
    scores = panel(rng, honest=16)
    random_rater = rng.integers(2, 11, size=(1, scores.shape[1])) / 2
    strict_rater = np.clip(scores[:1] - 1.5, 1, 5)  # always 1.5 below an honest rater
    result = bt500_screen(np.vstack([scores, random_rater, strict_rater]))
    assert result.rejected[16], "a rater scoring at random must be rejected"
    assert not result.rejected[17], "a consistently strict rater is shifted, not scattered"
    assert result.p[17] == 0 and result.q[17] > 0
    assert result.rejected[:16].sum() <= 1


def test_no_rejection_without_disagreement_or_data():
    assert not bt500_screen(np.full((20, 30), 4.0)).rejected.any()
    single = bt500_screen(np.array([[3.0, np.nan], [np.nan, 2.0]]))
    assert not single.rejected.any() and single.n.tolist() == [0, 0]
    with pytest.raises(ValueError):
        bt500_screen(np.zeros(5))


def test_mos_leaves_out_rejected_raters_and_incomplete_images():
    rng = np.random.default_rng(8)
    honest = panel(rng, honest=15, presentations=2 * 49).reshape(15, 2, 49)
    careless = rng.integers(2, 11, size=(1, 2, 49)) / 2
    scores = np.concatenate([honest, careless])
    ratings = [
        Rating(f"r{k:02d}", f"img{j}.png", cell, float(scores[k, j, cell]), 0.0)
        for k in range(16)
        for j in range(2)
        for cell in range(49)
        if not (k == 0 and j == 1 and cell == 48)  # r00 did not finish img1
    ]
    grids, report = compute_mos(ratings)
    assert [r.name for r in report.raters if r.rejected] == ["r15"]
    assert report.raters[0].images_complete == 1
    np.testing.assert_allclose(grids["img0.png"].ravel(), honest[:, 0].mean(axis=0))
    np.testing.assert_allclose(grids["img1.png"].ravel(), honest[1:, 1].mean(axis=0))
    unscreened, _ = compute_mos(ratings, screening=False)
    np.testing.assert_allclose(unscreened["img0.png"].ravel(), scores[:, 0].mean(axis=0))
    _, strict = compute_mos(ratings, min_raters=15)
    assert strict.images_left_out == {"img1.png": 14}
