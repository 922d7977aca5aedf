"""LPVQ inter/intra-sample metrics against an independent computation with scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kvq.eval.metrics import MetricError
from kvq.lpvq.metrics import lpvq_metrics


def random_campaign(seed: int, images: int = 12) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    labels = {f"im{i}.png": rng.integers(2, 11, size=(7, 7)) / 2 for i in range(images)}
    # Predictions correlate with the labels to a varying degree per image, on another scale.
    predicted = {
        name: 0.3 * grid * rng.uniform(0, 1) + rng.normal(size=(7, 7)) + 7.0
        for name, grid in labels.items()
    }
    return predicted, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scipy_on_random_grids(seed):
    predicted, labels = random_campaign(seed)
    got = lpvq_metrics(predicted, labels)

    per_s = [stats.spearmanr(predicted[n].ravel(), labels[n].ravel())[0] for n in labels]
    per_p = [stats.pearsonr(predicted[n].ravel(), labels[n].ravel())[0] for n in labels]
    pooled_pred = np.concatenate([predicted[n].ravel() for n in labels])
    pooled_true = np.concatenate([labels[n].ravel() for n in labels])

    assert got.num_images == 12 and got.num_undefined == 0
    np.testing.assert_allclose(got.intra_srcc, np.mean(per_s), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.intra_plcc, np.mean(per_p), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        got.inter_srcc, stats.spearmanr(pooled_pred, pooled_true)[0], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        got.inter_plcc, stats.pearsonr(pooled_pred, pooled_true)[0], rtol=0, atol=1e-12
    )
    assert [r.name for r in got.per_image] == list(labels)
    np.testing.assert_allclose([r.srcc for r in got.per_image], per_s, atol=1e-12)
    np.testing.assert_allclose([r.plcc for r in got.per_image], per_p, atol=1e-12)


def test_pairs_are_matched_by_name_not_order():
    predicted, labels = random_campaign(3)
    reordered = dict(reversed(list(predicted.items())))
    reordered["unlabelled.png"] = np.zeros((7, 7))  # ignored
    assert lpvq_metrics(reordered, labels) == lpvq_metrics(predicted, labels)


def test_inter_and_intra_differ_when_images_differ_in_level():
    # Within each image the prediction ranks cells backwards, but good images get higher
    # predictions overall: intra is negative, inter positive. The two must not be confused.
    rng = np.random.default_rng(4)
    labels, predicted = {}, {}
    for i, level in enumerate((1.5, 3.0, 4.5)):
        grid = level + rng.uniform(-0.5, 0.5, size=(7, 7))
        labels[f"{i}.png"] = grid
        predicted[f"{i}.png"] = 10 * level - grid
    got = lpvq_metrics(predicted, labels)
    assert got.intra_srcc == pytest.approx(-1.0) and got.intra_plcc == pytest.approx(-1.0)
    assert got.inter_srcc > 0.5 and got.inter_plcc > 0.5


def test_constant_grids_are_left_out_of_the_intra_mean():
    predicted, labels = random_campaign(5, images=4)
    predicted["im0.png"] = np.full((7, 7), 3.0)
    got = lpvq_metrics(predicted, labels)
    assert got.num_undefined == 1 and np.isnan(got.per_image[0].srcc)
    rest = [n for n in labels if n != "im0.png"]
    expected = np.mean([stats.spearmanr(predicted[n].ravel(), labels[n].ravel())[0] for n in rest])
    assert got.intra_srcc == pytest.approx(expected, abs=1e-12)
    assert np.isfinite(got.inter_srcc)


@pytest.mark.parametrize(
    ("predicted", "labels", "match"),
    [
        ({}, {}, "no labelled images"),
        ({}, {"a.png": np.ones((7, 7))}, "no prediction"),
        ({"a.png": np.ones((6, 7))}, {"a.png": np.ones((7, 7))}, "7×7"),
        ({"a.png": np.full((7, 7), np.nan)}, {"a.png": np.ones((7, 7))}, "non-finite"),
    ],
)
def test_bad_input_raises_metric_error(predicted, labels, match):
    with pytest.raises(MetricError, match=match):
        lpvq_metrics(predicted, labels)
