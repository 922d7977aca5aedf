"""Decoding an 8-s 1080p30 H.264 clip to the model's 32×3×448×448 input.

    python benchmarks/decode.py                 # median of 5 runs, appends to RESULTS.md
    python benchmarks/decode.py --repeats 3 --no-record

Generates the clip in a temporary folder (moving textured content, x264 defaults: GOP 250),
then times, in the same run (runs interleaved across paths, median per path):
- ``kvq``: ``load_clip`` → uint8 (32, 448, 448, 3), the same output as ffmpeg's, and with
  ``normalize_clip`` → float32 (3, 32, 448, 448), the model's input;
- ``full decode``: every frame decoded and converted to full-size RGB (``iter_frames``);
- ``ffmpeg select+scale``: the ffmpeg binary (``imageio-ffmpeg``) extracting the same 32 frames
  with ``select`` and bicubic ``scale`` to 448² as raw RGB on a pipe, read into numpy.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from common import markdown_table, record

from kvq.video import ClipSpec, iter_frames, load_clip, normalize_clip, sample_segment_indices


def make_clip(
    path: Path, seconds: int, fps: int = 30, size: tuple[int, int] = (1080, 1920)
) -> None:
    """Textured content that moves (a shifted noise field over a drifting gradient)."""
    h, w = size
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 64, (h, w + seconds * fps * 4, 3), dtype=np.uint8)
    ramp = np.linspace(0, 190, w + seconds * fps * 4, dtype=np.float32).astype(np.uint8)
    texture += ramp[None, :, None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(texture[:, 4 * i : 4 * i + w], format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def ffmpeg_extract(ffmpeg: str, path: Path, indices: np.ndarray, size: int) -> np.ndarray:
    select = "+".join(f"eq(n\\,{i})" for i in indices)
    command = [ffmpeg, "-v", "error", "-i", str(path), "-vf",
               f"select='{select}',scale={size}:{size}:flags=bicubic",
               "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its finished children (the ffmpeg runs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def interleaved_medians(
    paths: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (wall s, CPU s) per path. Runs alternate between paths (after one warm-up each)
    so that load from other jobs on a shared machine hits every path alike; CPU time is less
    sensitive to that load than wall time."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for round_ in range(repeats + 1):
        for name, fn in paths.items():
            wall, cpu = time.perf_counter(), cpu_seconds()
            fn()
            if round_:
                times[name].append((time.perf_counter() - wall, cpu_seconds() - cpu))
    return {
        name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
        for name, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-record", action="store_true", help="print only, no RESULTS.md")
    args = parser.parse_args()

    spec = ClipSpec()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip_1080p30.mp4"
        print(f"encoding {args.seconds}-s 1080p30 H.264 clip ...", flush=True)
        make_clip(path, args.seconds)
        with av.open(str(path)) as c:
            num_frames = c.streams.video[0].frames
        indices = np.unique(sample_segment_indices(num_frames, spec))

        def ours_uint8():
            assert load_clip(path, spec).shape == (32, 448, 448, 3)

        def ours():
            assert normalize_clip(load_clip(path, spec)).shape == (3, 32, 448, 448)

        def full():
            assert sum(1 for _ in iter_frames(path)) == num_frames

        paths: dict[str, Callable[[], object]] = {
            "kvq load_clip (uint8, like ffmpeg's)": ours_uint8,
            "kvq load_clip + normalize_clip (float32)": ours,
            "full decode to RGB (iter_frames)": full,
        }
        try:
            import imageio_ffmpeg

            ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError):
            ffmpeg = None
        if ffmpeg:
            frames = ffmpeg_extract(ffmpeg, path, indices, 448)
            assert frames.shape[0] == len(indices), frames.shape
            # Same frames as ours (swscale bicubic in both; rounding may differ).
            mean_diff = np.abs(frames.astype(int) - load_clip(path, spec).numpy()).mean()
            print(f"mean |ffmpeg - kvq| pixel difference: {mean_diff:.2f}")
            paths["ffmpeg select+scale (subprocess)"] = lambda: ffmpeg_extract(
                ffmpeg, path, indices, 448
            )
        timings = interleaved_medians(paths, args.repeats)
    base = timings.get("ffmpeg select+scale (subprocess)")
    rows = [
        [
            name,
            f"{wall:.3f}",
            f"{wall / base[0]:.2f}×" if base else "-",
            f"{cpu:.3f}",
            f"{cpu / base[1]:.2f}×" if base else "-",
        ]
        for name, (wall, cpu) in timings.items()
    ]
    header = ["path", "wall s (median)", "vs ffmpeg", "CPU s (median)", "vs ffmpeg"]
    table = markdown_table(header, rows)
    notes = (
        f"{num_frames} frames, 32 sampled (8×4, stride 2) to 448² bicubic; median of"
        f" {args.repeats} interleaved runs; machine shared with other jobs while measuring"
    )
    if args.no_record:
        print(table)
    else:
        record("Decoding", table, notes)


if __name__ == "__main__":
    main()
