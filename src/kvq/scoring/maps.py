"""Pictures of *where* a video is good or bad: a PNG sheet and an optional overlay MP4.

Both are drawn over the input's own frames, re-opened and decoded again, at its aspect ratio:
each map cell covers the part of the frame that the model's view took it from (for the
``fragments`` view, grid cell (i, j) of the frame; for ``resize``, the same share of the
frame), whatever the frame's shape. Colours have fixed ranges, so that a colour means the same
value in every picture of every video: local quality on the calibrated score's scale over the
calibration's ``[low, high]``, saliency over ``[0, SALIENCY_HIGH]``; each picture has a legend.

The sheet shows the frames the model sampled (one row per sampled time) with local quality,
saliency and "quality × saliency" (quality's colour, saliency's opacity: what the score counts)
overlaid, then the local scores (Q averaged over time; the 7×7 LPVQ grid when the map is finer)
written in their cells. The MP4 covers the whole video (frame rate and size: see ``MAX_FPS``
and ``MAX_SIDE``), each frame with the quality × saliency overlay of the output slice that
covers its time. docs/maps.md shows and explains both.

In a maps folder each input's files are named after its whole file name, in its sub-folder
below the folder it was found under: ``videos/sub/clip.mp4`` → ``sub/clip.mp4.maps.png`` (and
``sub/clip.mp4.maps.mp4``), so that neither ``clip.mp4`` and ``clip.png`` nor same-named files
in different folders share a map file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw, ImageFont

from kvq.lpvq.grid import LPVQ_GRID, local_grid
from kvq.scoring.predictor import Calibration, ScoreResult
from kvq.video import ClipSpec, SpatialPlan, plan_view
from kvq.video.decode import Deadline, decoded_frames, open_video, to_rgb

# Colour maps as anchor colours, linearly interpolated: viridis-like for saliency (dark = ignored,
# yellow = looked at), red-yellow-green for quality (red = bad, green = good).
SALIENCY_COLOURS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
QUALITY_COLOURS = ((215, 48, 39), (252, 141, 89), (254, 224, 139), (145, 207, 96), (26, 152, 80))
CELL = 160  # pixels of one sheet panel's longer side
SHEET_SUFFIX, VIDEO_SUFFIX = ".maps.png", ".maps.mp4"
# Weights without a calibrated range (raw scores of foreign checkpoints) colour local quality
# over this raw range, through the calibration's linear map: a fixed range all the same.
RAW_RANGE = (-1.0, 1.0)
# S averages 1 over the cells of each slice (1: the weight every cell would get alike).
SALIENCY_HIGH = 2.0
# The MP4: the source's frame rate up to MAX_FPS (a faster source keeps every k-th frame,
# k = ceil(fps / MAX_FPS): 60 → 30 fps, 50 → 25 fps), its longer side scaled to MAX_SIDE at
# most and MIN_SIDE at least (a tiny video is enlarged so that the legend stays legible), even
# sides for H.264. An image (or a one-frame video) gives a still of STILL_SECONDS; a clip tensor
# or a video without a frame rate plays at FALLBACK_FPS.
MAX_FPS = 30.0
MAX_SIDE, MIN_SIDE = 640, 320
STILL_SECONDS = 1
FALLBACK_FPS = 8.0
# Overlay opacities: the plain maps, and quality × saliency (quality's colour at an opacity
# from QS_ALPHA[0] for S = 0 up to QS_ALPHA[1] for S >= SALIENCY_HIGH).
MAP_ALPHA = 0.55
QS_ALPHA = (0.3, 0.8)
# The sheet's columns, each with shorter titles for narrow (portrait) panels.
COLUMNS = (
    ("frame",),
    ("local quality", "quality"),
    ("saliency",),
    ("quality x saliency", "quality x sal.", "Q x S"),
)
LEGEND_H = 40  # a legend's height: the MP4's strip under the picture (even: H.264)


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


def quality_range(calibration: Calibration) -> tuple[float, float]:
    """The fixed colour range of local quality: the calibration's ``[low, high]``; an end it
    lacks comes from :data:`RAW_RANGE` through its linear map."""
    ends = sorted(calibration.a * r + calibration.b for r in RAW_RANGE)
    lo = ends[0] if calibration.low is None else calibration.low
    hi = ends[1] if calibration.high is None else calibration.high
    if hi <= lo:  # one given end beyond the fallback's other end: keep the fallback's span
        span = max(ends[1] - ends[0], 1e-6)
        lo, hi = (lo, lo + span) if calibration.low is not None else (hi - span, hi)
    return lo, hi


def calibrated_quality(quality: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Each cell's Q on the score's scale: ``a·Q + b`` clipped to ``[low, high]``.

    S is a softmax over a slice's cells times their number, so the raw score ``mean(Q·S)`` is a
    mean of the cells' Q with weights that sum to 1; the calibration is linear before its clip,
    so the calibrated score is the same weighted mean of the cells' ``a·Q + b``. A cell's value
    is the score the video would get if every cell were like it.
    """
    values = calibration.a * np.asarray(quality, dtype=np.float64) + calibration.b
    low = -np.inf if calibration.low is None else calibration.low
    high = np.inf if calibration.high is None else calibration.high
    return np.clip(values, low, high)


