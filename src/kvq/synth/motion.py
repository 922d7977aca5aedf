"""Stills become clips: a virtual camera pans, zooms and shakes slightly over the photograph,
and an optional overlay (a disc cut from elsewhere in the picture) moves across the frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Zoom 1 fits the whole picture to the frame; MAX_ZOOM frames a quarter of its width, which for
# the pictures as loaded (at most MAX_ZOOM × the frame, see kvq.synth.sources) is one picture
# pixel per frame pixel, or an upscale for smaller photographs.
MIN_ZOOM, MAX_ZOOM = 1.1, 4.0


@dataclass(frozen=True)
class CameraPath:
    """Linear pan from ``start`` to ``end`` (centre, fractions of the picture), zoom from
    ``zoom[0]`` to ``zoom[1]`` (1 = the picture just covers the frame) and a smooth hand shake of
    ``shake`` frame pixels (at 640 wide) drawn from ``seed``.

    Sampled zooms reach :data:`MAX_ZOOM`: real footage comes at every density of detail per
    pixel, from a downscaled photograph (sharp at every pixel) to a close-up at the camera's own
    resolution or an upscaled picture (soft even when pristine); a corpus of whole-picture views
    only would teach that every soft pixel is damage."""

    start: tuple[float, float] = (0.5, 0.5)
    end: tuple[float, float] = (0.5, 0.5)
    zoom: tuple[float, float] = (1.0, 1.0)
    shake: float = 0.0
    seed: int = 0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> CameraPath:
        # log-uniform base zoom in [MIN_ZOOM, MAX_ZOOM] (as many close-ups as wide views per
        # octave), then at most 25 % in or out over the clip
        u = rng.uniform(0.0, 1.0, size=2)
        base = MIN_ZOOM * (MAX_ZOOM / MIN_ZOOM) ** u[0]
        zoom = (base, np.clip(base * 1.25 ** (2 * u[1] - 1), MIN_ZOOM, MAX_ZOOM))
        start = rng.uniform(0.35, 0.65, size=2)
        end = np.clip(start + rng.normal(0, 0.08, size=2), 0.2, 0.8)
        return cls(
            start=tuple(round(float(v), 4) for v in start),
            end=tuple(round(float(v), 4) for v in end),
            zoom=tuple(round(float(v), 4) for v in zoom),
            shake=round(float(rng.uniform(0.0, 2.0)), 3),
            seed=int(rng.integers(2**31)),
        )

    def render(self, image: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
        """(num_frames, height, width, 3) uint8 clip of the (H0, W0, 3) uint8 ``image``."""
        picture = Image.fromarray(image)
        # The affine resampling below does not filter: shrink the picture first (antialiased)
        # so that no frame of the clip takes more than one picture pixel per frame pixel.
        shrink = max(width / picture.width, height / picture.height) * min(self.zoom)
        if shrink < 1.0:
            size = (max(1, round(picture.width * shrink)), max(1, round(picture.height * shrink)))
            picture = picture.resize(size, Image.LANCZOS)
        w0, h0 = picture.size
        cover = max(width / w0, height / h0)  # frame pixels per picture pixel at zoom 1
        s = np.linspace(0.0, 1.0, num_frames)
        s = s * s * (3 - 2 * s)  # ease in and out, as a camera operator would
        zoom = self.zoom[0] + (self.zoom[1] - self.zoom[0]) * s
        centre = np.outer(1 - s, self.start) + np.outer(s, self.end)
        jitter = _smooth_noise(self.seed, num_frames) * self.shake * width / 640.0
        frames = np.empty((num_frames, height, width, 3), np.uint8)
        for i in range(num_frames):
            step = 1.0 / (cover * zoom[i])  # picture pixels per frame pixel
            half_w, half_h = step * width / 2, step * height / 2
            # keep the view inside the picture
            cx = np.clip(centre[i, 0] * w0, half_w, w0 - half_w) + jitter[i, 0] * step
            cy = np.clip(centre[i, 1] * h0, half_h, h0 - half_h) + jitter[i, 1] * step
            affine = (step, 0.0, cx - half_w, 0.0, step, cy - half_h)
            view = picture.transform((width, height), Image.AFFINE, affine, Image.BILINEAR)
            frames[i] = np.asarray(view)
        return frames


def _smooth_noise(seed: int, n: int) -> np.ndarray:
    """(n, 2) low-pass random walk with unit standard deviation."""
    raw = np.random.default_rng(seed).standard_normal((n + 8, 2))
    kernel = np.hanning(9)
    smooth = np.stack([np.convolve(raw[:, k], kernel, mode="valid") for k in range(2)], axis=1)
    return smooth[:n] / (smooth.std() + 1e-6)


@dataclass(frozen=True)
class Overlay:
    """A disc of radius ``radius`` (fraction of the frame height) cut from ``source`` (a point
    of the first frame, fractions) that slides from ``start`` to ``end`` over the clip."""

    source: tuple[float, float]
    start: tuple[float, float]
    end: tuple[float, float]
    radius: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Overlay:
        r = lambda *a: tuple(round(float(v), 4) for v in rng.uniform(*a))  # noqa: E731
        return cls(
            source=r(0.2, 0.8, 2),
            start=r(0.1, 0.9, 2),
            end=r(0.1, 0.9, 2),
            radius=round(float(rng.uniform(0.08, 0.18)), 4),
        )

    def render(self, frames: np.ndarray) -> np.ndarray:
        """Composite the moving disc onto (T, H, W, 3) uint8 frames (a new array)."""
        t, h, w = frames.shape[:3]
        rad = max(2, round(self.radius * h))
        size = 2 * rad
        sy = int(np.clip(self.source[1] * h - rad, 0, h - size))
        sx = int(np.clip(self.source[0] * w - rad, 0, w - size))
        sprite = frames[0, sy : sy + size, sx : sx + size].astype(np.float32)
        yy, xx = np.mgrid[0:size, 0:size] + 0.5 - rad
        alpha = np.clip(rad - np.hypot(yy, xx), 0.0, 1.0)[..., None].astype(np.float32)
        out = frames.copy()
        for i, s in enumerate(np.linspace(0.0, 1.0, t)):
            cx = (1 - s) * self.start[0] + s * self.end[0]
            cy = (1 - s) * self.start[1] + s * self.end[1]
            y0 = int(np.clip(round(cy * h) - rad, 0, h - size))
            x0 = int(np.clip(round(cx * w) - rad, 0, w - size))
            region = out[i, y0 : y0 + size, x0 : x0 + size].astype(np.float32)
            out[i, y0 : y0 + size, x0 : x0 + size] = np.rint(
                region + alpha * (sprite - region)
            ).astype(np.uint8)
        return out
