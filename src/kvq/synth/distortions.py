"""The eight LPVQ quality factors as composable distortions of a clip.

Every distortion is a small frozen dataclass holding its random choices (direction, seed, …);
calling it as ``d(frames, severity, mask)`` distorts ``frames`` (T, H, W, 3) uint8 with a
``severity`` in [0, 1] and returns a new uint8 clip. ``mask`` (H, W) float in [0, 1] (None = the
whole frame) blends the distorted clip into the original, so a pixel whose mask is 0 is returned
bit-exact. Region distortions only process the mask's bounding box plus the filter's reach.
"""

from __future__ import annotations

import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.ndimage import gaussian_filter

from kvq.synth.errors import SynthError
from kvq.synth.ffmpeg import ffmpeg_exe

FACTORS: tuple[str, ...] = (
    "motion_blur",
    "shake",
    "noise",
    "defocus",
    "artifacts",
    "compression",
    "bokeh",
    "exposure",
)


class Distortion(ABC):
    """Base class: subclasses implement :meth:`render` (whole clip) and :meth:`reach`."""

    name: ClassVar[str]
    grid: ClassVar[int] = 1  # the processed window starts on multiples of this (block codecs)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Distortion:
        """A distortion of this kind with its random choices drawn from ``rng``."""
        return cls()

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def reach(self, severity: float, height: int, width: int) -> int | None:
        """How far (pixels) outside the mask the output depends on input; None = whole frame."""
        return 0

    def registration(self) -> Distortion | None:
        """The purely geometric part of this distortion (None: it has none).

        Labels compare a clip with its pristine frames put through this part first: a
        full-reference measure reads a displacement of a few pixels as heavy damage although
        every frame still looks pristine, so only what geometry does not explain is scored.
        """
        return None

    def registered(
        self, frames: np.ndarray, severity: float, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """``frames`` put through :meth:`registration` (as they are when there is none): the
        reference that the labels measure this distortion against."""
        geometry = self.registration()
        return frames if geometry is None else geometry(frames, severity, mask)

    @abstractmethod
    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        """Distort a (T, H, W, 3) uint8 clip (the whole frame or a window of a frame
        ``frame_width`` wide, which sizes the effect); returns float32 or uint8, same shape."""

    def __call__(
        self, frames: np.ndarray, severity: float, mask: np.ndarray | None = None
    ) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"expected (T, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}"
            )
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"severity must be in [0, 1], got {severity}")
        if severity == 0.0:
            return frames.copy()
        if mask is None:
            return _to_uint8(self.render(frames, severity, frames.shape[2]))
        if mask.shape != frames.shape[1:3]:
            raise ValueError(f"mask shape {mask.shape} does not match frames {frames.shape[1:3]}")
        out = frames.copy()
        box = _mask_box(mask, self.reach(severity, *mask.shape), self.grid)
        if box is None:
            return out
        window, inner, outer = box
        distorted = self.render(frames[window], severity, frames.shape[2])[inner].astype(np.float32)
        base = frames[outer]
        m = mask[outer[1:3]][None, :, :, None]
        blended = _to_uint8(base + m * (distorted - base))
        out[outer] = np.where(m > 0, blended, base)
        return out


