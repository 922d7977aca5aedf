"""Tiny synthetic videos and images for tests, written with PyAV's encoder.

Every helper writes a real file through FFmpeg, so tests exercise the same demuxers and
decoders as user files. Sizes are ``(height, width)`` like everywhere else in kvq.

Patterns:
- ``"index"``: the frame number written as 8 vertical stripes (bit 7 on the left; white = 1),
  robust to lossy codecs and resizing; read it back with :func:`read_index`.
- ``"marker"``: black frame with a white block in the top-left quarter (shows orientation).
- ``"gradient"``: a horizontal/vertical colour gradient that moves with the frame number.
- ``"noise"``: seeded random pixels (hard to compress; for size/speed tests).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

INDEX_BITS = 8


def make_frame(index: int, size: tuple[int, int], pattern: str = "index") -> np.ndarray:
    """One RGB frame, uint8 (H, W, 3), for frame number ``index``."""
    h, w = size
    if pattern == "index":
        bits = [(index >> (INDEX_BITS - 1 - b)) & 1 for b in range(INDEX_BITS)]
        columns = np.array(bits, dtype=np.uint8)[np.arange(w) * INDEX_BITS // w] * 255
        return np.repeat(np.broadcast_to(columns[None, :, None], (h, w, 1)), 3, axis=2)
    if pattern == "marker":
        frame = np.zeros((h, w, 3), np.uint8)
        frame[: max(1, h // 4), : max(1, w // 4)] = 255
        return frame
    if pattern == "gradient":
        y, x = np.mgrid[0:h, 0:w]
        r = (x * 255 // max(w - 1, 1) + 7 * index) % 256
        g = (y * 255 // max(h - 1, 1) + 3 * index) % 256
        b = np.full_like(r, (40 * index) % 256)
        return np.stack([r, g, b], axis=2).astype(np.uint8)
    if pattern == "noise":
        return np.random.default_rng(index).integers(0, 256, (h, w, 3), dtype=np.uint8)
    raise ValueError(f"unknown pattern {pattern!r}")


def read_index(frame: np.ndarray) -> int:
    """Frame number encoded by the ``"index"`` pattern, from an (H, W, 3) uint8 frame."""
    w = frame.shape[1]
    luma = np.asarray(frame, dtype=np.float32).mean(axis=(0, 2))
    # Sample the middle of each stripe so that blurred edges do not matter.
    centres = ((np.arange(INDEX_BITS) + 0.5) * w / INDEX_BITS).astype(int)
    bits = luma[centres] > 127
    return int(sum(int(b) << (INDEX_BITS - 1 - i) for i, b in enumerate(bits)))


def _add_audio(container: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    stream = container.add_stream("aac", rate=8000)
    stream.layout = "mono"
    return stream


def _encode_audio(container: av.container.OutputContainer, stream, seconds: float) -> None:
    samples = 1024
    for i in range(max(1, int(seconds * stream.rate / samples))):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, samples), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = stream.rate
        frame.pts = i * samples
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_video(
    path: str | Path,
    frames: int = 24,
    size: tuple[int, int] = (48, 64),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: int = 24,
    rotation: int = 0,
    audio: bool | str = False,
    pattern: str = "index",
    vfr: bool = False,
    extra_video: bool = False,
    options: dict[str, str] | None = None,
    first_pts: int = 0,
) -> Path:
    """Encode ``frames`` synthetic frames to ``path`` (container from its extension).

    ``size`` is (height, width). ``rotation``: display-matrix rotation in degrees
    counter-clockwise (what phones write for portrait videos). ``audio``: ``True`` adds an AAC
    track after the video stream, ``"first"`` before it. ``vfr``: irregular frame durations
    (1, 2 or 3 ticks of 1/``fps``). ``extra_video``: a second, smaller video stream after the
    main one. ``options``: encoder options (the default for x264 is a fast encode without
    B-frames). ``first_pts`` < 0 makes MP4 write an edit list that hides the first frames.
    """
    path = Path(path)
    h, w = size
    with av.open(str(path), "w") as container:
        audio_stream = _add_audio(container) if audio == "first" else None
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.time_base = Fraction(1, fps)
        if options is not None:
            stream.options = options
        elif codec == "libx264":
            # Small GOP and no lookahead keep tiny encodes fast and files seekable.
            stream.options = {"g": "12", "preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        second = None
        if extra_video:
            second = container.add_stream("mpeg4", rate=fps)
            second.width, second.height, second.pix_fmt = 32, 16, "yuv420p"
        if audio is True:
            audio_stream = _add_audio(container)

        pts = first_pts
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(make_frame(i, size, pattern), format="rgb24")
            frame.pts = pts
            pts += 1 + (i % 3 if vfr else 0)
            for packet in stream.encode(frame.reformat(format=pix_fmt)):
                container.mux(packet)
            if second is not None:
                small = av.VideoFrame.from_ndarray(make_frame(i, (16, 32), pattern), format="rgb24")
                small.pts = i
                for packet in second.encode(small.reformat(format="yuv420p")):
                    container.mux(packet)
        for s in (stream, second):
            if s is not None:
                for packet in s.encode():
                    container.mux(packet)
        if audio_stream is not None:
            _encode_audio(container, audio_stream, pts / fps)
    return path


def make_audio(path: str | Path, seconds: float = 1.0) -> Path:
    """An audio-only file (AAC in the container of ``path``'s extension)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        _encode_audio(container, _add_audio(container), seconds)
    return path


def make_image(path: str | Path, size: tuple[int, int] = (48, 64), pattern: str = "marker") -> Path:
    """A still image; the format follows the extension (``.png``, ``.jpg``)."""
    path = Path(path)
    frame = av.VideoFrame.from_ndarray(make_frame(0, size, pattern), format="rgb24")
    frame.save(str(path))
    return path
