"""The LPVQ 7×7 grid: one pooling of a model's local quality map, the one ``kvq lpvq eval``
used before it moved to :mod:`kvq.lpvq.grid` (adaptive average pooling), and one grid size."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kvq.data.labels
import kvq.scoring.maps
from kvq.lpvq import runner
from kvq.lpvq.grid import LPVQ_GRID, local_grid


def runner_before(quality: np.ndarray) -> np.ndarray:
    """What the runner computed before the move (``kvq.scoring.maps.local_grid``), verbatim."""
    mean = torch.from_numpy(np.ascontiguousarray(quality.mean(axis=0)))[None, None]
    return F.adaptive_avg_pool2d(mean, 7)[0, 0].numpy()


def window_means(n: int) -> np.ndarray:
    """Mean index of each documented bin ``⌊i·n/7⌋ … ⌈(i+1)·n/7⌉ − 1`` (docs/lpvq.md)."""
    return np.array([np.mean(range(i * n // 7, math.ceil((i + 1) * n / 7))) for i in range(7)])


@pytest.mark.parametrize("side", [14, 16, 9, 7])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pooling_is_bit_identical_to_what_the_runner_produced(side, dtype):
    q = np.random.default_rng(side).normal(size=(4, side, side)).astype(dtype)
    got = local_grid(q)
    assert got.shape == (LPVQ_GRID, LPVQ_GRID) and got.dtype == dtype
    np.testing.assert_array_equal(got, runner_before(q))


@pytest.mark.parametrize(("h", "w"), [(14, 14), (16, 16), (16, 14), (10, 12)])
def test_pooling_averages_the_documented_bins(h, w):
    # value = w·row + col: each cell's mean is w·(mean row) + (mean col), exact in float64
    q = np.broadcast_to(np.arange(h * w, dtype=np.float64).reshape(h, w), (3, h, w))
    expected = w * window_means(h)[:, None] + window_means(w)[None, :]
    np.testing.assert_array_equal(local_grid(q), expected)


def test_14x14_is_the_paper_2x2_block_mean_and_7x7_is_kept():
    rng = np.random.default_rng(6)
    q = rng.normal(size=(16, 14, 14))
    blocks = q.reshape(16, 7, 2, 7, 2).mean(axis=(0, 2, 4))
    np.testing.assert_allclose(local_grid(q), blocks, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(local_grid(q[0, :7, :7]), q[0, :7, :7])  # (H', W') as is
    np.testing.assert_array_equal(local_grid(torch.from_numpy(q)), local_grid(q))
    with pytest.raises(ValueError, match="local quality map"):
        local_grid(np.zeros(49))


class FakePredictor:
    """Returns a fixed (1, T', 16, 16) float32 map, as a 512² input would give."""

    def __init__(self, quality: np.ndarray) -> None:
        self.quality = quality

    def forward(self, clip):
        return None, self.quality[None], None


def test_runner_pools_a_16x16_map_as_before(monkeypatch, tmp_path):
    q = np.random.default_rng(7).normal(size=(4, 16, 16)).astype(np.float32)
    monkeypatch.setattr(runner, "load_clip", lambda path, spec: torch.zeros(3, 1, 8, 8))
    variant = runner.Variant("v", "w", FakePredictor(q), spec=None)
    grid = runner.predict_image([variant], tmp_path / "a.png")["v"]
    assert grid.dtype == np.float64  # pooled in float64, as before
    np.testing.assert_array_equal(grid, runner_before(q.astype(np.float64)))


def test_one_grid_and_one_pooling():
    assert kvq.data.labels.LPVQ_GRID is LPVQ_GRID == 7
    assert kvq.scoring.maps.local_grid is local_grid


def test_label_files_import_the_grid_without_torch_or_the_runner():
    code = (
        "import sys, kvq.data.labels, kvq.annotate.storage\n"
        "print(sorted(m for m in ('torch', 'kvq.lpvq.runner') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
