"""Which frames and which pixels a clip takes: temporal indices and spatial plans.

Everything here is pure arithmetic on sizes and counts (no decoding), so it is cheap to test
and deterministic given the ``rng``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kvq.video.spec import ClipSpec

RandomState = np.random.Generator | int | None


def sample_segment_indices(
    num_frames: int, spec: ClipSpec, train: bool = False, rng: RandomState = None
) -> np.ndarray:
    """Frame indices of the clip(s) of a ``num_frames``-frame video (docs/design.md, *Input*).

    The video is cut into ``spec.num_segments`` equal segments; each contributes
    ``spec.frames_per_segment`` frames ``spec.stride`` apart. In training the run starts at a
    random frame of its segment (drawn from ``rng``); at inference it is centred in the
    segment, so the same video always gives the same frames. Runs longer than their segment
    continue into the next one and indices wrap modulo ``num_frames`` (short videos).

    Returns int64 indices of shape (T,) with T = spec.clip_len, or (num_clips, T) when
    ``spec.num_clips`` > 1 (inference spreads the clips evenly inside each segment).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    segments, clips = spec.num_segments, spec.num_clips
    span = (spec.frames_per_segment - 1) * spec.stride + 1
    bounds = np.arange(segments + 1, dtype=np.int64) * num_frames // segments
    starts, lengths = bounds[:-1], np.diff(bounds)
    slack = np.maximum(lengths - span, 0)  # how far a run can move inside its segment
    if train:
        offsets = np.random.default_rng(rng).integers(0, slack + 1, size=(clips, segments))
    else:
        clip = np.arange(clips, dtype=np.int64)[:, None]
        offsets = (2 * clip + 1) * slack // (2 * clips)  # centre when clips == 1
    steps = np.arange(spec.frames_per_segment, dtype=np.int64) * spec.stride
    indices = (starts + offsets)[..., None] + steps  # (clips, segments, frames_per_segment)
    indices = indices.reshape(clips, -1) % num_frames
    return indices[0] if clips == 1 else indices


@dataclass(frozen=True)
class SpatialPlan:
    """How to cut one output frame out of a display-oriented frame.

    The frame is first scaled to ``source_size`` (H, W) — its own size when no scaling is
    needed — then the ``patch_size`` windows whose top-left corners are ``corners`` (row-major
    over a ``grid`` of rows × columns) are stitched into the output of
    grid × patch_size pixels.
    """

    source_size: tuple[int, int]
    patch_size: tuple[int, int]
    grid: tuple[int, int]
    corners: tuple[tuple[int, int], ...]

    @property
    def output_size(self) -> tuple[int, int]:
        return self.grid[0] * self.patch_size[0], self.grid[1] * self.patch_size[1]

    @property
    def is_plain_resize(self) -> bool:
        return self.source_size == self.output_size and self.grid == (1, 1)

    def apply(self, source: np.ndarray, out: np.ndarray) -> None:
        """Write the view of ``source`` (source_size + (3,)) into ``out`` (output_size + (3,))."""
        ph, pw = self.patch_size
        columns = self.grid[1]
        for k, (y, x) in enumerate(self.corners):
            r, c = divmod(k, columns)
            out[r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] = source[y : y + ph, x : x + pw]


def _cover(size: tuple[int, int], minimum: tuple[int, int]) -> tuple[int, int]:
    """Smallest aspect-preserving upscale of ``size`` covering ``minimum`` (never downscales)."""
    scale = max(1.0, minimum[0] / size[0], minimum[1] / size[1])
    return (
        max(minimum[0], math.ceil(size[0] * scale - 1e-6)),
        max(minimum[1], math.ceil(size[1] * scale - 1e-6)),
    )


def plan_view(
    frame_size: tuple[int, int], spec: ClipSpec, train: bool = False, rng: RandomState = None
) -> SpatialPlan:
    """The :class:`SpatialPlan` of ``spec.view`` for frames of ``frame_size`` (H, W).

    Random choices (crop window, fragment positions) come from ``rng`` in training; at
    inference windows are centred.
    """
    if spec.view == "resize":
        return SpatialPlan(spec.size, spec.size, (1, 1), ((0, 0),))
    randomised = train and spec.view in ("random_crop", "fragments")
    gen = np.random.default_rng(rng) if randomised else None

    def offset(slack: int) -> int:
        return int(gen.integers(0, slack + 1)) if gen is not None else slack // 2

    if spec.view in ("center_crop", "random_crop"):
        source = _cover(frame_size, spec.size)
        corner = (offset(source[0] - spec.size[0]), offset(source[1] - spec.size[1]))
        return SpatialPlan(source, spec.size, (1, 1), (corner,))
    # Fragments (FAST-VQA): one patch per grid cell, at a random or centred place in the cell.
    g, p = spec.fragment_grid, spec.fragment_size
    source = _cover(frame_size, (g * p, g * p))
    cell_h, cell_w = source[0] // g, source[1] // g
    corners = tuple(
        (r * cell_h + offset(cell_h - p), c * cell_w + offset(cell_w - p))
        for r in range(g)
        for c in range(g)
    )
    return SpatialPlan(source, (p, p), (g, g), corners)
