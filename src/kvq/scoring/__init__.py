"""Scoring: a ready predictor (:func:`load`), batch runs with resumable outputs, maps."""

from kvq.scoring.predictor import (
    DEFAULT_WEIGHTS,
    PRETRAINED,
    Calibration,
    DeviceError,
    Predictor,
    ScoreResult,
    Segment,
    load,
    resolve_device,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "PRETRAINED",
    "Calibration",
    "DeviceError",
    "Predictor",
    "ScoreResult",
    "Segment",
    "load",
    "resolve_device",
]
