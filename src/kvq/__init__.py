"""KVQ: saliency-guided local perception for video quality assessment (CVPR 2025).

Public interface (docs/design.md, *Public interface*)::

    model = kvq.build_model("kvq-t", attention="fwa")
    out = model(clip)              # clip: (B, 3, T, H, W), normalised RGB
    out.score, out.local_quality, out.saliency
    report = kvq.load_pretrained(model, "weights.safetensors")

    predictor = kvq.load()         # bundled default weights, or a name / file
    result = predictor.score("video.mp4")
    result.score, result.local_quality, result.saliency, result.segments
"""

from __future__ import annotations

__version__ = "0.1.0"

from kvq.models import KVQConfig, KVQOutput, build_model, list_models, load_pretrained


def __getattr__(name: str):
    # ``kvq.load`` pulls in the video stack (PyAV); import it only when it is used.
    if name == "load":
        from kvq.scoring import load

        return load
    raise AttributeError(f"module 'kvq' has no attribute {name!r}")


__all__ = [
    "KVQConfig",
    "KVQOutput",
    "__version__",
    "build_model",
    "list_models",
    "load",
    "load_pretrained",
]