def _mask_box(mask: np.ndarray, reach: int | None, grid: int) -> tuple[tuple, tuple, tuple] | None:
    """Index tuples for a (T, H, W, 3) clip: the processed window (the mask's bounding box
    widened by ``reach``, None = whole frame, its start on a multiple of ``grid``), the box
    inside the window, the box in the frame."""
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    if rows.size == 0:
        return None
    h, w = mask.shape
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if reach is None:
        wy0, wy1, wx0, wx1 = 0, h, 0, w
    else:
        wy0, wy1 = max(0, y0 - reach), min(h, y1 + reach)
        wx0, wx1 = max(0, x0 - reach), min(w, x1 + reach)
    wy0, wx0 = wy0 - wy0 % grid, wx0 - wx0 % grid
    every = slice(None)
    window = (every, slice(wy0, wy1), slice(wx0, wx1))
    inner = (every, slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
    outer = (every, slice(y0, y1), slice(x0, x1))
    return window, inner, outer


def _to_uint8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_blur(x: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur (standard deviation ``radius``) of (T, H, W, C) float32 over H and W."""
    return gaussian_filter(x, (0.0, radius, radius, 0.0), truncate=3.0, mode="nearest")


def to_linear(frames: np.ndarray) -> np.ndarray:
    """uint8 → linear light in [0, 1] (gamma 2, close to sRGB's and cheap: a square)."""
    x = frames.astype(np.float32) / 255.0
    return x * x


def from_linear(x: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]) → float32 grey levels in [0, 255]."""
    return 255.0 * np.sqrt(np.clip(x, 0.0, 1.0))


def _blur_reach(radius: float) -> int:
    return int(np.ceil(3.0 * radius)) + 1


def _splat(points: np.ndarray) -> dict[tuple[int, int], float]:
    """Bilinear splat of (N, 2) sub-pixel (dy, dx) offsets into a sparse normalised kernel."""
    kernel: dict[tuple[int, int], float] = {}
    for dy, dx in points:
        y0, x0 = int(np.floor(dy)), int(np.floor(dx))
        fy, fx = dy - y0, dx - x0
        for oy, ox, weight in (
            (0, 0, (1 - fy) * (1 - fx)),
            (0, 1, (1 - fy) * fx),
            (1, 0, fy * (1 - fx)),
            (1, 1, fy * fx),
        ):
            if weight > 1e-6:
                kernel[y0 + oy, x0 + ox] = kernel.get((y0 + oy, x0 + ox), 0.0) + weight / len(
                    points
                )
    return kernel


def _shifted_sum(frames: np.ndarray, kernel: dict[tuple[int, int], float]) -> np.ndarray:
    """Σ weight · frames shifted by (dy, dx), edges repeated: sparse 2-D filter of (T, H, W, 3)."""
    h, w = frames.shape[1:3]
    pad = max(max(abs(dy), abs(dx)) for dy, dx in kernel)
    padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros(frames.shape, np.float32)
    for (dy, dx), weight in kernel.items():
        out += np.float32(weight) * padded[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return out


@dataclass(frozen=True)
class MotionBlur(Distortion):
    """Linear motion blur along ``angle`` (degrees); length up to 2.5% of the width."""

    name: ClassVar[str] = "motion_blur"
    angle: float = 0.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> MotionBlur:
        return cls(angle=round(float(rng.uniform(0.0, 180.0)), 2))

    def _length(self, severity: float, width: int) -> float:
        return 1.0 + severity * 0.025 * width

    def reach(self, severity: float, height: int, width: int) -> int:
        return int(np.ceil(self._length(severity, width) / 2)) + 1

    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        length = self._length(severity, frame_width)
        taps = np.linspace(-length / 2, length / 2, int(np.ceil(length)) + 1)  # ≤ 1 px apart
        theta = np.deg2rad(self.angle)
        return _shifted_sum(frames, _splat(np.outer(taps, [np.sin(theta), np.cos(theta)])))


@dataclass(frozen=True)
class SeededDistortion(Distortion):
    """A distortion whose randomness (per frame, per pixel) comes from its own ``seed``."""

    seed: int = 0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> SeededDistortion:
        return cls(seed=int(rng.integers(2**31)))


@dataclass(frozen=True)
class Shake(SeededDistortion):
    """Camera or object shake: a random sub-pixel displacement per frame, up to 1% of the
    width, and the motion blur of moving that far during the exposure (a 180° shutter: the
    blur spans the second half of the move from the previous frame's position).

    Labels register the reference to the displacement (:meth:`registration`), so shake is
    scored by its blur, which a single frame shows, not by the misalignment, which it does not.
    """

    name: ClassVar[str] = "shake"
    exposure_blur: bool = True

    def _amplitude(self, severity: float, width: int) -> float:
        return severity * 0.01 * width

    def reach(self, severity: float, height: int, width: int) -> int:
        return int(np.ceil(self._amplitude(severity, width))) + 2

    def registration(self) -> Shake:
        return replace(self, exposure_blur=False)

    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        amp = self._amplitude(severity, frame_width)
        shifts = np.random.default_rng(self.seed).uniform(-amp, amp, size=(len(frames), 2))
        out = []
        for i, end in enumerate(shifts):
            points = end[None]
            if self.exposure_blur:
                start = (shifts[i - 1] + end) / 2  # frame 0 moves from the last one's place
                taps = int(np.ceil(np.abs(end - start).max())) + 1  # ≤ 1 px apart
                points = np.linspace(start, end, taps)
            out.append(_shifted_sum(frames[i : i + 1], _splat(points)))
        return np.concatenate(out)


@dataclass(frozen=True)
class Noise(SeededDistortion):
    """Additive Gaussian sensor noise, standard deviation up to 60 grey levels, new every frame."""

    name: ClassVar[str] = "noise"

    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        noise = np.random.default_rng(self.seed).standard_normal(frames.shape, dtype=np.float32)
        noise *= severity * 60.0
        return noise + frames


@dataclass(frozen=True)
class Defocus(Distortion):
    """Out-of-focus blur, radius (standard deviation) from 0.05% to 1.25% of the width,
    geometric in the severity (0.32 → 8 px at 640 px wide).

    Geometric because blur is seen in ratios (σ 1 → 2 px is as visible as 4 → 8 px), and up to
    8 px because models look at native-resolution patches: a strong blur of a large frame is
    strong per pixel, and a model that never saw one reads its flat patches as clean.
    """

    name: ClassVar[str] = "defocus"
    sigma_fraction: ClassVar[tuple[float, float]] = (0.0005, 0.0125)  # σ / width at severity 0, 1

    def _radius(self, severity: float, width: int) -> float:
        low, high = self.sigma_fraction
        return width * low * (high / low) ** severity

    def reach(self, severity: float, height: int, width: int) -> int:
        return _blur_reach(self._radius(severity, width))

    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        return gaussian_blur(frames.astype(np.float32), self._radius(severity, frame_width))


@dataclass(frozen=True)
class Bokeh(Defocus):
    """Shallow depth of field: a stronger lens blur (σ up to 0.8% of the width) done in linear
    light, so highlights bloom. Its natural mask is the background; the subject stays sharp."""

    name: ClassVar[str] = "bokeh"
    sigma_linear: ClassVar[tuple[float, float]] = (0.5, 0.008)  # σ = a + severity · b · width

    def _radius(self, severity: float, width: int) -> float:
        a, b = self.sigma_linear
        return a + severity * b * width

    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        return from_linear(gaussian_blur(to_linear(frames), self._radius(severity, frame_width)))


_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.float32,
)
_JPEG_CHROMA = np.full((8, 8), 99.0, np.float32)
_JPEG_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
_RGB_TO_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32
)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC).astype(np.float32)


def mix_channels(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., C) → (..., R) float32 with ``out[..., r] = Σ_c matrix[r, c] · x[..., c]``.

    Written out per channel: NumPy's ``x @ matrix.T`` with an inner size of 3 is ~20× slower.
    """
    out = np.empty((*x.shape[:-1], matrix.shape[0]), np.float32)
    for r, row in enumerate(matrix):
        acc = out[..., r]
        np.multiply(x[..., 0], np.float32(row[0]), out=acc, casting="unsafe")
        for c in range(1, x.shape[-1]):
            acc += np.float32(row[c]) * x[..., c]
    return out


def _dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II matrix: row k is the k-th cosine basis vector."""
    k, x = np.mgrid[0:n, 0:n]
    d = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


_DCT64 = np.kron(_dct_matrix(), _dct_matrix()).astype(np.float32)  # acts on row-major 8×8 blocks


@dataclass(frozen=True)
class Artifacts(Distortion):
    """Blocking and ringing: 8×8 DCT quantisation as in JPEG, quality 41 → 1 with severity."""

    name: ClassVar[str] = "artifacts"
    grid: ClassVar[int] = 8  # blocks stay on the frame's 8×8 grid when only a region is coded

    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        quality = 40.0 * (1.0 - severity) ** 2 + 1.0
        steps = np.stack([_JPEG_LUMA, _JPEG_CHROMA, _JPEG_CHROMA]) * (50.0 / quality)  # IJG scale
        t, h, w, _ = frames.shape
        ph, pw = -h % 8, -w % 8
        ycc = mix_channels(frames, _RGB_TO_YCC)
        ycc[..., 0] -= 128.0
        ycc = np.pad(ycc, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        hb, wb = ycc.shape[1] // 8, ycc.shape[2] // 8
        blocks = ycc.reshape(t, hb, 8, wb, 8, 3).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 64)
        coef = (blocks @ _DCT64.T).reshape(-1, 3, 64)  # the 8×8 DCT of every block at once
        coef = np.round(coef / steps.reshape(3, 64)) * steps.reshape(3, 64)
        blocks = (coef.reshape(-1, 64) @ _DCT64).reshape(t, hb, wb, 3, 8, 8)
        ycc = blocks.transpose(0, 1, 4, 2, 5, 3).reshape(t, hb * 8, wb * 8, 3)[:, :h, :w]
        ycc[..., 0] += 128.0
        return mix_channels(ycc, _YCC_TO_RGB)


@dataclass(frozen=True)
class Compression(Distortion):
    """Real H.264 (libx264) coding at a CRF from 24 (severity → 0) to 51 (severity 1)."""

    name: ClassVar[str] = "compression"
    preset: str = "veryfast"

    def crf(self, severity: float) -> int:
        return round(24 + 27 * severity)

    def reach(self, severity: float, height: int, width: int) -> None:
        return None  # motion search and rate control see the whole frame

    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        return h264_roundtrip(frames, self.crf(severity), self.preset)


@dataclass(frozen=True)
class Exposure(Distortion):
    """Over- (gain up to ×2.5, clipped highlights) or under-exposure (gain down to ×0.2)."""

    name: ClassVar[str] = "exposure"
    over: bool = True

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Exposure:
        return cls(over=bool(rng.random() < 0.5))

    def render(self, frames: np.ndarray, severity: float, frame_width: int) -> np.ndarray:
        gain = 1.0 + 1.5 * severity if self.over else 1.0 - 0.8 * severity
        return from_linear(to_linear(frames) * np.float32(gain))


DISTORTIONS: dict[str, type[Distortion]] = {
    cls.name: cls
    for cls in (MotionBlur, Shake, Noise, Defocus, Artifacts, Compression, Bokeh, Exposure)
}
assert tuple(DISTORTIONS) == FACTORS


def make_distortion(name: str, params: dict[str, Any] | None = None) -> Distortion:
    """Rebuild a distortion from its factor name and :meth:`Distortion.params`."""
    if name not in DISTORTIONS:
        raise ValueError(f"unknown quality factor {name!r}; known: {list(FACTORS)}")
    return DISTORTIONS[name](**(params or {}))


def h264_roundtrip(frames: np.ndarray, crf: int, preset: str = "veryfast") -> np.ndarray:
    """Encode (T, H, W, 3) uint8 with libx264 at ``crf`` and decode it back."""
    import av

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roundtrip.mp4"
        encode_h264(frames, path, fps=25.0, crf=crf, preset=preset)
        with av.open(str(path)) as container:
            out = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(out)[:, : frames.shape[1], : frames.shape[2]]


def encode_h264(frames: np.ndarray, path: str | Path, fps: float, crf: int, preset: str) -> None:
    """Write (T, H, W, 3) uint8 RGB as a yuv420p H.264 MP4 with the ffmpeg of imageio-ffmpeg.

    Not through PyAV: its libx264 path gave different bytes from run to run even with one
    thread, while this command (one thread, bit-exact flags) is reproducible.
    """

    _, h, w, _ = frames.shape
    # yuv420p needs even sizes; repeat the last row/column (regions may have odd sizes)
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{frames.shape[2]}x{frames.shape[1]}",
        "-r", f"{fps:g}", "-i", "pipe:0",
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-threads", "1",
        "-pix_fmt", "yuv420p", "-fflags", "+bitexact", "-map_metadata", "-1",
        "-f", "mp4", str(path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise SynthError(
            f"ffmpeg could not encode {path}: {proc.stderr.decode(errors='replace')[-300:]}"
        )
