"""Pristine content: any folders of images and videos become :class:`Source` entries, and a
source plus its randomised view (camera path, start time, overlay) becomes a pristine clip."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from kvq.synth.errors import SynthError
from kvq.synth.motion import MAX_ZOOM, CameraPath, Overlay

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class Source:
    """One pristine content item; ``name`` is unique in a corpus and independent of the folder
    it was found in, so plans (and labels) do not depend on where the sources live."""

    name: str
    path: str
    kind: str  # "image" | "video"


def find_sources(folders: list[str | Path]) -> list[Source]:
    """All images and videos under ``folders`` (recursively), sorted by name."""
    found: dict[str, Source] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise SynthError(f"source folder {folder} does not exist")
        for path in sorted(folder.rglob("*")):
            suffix = path.suffix.lower()
            kind = (
                "image"
                if suffix in IMAGE_SUFFIXES
                else "video"
                if suffix in VIDEO_SUFFIXES
                else None
            )
            if kind is None or not path.is_file():
                continue
            name = _unique(path.stem.replace(" ", "_"), found)
            found[name] = Source(name, str(path.resolve()), kind)
    if not found:
        raise SynthError(f"no images or videos found in {[str(f) for f in folders]}")
    return sorted(found.values(), key=lambda s: s.name)


def _unique(name: str, taken: dict[str, Source]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}-{k}"
    return candidate


@dataclass(frozen=True)
class View:
    """How a clip is cut from its source: a camera path for stills; a start frame for videos
    (frames are taken at the clip's frame rate, and past the end the video plays backwards, so
    short sources still fill the clip). ``overlay`` is optional for both."""

    camera: CameraPath | None = None
    start_frame: int = 0
    overlay: Overlay | None = None


def pristine_clip(
    source: Source, view: View, num_frames: int, height: int, width: int, fps: float
) -> np.ndarray:
    """The (num_frames, height, width, 3) uint8 pristine clip of ``source`` through ``view``."""
    if source.kind == "image":
        image = _load_image(source.path, round(MAX_ZOOM * width), round(MAX_ZOOM * height))
        frames = (view.camera or CameraPath()).render(image, num_frames, height, width)
    else:
        clip, source_fps = _load_video(source.path, height, width)
        n = len(clip)
        period = max(1, 2 * n - 2)  # ping-pong so motion stays continuous
        steps = np.round(np.arange(num_frames) * source_fps / fps).astype(int)  # same speed
        index = (view.start_frame + steps) % period
        frames = clip[np.where(index < n, index, period - index)]
    return view.overlay.render(frames) if view.overlay else frames


@lru_cache(maxsize=32)
def _load_image(path: str, min_width: int, min_height: int) -> np.ndarray:
    """RGB uint8 picture reduced to the smallest size that still covers ``min_width`` ×
    ``min_height`` (the closest zoom needs the detail, more is wasted time)."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (min_width, min_height))  # JPEG decodes at reduced scale for free
            im = im.convert("RGB")
            scale = max(min_width / im.width, min_height / im.height)
            if scale < 1.0:
                size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
                im = im.resize(size, Image.LANCZOS)
            return np.asarray(im)
    except OSError as err:
        raise SynthError(f"cannot read image {path}: {err}") from None


@lru_cache(maxsize=4)
def _load_video(path: str, height: int, width: int) -> tuple[np.ndarray, float]:
    """Every frame of a video source, centre-cropped to the frame's aspect ratio and resized,
    and its frame rate."""
    from kvq.video import VideoError, iter_frames, probe

    frames = []
    try:
        fps = probe(path).fps or 25.0
        for frame in iter_frames(path):
            frames.append(_crop_resize(frame, height, width))
    except VideoError as err:
        raise SynthError(f"cannot read video {path}: {err}") from None
    return np.stack(frames), fps


def _crop_resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if w * height > h * width:  # too wide
        cw = round(h * width / height)
        frame = frame[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = round(w * height / width)
        frame = frame[(h - ch) // 2 : (h - ch) // 2 + ch]
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))


def source_length(source: Source) -> int:
    """Number of frames of a video source (1 for an image)."""
    if source.kind == "image":
        return 1
    from kvq.video import VideoError, probe

    try:
        return max(1, int(probe(source.path).num_frames))
    except VideoError as err:
        raise SynthError(f"cannot read video {source.path}: {err}") from None
