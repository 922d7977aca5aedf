"""One PNG per image: the picture with the 7×7 grid, the labelled grid and each variant's
predicted grid side by side, the value written in every cell (drawn with Pillow).

Colours are red (worse) → green (better): labels on the fixed 1–5 scale, predictions between
their own minimum and maximum (the model's Q has no fixed scale; the colours show how the model
ranks the regions of this image, the numbers its raw values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kvq.fileio import slug
from kvq.lpvq.grid import LPVQ_GRID
from kvq.lpvq.runner import LpvqRun
from kvq.scoring.maps import QUALITY_COLOURS, colourize
from kvq.video import ClipSpec, VideoError, load_clip

CELL = 40  # pixels per grid cell
PANEL = CELL * LPVQ_GRID
MARGIN = 12
TITLE_H = 16  # one line of text
HEADER = 2 * TITLE_H  # image name, then the panel titles
LABEL_RANGE = (1.0, 5.0)


def figure_size(num_variants: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure with ``num_variants`` predicted grids."""
    panels = 2 + num_variants
    return panels * PANEL + (panels + 1) * MARGIN, HEADER + PANEL + 2 * MARGIN


def _grid_panel(grid: np.ndarray, lo: float, hi: float, digits: int) -> Image.Image:
    colours = colourize(grid, lo, hi, QUALITY_COLOURS)
    panel = Image.fromarray(colours).resize((PANEL, PANEL), Image.NEAREST)
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    for (r, c), value in np.ndenumerate(grid):
        text = f"{value:.{digits}f}"
        width = draw.textlength(text, font=font)
        draw.text((c * CELL + (CELL - width) / 2, r * CELL + CELL / 2 - 6), text, fill="black",
                  font=font)  # fmt: skip
    _grid_lines(draw, (64, 64, 64))
    return panel


def _grid_lines(draw: ImageDraw.ImageDraw, colour: tuple[int, int, int]) -> None:
    for i in range(1, LPVQ_GRID):
        draw.line([(i * CELL, 0), (i * CELL, PANEL)], fill=colour)
        draw.line([(0, i * CELL), (PANEL, i * CELL)], fill=colour)


def _image_panel(frame: np.ndarray) -> Image.Image:
    """The picture stretched to the panel, as the model's resize view sees it."""
    panel = Image.fromarray(frame).resize((PANEL, PANEL), Image.BICUBIC)
    _grid_lines(ImageDraw.Draw(panel), (255, 255, 255))
    return panel


def grid_figure(
    frame: np.ndarray,
    labels: np.ndarray,
    predictions: list[tuple[str, np.ndarray]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Write the figure of one image: ``frame`` uint8 (H, W, 3), the (7, 7) ``labels`` and
    ``predictions`` as (panel title, (7, 7) grid) pairs; size :func:`figure_size`."""
    figure = Image.new("RGB", figure_size(len(predictions)), "white")
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default()
    draw.text((MARGIN, MARGIN), title, fill="black", font=font)
    panels = [
        ("image", _image_panel(frame)),
        ("labels (1-5)", _grid_panel(labels, *LABEL_RANGE, 2)),
    ]
    for name, grid in predictions:
        panels.append((name, _grid_panel(grid, float(grid.min()), float(grid.max()), 3)))
    for i, (name, panel) in enumerate(panels):
        x = MARGIN + i * (PANEL + MARGIN)
        draw.text((x, MARGIN + TITLE_H), name, fill="black", font=font)
        figure.paste(panel, (x, MARGIN + HEADER))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path)
    return path


def figure_name(image: str, taken: set[str]) -> str:
    """A flat, unique PNG file name for a (possibly nested) image name."""
    stem = slug(str(Path(image).with_suffix("")), default="image")
    name, n = f"{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name


def write_figures(run: LpvqRun, images_dir: str | Path, out: str | Path) -> list[Path]:
    """One figure per used image into ``out``; returns their paths."""
    spec = ClipSpec(size=(PANEL, PANEL), image_frames=1)
    out = Path(out)
    taken: set[str] = set()
    intra = {v.name: {r.name: r.srcc for r in run.metrics[v.name].per_image} for v in run.variants}
    paths = []
    for image, labels in run.labels.items():
        try:
            frames = load_clip(Path(images_dir) / image, spec).numpy()
        except VideoError:  # read a moment ago; gone or changed since: no figure, no crash
            continue
        predictions = [
            (f"{v.name} (SRCC {intra[v.name][image]:.2f})", run.grids[v.name][image])
            for v in run.variants
        ]
        frame = frames[len(frames) // 2]
        paths.append(
            grid_figure(frame, labels, predictions, out / figure_name(image, taken), image)
        )
    return paths