def _quality_scheme(calibration: Calibration) -> tuple:
    """Quality's anchor colours from the low end of the scale up: green = good, whichever way
    the scale runs."""
    return QUALITY_COLOURS if calibration.higher_is_better else QUALITY_COLOURS[::-1]


def quality_colours(values: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Calibrated local quality → uint8 RGB over the fixed :func:`quality_range`."""
    return colourize(values, *quality_range(calibration), _quality_scheme(calibration))


def _axis_cells(pixels: int, cells: int, plan: SpatialPlan | None, axis: int) -> np.ndarray:
    """The map cell along ``axis`` of each of ``pixels`` pixels across the whole frame, -1
    where the model's view never looked (outside a crop)."""
    if plan is None:  # the model saw the picture as it is
        source, grid, patch, corners = pixels, 1, pixels, np.zeros(1)
    else:
        source, grid, patch = plan.source_size[axis], plan.grid[axis], plan.patch_size[axis]
        step = plan.grid[1] if axis == 0 else 1  # corners are row-major over the grid
        corners = np.array([plan.corners[k * step][axis] for k in range(grid)], dtype=float)
    centres = (np.arange(pixels) + 0.5) * source / pixels  # in the frame the plan cuts
    if grid == 1:  # resize or crop: one window
        fragment = np.zeros(pixels, dtype=int)
        seen = (centres >= corners[0]) & (centres < corners[0] + patch)
    else:  # fragments: a grid cell's patch stands for the whole cell (the last takes the rest)
        fragment = np.minimum(centres // (source // grid), grid - 1).astype(int)
        seen = np.ones(pixels, dtype=bool)
    inside = np.clip(centres - corners[fragment], 0.0, patch - 1e-6)
    mosaic = fragment * patch + inside  # where the pixel (or its cell's patch) is in the input
    index = np.minimum((mosaic * cells / (grid * patch)).astype(int), cells - 1)
    return np.where(seen, index, -1)


def cell_index(
    size: tuple[int, int], cells: tuple[int, int], plan: SpatialPlan | None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(H,)`` and columns ``(W,)`` of the ``cells`` (H', W') map cell that each pixel of
    a picture of the whole frame at ``size`` (H, W) belongs to, for the model's view ``plan`` of
    that frame (None: the model's input itself); -1 where the view did not look."""
    return tuple(_axis_cells(size[a], cells[a], plan, a) for a in (0, 1))


def _spread(cell_values: np.ndarray, index: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per-cell values ``(H', W', ...)`` → per-pixel ``(H, W, ...)`` (cells where -1 take 0)."""
    rows, cols = index
    return cell_values[np.maximum(rows, 0)][:, np.maximum(cols, 0)]


def _seen(index: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return (index[0] >= 0)[:, None] & (index[1] >= 0)[None, :]


@dataclass
class _Layer:
    """A colour map ready to lay over frames, in 8-bit fixed point: an MP4 frame then costs a
    few integer operations per pixel."""

    weighted: np.ndarray  # colour · opacity · 256, uint16 (H, W, 3)
    keep: np.ndarray  # (1 − opacity) · 256, uint16 (H, W, 1)

    @classmethod
    def of(cls, colours: np.ndarray, alpha: np.ndarray | float) -> _Layer:
        alpha = np.broadcast_to(np.clip(alpha, 0.0, 1.0), colours.shape[:2])
        fixed = np.rint(alpha * 256).astype(np.uint16)[..., None]
        return cls(colours.astype(np.uint16) * fixed, 256 - fixed)

    def over(self, frame: np.ndarray) -> np.ndarray:
        mixed = frame.astype(np.uint16) * self.keep  # frame·keep + weighted <= 255·256: no overflow
        mixed += self.weighted
        mixed += 128
        return (mixed >> 8).astype(np.uint8)


def _blend(frame: np.ndarray, colours: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with per-pixel ``colours`` over it at opacity ``alpha``."""
    return _Layer.of(colours, alpha).over(frame)


def _slice_scores(result: ScoreResult, calibration: Calibration) -> list[float]:
    """Each output slice's score: the calibration of its mean of Q·S."""
    qs = (result.local_quality * result.saliency).mean(axis=(1, 2))
    return [float(calibration(float(raw))) for raw in qs]


def qs_alpha(saliency: np.ndarray) -> np.ndarray:
    """The opacity of quality × saliency: :data:`QS_ALPHA` from S = 0 to ``SALIENCY_HIGH``."""
    lo, hi = QS_ALPHA
    return lo + (hi - lo) * np.clip(saliency / SALIENCY_HIGH, 0.0, 1.0)


@dataclass
class _Source:
    """The frames to draw on: the input file, or the clip tensor the model was given."""

    path: str | None
    size: tuple[int, int]  # display (H, W)
    fps: float
    num_frames: int
    plan: SpatialPlan | None
    frames: np.ndarray | None = None  # a clip tensor's frames
    timeout_s: float | None = None

    @property
    def still(self) -> bool:
        return self.num_frames <= 1


def _source(result: ScoreResult, spec: ClipSpec) -> _Source:
    if result.frames is None or result.local_quality is None or result.saliency is None:
        raise ValueError(f"{result.path}: no maps to draw (error: {result.error})")
    info = result.info
    if info.get("width") and info.get("height"):  # a file (a clip tensor has no info)
        size = (int(info["height"]), int(info["width"]))
        # The plan the scoring took: inference views are fixed by the frame size alone.
        return _Source(
            result.path,
            size,
            float(info.get("fps") or 0.0) or FALLBACK_FPS,
            int(info.get("num_frames") or 1),
            plan_view(size, spec),
            timeout_s=spec.timeout_s,
        )
    frames = result.frames
    return _Source(None, frames.shape[1:3], FALLBACK_FPS, frames.shape[0], None, frames)


def _frames(
    source: _Source, size: tuple[int, int], wanted: set[int] | None = None, step: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame at ``size``) for the ``wanted`` frames, else every ``step``-th."""
    if source.frames is not None:
        for index, frame in enumerate(source.frames):
            if (index in wanted) if wanted is not None else index % step == 0:
                yield index, np.asarray(Image.fromarray(frame).resize(size[::-1], Image.BICUBIC))
        return
    last = max(wanted) if wanted else None
    with open_video(source.path, Deadline(source.path, source.timeout_s)) as video:
        reformatter = VideoReformatter()
        for index, frame in enumerate(decoded_frames(video)):
            if (index in wanted) if wanted is not None else index % step == 0:
                yield index, np.ascontiguousarray(to_rgb(frame, size, reformatter))
            if last is not None and index >= last:
                return


def _checked_maps(
    result: ScoreResult, calibration: Calibration, still: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated Q and S ``(T', H', W')``; one time-averaged slice for a still."""
    q, s = calibrated_quality(result.local_quality, calibration), result.saliency
    if still:  # every slice saw the same picture
        return q.mean(axis=0, keepdims=True), s.mean(axis=0, keepdims=True)
    return q, np.asarray(s, dtype=np.float64)


def _slice_frame(result: ScoreResult, source: _Source, t: int, slices: int) -> int:
    """The first frame the model sampled for output slice ``t``."""
    if source.still:
        return 0
    if len(result.segments) == slices and source.fps:
        segment = result.segments[t]
        seen = getattr(segment, "seen_start_s", segment.start_s)  # results before the timeline
        return min(round(seen * source.fps), source.num_frames - 1)
    return min(t * source.num_frames // slices, source.num_frames - 1)


def slice_at(result: ScoreResult, time_s: float, slices: int, num_frames: int, fps: float) -> int:
    """The output slice that covers ``time_s``: the segment whose span holds it (the nearest
    one, for segments that span only the frames the model saw)."""
    if slices == 1:
        return 0
    if len(result.segments) == slices:
        starts = np.array([segment.start_s for segment in result.segments])
        ends = np.array([segment.end_s for segment in result.segments])
        gap = np.maximum(starts - time_s, 0.0) + np.maximum(time_s - ends, 0.0)
        return int(np.argmin(gap))
    return min(int(time_s * fps) * slices // max(num_frames, 1), slices - 1)


def _fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of ``size`` scaled to fit ``box`` (H, W), aspect kept."""
    scale = min(box[0] / size[0], box[1] / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _font(size: int = 11) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _ticks(lo: float, hi: float) -> list[float]:
    """Round numbers across ``[lo, hi]`` (its ends included), 3-6 of them."""
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 2))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 5:
            step *= factor
            break
    inner = np.arange(math.ceil(lo / step), math.floor(hi / step) + 1) * step
    apart = span / 12  # the ends always, round numbers that do not crowd them
    return [lo, *(round(float(v), 10) for v in inner if lo + apart < v < hi - apart), hi]


def _legend(width: int, title: str, lo: float, hi: float, colours) -> Image.Image:
    """A colour bar over ``[lo, hi]`` with its title and numbers, ``width`` pixels wide."""
    legend = Image.new("RGB", (width, LEGEND_H), "white")
    draw = ImageDraw.Draw(legend)
    font = _font(11)
    draw.text((6, 1), title, fill="black", font=font)
    x0, x1 = 10, width - 12
    ramp = colourize(np.linspace(lo, hi, x1 - x0)[None].repeat(10, 0), lo, hi, colours)
    legend.paste(Image.fromarray(ramp), (x0, 16))
    for value in _ticks(lo, hi):
        x = x0 + round((value - lo) / (hi - lo) * (x1 - x0 - 1))
        draw.line([(x, 26), (x, 28)], fill="black")
        label = f"{value:g}"
        draw.text((x - draw.textlength(label, font=font) / 2, 28), label, fill="black", font=font)
    return legend


def _labelled(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int = 11):
    """White text with a dark outline: legible on any frame."""
    draw.text(xy, text, fill="white", font=_font(size), stroke_width=2, stroke_fill="black")


def render_sheet(
    result: ScoreResult,
    path: str | Path,
    calibration: Calibration,
    spec: ClipSpec,
    rows: int = 4,
) -> Path:
    """Write the PNG sheet of one scored input (scored with ``spec`` and ``calibration``, the
    predictor's); returns its path."""
    source = _source(result, spec)
    q, s = _checked_maps(result, calibration, source.still)
    slices = np.unique(np.linspace(0, q.shape[0] - 1, min(rows, q.shape[0])).round().astype(int))
    ph, pw = _fit(source.size, (CELL, CELL))
    sheet_w = 4 * pw
    grid_h, grid_w = _fit(source.size, (3 * CELL, sheet_w))
    wanted = {int(t): _slice_frame(result, source, int(t), q.shape[0]) for t in slices}
    big = dict(_frames(source, (grid_h, grid_w), set(wanted.values())))
    if not big:
        raise ValueError(f"{result.path}: no frame to draw on")
    for t, i in wanted.items():  # a header that overstated the frame count: the nearest frame
        wanted[t] = i if i in big else min(big, key=lambda k: abs(k - i))
    index = cell_index((ph, pw), q.shape[1:], source.plan)
    seen = _seen(index)
    lo, hi = quality_range(calibration)
    scores = _slice_scores(result, calibration)
    font = _font(11)
    header_h, title_h = 48, 16
    scheme = _quality_scheme(calibration)
    legends = [
        _legend(sheet_w, f"local quality ({calibration.scale})", lo, hi, scheme),
        _legend(sheet_w, "saliency (1 = every cell alike)", 0.0, SALIENCY_HIGH, SALIENCY_COLOURS),
    ]
    note_h = 16
    legends_h = sum(legend.height for legend in legends)
    height = header_h + title_h + len(slices) * ph + legends_h + note_h + title_h + grid_h
    sheet = Image.new("RGB", (sheet_w, height), "white")
    draw = ImageDraw.Draw(sheet)
    _sheet_header(draw, result, source, calibration, spec, sheet_w)
    for c, names in enumerate(COLUMNS):
        name = next((n for n in names if draw.textlength(n, font=font) <= pw - 6), names[-1])
        draw.text((c * pw + 4, header_h), name, fill="black", font=font)
    y = header_h + title_h
    for t in slices:
        frame = np.asarray(Image.fromarray(big[wanted[int(t)]]).resize((pw, ph), Image.LANCZOS))
        q_px = _spread(quality_colours(q[t], calibration), index)
        s_px = _spread(colourize(s[t], 0.0, SALIENCY_HIGH, SALIENCY_COLOURS), index)
        qs = np.where(seen, _spread(qs_alpha(s[t]), index), 0.0)
        panels = (
            frame,
            _blend(frame, q_px, seen * MAP_ALPHA),
            _blend(frame, s_px, seen * MAP_ALPHA),
            _blend(frame, q_px, qs),
        )
        for c, panel in enumerate(panels):
            sheet.paste(Image.fromarray(panel), (c * pw, y))
        if not source.still:
            time_s = wanted[int(t)] / source.fps
            _labelled(draw, (4, y + 2), f"{time_s:.2f} s · {scores[int(t)]:.2f}")
        y += ph
    for legend in legends:
        sheet.paste(legend, (0, y))
        y += legend.height
    draw.text(
        (6, y), "quality x saliency: quality's colour, saliency's opacity", fill="black", font=font
    )
    y += note_h
    grid = q.mean(axis=0)
    if max(grid.shape) > LPVQ_GRID:  # the LPVQ protocol's 7×7 (pooled on the raw Q: linear)
        grid = calibrated_quality(local_grid(result.local_quality), calibration)
    what = "local quality averaged over time" if not source.still else "local quality"
    draw.text((6, y), f"{grid.shape[0]}x{grid.shape[1]} {what}", fill="black", font=font)
    middle = big[wanted[int(slices[len(slices) // 2])]]
    panel = _grid_panel(middle, grid, calibration, source.plan)
    sheet.paste(panel, ((sheet_w - panel.width) // 2, y + title_h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


def _sheet_header(
    draw: ImageDraw.ImageDraw,
    result: ScoreResult,
    source: _Source,
    calibration: Calibration,
    spec: ClipSpec,
    width: int,
) -> None:
    font = _font(11)
    name = Path(result.path).name
    while len(name) > 8 and draw.textlength(name, font=font) > width - 8:
        name = name[: len(name) // 2 - 2] + "…" + name[len(name) // 2 + 2 :]
    if calibration.scale == "raw":
        lines = [name, f"raw score {result.raw_score:.4f}"]
    else:
        lines = [
            name,
            f"score {result.score:.2f} on {calibration.scale} (raw {result.raw_score:.4f})",
        ]
    h, w = source.size
    if source.path is None:
        lines.append(f"clip tensor {w}x{h}, {source.num_frames} frames")
    elif source.still:
        lines.append(f"{w}x{h} image · view {spec.view}")
    else:
        duration = result.info.get("duration") or source.num_frames / max(source.fps, 1e-9)
        lines.append(f"{w}x{h}, {duration:.2f} s at {source.fps:g} fps · view {spec.view}")
    for i, line in enumerate(lines):
        draw.text((6, 2 + 15 * i), line, fill="black", font=font)


def _grid_panel(
    frame: np.ndarray, grid: np.ndarray, calibration: Calibration, plan: SpatialPlan | None
) -> Image.Image:
    """``frame`` with the local scores ``grid`` written in their cells, cell edges drawn."""
    size = frame.shape[:2]
    index = cell_index(size, grid.shape, plan)
    seen = _seen(index)
    colours = _spread(quality_colours(grid, calibration), index)
    panel = Image.fromarray(_blend(frame, colours, seen * 0.35))
    draw = ImageDraw.Draw(panel)
    font = _font(11 if min(size[0] / grid.shape[0], size[1] / grid.shape[1]) >= 24 else 9)
    for axis, cells in enumerate(index):
        for edge in np.flatnonzero(np.diff(cells) != 0) + 1:  # between two cells
            line = [(0, edge), (size[1], edge)] if axis == 0 else [(edge, 0), (edge, size[0])]
            draw.line(line, fill=(255, 255, 255))
    digits = 1 if abs(float(grid.max())) >= 10 else 2
    for r in range(grid.shape[0]):
        ys = np.flatnonzero(index[0] == r)
        for c in range(grid.shape[1]):
            xs = np.flatnonzero(index[1] == c)
            if len(ys) and len(xs):
                text = f"{grid[r, c]:.{digits}f}"
                x = xs.mean() - draw.textlength(text, font=font) / 2
                draw.text(
                    (x, ys.mean() - 6),
                    text,
                    fill="black",
                    font=font,
                    stroke_width=1,
                    stroke_fill="white",
                )
    return panel


def video_size(size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the MP4's picture for a frame of ``size``: the longer side scaled into
    ``[MIN_SIDE, MAX_SIDE]``, aspect kept, both sides even."""
    scale = min(max(1.0, MIN_SIDE / max(size)), MAX_SIDE / max(size))
    h, w = (max(2, round(side * scale / 2) * 2) for side in size)
    return h, w


def video_rate(fps: float) -> tuple[int, Fraction]:
    """(k, output rate): every k-th source frame at ``fps / k``, ``k = ceil(fps / MAX_FPS)``."""
    step = max(1, math.ceil(fps / MAX_FPS - 1e-6))
    return step, Fraction(fps).limit_denominator(1001) / step


def write_overlay_video(
    result: ScoreResult, path: str | Path, calibration: Calibration, spec: ClipSpec
) -> Path:
    """An H.264 MP4 of the whole input with the quality × saliency overlay of the output slice
    covering each frame's time, over a legend strip; returns its path."""
    import av

    source = _source(result, spec)
    q, s = _checked_maps(result, calibration, source.still)
    h, w = video_size(source.size)
    step, rate = (1, Fraction(1, STILL_SECONDS)) if source.still else video_rate(source.fps)
    index = cell_index((h, w), q.shape[1:], source.plan)
    seen = _seen(index)
    scores = _slice_scores(result, calibration)
    layers: dict[int, _Layer] = {}
    picture = np.empty((h + LEGEND_H, w, 3), dtype=np.uint8)
    picture[h:] = np.asarray(_video_legend(w, calibration))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h + LEGEND_H, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.options = {"preset": "veryfast"}  # 3× faster than the default at a similar size
        wanted = {0} if source.still else None
        for n, (i, frame) in enumerate(_frames(source, (h, w), wanted, step)):
            t = (
                0
                if source.still
                else slice_at(result, i / source.fps, q.shape[0], source.num_frames, source.fps)
            )
            if t not in layers:
                colours = _spread(quality_colours(q[t], calibration), index)
                layers[t] = _Layer.of(colours, np.where(seen, _spread(qs_alpha(s[t]), index), 0))
            picture[:h] = layers[t].over(frame)
            if not source.still:
                label = f"{i / source.fps:.2f} s · segment {t + 1}/{q.shape[0]}: {scores[t]:.2f}"
                _stamp(picture, label)
            out = av.VideoFrame.from_ndarray(picture, format="rgb24")
            out.pts, out.time_base = n, 1 / rate
            for packet in stream.encode(out):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _stamp(picture: np.ndarray, text: str, size: int = 12) -> None:
    """Write ``text`` in the top-left corner of ``picture`` (in place)."""
    corner = Image.fromarray(picture[: size + 10, : min(picture.shape[1], 16 * len(text))])
    _labelled(ImageDraw.Draw(corner), (4, 2), text, size)
    picture[: corner.height, : corner.width] = np.asarray(corner)


def _video_legend(width: int, calibration: Calibration) -> Image.Image:
    title = f"local quality ({calibration.scale}) · opacity: saliency"
    return _legend(width, title, *quality_range(calibration), _quality_scheme(calibration))
