"""Region-wise quality annotation following the LPVQ protocol (``kvq annotate``, docs/annotate.md).

Raters glance at a whole image, then score each cell of its 7×7 grid alone on 1–5 in steps of
0.5; the admin exports the per-cell MOS as an LPVQ label file after BT.500 rater screening.
:mod:`~kvq.annotate.storage` and :mod:`~kvq.annotate.screening` need only the standard library
and numpy; :mod:`~kvq.annotate.server` needs the ``annotate`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

from kvq.annotate.export import ExportReport, compute_mos, export_campaign
from kvq.annotate.screening import ScreeningResult, bt500_screen
from kvq.annotate.storage import AnnotateError, AnnotationStore

__all__ = [
    "AnnotateError",
    "AnnotationStore",
    "ExportReport",
    "ScreeningResult",
    "bt500_screen",
    "compute_mos",
    "export_campaign",
]
