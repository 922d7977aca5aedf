"""Opening, probing and sequential decoding of videos and images with PyAV (bundled FFmpeg).

Decoding is always sequential with FFmpeg's frame threading (``thread_type="AUTO"``): seeking
per frame is 10-100× slower on long-GOP files. Where only some frames are wanted
(:func:`positioned_frames`), H.264 and HEVC frames that are neither wanted nor referred to by
another frame are dropped by the decoder undecoded (FFmpeg's non-reference discard); every
decoded frame is exact. Frames are converted to RGB and resized by swscale
(``VideoFrame.to_ndarray(format="rgb24", width=, height=)``), only for the frames that are
kept, so memory and time never depend on holding full-resolution frames.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from kvq.video.errors import VideoError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
# A stream that ends more than this fraction (and more than 2 frames / 0.1 s) before its
# declared length is reported as truncated; smaller shortfalls are header inaccuracies (edit
# lists, encoder quirks) and are absorbed by re-sampling on the frames that exist.
MISSING_TOLERANCE = 0.02
# Frame threads wait on each other's reference rows, so more threads than cores keep the
# cores busy: on 2 cores, 8 threads read a 1080p H.264 clip 1.05-1.3x faster than FFmpeg's
# default of cores + 1 (benchmarks/score.py, two runs); FFmpeg's own ceiling is 16. Each
# thread holds a frame in flight, so a data loader's workers each hold that many.
DECODE_THREADS = min(16, max(8, (os.cpu_count() or 1) + 1))
# Codecs whose non-reference frames no other frame uses, so that dropping them undecoded is
# exact: H.264 always; HEVC only with one temporal sub-layer (a sub-layer non-reference picture
# may serve a higher sub-layer, and FFmpeg's discard does not look at layers).
DROPPABLE_CODECS = frozenset({"h264", "hevc"})
# Containers whose packets are whole pictures (samples, blocks): one packet, one frame.
DROPPABLE_FORMATS = frozenset({"mov", "matroska"})


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a file.

    ``width``/``height`` are the display size, after ``rotation`` (degrees counter-clockwise,
    0/90/180/270, from the display matrix phones write for portrait videos) is applied.
    ``num_frames`` comes from the container header or, where the header has none (Matroska,
    WebM, raw streams), from counting packets. Images have ``num_frames`` 1, ``fps`` and
    ``duration`` 0 and ``is_image`` True.
    """

    path: str
    duration: float
    num_frames: int
    fps: float
    width: int
    height: int
    rotation: int
    pix_fmt: str
    codec: str
    is_image: bool


class Deadline:
    """Wall-clock bound on everything done to one file; checked once per demuxed packet."""

    def __init__(self, path: str | Path, timeout_s: float | None) -> None:
        self.path, self.timeout_s = path, timeout_s
        self.end = math.inf if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        return None if self.timeout_s is None else max(self.end - time.monotonic(), 1e-3)

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise VideoError(f"{self.path}: decoding took longer than {self.timeout_s} s")


@dataclass
class VideoSource:
    """An open file: its container, the chosen video stream and the deadline."""

    path: Path
    container: av.container.InputContainer
    stream: av.video.stream.VideoStream
    is_image: bool
    deadline: Deadline


