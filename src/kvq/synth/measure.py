"""Labels from measurement: VMAF for the whole clip, SSIM per cell of the 7×7 grid, and the one
mapping of both to the 1–5 MOS scale.

The mapping (:func:`to_mos`) is defined on the VMAF scale: ``mos = 1 + 4·clip(v / 95, 0, 1)``
(VMAF 0 → 1, 95 or more → 5, linear between: no floor below which heavily damaged clips tie).
Per-cell SSIM is first put on the VMAF scale by :func:`ssim_to_vmaf_scale`, a straight line in
SSIM decibels ``−10·log10(1 − SSIM)`` fitted on whole-frame distortions of the default corpus
(where the mean cell SSIM and the clip's VMAF see the same damage), so a cell and a clip with the
same damage get the same label.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from kvq.lpvq.grid import LPVQ_GRID
from kvq.synth.distortions import mix_channels
from kvq.synth.errors import SynthError
from kvq.synth.ffmpeg import ffmpeg_exe

VMAF_FLOOR, VMAF_CEIL = 0.0, 95.0
# ssim_to_vmaf_scale: v = SSIM_DB_SLOPE · ssim_db + SSIM_DB_OFFSET (see the module docstring)
SSIM_DB_SLOPE, SSIM_DB_OFFSET = 3.98, 20.9


def to_mos(vmaf_scale: np.ndarray | float) -> np.ndarray:
    """The one mapping of a VMAF-scale value (0–100) to the 1–5 label scale."""
    u = (np.asarray(vmaf_scale, np.float64) - VMAF_FLOOR) / (VMAF_CEIL - VMAF_FLOOR)
    return 1.0 + 4.0 * np.clip(u, 0.0, 1.0)


def ssim_db(ssim: np.ndarray | float) -> np.ndarray:
    return -10.0 * np.log10(np.clip(1.0 - np.asarray(ssim, np.float64), 1e-5, None))


def ssim_to_vmaf_scale(ssim: np.ndarray | float) -> np.ndarray:
    """Per-cell SSIM → VMAF scale (0–100) by the fitted line in SSIM decibels."""
    return np.clip(SSIM_DB_SLOPE * ssim_db(ssim) + SSIM_DB_OFFSET, 0.0, 100.0)


def vmaf(distorted: str | Path, reference: np.ndarray, fps: float, subsample: int = 1) -> float:
    """Mean VMAF (model v0.6.1 NEG: no credit for contrast or sharpness "enhancement", which
    exposure changes would otherwise get) of the video file ``distorted`` against the pristine
    (T, H, W, 3) uint8 ``reference`` frames, streamed raw to ffmpeg; every ``subsample``-th
    frame."""
    h, w = reference.shape[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "vmaf.json"
        graph = (
            "[0:v]setpts=PTS-STARTPTS[d];[1:v]format=yuv420p,setpts=PTS-STARTPTS[r];"
            f"[d][r]libvmaf=model=version=vmaf_v0.6.1neg:log_fmt=json:log_path={log}"
            f":n_threads=1:n_subsample={subsample}"
        )
        cmd = [
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1",
            "-i", str(distorted),
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}",
            "-i", "pipe:0",
            "-lavfi", graph, "-f", "null", "-",
        ]  # fmt: skip
        proc = subprocess.run(
            cmd, input=np.ascontiguousarray(reference).tobytes(), capture_output=True
        )
        if proc.returncode != 0 or not log.exists():
            raise SynthError(
                f"VMAF failed on {distorted}: {proc.stderr.decode(errors='replace')[-500:]}"
            )
        return float(json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"])


def _luma(frames: np.ndarray) -> np.ndarray:
    return mix_channels(frames, np.array([[0.299, 0.587, 0.114]], np.float32))[..., 0]


def ssim_map(distorted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (Gaussian σ = 1.5, luma) of (..., H, W, 3) uint8 clips → (..., H, W)."""
    x, y = _luma(distorted), _luma(reference)
    sigma = [0.0] * (x.ndim - 2) + [1.5, 1.5]
    blur = lambda a: gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def grid_mean(values: np.ndarray, grid: int = LPVQ_GRID) -> np.ndarray:
    """Mean of (..., H, W) over each cell of a grid×grid partition and the leading axes."""
    h, w = values.shape[-2:]
    rows = np.linspace(0, h, grid + 1).round().astype(int)
    cols = np.linspace(0, w, grid + 1).round().astype(int)
    flat = values.reshape(-1, h, w)
    return np.array(
        [
            [flat[:, rows[r] : rows[r + 1], cols[c] : cols[c + 1]].mean() for c in range(grid)]
            for r in range(grid)
        ]
    )


def cell_ssim(distorted: np.ndarray, reference: np.ndarray, num_frames: int) -> np.ndarray:
    """7×7 grid of SSIM, each cell averaged over ``num_frames`` evenly spaced frames."""
    index = np.linspace(0, len(reference) - 1, min(num_frames, len(reference))).round().astype(int)
    return grid_mean(ssim_map(distorted[index], reference[index]))
