"""Parameters, FLOPs and CPU/GPU forward time of KVQ-T and its plain-window (IWA) variant.

    python benchmarks/model.py                      # FLOPs at 32×448² and 32×224², time at 224
    python benchmarks/model.py --time-size 448      # also time at the paper's resolution

FLOPs are torch's flop counter (2·MAC, matmuls and convolutions; softmax and norms not
counted), with attention routed through SDPA's math backend so that its matmuls are counted
(the counter has no formula for the fused CPU kernel). "backbone" counts ``model.backbone(x)``
alone (no saliency priors, no heads), the number to compare with Video Swin-T's ≈702 GFLOP.
Times are the median of ``--repeats`` eager forward passes in inference mode, fp32.
"""

from __future__ import annotations

import argparse

import torch
from common import markdown_table, median_seconds, record
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import kvq


def count_flops(fn, clip: torch.Tensor) -> int:
    with (
        torch.inference_mode(),
        sdpa_kernel(SDPBackend.MATH),
        FlopCounterMode(display=False) as counter,
    ):
        fn(clip)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="kvq-t")
    parser.add_argument("--flop-sizes", type=int, nargs="*", default=[448, 224])
    parser.add_argument("--time-size", type=int, nargs="*", default=[224])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    rows = []
    for attention in ("fwa", "iwa"):
        model = kvq.build_model(args.arch, attention=attention).eval().to(args.device)
        params = sum(p.numel() for p in model.parameters())
        backbone_params = sum(p.numel() for p in model.backbone.parameters())
        for size in sorted(set(args.flop_sizes) | set(args.time_size), reverse=True):
            clip = torch.randn(1, 3, args.frames, size, size, device=args.device)
            flops = backbone_flops = None
            if size in args.flop_sizes:
                flops = count_flops(model, clip)
                backbone_flops = count_flops(model.backbone, clip)
            seconds = None
            if size in args.time_size:
                with torch.inference_mode():
                    seconds = median_seconds(lambda: model(clip), args.repeats)  # noqa: B023
            rows.append([attention, size, params, backbone_params, flops, backbone_flops, seconds])

    def fmt(row, base):
        attention, size, params, bb, flops, bb_flops, sec = row
        ratio = f"{sec / base:.2f}" if sec and base else "-"
        return [
            f"{args.arch} ({attention})",
            f"{args.frames}×{size}²",
            f"{params / 1e6:.2f} M",
            f"{bb / 1e6:.2f} M",
            f"{flops / 1e9:.1f}" if flops else "-",
            f"{bb_flops / 1e9:.1f}" if bb_flops else "-",
            f"{sec:.2f}" if sec else "-",
            ratio,
        ]

    baseline = {r[1]: r[6] for r in rows if r[0] == "iwa"}
    table = markdown_table(
        [
            "model",
            "clip",
            "params",
            "backbone params",
            "GFLOP (2·MAC)",
            "backbone GFLOP",
            "s / clip",
            "× iwa",
        ],
        [fmt(r, baseline.get(r[1])) for r in rows],
    )
    record(f"Model size and forward time ({args.device})", table)


if __name__ == "__main__":
    main()
