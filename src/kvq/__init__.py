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

import importlib

# The public names, imported on first use (PEP 562): ``import kvq`` — and so ``kvq --version``
# and ``kvq --help`` — then needs no torch and no video stack.
_PUBLIC = {
    "KVQConfig": "kvq.models",
    "KVQOutput": "kvq.models",
    "build_model": "kvq.models",
    "list_models": "kvq.models",
    "load_pretrained": "kvq.models",
    "load": "kvq.scoring",
}
_SUBPACKAGES = frozenset(
    "annotate cli data eval fileio lpvq models runtime scoring synth train video".split()
)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"kvq.{name}")
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
