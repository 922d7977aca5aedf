"""Clips for the model: sampled, decoded, viewed (:func:`load_clip`), normalised
(:func:`normalize_clip`) and made into a model's input (:func:`to_model_input`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torch import nn

from kvq.video.decode import (
    Deadline,
    OrderLost,
    VideoInfo,
    VideoSource,
    check_complete,
    display_size,
    drops_frames,
    frame_count,
    latest_end,
    open_video,
    positioned_frames,
    to_rgb,
    video_info,
)
from kvq.video.errors import VideoError
from kvq.video.sampling import RandomState, SpatialPlan, plan_view, sample_segment_indices
from kvq.video.spec import ClipSpec

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def _clip_indices(
    num_frames: int, is_image: bool, spec: ClipSpec, train: bool, rng: np.random.Generator | None
) -> np.ndarray:
    """(num_clips, T) frame indices; an image is one frame repeated ``spec.image_frames`` times."""
    if is_image:
        return np.zeros((spec.num_clips, spec.image_frames), dtype=np.int64)
    indices = sample_segment_indices(num_frames, spec, train=train, rng=rng)
    return indices.reshape(spec.num_clips, -1)


def _plans(
    frame_size: tuple[int, int], spec: ClipSpec, train: bool, rng: np.random.Generator | None
) -> list[SpatialPlan]:
    """One plan per clip; clips share a plan unless training draws a random view per clip."""
    if train and spec.view in ("random_crop", "fragments"):
        return [plan_view(frame_size, spec, True, rng) for _ in range(spec.num_clips)]
    return [plan_view(frame_size, spec)] * spec.num_clips


def _gather(
    source: VideoSource,
    indices: np.ndarray,
    spec: ClipSpec,
    train: bool,
    rng: np.random.Generator | None,
    drop_unwanted: bool = True,
) -> tuple[np.ndarray | None, int, av.VideoFrame | None, float | None]:
    """Decode up to the last wanted frame, filling (num_clips, T, H, W, 3) uint8.

    Returns (frames, frames decoded, the first decoded frame, the presentation end in seconds
    of the frames decoded); frames is None when a wanted frame never came out: the stream
    ended before every wanted index was seen (its header overstated the frame count) or, with
    ``drop_unwanted``, timestamps could not place the frames
    (:class:`~kvq.video.decode.DisplayOrder`) — decode again without it.
    """
    slots: dict[int, list[tuple[int, int]]] = {}
    for clip, t in np.ndindex(indices.shape):
        slots.setdefault(int(indices[clip, t]), []).append((clip, t))
    last = max(slots)
    out = np.empty((*indices.shape, *spec.output_size, 3), dtype=np.uint8)
    plans: list[SpatialPlan] | None = None
    reformatter = VideoReformatter()
    decoded, first, filled, end = 0, None, 0, None
    frames = positioned_frames(source, slots if drop_unwanted else None)
    try:
        for index, frame in frames:
            decoded += 1
            first = first or frame
            end = latest_end(end, frame)
            if index not in slots:
                if index > last:
                    break
                continue
            if plans is None:  # views are fixed on the first kept frame, for the whole clip
                plans = _plans(display_size(frame), spec, train, rng)
            scaled: dict[tuple[int, int], np.ndarray] = {}
            for clip, t in slots[index]:
                plan = plans[clip]
                if plan.source_size not in scaled:
                    scaled[plan.source_size] = to_rgb(frame, plan.source_size, reformatter)
                if plan.is_plain_resize:
                    out[clip, t] = scaled[plan.source_size]
                else:
                    plan.apply(scaled[plan.source_size], out[clip, t])
            filled += 1
            if index == last:
                break
    except OrderLost:
        pass
    return (out if filled == len(slots) else None), decoded, first, end


@dataclass(frozen=True)
class DecodedClip:
    """What one read of a file gives (:func:`read_clip`): the clip(s) as :func:`load_clip`
    returns them, the frame indices decoded (shaped like the clip's leading dims: (T,) or
    (num_clips, T)) and the file's :class:`VideoInfo`, learned in the same pass."""

    frames: torch.Tensor
    indices: np.ndarray
    info: VideoInfo


