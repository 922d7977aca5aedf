"""Configuration of the synthetic corpus (:class:`SynthConfig`) and its two presets."""

from __future__ import annotations

from dataclasses import dataclass, replace

from kvq.synth.distortions import FACTORS
from kvq.synth.errors import SynthError


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the content of a corpus; with the seed it fixes every byte of the
    labels.

    ``max_distortions`` factors are drawn per video (at least one), each whole-frame with
    probability ``whole_frame_prob`` or else inside a random region mask (bokeh always in the
    background). ``storage_crf`` is the H.264 quality of the stored files; the labels measure the
    stored file, so its own (small) loss is part of the label.

    ``ladder`` > 1 draws the corpus as groups ("ladders") of ``ladder`` clips that share source,
    view, factors, regions and parameters and differ only in severity, graded from mild to
    strong: training can then rank damage within one picture, which content cannot explain. A
    group's mildest rung is pristine with probability ``pristine_prob`` (with ``ladder`` = 1
    that is the probability of a pristine clip). Each split holds as many whole ladders as its
    share of ``num_videos`` allows.
    """

    num_videos: int = 1000
    width: int = 640
    height: int = 360
    num_frames: int = 60
    fps: float = 15.0
    seed: int = 0
    splits: tuple[tuple[str, float], ...] = (("train", 0.7), ("val", 0.15), ("test", 0.15))
    factors: tuple[str, ...] = FACTORS
    max_distortions: int = 3
    whole_frame_prob: float = 0.3
    pristine_prob: float = 0.05
    overlay_prob: float = 0.3
    storage_crf: int = 18
    ladder: int = 4
    x264_preset: str = "veryfast"
    vmaf_subsample: int = 2
    ssim_frames: int = 8

    def __post_init__(self) -> None:
        if self.num_videos < 1:
            raise SynthError(f"num_videos must be at least 1, got {self.num_videos}")
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise SynthError(
                f"frame size must be even and at least 64×64, got {self.width}×{self.height}"
            )
        if self.num_frames < 2 or self.fps <= 0:
            raise SynthError(
                f"need at least 2 frames at a positive fps, got {self.num_frames} at {self.fps}"
            )
        unknown = set(self.factors) - set(FACTORS)
        if unknown or not self.factors:
            raise SynthError(f"unknown quality factors {sorted(unknown)}; known: {list(FACTORS)}")
        if abs(sum(f for _, f in self.splits) - 1.0) > 1e-6:
            raise SynthError(f"split fractions must sum to 1, got {self.splits}")
        if self.ladder < 1:
            raise SynthError(f"ladder must be at least 1, got {self.ladder}")
        if not 1 <= self.max_distortions <= len(self.factors):
            raise SynthError(f"max_distortions must be in 1..{len(self.factors)}")

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @classmethod
    def default(cls, **overrides) -> SynthConfig:
        """The default corpus: 1000 clips of 4 s at 640×360, 15 fps (60 frames: enough for the
        8 × 4-frame stride-2 sampling of the paper, and it builds in well under an hour), as 250
        ladders of 4 severities of one or two factors, half of them over the whole frame, a
        quarter of the ladders starting from the pristine clip."""
        default = cls(pristine_prob=0.25, max_distortions=2, whole_frame_prob=0.5)
        return replace(default, **overrides)

    @classmethod
    def small(cls, **overrides) -> SynthConfig:
        """A test-sized corpus that builds in seconds: 24 clips of 16 frames at 160×96, as
        ladders of 4 (4 for training, one each for validation and test)."""
        small = cls(num_videos=24, width=160, height=96, num_frames=16, fps=15.0, ssim_frames=4)
        return replace(small, **overrides)
