"""Markdown summary of a built corpus: size, label histograms, per-factor label ranges.

python -m kvq.synth.report OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

BINS = np.arange(1.0, 5.01, 0.5)


def _histogram(title: str, values: np.ndarray) -> list[str]:
    counts, _ = np.histogram(values, BINS)
    lines = [f"| {title} | count | share |", "|---|---:|:---|"]
    for lo, count in zip(BINS[:-1], counts, strict=True):
        share = count / max(1, len(values))
        lines.append(
            f"| {lo:.1f}–{lo + 0.5:.1f} | {count} | {'█' * round(40 * share)} {share:.1%} |"
        )
    return lines


def _range(values: list[float]) -> str:
    if not values:
        return "– | – | – | –"
    v = np.asarray(values)
    return f"{len(v)} | {v.min():.2f} | {np.median(v):.2f} | {v.max():.2f}"


def summarize(out_dir: str | Path) -> str:
    """The report of the corpus in ``out_dir`` (reads manifest.json and the files' sizes)."""
    out_dir = Path(out_dir)
    manifest: dict[str, Any] = json.loads((out_dir / "manifest.json").read_text())
    items = manifest["items"]
    config = manifest["config"]
    mos = np.array([it["mos"] for it in items])
    local = np.array([it["local_mos"] for it in items]).ravel()
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    splits = {name: sum(it["split"] == name for it in items) for name, _ in config["splits"]}
    sources = {s["split"]: 0 for s in manifest["sources"]}
    for s in manifest["sources"]:
        sources[s["split"]] += 1
    lines = [
        f"- clips: {len(items)} × {config['num_frames']} frames at {config['width']}×"
        f"{config['height']}, {config['fps']:g} fps; stills: {len(items)}; on disk "
        f"{size / 2**20:.0f} MiB",
        "- splits (clips / sources): "
        + ", ".join(f"{k} {v} / {sources.get(k, 0)}" for k, v in splits.items()),
        f"- global MOS: mean {mos.mean():.2f}, std {mos.std():.2f}; local cell MOS: mean "
        f"{local.mean():.2f}, std {local.std():.2f}; mean within-clip cell std "
        f"{np.mean([np.std(it['local_mos']) for it in items]):.2f}",
        "",
        *_histogram("global MOS", mos),
        "",
        *_histogram("local MOS (7×7 cells of the clips)", local),
        "",
        "Per factor: global MOS of clips whose only distortion is the factor, and of all clips "
        "that contain it (n, min, median, max).",
        "",
        "| factor | alone: n | min | median | max | with others: n | min | median | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for factor in config["factors"]:
        alone = [it["mos"] for it in items if [d["factor"] for d in it["distortions"]] == [factor]]
        mixed = [it["mos"] for it in items if factor in {d["factor"] for d in it["distortions"]}]
        lines.append(f"| {factor} | {_range(alone)} | {_range(mixed)} |")
    pristine = [it["mos"] for it in items if not it["distortions"]]
    lines.append(f"| (none: pristine) | {_range(pristine)} | – | – | – | – |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarize(sys.argv[1]))
