"""Where does a model lose its correlation on a `kvq synth` split: across contents or inside?

    kvq eval W --sets data/synth/labels/test.txt --data-root data/synth --output-dir runs/eval
    python scripts/content_offsets.py runs/eval/test_predictions.csv data/synth test

Reads the per-video predictions that ``kvq eval`` writes, maps them linearly onto the labels
(as the metrics do) and prints:

* the SRCC the split would reach if every ladder (the same content at four severities) had its
  true mean level while keeping the model's order and spacing inside it, and the other way
  round (true spacing inside each ladder, the model's level per ladder);
* per source: mean label, mean prediction, their difference and the SRCC inside the source's
  clips, and the split's SRCC with that source left out.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from kvq.data.labels import read_groups
from kvq.eval.metrics import map_predictions, srcc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path, help="kvq eval's <set>_predictions.csv")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("split", help="the split the predictions are of (its groups file)")
    args = parser.parse_args()
    rows = list(csv.DictReader(args.predictions.open()))
    groups = read_groups(args.corpus / "labels" / f"{args.split}_groups.csv")
    source = {}
    for item in (args.corpus / "items").glob("*.json"):
        record = json.loads(item.read_text())
        source[record["video"]] = record["source"]
    y = np.array([float(r["mos"]) for r in rows])
    raw = np.array([float(r["prediction"]) for r in rows])
    p = map_predictions(raw, y, "linear")
    ladder = np.array([groups[r["path"]] for r in rows])
    true_level, true_spacing = p.copy(), p.copy()
    for g in set(ladder):
        m = ladder == g
        true_level[m] = p[m] - p[m].mean() + y[m].mean()
        true_spacing[m] = y[m] - y[m].mean() + p[m].mean()
    print(
        f"SRCC {srcc(p, y):.3f}; with every ladder at its true level {srcc(true_level, y):.3f}; "
        f"with the true spacing inside every ladder {srcc(true_spacing, y):.3f}"
    )
    sources = np.array([source[r["path"]] for r in rows])
    print(
        "| source | clips | mean label | mean prediction | difference | SRCC inside | "
        "split SRCC without it |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for s in sorted(set(sources)):
        m = sources == s
        print(
            f"| {s} | {m.sum()} | {y[m].mean():.2f} | {p[m].mean():.2f} | "
            f"{p[m].mean() - y[m].mean():+.2f} | {srcc(p[m], y[m]):.2f} | "
            f"{srcc(p[~m], y[~m]):.3f} |"
        )


if __name__ == "__main__":
    main()
