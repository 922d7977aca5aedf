"""How much of a `kvq synth` corpus' region labels can a no-reference model predict?

    python scripts/region_baseline.py data/synth

The region labels of a still (``labels/<split>_stills.txt``) are per-cell SSIM against the
pristine picture. Their ranking inside one image (the LPVQ *intra-sample* correlation) has two
sources: where the damage was applied (a region mask) and how much each cell's content shows it
(SSIM falls faster in flat cells under noise, in detailed cells under blur). Two rows bound what
a model can reach:

* **mask oracle** (not a picture model): each cell scored by minus the severity-weighted share
  of the cell that the plan's masks cover. It knows exactly where and how hard the damage is,
  but nothing of the content; on a still damaged over the whole frame it is constant, so it is
  reported on the stills with a region mask, where it is defined.
* **frozen stem, per cell**: ridge regression from the frozen ImageNet EfficientNet-Lite0 stem
  of ``kvq-lite`` (the features of the cell's fragment — its stride-16 channels alone, then
  with the block statistics of strides 2, 4 and 8 —, the same minus their image mean, and the
  image mean: the cell in its image's context) to the cell's label, fitted on the training
  stills, its strength chosen on the validation stills.

The model's own numbers come from ``kvq lpvq eval`` on the same stills; ``--weights`` adds them
here split the same way (region-masked stills / whole-frame stills).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from kvq.data.labels import read_lpvq_labels
from kvq.lpvq.grid import LPVQ_GRID
from kvq.lpvq.metrics import lpvq_metrics
from kvq.lpvq.runner import LpvqProtocol
from kvq.synth.masks import MaskSpec
from kvq.synth.measure import grid_mean
from kvq.video import ClipSpec, load_clip, to_model_input

CELLS = LPVQ_GRID * LPVQ_GRID
STILL = ClipSpec(view="fragments", fragment_grid=LPVQ_GRID, image_frames=1)
LAMBDAS = (10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
FRAGMENTS = LpvqProtocol(size=None, view="fragments")  # as `kvq lpvq eval --size native`


def mask_oracle(record: dict, height: int, width: int) -> np.ndarray:
    """(7, 7): minus the severity-weighted mask coverage of every cell."""
    grid = np.zeros((LPVQ_GRID, LPVQ_GRID))
    for d in record["distortions"]:
        mask = MaskSpec(d["mask"]["kind"], tuple(d["mask"]["shape"])).render(height, width)
        grid -= d["severity"] * (1.0 if mask is None else grid_mean(mask))
    return grid


def cell_features(model: torch.nn.Module, path: Path) -> np.ndarray:
    """(49, C) frozen-stem block statistics of the fragment of every cell (mean over its 2×2
    stride-16 positions)."""
    with torch.no_grad():
        x = to_model_input(load_clip(path, STILL)[None], model)
        e = model.backbone.embed(x)[0, 0]  # (C, 14, 14)
    c = e.shape[0]
    blocks = e.reshape(c, LPVQ_GRID, 2, LPVQ_GRID, 2).mean((2, 4))
    return blocks.reshape(c, CELLS).T.numpy()


def in_context(f: np.ndarray) -> np.ndarray:
    """(N, 49, C) → (N·49, 3C): each cell, its difference from the image mean, the mean."""
    mean = np.broadcast_to(f.mean(1, keepdims=True), f.shape)
    return np.concatenate([f, f - mean, mean], -1).reshape(-1, 3 * f.shape[-1])


def stem_probe(
    strides: tuple[int, ...], corpus: Path, labels: dict[str, dict[str, np.ndarray]]
) -> tuple[float, dict[str, dict[str, np.ndarray]]]:
    """Ridge from the frozen stem's per-cell features (``stem_strides`` ``strides``, in context)
    to the cell labels of the training stills; its strength chosen on the validation stills.
    Returns the strength and the predicted grids of the validation and test stills."""
    from kvq.models import build_model, load_pretrained
    from kvq.models.pretrained import IMAGENET_STEM

    model = build_model("kvq-lite", stem_strides=strides).eval()
    load_pretrained(model, IMAGENET_STEM)
    model.backbone.prepare_inference()
    feats = {s: np.stack([cell_features(model, corpus / n) for n in labels[s]]) for s in labels}
    train_x = in_context(feats["train"])
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    design = {
        s: np.c_[(in_context(f) - mu) / sd, np.ones(len(f) * CELLS)] for s, f in feats.items()
    }
    a, y = design["train"], np.stack(list(labels["train"].values())).reshape(-1)
    grids = {}
    for lam in LAMBDAS:
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y)
        grids[lam] = {
            s: dict(zip(labels[s], (design[s] @ w).reshape(-1, LPVQ_GRID, LPVQ_GRID)))
            for s in ("val", "test")
        }
    best = max(LAMBDAS, key=lambda k: lpvq_metrics(grids[k]["val"], labels["val"]).intra_srcc)
    return best, grids[best]


def intra(pred: dict, labels: dict, names: list[str]) -> str:
    m = lpvq_metrics({n: pred[n] for n in names}, {n: labels[n] for n in names})
    return f"{m.intra_srcc:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--weights", nargs="*", default=[], help="kvq weights to add as rows")
    args = parser.parse_args()
    from kvq.lpvq.runner import load_variants, predict_image

    records = {}
    for p in (args.corpus / "items").glob("*.json"):
        r = json.loads(p.read_text())
        records[r["still"]] = r
    size = json.loads((args.corpus / "manifest.json").read_text())["config"]
    labels = {
        s: read_lpvq_labels(args.corpus / "labels" / f"{s}_stills.txt")
        for s in ("train", "val", "test")
    }
    rows: dict[str, dict | None] = {"mask oracle": None}
    for strides in ((16,), (2, 4, 8, 16)):
        lam, grids = stem_probe(strides, args.corpus, labels)
        rows[f"frozen stem, strides {strides}, per cell (λ {lam:g})"] = grids
    variants = load_variants(args.weights, protocol=FRAGMENTS, device="cpu")
    for split in ("val", "test"):
        grids = [predict_image(variants, args.corpus / n) for n in labels[split]]
        for v in variants:
            rows.setdefault(v.name, {})[split] = {
                n: g[v.name] for n, g in zip(labels[split], grids, strict=True)
            }
    print(
        "| predictor | split | intra SRCC, all stills | region-masked stills | whole-frame stills |"
    )
    print("|---|---|---:|---:|---:|")
    for split in ("val", "test"):
        names = list(labels[split])
        region = [
            n for n in names if any(d["mask"]["kind"] != "full" for d in records[n]["distortions"])
        ]
        whole = [n for n in names if n not in region]
        for name, pred in rows.items():
            if pred is None:
                oracle = {n: mask_oracle(records[n], size["height"], size["width"]) for n in region}
                cells = ["–", intra(oracle, labels[split], region), "–"]
            else:
                p = pred[split]
                cells = [
                    intra(p, labels[split], names),
                    intra(p, labels[split], region),
                    intra(p, labels[split], whole),
                ]
            print(
                f"| {name} | {split} ({len(region)} + {len(whole)}) | " + " | ".join(cells) + " |"
            )


if __name__ == "__main__":
    main()
