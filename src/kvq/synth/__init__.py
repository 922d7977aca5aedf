"""``kvq synth``: region-labelled quality data built offline from real pristine content.

Stills and clips become short distorted videos (the eight LPVQ quality factors, whole-frame or
in region masks) whose labels are measured: VMAF for the clip, SSIM per cell of a 7×7 grid,
both mapped to 1–5 by :func:`kvq.synth.measure.to_mos`. See docs/synth.md.
"""

from kvq.synth.build import CorpusSummary, build_corpus, plan_corpus, render_item
from kvq.synth.config import SynthConfig
from kvq.synth.distortions import DISTORTIONS, FACTORS, Distortion, make_distortion
from kvq.synth.errors import SynthError
from kvq.synth.masks import MaskSpec
from kvq.synth.sources import Source, find_sources

__all__ = [
    "DISTORTIONS",
    "FACTORS",
    "CorpusSummary",
    "Distortion",
    "MaskSpec",
    "Source",
    "SynthConfig",
    "SynthError",
    "build_corpus",
    "find_sources",
    "make_distortion",
    "plan_corpus",
    "render_item",
]