def read_clip(
    path: str | Path, spec: ClipSpec | None = None, train: bool = False, rng: RandomState = None
) -> DecodedClip:
    """:func:`load_clip` with the decoded frame indices and the file's properties, from one
    open of the file (plus a packet count where the header has no frame count, and a second
    decode where timestamps could not place the frames). The indices differ from
    ``sample_segment_indices`` of the header's count when the header overstated it;
    ``info.num_frames`` is then the count the decode found."""
    spec = spec or ClipSpec()
    gen = np.random.default_rng(rng) if train else None
    deadline = Deadline(path, spec.timeout_s)
    with open_video(path, deadline) as source:
        is_image = source.is_image
        num_frames = frame_count(source)
        indices = _clip_indices(num_frames, is_image, spec, train, gen)
        draws = gen.bit_generator.state if gen is not None else None
        frames, decoded, first, end = _gather(source, indices, spec, train, gen)
        if frames is None and drops_frames(source):  # count every frame: the only sure way
            if gen is not None:  # the same views as a first read that counted
                gen.bit_generator.state = draws
            with open_video(path, deadline) as again:
                frames, decoded, first, end = _gather(again, indices, spec, train, gen, False)
        if frames is None:
            check_complete(source, decoded, end)
            num_frames = decoded
        info = video_info(source, num_frames, first)
    if frames is None:
        indices = _clip_indices(decoded, is_image, spec, train, gen)
        with open_video(path, deadline) as source:
            frames = _gather(source, indices, spec, train, gen, False)[0]
        if frames is None:
            raise VideoError(f"{path}: the number of decodable frames changed between reads")
    clips = torch.from_numpy(frames)
    if spec.num_clips == 1:
        return DecodedClip(clips[0], indices[0], info)
    return DecodedClip(clips, indices, info)


def load_clip(
    path: str | Path, spec: ClipSpec | None = None, train: bool = False, rng: RandomState = None
) -> torch.Tensor:
    """Decode the clip(s) of ``spec`` from a video or image file.

    Returns uint8 RGB (T, H, W, 3), or (num_clips, T, H, W, 3) when ``spec.num_clips`` > 1,
    with (H, W) = ``spec.output_size`` and T = ``spec.clip_len`` (``spec.image_frames`` for
    images). Inference (``train=False``) is deterministic; training draws the segment starts
    and crop/fragment positions from ``rng`` (a Generator or seed; None: fresh entropy).

    Cost: one sequential decode up to the last sampled frame; only sampled frames are
    converted. Crop and fragment views convert a sampled frame at native resolution (one
    full-size RGB frame at a time) and slice it; "resize" scales inside swscale. When a header
    overstates the frame count by a little, the count is learned from the decode and a second
    pass reads the re-sampled frames (by a lot: the file is truncated). Raises
    :class:`VideoError` for unreadable files and when decoding exceeds ``spec.timeout_s``.
    """
    return read_clip(path, spec, train, rng).frames


def normalize_clip(
    frames: torch.Tensor | np.ndarray, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 RGB (..., T, H, W, 3) → ``dtype`` (..., 3, T, H, W) with the ImageNet mean and
    std of :data:`MEAN` and :data:`STD` (docs/design.md, *Input*), on the input's device."""
    x = torch.as_tensor(frames)
    # One strided uint8→float copy into the channel-first layout, then in-place arithmetic:
    # 3× faster than out-of-place ops on a 32×448² clip.
    out = torch.empty((*x.shape[:-4], 3, *x.shape[-4:-1]), dtype=dtype, device=x.device)
    out.copy_(x.movedim(-1, -4))
    mean = out.new_tensor(MEAN).view(3, 1, 1, 1)
    std = out.new_tensor(STD).view(3, 1, 1, 1)
    return out.sub_(mean).div_(std)


def to_model_input(frames: torch.Tensor | np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 RGB clips (..., T, H, W, 3) → the input of ``model``: normalised
    (..., 3, T, H, W) on the device and in the dtype of the model's parameters.

    The uint8 clip is moved (a quarter of the bytes of its float32 form) and normalised where
    the model is. Scoring, evaluation and training all make their model input here.
    """
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    return normalize_clip(torch.as_tensor(frames).to(device, non_blocking=True), dtype)
