"""Former home of the LPVQ metrics, kept because docs named it: they live in
:mod:`kvq.lpvq.metrics` and the 7×7 pooling in :mod:`kvq.lpvq.grid`.

``pool_to_lpvq_grid`` is :func:`kvq.lpvq.grid.local_grid`, the pooling ``kvq lpvq eval`` uses
(the same 2×2 block mean on a 14×14 map; other sizes are pooled adaptively, no longer refused).
"""

from __future__ import annotations

from kvq.lpvq.grid import local_grid as pool_to_lpvq_grid
from kvq.lpvq.metrics import LpvqImageResult, LpvqMetrics, lpvq_metrics

__all__ = ["LpvqImageResult", "LpvqMetrics", "lpvq_metrics", "pool_to_lpvq_grid"]
