"""LPVQ local-perception evaluation (docs/lpvq.md): run weights on labelled images, compare
their 7×7 local quality grids with the labelled ones, write tables and figures.

Typical use::

    variants = load_variants(["iwa.safetensors", "fwa.safetensors"], ["IWA", "FWA"])
    run = evaluate(variants, "images/", read_lpvq_labels("labels.txt"))
    write_reports(run, Path("out"))
    write_figures(run, "images/", Path("out/figures"))
"""

from kvq.lpvq.figures import figure_size, grid_figure, write_figures
from kvq.lpvq.report import markdown_table, write_reports
from kvq.lpvq.runner import (
    PAPER_SIZE,
    LpvqEvalError,
    LpvqProtocol,
    LpvqRun,
    Skipped,
    Variant,
    evaluate,
    load_variants,
)

__all__ = [
    "PAPER_SIZE",
    "LpvqEvalError",
    "LpvqProtocol",
    "LpvqRun",
    "Skipped",
    "Variant",
    "evaluate",
    "figure_size",
    "grid_figure",
    "load_variants",
    "markdown_table",
    "write_figures",
    "write_reports",
]
