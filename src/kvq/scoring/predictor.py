"""A ready-to-use scorer: weights + input spec + calibration (docs/design.md, *Public interface*).

``kvq.load(name_or_path)`` returns a :class:`Predictor`; ``predictor.score(path)`` returns a
:class:`ScoreResult` with the calibrated score, the raw model output, per-slice scores with
their time spans, the maps, the video's properties and timings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kvq.models import KVQModel
from kvq.models import load as load_model_weights
from kvq.models.bundled import DEFAULT_WEIGHTS
from kvq.models.pretrained import header_section, weights_status
from kvq.runtime import resolve_device
from kvq.video import ClipSpec, VideoError, read_clip, to_model_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """Maps the raw model output to the published score: ``clip(a·raw + b, low, high)``.

    Stored with the weights (``"calibration"`` in their JSON config), fitted on the validation
    split when the weights were trained; no constants live in code. ``scale`` names the scale
    of the calibrated score (``"raw"`` when the weights carry no calibration).
    """

    a: float = 1.0
    b: float = 0.0
    low: float | None = None
    high: float | None = None
    scale: str = "raw"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        for name in ("a", "b", "low", "high"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"calibration {name} must be a finite number, got {value}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"calibration low {self.low} is above high {self.high}")

    def __call__(self, raw: float) -> float:
        value = self.a * raw + self.b
        if self.low is not None:
            value = max(self.low, value)
        if self.high is not None:
            value = min(self.high, value)
        return value

    @classmethod
    def from_dict(cls, values: dict | None) -> Calibration:
        return cls(**(values or {}))


@dataclass(frozen=True)
class Segment:
    """One temporal slice of the quality map and its part of the video.

    ``start_s``–``end_s`` is the slice's share of the timeline (the segments of a video cover
    it from 0 to its duration, split halfway between the frames of neighbouring slices);
    ``seen_start_s``–``seen_end_s`` spans the frames the model saw for it. ``score`` is on the
    calibrated scale of the video's score (the calibration's line applied to ``raw_score``,
    the slice's mean of Q·S, and clipped alike): the video's raw score is the mean of the
    segments' raw scores.
    """

    start_s: float
    end_s: float
    seen_start_s: float
    seen_end_s: float
    score: float
    raw_score: float


@dataclass
class ScoreResult:
    """Everything known about one scored input; ``error`` is set (and scores None) on failure.

    ``local_quality`` and ``saliency`` are ``(T', H', W')`` float arrays (``T' = 16`` for the
    paper's 32-frame clips); ``frames`` the model's uint8 input ``(T, H, W, 3)``.
    """

    path: str
    score: float | None = None
    raw_score: float | None = None
    segments: list[Segment] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    error: str | None = None
    weights: str | None = None  # the predictor's weights_id, where it has one
    scale: str | None = None  # the calibrated score's scale, e.g. "MOS 1-5"
    higher_is_better: bool | None = None
    pooled: dict[str, float | None] = field(default_factory=dict)  # over segments (pool_segments)
    local_quality: np.ndarray | None = field(default=None, repr=False)
    saliency: np.ndarray | None = field(default=None, repr=False)
    frames: np.ndarray | None = field(default=None, repr=False)

    def to_row(self) -> dict:
        """JSON-serialisable row (no arrays) for the result files."""
        from kvq import __version__

        return {
            "path": self.path,
            "score": self.score,
            "raw_score": self.raw_score,
            "scale": self.scale,
            "higher_is_better": self.higher_is_better,
            "pooled": self.pooled,
            "segments": [dataclasses.asdict(s) for s in self.segments],
            "info": self.info,
            "timings": self.timings,
            "error": self.error,
            "weights": self.weights,
            "kvq_version": __version__,
        }


def pool_segments(scores: list[float]) -> dict[str, float | None]:
    """Pooled statistics of segment scores as VMAF's logs give them: mean, min, max and the
    harmonic mean (which weighs bad segments more; None unless every score is positive)."""
    if not scores:
        return {}
    values = np.asarray(scores, dtype=np.float64)
    harmonic = float(len(values) / np.sum(1.0 / values)) if (values > 0).all() else None
    return {
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "harmonic_mean": harmonic,
    }


def timeline_segments(
    indices: np.ndarray, fps: float, duration: float | None, per_slice: np.ndarray, calibrate
) -> list[Segment]:
    """The :class:`Segment` of each output slice: sampled frame ``indices`` ``(clips, T)``
    at ``fps``, the slices' raw scores ``per_slice`` ``(T',)``, ``calibrate`` raw → score."""
    per = indices.shape[1] // len(per_slice)  # sampled frames per output slice (2)
    spans = [indices[:, i * per : (i + 1) * per] for i in range(len(per_slice))]
    seen = [(float(span.min() / fps), float((span.max() + 1) / fps)) for span in spans]
    end = max(duration or 0.0, seen[-1][1])
    centres = [(a + b) / 2 for a, b in seen]
    bounds = [0.0] + [(x + y) / 2 for x, y in itertools.pairwise(centres)] + [end]
    return [
        Segment(bounds[i], bounds[i + 1], *seen[i], float(calibrate(raw)), float(raw))
        for i, raw in enumerate(per_slice)
    ]


def decode_input(path: str | Path, spec: ClipSpec) -> tuple[torch.Tensor, dict, np.ndarray | None]:
    """uint8 clip ``(T, H, W, 3)`` of ``spec``, the file's properties and its sampled frame
    indices (None for images). Raises :class:`kvq.video.VideoError`."""
    clip = read_clip(path, spec)  # one read: the file's properties come with its frames
    info, frames, indices = clip.info, clip.frames, clip.indices
    props = {
        "duration": info.duration,
        "fps": info.fps,
        "num_frames": info.num_frames,
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
    }
    return frames, props, None if info.is_image else indices


class Predictor:
    """Scores videos, images or clip tensors with one model; deterministic (eval mode)."""

    def __init__(
        self,
        model: KVQModel,
        spec: ClipSpec,
        calibration: Calibration | None = None,
        device: str | torch.device = "auto",
        name: str = "",
        weights_id: str = "",
        status: str | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if hasattr(self.model.backbone, "prepare_inference"):  # kvq-lite: a folded stem
            self.model.backbone.prepare_inference()
        self.spec = spec
        self.calibration = calibration or Calibration()
        self.name = name
        self.weights_id = weights_id  # file name + content hash: which weights gave a score
        # Why these weights are not a quality model (their header says so, or their calibration
        # runs opposite to the model's output); None for a quality model.
        self.status = status
        if status is not None:
            log.warning("%s: not a quality model: %s", name or "weights", status)

    @property
    def higher_is_better(self) -> bool:
        return self.calibration.higher_is_better

    @property
    def scale(self) -> str:
        return self.calibration.scale

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 clips ``(B, T, H, W, 3)``, or ``(B, clips, T, H, W, 3)`` for several clips per
        video (averaged) → raw scores ``(B,)``, Q and S ``(B, T', H', W')``."""
        lead = frames.shape[: frames.ndim - 4]
        x = to_model_input(frames.reshape(-1, *frames.shape[-4:]), self.model)
        out = self.model(x)
        arrays = []
        for t in (out.score, out.local_quality, out.saliency):
            t = t.float().cpu().reshape(*lead, *t.shape[1:])
            arrays.append((t.mean(dim=1) if len(lead) == 2 else t).numpy())
        return tuple(arrays)

    def result(
        self,
        path: str,
        frames: torch.Tensor,
        raw: float,
        quality: np.ndarray,
        saliency: np.ndarray,
        info: dict,
        indices: np.ndarray | None,
        timings: dict,
    ) -> ScoreResult:
        """Assemble a :class:`ScoreResult` from one clip's model outputs; outputs that are not
        finite (NaN weights) give an error result, never a score."""
        if not all(np.isfinite(x).all() for x in (raw, quality, saliency)):
            return self.failed(
                path,
                f"{path}: the model's output is not finite (NaN or infinity); are the weights "
                "broken?",
                info,
                timings,
            )
        per_slice = (quality * saliency).mean(axis=(1, 2))
        segments = []
        if indices is not None and info.get("fps"):
            indices = indices.reshape(-1, indices.shape[-1])  # (clips, T)
            segments = timeline_segments(
                indices, info["fps"], info.get("duration"), per_slice, self.calibration
            )
        return ScoreResult(
            path=path,
            score=float(self.calibration(raw)),
            raw_score=float(raw),
            segments=segments,
            pooled=pool_segments([s.score for s in segments]),
            info=info,
            timings=timings,
            local_quality=quality,
            saliency=saliency,
            frames=(frames[0] if frames.ndim == 5 else frames).numpy(),
            **self._provenance(),
        )

    def failed(
        self, path: str, error: str, info: dict | None = None, timings: dict | None = None
    ) -> ScoreResult:
        """The result of an input this predictor could not score: ``error`` and no score."""
        return ScoreResult(
            path=path, error=error, info=info or {}, timings=timings or {}, **self._provenance()
        )

    def _provenance(self) -> dict:
        """What every result of this predictor carries: weights, scale, direction."""
        return {
            "weights": self.weights_id or None,
            "scale": self.scale,
            "higher_is_better": self.higher_is_better,
        }

    def score(self, source: str | Path | torch.Tensor) -> ScoreResult:
        """Score a file (video or image) or a uint8 clip tensor ``(T, H, W, 3)``.

        A file that cannot be read gives a result with ``error`` set rather than an exception.
        """
        if isinstance(source, torch.Tensor):
            frames, info, indices, path, decode_s = source, {}, None, "<tensor>", 0.0
        else:
            path = str(source)
            start = time.perf_counter()
            try:
                frames, info, indices = decode_input(source, self.spec)
            except VideoError as err:
                return self.failed(path, str(err))
            decode_s = time.perf_counter() - start
        start = time.perf_counter()
        raw, quality, saliency = self.forward(frames[None])
        model_s = time.perf_counter() - start
        timings = {"decode_s": round(decode_s, 4), "model_s": round(model_s, 4)}
        return self.result(path, frames, raw[0], quality[0], saliency[0], info, indices, timings)


