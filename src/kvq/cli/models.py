"""``kvq models``: the architectures ``--arch`` and ``kvq.build_model`` accept, and the bundled
weights ``--weights`` and ``kvq.load`` accept, with what their model cards measured."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list architectures and bundled weights (with their measured metrics)",
        description=__doc__,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print_architectures()
    print()
    print_bundled()
    return 0


def print_architectures() -> None:
    """One line per registered architecture: its parameter count and attention."""
    import torch

    from kvq.models import build_model, list_models

    print(f"{'architecture':<14}{'parameters':>14}  attention")
    for name in list_models():
        with torch.device("meta"):  # counts only: no memory, no initialisation
            model = build_model(name)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name:<14}{n:>14,}  {model.config.attention}")


def print_bundled() -> None:
    """One block per bundled weights file: name, architecture, size, summary and metrics."""
    from kvq.models.bundled import BUNDLED, DEFAULT_WEIGHTS

    print("bundled weights (--weights NAME, kvq.load(NAME)):")
    for w in BUNDLED.values():
        default = "  (default)" if w.name == DEFAULT_WEIGHTS else ""
        size = w.path.stat().st_size / 2**20 if w.path.exists() else float("nan")
        print(f"  {w.name}{default}: {w.arch}, {size:.1f} MiB — {w.summary}")
        for metric, value in w.metrics.items():
            print(f"      {metric:<32}{value:.3f}")
        print(f"      model card: {w.card}")
    print(
        "foreign checkpoints: --weights FILE.pth --arch kvq-t (the authors' KVQ checkpoint, or "
        "Kinetics-400 Video Swin-T as a starting point for training; see the README)"
    )
