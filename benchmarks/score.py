"""End-to-end scoring time of one 8-s 1080p30 H.264 video with the bundled default weights.

    python benchmarks/score.py                       # default weights, median of 3
    python benchmarks/score.py --weights w.safetensors --repeats 5

Times ``Predictor.score`` (decode and model separately, as the predictor reports them) and,
as the baseline in the same run, a plain decode of every frame to RGB — the floor any pipeline
that reads the video pays. Goal (issue: scoring as a product): ≤ 2 s per video on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import markdown_table, median_seconds, record
from decode import make_clip

from kvq.scoring import DEFAULT_WEIGHTS, load
from kvq.video import iter_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="default: the bundled weights")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    predictor = load(args.weights or DEFAULT_WEIGHTS, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip_1080p30.mp4"
        make_clip(video, args.seconds)
        predictor.score(video)  # warm-up: first-call allocations, codec initialisation
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = predictor.score(video)
            runs.append((time.perf_counter() - start, result.timings))
        full_decode = median_seconds(lambda: sum(1 for _ in iter_frames(video)), args.repeats, 0)

    total = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1]["decode_s"] for r in runs)
    model = statistics.median(r[1]["model_s"] for r in runs)
    spec = predictor.spec
    rows = [
        ["kvq score (total)", f"{total:.2f}", f"{total / full_decode:.2f}", f"{total / 2.0:.2f}"],
        ["  decode + sample", f"{decode:.2f}", f"{decode / full_decode:.2f}", "-"],
        ["  model", f"{model:.2f}", f"{model / full_decode:.2f}", "-"],
        ["baseline: decode every frame to RGB", f"{full_decode:.2f}", "1.00", "-"],
    ]
    notes = (
        f"weights {predictor.name}; input {spec.clip_len} frames, view {spec.view}, "
        f"{spec.output_size[0]}×{spec.output_size[1]}; {args.seconds}-s 1080p30 H.264; "
        f"median of {args.repeats}; device {args.device}"
    )
    table = markdown_table(["step", "s / video", "× full decode", "× 2-s goal"], rows)
    record("End-to-end scoring of an 8-s 1080p video", table, notes)


if __name__ == "__main__":
    main()
