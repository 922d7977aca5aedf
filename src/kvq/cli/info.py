"""``kvq info``: version, registered architectures and the torch device."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="print version, architectures and device")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from kvq import __version__
    from kvq.models import build_model, list_models
    from kvq.runtime import resolve_device

    print(f"kvq {__version__}  (torch {torch.__version__})")
    device = resolve_device("auto")  # what --device auto chooses
    detail = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads"
    )
    print(f"device: {device} ({detail})")
    print(f"{'architecture':<14}{'parameters':>14}  attention")
    for name in list_models():
        model = build_model(name)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name:<14}{n:>14,}  {model.config.attention}")
    return 0
