"""Pictures of *where* a video is good or bad: a PNG sheet and an optional overlay MP4.

The sheet shows a few sampled frames with the saliency map (where the model looks), the local
quality map (how good each region is) and their product (each region's share of the score)
overlaid, colour bars with the value ranges, and the 7×7 local scores (Q averaged over time,
the LPVQ grid) drawn over the middle frame.

In a maps folder each input's files are named after its whole file name, in its sub-folder
below the folder it was found under: ``videos/sub/clip.mp4`` → ``sub/clip.mp4.maps.png`` (and
``sub/clip.mp4.maps.mp4``), so that neither ``clip.mp4`` and ``clip.png`` nor same-named files
in different folders share a map file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from kvq.scoring.predictor import ScoreResult

# Colour maps as anchor colours, linearly interpolated: viridis-like for saliency (dark = ignored,
# yellow = looked at), red-yellow-green for quality (red = bad, green = good).
SALIENCY_COLOURS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
QUALITY_COLOURS = ((215, 48, 39), (252, 141, 89), (254, 224, 139), (145, 207, 96), (26, 152, 80))
CELL = 160  # pixels of one panel's longer side
LPVQ_GRID = 7
SHEET_SUFFIX, VIDEO_SUFFIX = ".maps.png", ".maps.mp4"


class MapsError(ValueError):
    """A maps folder whose map files would be written onto an input."""


def map_files(found: dict[str, str], folder: str | Path, video: bool) -> dict[str, list[Path]]:
    """The map files of each input (path → the folder it was found under, as
    :func:`kvq.scoring.batch.find_inputs` gives them) in ``folder``: its sheet, then with
    ``video`` its overlay MP4. Names keep the input's path below the common folder of the
    folders the inputs were found under, so distinct inputs never share a map file."""
    if not found:
        return {}
    base = os.path.commonpath([os.path.abspath(root) for root in found.values()])
    suffixes = (SHEET_SUFFIX, VIDEO_SUFFIX) if video else (SHEET_SUFFIX,)
    files = {}
    for path in found:
        rel = os.path.relpath(os.path.abspath(path), base)
        files[path] = [Path(folder) / (rel + suffix) for suffix in suffixes]
    return files


def check_map_files(files: dict[str, list[Path]]) -> None:
    """Raise :class:`MapsError` where a map file of :func:`map_files` is one of the inputs."""
    inputs = {os.path.realpath(path): path for path in files}
    for target in (target for targets in files.values() for target in targets):
        overwritten = inputs.get(os.path.realpath(target))
        if overwritten is not None:
            raise MapsError(
                f"--maps would write {target} over the input {overwritten}: "
                "choose another --maps folder"
            )


def colourize(values: np.ndarray, lo: float, hi: float, colours) -> np.ndarray:
    """Values → uint8 RGB ``(*values.shape, 3)`` through the anchor colours over ``[lo, hi]``."""
    anchors = np.asarray(colours, dtype=np.float32)
    t = np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0) * (len(anchors) - 1)
    i = np.minimum(t.astype(int), len(anchors) - 2)
    frac = (t - i)[..., None]
    return (anchors[i] * (1 - frac) + anchors[i + 1] * frac).astype(np.uint8)


def local_grid(quality: np.ndarray, grid: int = LPVQ_GRID) -> np.ndarray:
    """Q ``(T', H', W')`` averaged over time and pooled to ``grid × grid`` (the LPVQ protocol:
    14×14 → 2×2 average pool → 7×7; other sizes adaptively)."""
    mean = torch.from_numpy(np.ascontiguousarray(quality.mean(axis=0)))[None, None]
    return F.adaptive_avg_pool2d(mean, grid)[0, 0].numpy()


def _overlay(frame: np.ndarray, colours: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """Blend a coarse colour map (upsampled bilinearly) over an RGB frame."""
    h, w = frame.shape[:2]
    heat = Image.fromarray(colours).resize((w, h), Image.BILINEAR)
    return Image.blend(Image.fromarray(frame), heat, alpha)


def _panel_size(frame: np.ndarray) -> tuple[int, int]:
    h, w = frame.shape[:2]
    scale = CELL / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _colour_bar(colours, lo: float, hi: float, label: str, width: int) -> Image.Image:
    bar = Image.new("RGB", (width, 28), "white")
    ramp = colourize(np.linspace(lo, hi, width - 80)[None].repeat(10, 0), lo, hi, colours)
    bar.paste(Image.fromarray(ramp), (40, 2))
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default()
    draw.text((2, 2), f"{lo:.2g}", fill="black", font=font)
    draw.text((width - 38, 2), f"{hi:.2g}", fill="black", font=font)
    draw.text((40, 14), label, fill="black", font=font)
    return bar


def render_sheet(result: ScoreResult, path: str | Path, rows: int = 4) -> Path:
    """Write the PNG sheet of one scored clip; returns its path."""
    frames, q, s = result.frames, result.local_quality, result.saliency
    if frames is None or q is None or s is None:
        raise ValueError(f"{result.path}: no maps to draw (error: {result.error})")
    t_out = q.shape[0]
    per_slice = max(1, frames.shape[0] // t_out)
    slices = np.unique(np.linspace(0, t_out - 1, min(rows, t_out)).round().astype(int))
    qs = q * s
    ranges = {
        "saliency": (0.0, float(s.max())),
        "quality": (float(q.min()), float(q.max())),
        "quality x saliency": (float(qs.min()), float(qs.max())),
    }
    maps = {"saliency": s, "quality": q, "quality x saliency": qs}
    schemes = {"saliency": SALIENCY_COLOURS, "quality": QUALITY_COLOURS}
    pw, ph = _panel_size(frames[0])
    cols = 1 + len(maps)
    title_h, label_h = 34, 14
    sheet_w = cols * pw
    bars = [
        _colour_bar(schemes.get(name, QUALITY_COLOURS), *ranges[name], name, sheet_w // len(maps))
        for name in maps
    ]
    grid_size = (2 * pw, 2 * ph)  # large enough to print 49 numbers
    grid_h = grid_size[1] + label_h
    height = title_h + label_h + len(slices) * ph + bars[0].height + grid_h
    sheet = Image.new("RGB", (sheet_w, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    score = "failed" if result.score is None else f"{result.score:.4f}"
    draw.text((4, 2), f"{Path(result.path).name}", fill="black", font=font)
    draw.text((4, 16), f"score {score}  (raw {result.raw_score:.4f})", fill="black", font=font)
    for c, name in enumerate(["frame", *maps]):
        draw.text((c * pw + 4, title_h), name, fill="black", font=font)
    y = title_h + label_h
    for t in slices:
        frame = frames[min(t * per_slice, frames.shape[0] - 1)]
        sheet.paste(Image.fromarray(frame).resize((pw, ph)), (0, y))
        for c, name in enumerate(maps, start=1):
            colours = colourize(maps[name][t], *ranges[name], schemes.get(name, QUALITY_COLOURS))
            sheet.paste(_overlay(frame, colours).resize((pw, ph)), (c * pw, y))
        draw.text((2, y + 2), f"t{t}", fill="white", font=font)
        y += ph
    for i, bar in enumerate(bars):
        sheet.paste(bar, (i * (sheet_w // len(maps)), y))
    y += bars[0].height
    draw.text((4, y), "7x7 local quality (Q averaged over time)", fill="black", font=font)
    sheet.paste(
        _grid_panel(frames[frames.shape[0] // 2], local_grid(q), grid_size), (0, y + label_h)
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _grid_panel(frame: np.ndarray, grid: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The middle frame with the 7×7 local scores written in their cells."""
    colours = colourize(grid, float(grid.min()), float(grid.max()), QUALITY_COLOURS)
    panel = _overlay(frame, colours, 0.35)
    panel = panel.resize(size)
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    w, h = size
    n = grid.shape[0]
    for r in range(n):
        for c in range(n):
            draw.text((c * w / n + 1, r * h / n + 1), f"{grid[r, c]:.2f}", fill="black", font=font)
    return panel


def write_overlay_video(result: ScoreResult, path: str | Path, fps: float = 8.0) -> Path:
    """An H.264 MP4 of the model's input frames with the ``Q·S`` map of their slice overlaid."""
    import av

    frames, qs = result.frames, result.local_quality * result.saliency
    per_slice = max(1, frames.shape[0] // qs.shape[0])
    lo, hi = float(qs.min()), float(qs.max())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(frames):
            t = min(i // per_slice, qs.shape[0] - 1)
            image = _overlay(frame, colourize(qs[t], lo, hi, QUALITY_COLOURS), 0.45)
            rgb = np.asarray(image)[: stream.height, : stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
