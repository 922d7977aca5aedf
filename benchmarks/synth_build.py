"""Build time of ``kvq synth`` per clip, one worker (baseline) vs N workers, and the implied
time of the default 1000-clip corpus.

    python benchmarks/synth_build.py [--sources data/sources] [--clips 16] [--workers 2]

Each configuration builds the same ``--clips`` clips of the default preset into a fresh
temporary folder; CPU time counts the worker processes and the ffmpeg children they wait for.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from common import markdown_table, record

from kvq.synth import SynthConfig, build_corpus


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="data/sources")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = SynthConfig.default(num_videos=args.clips)
    rows, baseline = [], None
    for workers in (1, args.workers):
        with tempfile.TemporaryDirectory() as out:
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            build_corpus(out, [args.sources], config, workers=workers, progress=False)
            wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
        per_clip = wall / args.clips
        baseline = baseline or per_clip
        rows.append(
            [
                f"{workers} worker(s)",
                f"{per_clip:.2f}",
                f"{cpu / args.clips:.2f}",
                f"{baseline / per_clip:.2f}×",
                f"{1000 * per_clip / 60:.0f} min",
            ]
        )
    table = markdown_table(
        ["build", "wall s / clip", "CPU s / clip", "speed-up vs 1 worker", "1000 clips (est.)"],
        rows,
    )
    record(
        "Synthetic corpus build (kvq synth)",
        table,
        notes=f"{args.clips} clips of the default preset (640×360, 60 frames) per row; "
        "machine under load from other jobs while measuring",
    )


if __name__ == "__main__":
    main()
