"""``kvq info``: version, registered architectures and the torch device."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="print version, architectures and device")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from kvq import __version__
    from kvq.cli.models import print_architectures
    from kvq.runtime import resolve_device

    print(f"kvq {__version__}  (torch {torch.__version__})")
    device = resolve_device("auto")  # what --device auto chooses
    detail = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads"
    )
    print(f"device: {device} ({detail})")
    print_architectures()
    print("bundled weights and their metrics: kvq models")
    return 0
