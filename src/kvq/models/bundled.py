"""The weights that ship with kvq: names, files, what they are and what was measured.

``kvq.load(name)``, ``kvq score --weights NAME`` and ``kvq models`` read this table; the
first entry is the default. Every entry's numbers come from its model card (a ``.md`` file
beside the weights), where the commands that measured them are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class BundledWeights:
    """One bundled weights file: ``arch`` and ``summary`` say what it is, ``metrics`` (name →
    value) what its model card measured on data it never saw."""

    name: str
    file: str
    arch: str
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def card(self) -> Path:
        return self.path.with_suffix(".md")


BUNDLED: dict[str, BundledWeights] = {
    w.name: w
    for w in (
        BundledWeights(
            name="kvq-lite-synth",
            file="kvq-lite-synth.safetensors",
            arch="kvq-lite",
            summary="CPU default: frozen ImageNet stem, trained on synthetic damage ladders; "
            "orders damage of unseen content, scores on a synthetic (VMAF-derived) scale",
            metrics={
                "heldout_video_pairs_ordered": 0.967,
                "heldout_photo_pairs_ordered": 0.991,
                "synth_test_srcc": 0.700,
                "synth_test_plcc": 0.723,
                "synth_test_within_ladder_srcc": 0.942,
                "lpvq_intra_srcc": 0.269,
            },
        ),
    )
}
DEFAULT_WEIGHTS = next(iter(BUNDLED))
