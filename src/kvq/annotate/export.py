"""From stored ratings to LPVQ labels: cleaning, BT.500 screening and the mean opinion scores.

Cleaning keeps, for every rater, only the images that rater finished (all 49 cells): a half-rated
image says little about how the rater uses the scale on it, and leaving it out makes every MOS
a mean over whole-image judgements. The remaining ratings are screened with
:func:`kvq.annotate.screening.bt500_screen` (each image cell is one presentation), rejected
raters are dropped, and the MOS of a cell is the mean of the kept raters' scores. Images with
fewer than ``min_raters`` kept raters are left out of the label file and listed in the report.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kvq.annotate.screening import bt500_screen
from kvq.annotate.storage import NUM_CELLS, AnnotateError, AnnotationStore, Rating
from kvq.data.labels import LPVQ_GRID, write_lpvq_labels

LABELS_FILE = "lpvq_labels.txt"
RATINGS_FILE = "ratings.csv"
REPORT_FILE = "screening.json"


@dataclass(frozen=True)
class RaterReport:
    name: str
    images_complete: int
    outliers_above: int
    outliers_below: int
    screened_scores: int
    rejected: bool


@dataclass(frozen=True)
class ExportReport:
    """What the export kept and why; ``images_left_out`` maps a name to its kept rater count."""

    screening: bool
    min_raters: int
    raters: list[RaterReport]
    images_exported: int
    images_left_out: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def compute_mos(
    ratings: list[Rating], screening: bool = True, min_raters: int = 1
) -> tuple[dict[str, np.ndarray], ExportReport]:
    """Clean, screen and average ``ratings`` → ({image: (7, 7) MOS}, report)."""
    if min_raters < 1:
        raise AnnotateError(f"min_raters must be at least 1, got {min_raters}")
    raters = sorted({r.rater for r in ratings})
    images = sorted({r.image for r in ratings})
    # scores[rater, image, cell], NaN where not rated.
    scores = np.full((len(raters), len(images), NUM_CELLS), np.nan)
    rater_index = {name: i for i, name in enumerate(raters)}
    image_index = {name: i for i, name in enumerate(images)}
    for r in ratings:
        scores[rater_index[r.rater], image_index[r.image], r.cell] = r.score
    complete = ~np.isnan(scores).any(axis=2)
    scores[~complete] = np.nan

    result = bt500_screen(scores.reshape(len(raters), len(images) * NUM_CELLS))
    rejected = result.rejected if screening else np.zeros(len(raters), dtype=bool)
    kept = scores[~rejected]
    kept_count = (~np.isnan(kept[..., 0])).sum(axis=0)

    grids: dict[str, np.ndarray] = {}
    left_out: dict[str, int] = {}
    for j, name in enumerate(images):
        if kept_count[j] < min_raters:
            left_out[name] = int(kept_count[j])
            continue
        grids[name] = np.nanmean(kept[:, j, :], axis=0).reshape(LPVQ_GRID, LPVQ_GRID)

    report = ExportReport(
        screening=screening,
        min_raters=min_raters,
        raters=[
            RaterReport(
                name=name,
                images_complete=int(complete[i].sum()),
                outliers_above=int(result.p[i]),
                outliers_below=int(result.q[i]),
                screened_scores=int(result.n[i]),
                rejected=bool(rejected[i]),
            )
            for i, name in enumerate(raters)
        ],
        images_exported=len(grids),
        images_left_out=left_out,
    )
    return grids, report


def ratings_csv(ratings: list[Rating]) -> str:
    """The raw ratings as CSV: ``rater,image,row,col,cell,score,updated_unix``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rater", "image", "row", "col", "cell", "score", "updated_unix"])
    for r in ratings:
        row, col = divmod(r.cell, LPVQ_GRID)
        writer.writerow([r.rater, r.image, row, col, r.cell, f"{r.score:g}", f"{r.updated:.3f}"])
    return out.getvalue()


def export_campaign(
    store: AnnotationStore, out_dir: str | Path, screening: bool = True, min_raters: int = 1
) -> ExportReport:
    """Write ``lpvq_labels.txt``, ``ratings.csv`` and ``screening.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ratings = store.ratings()
    grids, report = compute_mos(ratings, screening=screening, min_raters=min_raters)
    write_lpvq_labels(out_dir / LABELS_FILE, grids)
    (out_dir / RATINGS_FILE).write_text(ratings_csv(ratings), encoding="utf-8")
    (out_dir / REPORT_FILE).write_text(report.to_json() + "\n", encoding="utf-8")
    return report
