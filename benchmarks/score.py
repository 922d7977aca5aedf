"""End-to-end scoring time of one 8-s 1080p30 H.264 video with the bundled default weights.

    python benchmarks/score.py                       # default weights, median of 3
    python benchmarks/score.py --weights w.safetensors --repeats 5

The video is real content as uploads are coded: the bundled sample (Big Buck Bunny) looped to
8 s, scaled to 1920×1080, x264 ``medium`` CRF 23 with a keyframe every 4 s — not a synthetic
``veryfast`` clip, which decodes 2–3× faster. Times ``Predictor.score`` (decode and model
separately, as the predictor reports them) and, as baselines in the same run, the same
clip read the way kvq read it before dropping unwanted frames (every frame decoded, with and
without kvq's decoder thread count) and a plain decode of every frame to RGB.
Goal: ≤ 1 s per video on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import markdown_table, median_seconds, record

import kvq.video.decode as decode
from kvq.scoring import DEFAULT_WEIGHTS, load
from kvq.video import iter_frames, load_clip

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "bigbuckbunny.mp4"
GOAL_S = 1.0


def make_real_clip(path: Path, seconds: int) -> None:
    """The bundled sample looped to ``seconds``, 1080p30, x264 medium CRF 23, GOP 120."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1",
               "-i", str(SAMPLE), "-t", str(seconds),
               "-vf", "scale=1920:1080:flags=bicubic,fps=30", "-c:v", "libx264",
               "-preset", "medium", "-crf", "23", "-g", "120", "-an", str(path)]  # fmt: skip
    subprocess.run(command, check=True)


@contextlib.contextmanager
def decoding(drop_unwanted: bool, threads: int | None) -> Iterator[None]:
    """kvq's decoder settings for a baseline: no unwanted frames dropped, and ``threads``
    (0: FFmpeg's default; None: kvq's)."""
    saved = decode.DROPPABLE_CODECS, decode.DECODE_THREADS
    if not drop_unwanted:
        decode.DROPPABLE_CODECS = frozenset()
    if threads is not None:
        decode.DECODE_THREADS = threads
    try:
        yield
    finally:
        decode.DROPPABLE_CODECS, decode.DECODE_THREADS = saved


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
        make_real_clip(video, args.seconds)
        predictor.score(video)  # warm-up: first-call allocations, codec initialisation
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = predictor.score(video)
            runs.append((time.perf_counter() - start, result.timings))
        full_decode = median_seconds(lambda: sum(1 for _ in iter_frames(video)), args.repeats, 0)
        baselines = {}
        for label, threads in (("kvq's", None), ("FFmpeg's default", 0)):
            with decoding(drop_unwanted=False, threads=threads):
                seconds = median_seconds(lambda: load_clip(video, predictor.spec), args.repeats, 0)
            baselines[label] = seconds

    total = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1]["decode_s"] for r in runs)
    model = statistics.median(r[1]["model_s"] for r in runs)
    spec = predictor.spec
    rows = [
        [
            "kvq score (total)",
            f"{total:.2f}",
            f"{total / full_decode:.2f}",
            f"{total / GOAL_S:.2f}",
        ],
        ["  decode + sample", f"{decode:.2f}", f"{decode / full_decode:.2f}", "-"],
        ["  model", f"{model:.2f}", f"{model / full_decode:.2f}", "-"],
        *[
            [
                f"baseline: decode + sample, every frame decoded, {label} threads",
                f"{seconds:.2f}",
                f"{seconds / full_decode:.2f}",
                "-",
            ]
            for label, seconds in baselines.items()
        ],
        ["baseline: decode every frame to RGB", f"{full_decode:.2f}", "1.00", "-"],
    ]
    notes = (
        f"weights {predictor.name}; input {spec.clip_len} frames, view {spec.view}, "
        f"{spec.output_size[0]}×{spec.output_size[1]}; {args.seconds}-s 1080p30 H.264 "
        "(sample content, x264 medium CRF 23, GOP 120); "
        f"median of {args.repeats}; device {args.device}"
    )
    table = markdown_table(["step", "s / video", "× full decode", "× 1-s goal"], rows)
    record("End-to-end scoring of an 8-s 1080p video", table, notes)


if __name__ == "__main__":
    main()
