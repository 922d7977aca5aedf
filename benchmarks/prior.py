"""Saliency prior alone: the chunked softmax against the fused two-pass computation.

    python benchmarks/prior.py                          # CPU: kvq-t at 32×224², fp32
    python benchmarks/prior.py --size 448 --batch 8 --dtype bf16   # a GPU: the paper's input

For the stage-3 and stage-4 token counts of ``kvq-t`` at the given clip (stage 3 of 32×448²:
12,544 tokens of width 384) it prints ms per call, peak memory on GPUs, the arithmetic rate
counted as one ``q·kᵀ`` product (2·L²·C per clip; the fused version computes it twice plus
an unused attention output, so its useful rate is what the column shows) and the largest
relative error against the chunked fp32 result, and appends the table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools

import torch
from common import markdown_table, median_seconds, record

from kvq.models.swin3d import saliency_prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    g = torch.Generator(device=device).manual_seed(0)

    rows = []
    for stage, stride, width in ((3, 16, 384), (4, 32, 768)):
        length = (args.frames // 2) * (args.size // stride) ** 2
        q = torch.randn(args.batch, length, width, device=device, generator=g) * width**-0.5
        k = torch.randn(args.batch, length, width, device=device, generator=g)
        reference = saliency_prior(q, k, chunk=args.chunk)
        q, k = q.to(dtype), k.to(dtype)
        for impl in ("chunked", "fused"):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            run = functools.partial(saliency_prior, q, k, chunk=args.chunk, impl=impl)
            seconds = median_seconds(run, args.repeats, 1, sync)
            prior = run()
            error = ((prior - reference).abs() / reference).max().item()
            peak = (
                f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"
                if device.type == "cuda"
                else "–"
            )
            flops = 2 * length**2 * width * args.batch
            rows.append(
                [
                    stage, length, width, impl, f"{1e3 * seconds:.1f}", peak,
                    f"{flops / seconds / 1e12:.2f}", f"{error:.1e}",
                ]
            )  # fmt: skip
    header = ["stage", "tokens", "width", "impl", "ms / call", "peak GB", "q·kᵀ TFLOP/s",
              "max rel. error"]  # fmt: skip
    notes = (
        f"kvq-t at {args.frames}×{args.size}², batch {args.batch}, {args.dtype}, "
        f"chunk {args.chunk}; error against chunked fp32"
    )
    record(f"Saliency prior ({device.type})", markdown_table(header, rows), notes)


if __name__ == "__main__":
    main()
