"""KVQ models: the Video Swin backbone with Fusion Window Attention, heads and weights."""

from kvq.models.kvq import KVQConfig, KVQModel, KVQOutput
from kvq.models.pretrained import (
    LoadReport,
    WeightsError,
    load,
    load_model,
    load_pretrained,
    save_pretrained,
)
from kvq.models.registry import build_model, get_config, list_models

__all__ = [
    "KVQConfig",
    "KVQModel",
    "KVQOutput",
    "LoadReport",
    "WeightsError",
    "build_model",
    "get_config",
    "list_models",
    "load",
    "load_model",
    "load_pretrained",
    "save_pretrained",
]
