import itertools

import numpy as np
import pytest
from scipy import stats

from kvq.eval.metrics import (
    MetricError,
    compute_metrics,
    fit_logistic,
    krcc,
    linear_rescale,
    logistic4,
    plcc,
    rmse,
    srcc,
    within_group_srcc,
)


def _kendall_tau_b_bruteforce(x, y):
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    n0 = concordant + discordant
    return (concordant - discordant) / np.sqrt((n0 + ties_x) * (n0 + ties_y))


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scipy_on_random_data(seed):
    rng = np.random.default_rng(seed)
    mos = rng.uniform(1, 5, 60)
    pred = 0.7 * mos + rng.normal(0, 0.8, 60)
    pred[:10] = np.round(pred[:10])  # some ties
    assert srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-12)
    assert plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=1e-12)
    assert krcc(pred, mos) == pytest.approx(_kendall_tau_b_bruteforce(pred, mos), abs=1e-12)
    assert rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)), abs=1e-12)


def test_linear_mapping_matches_label_moments_and_keeps_plcc():
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 100, 50)
    pred = 0.01 * mos + rng.normal(0, 0.2, 50) - 3
    mapped = linear_rescale(pred, mos)
    assert mapped.mean() == pytest.approx(mos.mean())
    assert mapped.std() == pytest.approx(mos.std())
    result = compute_metrics(pred, mos)
    assert result.mapping == "linear"
    assert result.plcc == pytest.approx(stats.pearsonr(pred, mos).statistic)
    assert result.rmse == pytest.approx(np.sqrt(np.mean((mapped - mos) ** 2)))
    assert result.rmse < rmse(pred, mos)  # unmapped predictions live on another scale


@pytest.mark.parametrize("sign", [1, -1])
def test_logistic_fit_recovers_known_parameters(sign):
    rng = np.random.default_rng(1)
    true = np.array([4.6, 1.3, 0.4, 0.25])
    pred = sign * rng.uniform(-1, 2, 400)
    mos = logistic4(sign * pred, *true)
    fitted = fit_logistic(pred, mos)
    np.testing.assert_allclose(logistic4(pred, *fitted), mos, atol=1e-6)
    b1, b2, b3, b4 = fitted
    if sign > 0:
        np.testing.assert_allclose([b1, b2, b3, abs(b4)], true, rtol=1e-4)
    else:  # the mirrored curve: asymptotes swap, centre flips sign
        np.testing.assert_allclose([b2, b1, -b3, abs(b4)], true, rtol=1e-4)


def test_logistic_mapping_beats_linear_on_a_saturating_relation():
    rng = np.random.default_rng(2)
    pred = rng.uniform(-3, 3, 300)
    mos = logistic4(pred, 5, 1, 0, 0.5) + rng.normal(0, 0.05, 300)
    linear, logistic = compute_metrics(pred, mos), compute_metrics(pred, mos, "logistic")
    assert logistic.mapping == "logistic"
    assert logistic.srcc == linear.srcc  # rank metrics do not depend on the mapping
    assert logistic.plcc > linear.plcc + 0.02
    assert logistic.rmse < linear.rmse


def test_bad_inputs_raise_metric_error():
    with pytest.raises(MetricError, match="3 predictions for 4 labels"):
        compute_metrics([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(MetricError, match="at least 3"):
        srcc([1, 2], [1, 2])
    with pytest.raises(MetricError, match="finite"):
        plcc([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(MetricError, match="mapping"):
        compute_metrics([1, 2, 3], [1, 2, 3], "cubic")


def test_constant_predictions_give_nan_correlations_not_errors():
    result = compute_metrics(np.zeros(10), np.arange(10.0))
    assert np.isnan(result.srcc) and np.isnan(result.plcc) and np.isnan(result.krcc)
    assert result.rmse == pytest.approx(np.arange(10.0).std())


def test_within_group_srcc_ignores_the_offset_between_contents():
    # Two contents, each ordered right inside, but content b sits far above content a: the
    # global SRCC is poor, the within-group SRCC perfect; then one group reversed.
    mos = np.array([5.0, 4.0, 3.0, 2.0, 5.0, 4.0, 3.0, 2.0])
    pred = np.array([0.4, 0.3, 0.2, 0.1, 1.4, 1.3, 1.2, 1.1])
    groups = ["a"] * 4 + ["b"] * 4
    assert srcc(pred, mos) < 0.5
    result = within_group_srcc(pred, mos, groups)
    assert (result.srcc, result.groups, result.undefined) == (1.0, 2, 0)
    pred[4:] = pred[4:][::-1]
    assert within_group_srcc(pred, mos, groups).srcc == pytest.approx(0.0)


def test_within_group_srcc_skips_groups_without_an_order_and_counts_flat_predictions_as_zero():
    mos = np.array([5.0, 3.0, 4.0, 4.0, 2.0, 5.0, 1.0])
    pred = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.7, 0.7])
    groups = ["a", "a", "same-labels", "same-labels", "alone", "flat", "flat"]
    result = within_group_srcc(pred, mos, groups)
    assert (result.srcc, result.groups, result.undefined) == (0.5, 2, 2)  # mean of 1 and 0
    with pytest.raises(MetricError, match="groups"):
        within_group_srcc(pred, mos, groups[:-1])
    with pytest.raises(MetricError, match="no group"):
        within_group_srcc(pred[2:5], mos[2:5], groups[2:5])