def _pick_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The default (else first) video stream, skipping cover art; it must have a decoder."""
    attached = av.stream.Disposition.attached_pic
    candidates = [s for s in container.streams.video if not s.disposition & attached]
    if not candidates:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise VideoError(f"{path}: no video stream (streams found: {kinds})")
    stream = next((s for s in candidates if s.disposition & av.stream.Disposition.default), None)
    stream = stream or candidates[0]
    if stream.codec_context is None:
        raise VideoError(f"{path}: unsupported video codec (FFmpeg has no decoder for it)")
    return stream


@contextmanager
def open_video(path: str | Path, deadline: Deadline) -> Iterator[VideoSource]:
    """Open ``path`` and pick its video stream; every failure becomes :class:`VideoError`."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        # The timeout bounds blocking I/O inside FFmpeg (network mounts, pipes).
        container = av.open(str(path), timeout=deadline.remaining(), metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError) as e:
        deadline.check()  # an open interrupted by the timeout is a time-bound error
        raise VideoError(f"{path}: not a readable video or image ({e})") from e
    try:
        stream = _pick_stream(container, path)
        fmt = container.format.name
        is_image = fmt == "image2" or fmt.endswith("_pipe")
        if is_image and path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise VideoError(
                f"{path}: contains a still image ({stream.codec_context.name}), not a video;"
                f" give it an image extension ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        yield VideoSource(path, container, stream, is_image, deadline)
    finally:
        container.close()


def decoded_frames(
    source: VideoSource, order: DisplayOrder | None = None
) -> Iterator[av.VideoFrame]:
    """Decode the chosen stream in order (frame-threaded), checking the deadline per packet.

    With ``order``, each packet that shows a frame is announced to it first, and a packet it
    does not want is decoded only if another frame refers to it. Packets the container marks
    as discarded (edit-list pre-roll) are decoded for reference only and never shown.
    """
    context = source.stream.codec_context
    if not context.is_open:
        source.stream.thread_type = "AUTO"
        context.thread_count = DECODE_THREADS
    try:
        for packet in source.container.demux(source.stream):
            source.deadline.check()
            if order is not None and packet.size:
                shown = not packet.is_discard and order.announce(packet.pts)
                context.skip_frame = "DEFAULT" if shown else "NONREF"
            yield from packet.decode()
    except av.FFmpegError as e:
        raise VideoError(f"{source.path}: decoding failed ({e})") from e


class OrderLost(Exception):
    """Timestamps that cannot place the frames: decode every frame and count them instead."""


class DisplayOrder:
    """Display positions of the frames a decoder gives out when it may drop some.

    A frame's position is the number of the stream's frames shown before it: packets with an
    earlier timestamp, counted as they are sent to the decoder (a decoder gives out a frame only
    after every frame shown before it was sent). ``pending`` holds the timestamps sent but not
    yet passed by a frame given out; a timestamp passed without its frame is a frame dropped on
    request. That count is the decoder's own only if the decoder drops nothing by itself, so
    :class:`OrderLost` (the caller then decodes every frame and counts them) wherever that is
    in doubt: a frame asked for (sent as wanted) that never came out, frames shown before the
    first one given out (leading frames a decoder cannot rebuild), interlaced frames (fields
    may come as separate packets), and timestamps that are missing or out of order.
    """

    def __init__(self, wanted: Collection[int]) -> None:
        self.wanted = wanted
        self.pending: list[int] = []  # a heap
        self.asked: set[int] = set()  # timestamps sent as wanted, not yet given out
        self.passed = 0  # frames shown before the last frame given out
        self.last: int | None = None

    def announce(self, pts: int | None) -> bool:
        """Record a packet about to be decoded; whether its frame is wanted, as far as the
        frames sent so far tell (a wrong guess costs a missing frame, never a wrong one)."""
        if pts is None or (self.last is not None and pts < self.last):
            raise OrderLost
        heapq.heappush(self.pending, pts)
        wanted = self.passed + sum(p < pts for p in self.pending) in self.wanted
        if wanted:
            self.asked.add(pts)
        return wanted

    def place(self, frame: av.VideoFrame) -> int:
        """The display position of a frame the decoder gave out."""
        pts = frame.pts
        if pts is None or not self.pending or frame.interlaced_frame:
            raise OrderLost
        if self.last is not None and pts <= self.last:
            raise OrderLost
        if self.last is None and self.pending[0] != pts:
            raise OrderLost
        while self.pending[0] < pts:  # frames dropped on request
            if heapq.heappop(self.pending) in self.asked or not self.pending:
                raise OrderLost
            self.passed += 1
        if self.pending[0] != pts:
            raise OrderLost
        heapq.heappop(self.pending)
        self.asked.discard(pts)
        self.last, position = pts, self.passed
        self.passed += 1
        return position


def drops_frames(source: VideoSource) -> bool:
    """Whether :func:`positioned_frames` with wanted positions may drop frames of ``source``."""
    context = source.stream.codec_context
    if source.is_image or context.name not in DROPPABLE_CODECS:
        return False
    if not DROPPABLE_FORMATS & set(source.container.format.name.split(",")):
        return False
    return context.name != "hevc" or _hevc_temporal_layers(context.extradata) == 1


def _hevc_temporal_layers(extradata: bytes | None) -> int:
    """``numTemporalLayers`` of an HEVC decoder configuration record (ISO/IEC 14496-15
    ``hvcC``, as MP4 and Matroska store it); 0 where unknown (no record, or Annex B)."""
    if not extradata or len(extradata) < 23 or extradata[0] != 1:
        return 0
    return (extradata[21] >> 3) & 0b111


def positioned_frames(
    source: VideoSource, wanted: Collection[int] | None = None
) -> Iterator[tuple[int, av.VideoFrame]]:
    """(display position, frame) of the decoded frames, in order.

    With ``wanted`` positions, frames of :data:`DROPPABLE_CODECS` that are not wanted and not
    referred to are dropped undecoded, and positions come from timestamps
    (:class:`DisplayOrder`); a wanted frame the decoder did not give out is simply missing, and
    :class:`OrderLost` ends the iteration where timestamps cannot place frames. Otherwise every
    frame is decoded and counted.
    """
    if wanted is None or not drops_frames(source):
        yield from enumerate(decoded_frames(source))
        return
    order = DisplayOrder(wanted)
    for frame in decoded_frames(source, order):
        yield order.place(frame), frame


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0-3) that bring ``frame`` upright."""
    return round(frame.rotation / 90) % 4


def display_size(frame: av.VideoFrame) -> tuple[int, int]:
    """(H, W) of ``frame`` once rotated upright."""
    h, w = frame.height, frame.width
    return (w, h) if quarter_turns(frame) % 2 else (h, w)


def to_rgb(
    frame: av.VideoFrame,
    size: tuple[int, int] | None = None,
    reformatter: VideoReformatter | None = None,
) -> np.ndarray:
    """Upright RGB uint8 (H, W, 3), resized to ``size`` (H, W) by swscale (bicubic) if given.

    Resizing happens in the coded orientation (on the decoder's planes); the small result is
    then rotated. Passing one ``reformatter`` for a whole video reuses its swscale context
    (~25% cheaper per frame than a fresh one). The array may be a strided view.
    """
    turns = quarter_turns(frame)
    h, w = display_size(frame) if size is None else size
    if turns % 2:
        h, w = w, h
    rgb = (reformatter or VideoReformatter()).reformat(
        frame, width=w, height=h, format="rgb24", interpolation="BICUBIC"
    )
    array = rgb.to_ndarray()
    return np.rot90(array, turns) if turns else array


def _declared_duration(source: VideoSource) -> float | None:
    stream = source.stream
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if source.container.duration:
        return source.container.duration / av.time_base
    return None


def latest_end(end: float | None, item: av.Packet | av.VideoFrame) -> float | None:
    """The later of ``end`` and the presentation end (s) of a packet or frame (B-frames make
    timestamps non-monotonic in decode order)."""
    if item.pts is None or item.time_base is None:
        return end
    stop = float((item.pts + (item.duration or 0)) * item.time_base)
    return stop if end is None else max(end, stop)


def check_complete(source: VideoSource, frames: int, end_time: float | None) -> None:
    """Raise if the stream ended (``frames`` seen, last ending at ``end_time`` s) well before the
    frame count or, lacking one, the duration its header declares: the file is truncated.

    An MP4/MOV cut without re-encoding keeps samples before the cut that its edit list hides:
    the header counts them, its duration does not, so there frames that reach the declared
    duration are complete (in AVI the duration is not a declaration of the full length).
    """
    if frames == 0:
        raise VideoError(f"{source.path}: no decodable video frames")
    declared_frames = source.stream.frames
    declared = _declared_duration(source)
    if declared_frames > 0:
        edited = "mov" in source.container.format.name.split(",")
        if frames < declared_frames - max(2, MISSING_TOLERANCE * declared_frames) and not (
            edited and _reaches(end_time, declared)
        ):
            raise VideoError(
                f"{source.path}: truncated: the header declares {declared_frames} frames but"
                f" the stream ends after {frames}"
            )
        return
    if declared and end_time is not None and not _reaches(end_time, declared):
        raise VideoError(
            f"{source.path}: truncated: video data ends at {end_time:.2f} s of a declared"
            f" {declared:.2f} s"
        )


def _reaches(end_time: float | None, declared: float | None) -> bool:
    """Whether frames ending at ``end_time`` s cover a declared duration (within tolerance)."""
    if end_time is None or not declared:
        return False
    return end_time >= declared - max(0.1, MISSING_TOLERANCE * declared)


def frame_count(source: VideoSource) -> int:
    """Frames of the stream: the header's count, else packets counted in a second handle.

    Counting costs one demux pass (no decoding). A count that stops well short of the
    declared duration means the file is truncated.
    """
    if source.is_image:
        return 1
    if source.stream.frames > 0:
        return source.stream.frames
    with open_video(source.path, source.deadline) as counter:
        count, end = 0, None
        for packet in counter.container.demux(counter.stream):
            counter.deadline.check()
            if packet.size:
                count += 1
                end = latest_end(end, packet)
        check_complete(counter, count, end)
    return count


def probe(path: str | Path, timeout_s: float | None = 60.0) -> VideoInfo:
    """Read a file's properties; decodes its first frame (for the rotation and to prove it decodes).

    Raises :class:`VideoError` for anything that is not a readable video or image. A
    truncation beyond the first frame is only seen by headerless formats here (their frames
    are counted); :func:`iter_frames` and ``load_clip`` see it in every format.
    """
    with open_video(path, Deadline(path, timeout_s)) as source:
        first = next(decoded_frames(source), None)
        if first is None:
            raise VideoError(f"{path}: no decodable video frames")
        return video_info(source, frame_count(source), first)


def video_info(source: VideoSource, num_frames: int, first: av.VideoFrame) -> VideoInfo:
    """The :class:`VideoInfo` of an open ``source`` of ``num_frames`` frames whose first
    decoded frame is ``first`` (display size and rotation are read from it)."""
    stream = source.stream
    fps = 0.0 if source.is_image else float(stream.average_rate or stream.guessed_rate or 0)
    duration = 0.0
    if not source.is_image:
        duration = _declared_duration(source) or (num_frames / fps if fps else 0.0)
    height, width = display_size(first)
    return VideoInfo(
        path=str(source.path),
        duration=duration,
        num_frames=num_frames,
        fps=fps,
        width=width,
        height=height,
        rotation=90 * quarter_turns(first),
        pix_fmt=first.format.name,
        codec=stream.codec_context.name,
        is_image=source.is_image,
    )


def iter_frames(
    path: str | Path, size: tuple[int, int] | None = None, timeout_s: float | None = None
) -> Iterator[np.ndarray]:
    """Every frame of ``path`` in order as upright RGB uint8 (H, W, 3) arrays.

    ``size`` (H, W) resizes inside swscale (bicubic); None keeps the display size. An image
    yields one frame. Only one decoded frame is held at a time. A stream that stops well short
    of its declared length raises :class:`VideoError` (truncated) after its last frame.
    """
    with open_video(path, Deadline(path, timeout_s)) as source:
        count, end = 0, None
        reformatter = VideoReformatter()
        for frame in decoded_frames(source):
            count += 1
            end = latest_end(end, frame)
            yield np.ascontiguousarray(to_rgb(frame, size, reformatter))
        if not source.is_image:
            check_complete(source, count, end)