def load(
    name_or_path: str | Path = DEFAULT_WEIGHTS,
    device: str | torch.device = "auto",
    arch: str = "kvq-t",
    strict: bool = True,
) -> Predictor:
    """A :class:`Predictor` from bundled weights (a name in :data:`kvq.models.bundled.BUNDLED`)
    or a file, read by :func:`kvq.models.load`.

    Our safetensors carry their architecture, input spec and calibration. Foreign checkpoints
    (the authors' KVQ, Kinetics Video Swin) are loaded into ``arch`` with the paper's input
    spec (32 frames at 448², resize) and no calibration (raw scores). Weights that cannot be
    read or used, their header included — and, with ``strict``, weights that leave parts of
    the model at initialisation — raise :class:`~kvq.models.WeightsError` here, before
    anything is scored. Without ``strict`` such weights load with a warning that gives the
    load report.
    """
    model, meta = load_model_weights(name_or_path, arch=arch, strict=strict)
    path, report = meta["path"], meta["report"]
    if report.initialised or not report.ok:
        log.warning("%s", report)  # what was loaded and what was left at initialisation
    spec = header_section(path, meta, "input", ClipSpec)
    calibration = header_section(path, meta, "calibration", Calibration)
    return Predictor(
        model,
        spec,
        calibration,
        device,
        name=str(name_or_path),
        weights_id=weights_id(path),
        status=weights_status(path, meta),
    )


def weights_id(path: str | Path) -> str:
    """``name#sha256[:12]`` of a weights file: result files record it, so that a resumed run
    never mixes the scores of two different weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{Path(path).name}#{digest.hexdigest()[:12]}"
