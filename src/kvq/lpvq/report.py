"""Result files of an LPVQ evaluation: the Tab. 9 comparison (CSV, Markdown, JSON) and the
per-image table (CSV)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from kvq.lpvq.runner import LpvqRun

# Columns of the supplement's Tab. 9, in its order.
TABLE_COLUMNS = ("inter_srcc", "inter_plcc", "intra_srcc", "intra_plcc")
PER_IMAGE_COLUMNS = ("image", "variant", "intra_srcc", "intra_plcc", "label_mean", "pred_mean")


def _number(value: float) -> float | None:
    """JSON has no NaN: undefined correlations become null."""
    return None if math.isnan(value) else round(float(value), 6)


def table_rows(run: LpvqRun) -> list[dict]:
    """One row per variant: its name and the four Tab. 9 metrics."""
    return [
        {"variant": v.name, **{c: getattr(run.metrics[v.name], c) for c in TABLE_COLUMNS}}
        for v in run.variants
    ]


def protocol_text(run: LpvqRun) -> str:
    """One line saying how the numbers were obtained."""
    p = run.protocol
    if p.view == "fragments":
        seen = "through a 7×7 fragments view (one native-resolution patch per label cell)"
    elif p.size is None:
        seen = "resized to each weights' own input size"
    else:
        seen = f"resized to {p.size}×{p.size}"
    return (
        f"{len(run.labels)} of {run.num_labelled} labelled images; {p.frames}-frame static clips "
        f"{seen}; Q averaged over time, pooled to 7×7; intra = mean of per-image "
        "correlations, inter = all cells pooled"
    )


def markdown_table(run: LpvqRun) -> str:
    """The Tab. 9 layout as a Markdown table, followed by the protocol line."""
    head = "| variant | inter SRCC | inter PLCC | intra SRCC | intra PLCC |"
    lines = [head, "|---|---:|---:|---:|---:|"]
    for row in table_rows(run):
        cells = " | ".join(f"{row[c]:.4f}" for c in TABLE_COLUMNS)
        lines.append(f"| {row['variant']} | {cells} |")
    return "\n".join(lines) + f"\n\n{protocol_text(run)}\n"


def write_table_csv(run: LpvqRun, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("variant", *TABLE_COLUMNS))
        writer.writeheader()
        for row in table_rows(run):
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})


def write_per_image_csv(run: LpvqRun, path: Path) -> None:
    """One row per (image, variant): intra SRCC/PLCC and the mean label and prediction."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(PER_IMAGE_COLUMNS)
        for v in run.variants:
            for result in run.metrics[v.name].per_image:
                label = run.labels[result.name].mean()
                pred = run.grids[v.name][result.name].mean()
                values = (result.srcc, result.plcc, label, pred)
                writer.writerow([result.name, v.name, *(f"{x:.6f}" for x in values)])


def run_json(run: LpvqRun) -> dict:
    """Protocol, images used and skipped, and per variant: its weights, input, metrics,
    per-image correlations and predicted grids (49 values, row-major)."""
    variants = []
    for v in run.variants:
        m = run.metrics[v.name]
        variants.append(
            {
                "name": v.name,
                "weights": v.weights,
                "attention": v.attention,
                "input_size": list(v.spec.output_size),
                "frames": v.spec.image_frames,
                **{c: _number(getattr(m, c)) for c in TABLE_COLUMNS},
                "num_undefined": m.num_undefined,
                "per_image": [
                    {"image": r.name, "srcc": _number(r.srcc), "plcc": _number(r.plcc)}
                    for r in m.per_image
                ],
                "grids": {
                    name: [round(float(x), 6) for x in grid.ravel()]
                    for name, grid in run.grids[v.name].items()
                },
            }
        )
    return {
        "protocol": {
            "frames": run.protocol.frames,
            "size": run.protocol.size or "native",
            "view": run.protocol.view,
            "pooling": "mean over time, average pool to 7x7 (adaptive), row-major",
            "description": protocol_text(run),
        },
        "images": {
            "labelled": run.num_labelled,
            "used": len(run.labels),
            "skipped": [{"image": s.name, "reason": s.reason} for s in run.skipped],
        },
        "variants": variants,
    }


def write_reports(run: LpvqRun, out: Path) -> dict[str, Path]:
    """Write every table into ``out``; returns {kind: path}."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "lpvq_table.csv",
        "markdown": out / "lpvq_table.md",
        "json": out / "lpvq_results.json",
        "per_image": out / "lpvq_per_image.csv",
    }
    write_table_csv(run, paths["csv"])
    paths["markdown"].write_text(markdown_table(run), encoding="utf-8")
    paths["json"].write_text(json.dumps(run_json(run), indent=2), encoding="utf-8")
    write_per_image_csv(run, paths["per_image"])
    return paths
