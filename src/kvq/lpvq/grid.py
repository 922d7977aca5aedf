"""The LPVQ grid: 7×7 image regions, and the one pooling of a model's local quality map onto it.

A model's Q ``(T', H', W')`` is averaged over time and pooled to 7×7 with adaptive average
pooling (PyTorch's ``adaptive_avg_pool2d``): output cell ``i`` averages input rows
``⌊i·H′/7⌋ … ⌈(i+1)·H′/7⌉ − 1``, and likewise for columns (docs/lpvq.md, *The protocol*). At the
paper's 448 input Q is 14×14 and this is the 2×2 block mean; at 224 it is Q itself.

This module needs only numpy at import: label files and the annotation app import
:data:`LPVQ_GRID` without torch.
"""

from __future__ import annotations

import numpy as np

LPVQ_GRID = 7


def local_grid(quality: np.ndarray) -> np.ndarray:
    """Q ``(T', H', W')`` (or ``(H', W')``) → the ``(7, 7)`` grid: mean over time, then
    adaptive average pooling.

    The dtype is kept: the LPVQ runner passes float64 so that near-equal cells do not swap
    ranks through rounding. Accepts numpy arrays and CPU tensors.
    """
    import torch  # here, not at import: see the module docstring
    import torch.nn.functional as F

    q = np.asarray(quality)
    if q.ndim == 2:
        q = q[None]
    if q.ndim != 3 or q.size == 0:
        raise ValueError(f"expected a (T', H', W') or (H', W') local quality map, got {q.shape}")
    mean = torch.from_numpy(np.ascontiguousarray(q.mean(axis=0)))[None, None]
    return F.adaptive_avg_pool2d(mean, LPVQ_GRID)[0, 0].numpy()
