"""Can a from-scratch model learn a plainly visible target with a given optimizer setting?

    python scripts/learnability_probe.py data/synth --setting 3e-4:1 --setting 5e-4:0.1

Each ``--setting HEADS_LR:BACKBONE_MULT`` trains a fresh model (the same random initialisation
for every setting) with AdamW groups built by the trainer's :func:`param_groups` (weight decay
0.05, gradient clipping at 1, no warm-up) to rank **added Gaussian noise**: inputs are the
default weights' view of training-split videos (one segment of 2 frames, 7×7 grid of native
32² fragments) with noise of σ ~ U[0, 60] grey levels, the PLCC loss is taken against σ,
batch 8. It then reports the SRCC between the predicted scores and σ on held-out videos (the
validation split) with their own fixed noise. Noise that strong is obvious to the eye and a
small CNN ranks it after ~100 steps, so a setting that stays near zero is an optimisation
problem, not a data problem; that is how this probe was used to pick the learning rates of
the earlier from-scratch ``kvq-xs`` default weights (a from-scratch kvq-xs learns nothing once
its backbone gets 3e-4 or more).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from kvq.data.labels import read_video_labels
from kvq.models import build_model
from kvq.train.losses import plcc_loss
from kvq.train.trainer import param_groups
from kvq.video import ClipSpec, load_clip, normalize_clip

SPEC = ClipSpec(num_segments=1, frames_per_segment=2, stride=2, view="fragments")
MAX_SIGMA = 60.0


def load_clips(corpus: Path, split: str, count: int, draws: int, seed: int) -> torch.Tensor:
    """``draws`` random fragment clips of each of the first ``count`` videos of a split →
    uint8 ``(count·draws, T, H, W, 3)``."""
    labels = read_video_labels(corpus / "labels" / f"{split}.txt")[:count]
    rng = np.random.default_rng(seed)
    return torch.stack(
        [
            load_clip(corpus / label.path, SPEC, train=True, rng=rng)
            for label in labels
            for _ in range(draws)
        ]
    )


def add_noise(clips: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian noise of a random σ per clip → (normalised ``(B, 3, T, H, W)``, σ ``(B,)``)."""
    sigma = rng.uniform(0.0, MAX_SIGMA, len(clips))
    noise = torch.from_numpy(rng.standard_normal(clips.shape).astype(np.float32))
    noisy = clips.float() + noise * torch.from_numpy(sigma).float().view(-1, 1, 1, 1, 1)
    noisy = noisy.round().clamp(0, 255).to(torch.uint8)
    return torch.stack([normalize_clip(c) for c in noisy]), torch.from_numpy(sigma).float()


def probe(
    arch: str,
    heads_lr: float,
    backbone_mult: float,
    train_clips: torch.Tensor,
    held_out: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    batch_size: int,
    seed: int,
) -> tuple[float, float]:
    """Train one setting → (held-out SRCC, mean training loss of the last 25 steps)."""
    torch.manual_seed(seed)
    model = build_model(arch)
    optimizer = torch.optim.AdamW(param_groups(model, heads_lr, backbone_mult, 0.05))
    rng = np.random.default_rng(seed)
    losses = []
    model.train()
    for _ in range(steps):
        index = torch.from_numpy(rng.choice(len(train_clips), batch_size, replace=False))
        x, sigma = add_noise(train_clips[index], rng)
        loss = plcc_loss(model(x).score, sigma)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    x, sigma = held_out
    with torch.no_grad():
        scores = torch.cat([model(part).score for part in x.split(batch_size)])
    return float(spearmanr(scores.numpy(), sigma.numpy())[0]), float(np.mean(losses[-25:]))


def parse_setting(text: str) -> tuple[float, float]:
    lr, _, mult = text.partition(":")
    return float(lr), float(mult or 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="a `kvq synth` output folder")
    parser.add_argument(
        "--setting",
        action="append",
        type=parse_setting,
        required=True,
        help="HEADS_LR:BACKBONE_MULT, repeatable",
    )
    parser.add_argument("--arch", default="kvq-xs")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--videos", type=int, default=64, help="training videos (2 draws each)")
    parser.add_argument("--held-out", type=int, default=48, help="validation videos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_clips = load_clips(args.corpus, "train", args.videos, 2, args.seed)
    held_clips = load_clips(args.corpus, "val", args.held_out, 1, args.seed + 1)
    held_out = add_noise(held_clips, np.random.default_rng(args.seed + 2))
    print("| heads lr | backbone lr | held-out SRCC | train loss (last 25) | s |")
    print("|---:|---:|---:|---:|---:|")
    for heads_lr, mult in args.setting:
        start = time.perf_counter()
        srcc, loss = probe(
            args.arch,
            heads_lr,
            mult,
            train_clips,
            held_out,
            args.steps,
            args.batch_size,
            args.seed,
        )
        seconds = time.perf_counter() - start
        print(f"| {heads_lr:g} | {heads_lr * mult:g} | {srcc:.3f} | {loss:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
