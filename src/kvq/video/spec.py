"""What to cut out of a video: :class:`ClipSpec`."""

from __future__ import annotations

from dataclasses import dataclass

VIEWS = ("resize", "random_crop", "center_crop", "fragments")


@dataclass(frozen=True)
class ClipSpec:
    """Temporal sampling and spatial view of one clip (docs/design.md, *Input*).

    Temporal: the video is split into ``num_segments`` equal segments; from each,
    ``frames_per_segment`` frames ``stride`` apart are taken (8 × 4 at stride 2 = 32 frames).

    Spatial ``view``:
    - ``"resize"``: the whole frame resized to ``size`` (H, W) with bicubic interpolation,
      aspect ratio not kept (the paper's default).
    - ``"center_crop"`` / ``"random_crop"``: a ``size`` window at native resolution (frames
      smaller than ``size`` are first upscaled, keeping aspect ratio, just enough to cover it);
      the window is fixed for the whole clip.
    - ``"fragments"``: FAST-VQA grid mini-patches: a ``fragment_grid`` × ``fragment_grid``
      grid of cells, one ``fragment_size``² native-resolution patch per cell at the same place
      in every frame, stitched into a (grid·size)² frame; ``size`` is not used. Frames whose
      short side is below grid·size are upscaled first.

    ``image_frames``: length of the static clip an image becomes. ``num_clips`` > 1 samples
    several clips per video (evenly spread inside the segments at inference, independent
    random draws in training). ``timeout_s``: wall-clock bound on decoding one file (None: no
    bound).
    """

    num_segments: int = 8
    frames_per_segment: int = 4
    stride: int = 2
    size: tuple[int, int] = (448, 448)
    view: str = "resize"
    fragment_grid: int = 7
    fragment_size: int = 32
    image_frames: int = 16
    num_clips: int = 1
    timeout_s: float | None = 300.0

    def __post_init__(self) -> None:
        # YAML gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        positive = (
            "num_segments",
            "frames_per_segment",
            "stride",
            "fragment_grid",
            "fragment_size",
            "image_frames",
            "num_clips",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ClipSpec.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"ClipSpec.size must be (height, width) > 0, got {self.size}")
        if self.view not in VIEWS:
            raise ValueError(f"ClipSpec.view must be one of {VIEWS}, got {self.view!r}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"ClipSpec.timeout_s must be > 0 or None, got {self.timeout_s}")

    @property
    def clip_len(self) -> int:
        """Frames per clip of a video: num_segments × frames_per_segment."""
        return self.num_segments * self.frames_per_segment

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the output frames."""
        if self.view == "fragments":
            side = self.fragment_grid * self.fragment_size
            return side, side
        return self.size
