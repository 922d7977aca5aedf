"""How learnable is a `kvq synth` corpus without a reference? A hand-made no-reference baseline.

    python scripts/corpus_baseline.py data/synth

Twelve classical no-reference statistics per clip (8 frames: sharpness as the log mean absolute
Laplacian overall and over the 7×7 cells — min, quartile, mean, max —, a noise level from the
high-pass residual, blockiness at the 8-px grid, brightness, clipped highlights and shadows,
contrast, frame-to-frame change), then ridge regression fitted on the train split (the features
and, second row, their pairwise products), its strength chosen on the validation split, and
Spearman correlation with the labels of the content-disjoint test split. A learned model should
beat it; a corpus on which even the train fit is poor has labels that the pictures do not show.

The "pretrained stem" rows are ridge regression on the frozen ImageNet EfficientNet-Lite0 stem of
``kvq-lite``, its per-frame features pooled (mean and standard deviation over space and time) on
the bundled model's own input (7×7 fragments of 8 frames): the 112 stride-16 channels alone, and
with the block statistics of the finer stages (``stem_strides`` 2, 4, 8, 16: 272 channels).
What the KVQ stages on top of the stem add is the difference between these rows and the trained
model.

The last row is not a picture model but a ceiling: the same ridge regression on the corpus'
distortion plans (each factor's severity per mask kind, from ``items/*.json``) tells how much
of the label a perfect perceiver of the applied distortions could predict on unseen content.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import laplace, uniform_filter
from scipy.stats import spearmanr

from kvq.synth.distortions import FACTORS
from kvq.synth.masks import MASK_KINDS
from kvq.synth.measure import grid_mean
from kvq.video import ClipSpec, load_clip

SPEC = ClipSpec(num_segments=8, frames_per_segment=1, size=(360, 640), view="center_crop")
FRAGMENTS = ClipSpec(num_segments=4, frames_per_segment=2, stride=2, view="fragments")


def features(path: Path) -> np.ndarray:
    frames = load_clip(path, SPEC).numpy().astype(np.float32)  # (8, H, W, 3)
    y = frames @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = np.abs(np.stack([laplace(f) for f in y]))
    cells = np.log(grid_mean(lap).ravel() + 1e-3)  # the 7×7 cells
    grad = np.abs(np.diff(y, axis=2))
    return np.array(
        [
            np.log(lap.mean() + 1e-3),
            cells.min(),
            np.percentile(cells, 25),
            cells.mean(),
            cells.max(),
            np.log(np.median(np.abs(y - uniform_filter(y, (0, 3, 3)))) + 1e-3),
            grad[:, :, 7::8].mean() / (grad.mean() + 1e-6),
            y.mean() / 255,
            (y > 250).mean(),
            (y < 10).mean(),
            y.std() / 255,
            np.log(np.abs(np.diff(y, axis=0)).mean() + 1e-3),
        ]
    )


def stem_features(paths: list[Path], strides: tuple[int, ...]) -> np.ndarray:
    """Pooled frozen-stem features of every clip: (N, 2C) channel means and deviations."""
    import torch

    from kvq.models import build_model, load_pretrained
    from kvq.models.pretrained import IMAGENET_STEM
    from kvq.video import normalize_clip

    model = build_model("kvq-lite", stem_strides=strides).eval()
    load_pretrained(model, IMAGENET_STEM)
    out = []
    with torch.no_grad():
        for path in paths:
            x = normalize_clip(load_clip(path, FRAGMENTS)[None])
            e = model.backbone.embed(x)[0]  # (T, C, h, w)
            out.append(torch.cat([e.mean((0, 2, 3)), e.std((0, 2, 3))]).numpy())
    return np.stack(out)


def plan_features(record: dict) -> np.ndarray:
    """Severity of every (factor, mask kind) pair in the clip's distortion plan, and squares."""
    x = np.zeros((len(FACTORS), len(MASK_KINDS)))
    for d in record["distortions"]:
        x[FACTORS.index(d["factor"]), MASK_KINDS.index(d["mask"]["kind"])] += d["severity"]
    return np.r_[x.ravel(), x.ravel() ** 2]


# Ridge strengths tried per feature set; the one with the best validation SRCC is reported.
LAMBDAS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


def ridge(train_x: np.ndarray, train_y: np.ndarray, lam: float) -> np.ndarray:
    """Weights (with a bias last) of ridge regression on standardised features."""
    a = np.c_[train_x, np.ones(len(train_x))]
    return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ train_y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    args = parser.parse_args()
    records = [json.loads(p.read_text()) for p in sorted((args.corpus / "items").glob("*.json"))]
    videos = [args.corpus / r["video"] for r in records]
    x = np.stack([features(v) for v in videos])
    y = np.array([r["mos"] for r in records])
    split = np.array([r["split"] for r in records])
    pairs = np.triu_indices(x.shape[1], 1)
    bases = {
        "linear": x,
        "pairwise": np.c_[x, x**2, x[:, pairs[0]] * x[:, pairs[1]]],
        "pretrained stem, pooled, stride 16": stem_features(videos, (16,)),
        "pretrained stem, pooled, strides 2-16": stem_features(videos, (2, 4, 8, 16)),
        "distortion plan (oracle)": np.stack([plan_features(r) for r in records]),
    }
    train, val, test = (split == name for name in ("train", "val", "test"))
    print(f"{args.corpus}: {train.sum()} train / {val.sum()} val / {test.sum()} test clips")
    print("| features | λ (chosen on val) | train-fit SRCC | val SRCC | test SRCC |")
    print("|---|---:|---:|---:|---:|")
    for name, basis in bases.items():
        mu, sd = basis[train].mean(0), basis[train].std(0) + 1e-6
        z = np.c_[(basis - mu) / sd, np.ones(len(basis))]
        fits = {lam: z @ ridge(z[train, :-1], y[train], lam) for lam in LAMBDAS}
        lam = max(LAMBDAS, key=lambda k: spearmanr(fits[k][val], y[val])[0])
        pred = fits[lam]
        fit, held = spearmanr(pred[train], y[train])[0], spearmanr(pred[test], y[test])[0]
        chosen = spearmanr(pred[val], y[val])[0]
        print(f"| {name} ({basis.shape[1]}) | {lam:g} | {fit:.3f} | {chosen:.3f} | {held:.3f} |")


if __name__ == "__main__":
    main()
