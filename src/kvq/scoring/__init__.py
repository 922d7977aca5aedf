"""Scoring: a ready predictor (:func:`load`), batch runs with resumable outputs, maps."""

from kvq.runtime import DeviceError, resolve_device
from kvq.scoring.predictor import (
    DEFAULT_WEIGHTS,
    Calibration,
    Predictor,
    ScoreResult,
    Segment,
    load,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "Calibration",
    "DeviceError",
    "Predictor",
    "ScoreResult",
    "Segment",
    "load",
    "resolve_device",
]
