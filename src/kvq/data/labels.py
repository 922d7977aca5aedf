"""Label files: FAST-VQA video labels and LPVQ 7×7 region labels (docs/design.md, *Data formats*).

FAST-VQA format, one video per line (the path is relative to a data root)::

    relative/path.mp4, duration_s, fps, MOS        # -1 where a value is unknown

A CSV with a header row naming at least ``path`` and ``mos`` is accepted too.

LPVQ format, one image per line, the 49 cells of a 7×7 grid in row-major order::

    name.png (0,0):3.5, (0,1):4.0, ..., (6,6):2.5
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvq.lpvq.grid import LPVQ_GRID  # kept importable from here for the annotation app

_CELL = re.compile(r"\((\d+)\s*,\s*(\d+)\)\s*:\s*([-+0-9.eE]+)")


class LabelFileError(ValueError):
    """A label file that cannot be parsed; the message names the file and line."""


@dataclass(frozen=True)
class VideoLabel:
    """One labelled video: ``path`` relative to the data root, ``-1`` marks unknown values."""

    path: str
    mos: float
    duration: float = -1.0
    fps: float = -1.0


def read_video_labels(path: str | Path) -> list[VideoLabel]:
    """Read a FAST-VQA label file or a CSV with a ``path,mos`` header."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    head = [c.strip().lower() for c in lines[0].split(",")]
    if "path" in head and "mos" in head:
        return _read_csv_with_header(path, text)
    labels = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 4:
            raise LabelFileError(
                f"{path}:{number}: expected 'path, duration, fps, MOS', got {len(cells)} fields"
            )
        try:
            duration, fps, mos = (float(c) for c in cells[1:])
        except ValueError as err:
            raise LabelFileError(f"{path}:{number}: {err}") from None
        labels.append(VideoLabel(cells[0], mos, duration, fps))
    return labels


def _read_csv_with_header(path: Path, text: str) -> list[VideoLabel]:
    reader = csv.DictReader(io.StringIO(text))
    reader.fieldnames = [f.strip().lower() for f in reader.fieldnames or []]
    labels = []
    for number, row in enumerate(reader, start=2):
        try:
            labels.append(
                VideoLabel(
                    row["path"].strip(),
                    float(row["mos"]),
                    float(row.get("duration") or -1),
                    float(row.get("fps") or -1),
                )
            )
        except (TypeError, ValueError, AttributeError) as err:
            raise LabelFileError(f"{path}:{number}: {err}") from None
    return labels


def write_video_labels(path: str | Path, labels: Iterable[VideoLabel]) -> None:
    """Write a FAST-VQA label file (the format :func:`read_video_labels` reads)."""
    lines = [f"{lb.path}, {lb.duration:g}, {lb.fps:g}, {lb.mos:.6g}\n" for lb in labels]
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_lpvq_labels(path: str | Path) -> dict[str, np.ndarray]:
    """Read an LPVQ label file → ``{image name: (7, 7) float array}`` in file order."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.strip().partition(" ")
        grid = np.full((LPVQ_GRID, LPVQ_GRID), np.nan)
        for r, c, score in _CELL.findall(rest):
            r, c = int(r), int(c)
            if not (0 <= r < LPVQ_GRID and 0 <= c < LPVQ_GRID):
                raise LabelFileError(f"{path}:{number}: cell ({r},{c}) is outside the 7×7 grid")
            grid[r, c] = float(score)
        if np.isnan(grid).any():
            missing = int(np.isnan(grid).sum())
            raise LabelFileError(f"{path}:{number}: {name!r} lacks {missing} of the 49 cells")
        out[name] = grid
    return out


def write_lpvq_labels(path: str | Path, grids: dict[str, np.ndarray]) -> None:
    """Write ``{image name: (7, 7) scores}`` in the LPVQ label format."""
    lines = []
    for name, grid in grids.items():
        grid = np.asarray(grid, dtype=float)
        if grid.shape != (LPVQ_GRID, LPVQ_GRID):
            raise ValueError(f"{name}: expected a 7×7 grid, got shape {grid.shape}")
        cells = ", ".join(
            f"({r},{c}):{grid[r, c]:.4g}" for r in range(LPVQ_GRID) for c in range(LPVQ_GRID)
        )
        lines.append(f"{name} {cells}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_groups(path: str | Path) -> dict[str, str]:
    """Read a group file (CSV ``path,group`` with that header) → ``{video path: group}``.

    Videos of one group show the same content at different severities of the same damage
    (``kvq synth``'s ladders); training ranks them against each other.
    """
    path = Path(path)
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except OSError as err:
        raise LabelFileError(f"{path}: {err}") from None
    if rows and not {"path", "group"} <= set(rows[0]):
        raise LabelFileError(f"{path}: expected a CSV with the header 'path,group'")
    return {row["path"].strip(): row["group"].strip() for row in rows}


def write_groups(path: str | Path, groups: dict[str, str]) -> None:
    """Write ``{video path: group}`` in the format :func:`read_groups` reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "group"])
    writer.writerows(groups.items())
    Path(path).write_text(out.getvalue(), encoding="utf-8")
