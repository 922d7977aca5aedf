"""Video and image input: probing, the paper's sampling, fast PyAV decoding.

Typical use::

    spec = ClipSpec()                              # 8 × 4 frames at stride 2, 448², resize
    frames = load_clip("video.mp4", spec)          # uint8 (32, 448, 448, 3)
    x = normalize_clip(frames)[None]               # float32 (1, 3, 32, 448, 448)
    x = to_model_input(frames[None], model)        # the same, on the model's device and dtype

Every unreadable input raises :class:`VideoError`.
"""

from __future__ import annotations

from kvq.video.clip import (
    MEAN,
    STD,
    DecodedClip,
    load_clip,
    normalize_clip,
    read_clip,
    to_model_input,
)
from kvq.video.decode import IMAGE_EXTENSIONS, VideoInfo, iter_frames, probe
from kvq.video.errors import VideoError
from kvq.video.sampling import SpatialPlan, plan_view, sample_segment_indices
from kvq.video.spec import VIEWS, ClipSpec

__all__ = [
    "IMAGE_EXTENSIONS",
    "MEAN",
    "STD",
    "VIEWS",
    "ClipSpec",
    "DecodedClip",
    "SpatialPlan",
    "VideoError",
    "VideoInfo",
    "iter_frames",
    "load_clip",
    "normalize_clip",
    "plan_view",
    "probe",
    "read_clip",
    "sample_segment_indices",
    "to_model_input",
]
