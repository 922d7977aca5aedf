"""LPVQ local-perception evaluation (docs/lpvq.md): run weights on labelled images, compare
their 7×7 local quality grids with the labelled ones, write tables and figures.

Typical use::

    variants = load_variants(["iwa.safetensors", "fwa.safetensors"], ["IWA", "FWA"])
    run = evaluate(variants, "images/", read_lpvq_labels("labels.txt"))
    write_reports(run, Path("out"))
    write_figures(run, "images/", Path("out/figures"))

:mod:`~kvq.lpvq.grid` (the 7×7 grid and the pooling onto it) and :mod:`~kvq.lpvq.metrics`
(intra/inter-sample SRCC/PLCC) are the one home of the protocol's grid and metrics.
"""

from __future__ import annotations

import importlib

# The public names, imported on first use (PEP 562): kvq.data.labels imports LPVQ_GRID from
# kvq.lpvq.grid, which runs this file, and must get neither torch nor the runner (a cycle).
_PUBLIC = {
    "LPVQ_GRID": "kvq.lpvq.grid",
    "local_grid": "kvq.lpvq.grid",
    "LpvqImageResult": "kvq.lpvq.metrics",
    "LpvqMetrics": "kvq.lpvq.metrics",
    "lpvq_metrics": "kvq.lpvq.metrics",
    "figure_size": "kvq.lpvq.figures",
    "grid_figure": "kvq.lpvq.figures",
    "write_figures": "kvq.lpvq.figures",
    "markdown_table": "kvq.lpvq.report",
    "write_reports": "kvq.lpvq.report",
    "PAPER_SIZE": "kvq.lpvq.runner",
    "LpvqEvalError": "kvq.lpvq.runner",
    "LpvqProtocol": "kvq.lpvq.runner",
    "LpvqRun": "kvq.lpvq.runner",
    "Skipped": "kvq.lpvq.runner",
    "Variant": "kvq.lpvq.runner",
    "evaluate": "kvq.lpvq.runner",
    "load_variants": "kvq.lpvq.runner",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kvq.lpvq' has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
