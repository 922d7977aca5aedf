"""Helpers shared by the benchmark scripts: timing, machine description, RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def median_seconds(
    fn: Callable[[], object],
    repeats: int = 3,
    warmup: int = 1,
    sync: Callable[[], object] = lambda: None,
) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs;
    ``sync()`` waits for asynchronous device work (e.g. ``torch.cuda.synchronize``)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    """One line describing the machine: CPU model and count, GPU if any, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores"
    try:
        import torch

        desc += f", torch {torch.__version__}, {torch.get_num_threads()} threads"
        if torch.cuda.is_available():
            desc += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return desc


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def record(title: str, table: str, notes: str = "") -> None:
    """Print ``table`` and append it to benchmarks/RESULTS.md with machine, command and date."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = (
        f"\n## {title} — {stamp}\n\n- machine: {machine()}\n- command: `{command}`\n"
        + (f"- notes: {notes}\n" if notes else "")
        + f"\n{table}\n"
    )
    print(section)
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nEach section is appended by a benchmark script.\n"
        )
    with RESULTS.open("a") as f:
        f.write(section)
