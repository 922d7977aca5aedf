"""Inference and training-step speed of KVQ variants on whatever device is present.

    python benchmarks/speed.py                                   # CPU: 32×224², batch 1
    python benchmarks/speed.py --size 448 --batch 8 --dtype bf16 # a GPU: the paper's input

For every model (``ARCH`` or ``ARCH:ATTENTION``, e.g. ``kvq-t:iwa``) it prints ms per clip,
clips/s, peak memory and achieved TFLOP/s (FLOPs from torch's flop counter on one clip, 2·MAC)
for inference, and the time and peak memory of one training step (forward, loss with the
Local Perception Constraint, backward, AdamW step) at ``--train-batch``. Results are printed,
appended to benchmarks/RESULTS.md and written as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import resource

import torch
from common import markdown_table, median_seconds, record
from model import count_flops

import kvq
from kvq.models.swin3d import PRIOR_IMPLS
from kvq.runtime import autocast
from kvq.train.losses import KVQLoss, cube_quality_map


def parse_model(spec: str) -> tuple[str, dict]:
    arch, _, attention = spec.partition(":")
    return arch, ({"attention": attention} if attention else {})


def peak_memory_gb(device: torch.device) -> float:
    """Peak since the last reset on CUDA; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def bench_model(spec: str, args, device: torch.device, dtype) -> dict:
    arch, overrides = parse_model(spec)
    model = kvq.build_model(arch, **overrides).set_runtime(prior_impl=args.prior_impl)
    model = model.to(device)
    shape = (args.frames, args.size, args.size)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    row = {"model": spec, "clip": f"{args.frames}×{args.size}²", "device": str(device)}

    model.eval()
    clip = torch.randn(1, 3, *shape, device=device)
    with autocast(device, dtype):
        flops = count_flops(model, clip)
    batch = torch.randn(args.batch, 3, *shape, device=device)
    reset_peak(device)
    with torch.inference_mode(), autocast(device, dtype):
        seconds = median_seconds(lambda: model(batch), args.repeats, args.warmup, sync)
    per_clip = seconds / args.batch
    row.update(
        infer_batch=args.batch,
        infer_ms_per_clip=1e3 * per_clip,
        infer_clips_per_s=1 / per_clip,
        infer_peak_gb=peak_memory_gb(device),
        gflop_per_clip=flops / 1e9,
        infer_tflops=flops / per_clip / 1e12,
    )
    if args.train_batch:
        model.train()
        model.set_runtime(grad_checkpointing=args.checkpointing)
        loss_fn = KVQLoss()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        train_clip = torch.randn(args.train_batch, 3, *shape, device=device)
        mos = torch.rand(args.train_batch, device=device)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                out = model(train_clip)
                q_hat = cube_quality_map(
                    model.local_quality, train_clip, loss_fn.config.lpc_cube,
                    tuple(out.local_quality.shape[1:]),
                )  # fmt: skip
                loss = loss_fn(out.score, mos, out.local_quality, q_hat).total
            loss.backward()
            optimizer.step()

        reset_peak(device)
        seconds = median_seconds(step, max(1, args.repeats // 2), 1, sync)
        row.update(
            train_batch=args.train_batch,
            train_s_per_step=seconds,
            train_peak_gb=peak_memory_gb(device),
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["kvq-t", "kvq-t:iwa", "kvq-xs"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--train-batch", type=int, default=1, help="0 skips the training step")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--prior-impl", choices=PRIOR_IMPLS, default="chunked")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    rows = [bench_model(spec, args, device, dtype) for spec in args.models]
    header = ["model", "clip", "batch", "ms / clip", "clips / s", "peak GB", "GFLOP", "TFLOP/s"]
    table_rows = [
        [
            r["model"], r["clip"], r["infer_batch"], f"{r['infer_ms_per_clip']:.1f}",
            f"{r['infer_clips_per_s']:.2f}", f"{r['infer_peak_gb']:.2f}",
            f"{r['gflop_per_clip']:.1f}", f"{r['infer_tflops']:.3f}",
        ]
        for r in rows
    ]  # fmt: skip
    if args.train_batch:
        header += ["train batch", "s / step", "train peak GB"]
        for tr, r in zip(table_rows, rows):
            tr += [r["train_batch"], f"{r['train_s_per_step']:.2f}", f"{r['train_peak_gb']:.2f}"]
    notes = (
        f"dtype {args.dtype}; checkpointing {'on' if args.checkpointing else 'off'}; "
        f"saliency prior {args.prior_impl}"
    )
    if device.type == "cpu":
        notes += "; peak GB on CPU is the process's peak RSS so far (cumulative over rows)"
    record(f"Speed ({device.type})", markdown_table(header, table_rows), notes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
