"""Broken inputs: every one raises VideoError naming the file, through every entry point."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from kvq.video import (
    ClipSpec,
    VideoError,
    iter_frames,
    load_clip,
    probe,
    read_clip,
    sample_segment_indices,
)
from video_factory import make_audio, make_image, make_video, read_index

SPEC = ClipSpec(size=(32, 32))


def avi_cut_after(src, dst, packets: int):
    """Copy an AVI keeping only its first ``packets`` video chunks (a clean early end)."""
    data = src.read_bytes()
    chunks = [m.start() for m in re.finditer(rb"00dc", data)][1:]  # [0] is the stream header
    dst.write_bytes(data[: chunks[packets]])
    return dst


def broken(kind: str, tmp_path):
    if kind == "zero_byte":
        (tmp_path / "zero.mp4").write_bytes(b"")
        return tmp_path / "zero.mp4", "empty"
    if kind == "missing":
        return tmp_path / "missing.mp4", "no such file"
    if kind == "directory":
        return tmp_path, "no such file"
    if kind == "random_bytes":
        noise = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
        (tmp_path / "noise.mp4").write_bytes(noise)
        return tmp_path / "noise.mp4", "not a readable video"
    if kind == "truncated_mp4":  # index (moov) at the end, cut off
        data = make_video(tmp_path / "full.mp4", frames=30).read_bytes()
        (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
        return tmp_path / "cut.mp4", "not a readable video"
    if kind == "truncated_mkv":  # no frame count in the header: caught by the duration
        data = make_video(tmp_path / "full.mkv", frames=48).read_bytes()
        (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
        return tmp_path / "cut.mkv", "truncated"
    if kind == "truncated_avi_clean":  # header says 48 frames, 20 are there
        src = make_video(tmp_path / "full.avi", frames=48, codec="mpeg4")
        return avi_cut_after(src, tmp_path / "cut.avi", 20), "truncated"
    if kind == "truncated_avi_mid_packet":
        data = make_video(tmp_path / "full.avi", frames=48, codec="mpeg4").read_bytes()
        (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.9)])
        return tmp_path / "cut.avi", "truncated"
    if kind == "audio_only":
        return make_audio(tmp_path / "speech.m4a"), "no video stream"
    if kind == "image_renamed":
        image = make_image(tmp_path / "photo.png")
        shutil.copy(image, tmp_path / "photo.mp4")
        return tmp_path / "photo.mp4", "still image"
    if kind == "unsupported_codec":  # an AVI whose fourcc no FFmpeg decoder knows
        data = make_video(tmp_path / "full.avi", frames=10, codec="mpeg4").read_bytes()
        assert b"FMP4" in data
        (tmp_path / "alien.avi").write_bytes(data.replace(b"FMP4", b"QQQQ"))
        return tmp_path / "alien.avi", "unsupported video codec"
    raise AssertionError(kind)


KINDS = [
    "zero_byte",
    "missing",
    "directory",
    "random_bytes",
    "truncated_mp4",
    "truncated_mkv",
    "truncated_avi_clean",
    "truncated_avi_mid_packet",
    "audio_only",
    "image_renamed",
    "unsupported_codec",
]


@pytest.mark.parametrize("kind", KINDS)
def test_broken_input_raises_video_error(kind, tmp_path):
    path, reason = broken(kind, tmp_path)
    for read in (lambda: load_clip(path, SPEC), lambda: list(iter_frames(path))):
        with pytest.raises(VideoError, match=reason) as excinfo:
            read()
        assert str(path) in str(excinfo.value)
    if kind not in ("truncated_avi_clean", "truncated_avi_mid_packet"):
        # probe reads the header and one frame; these two break only further in.
        with pytest.raises(VideoError, match=reason):
            probe(path)


def test_short_header_shortfall_is_resampled(tmp_path):
    # Header says 48 frames but 46 decode: a header inaccuracy, not a truncated file.
    src = make_video(tmp_path / "full.avi", frames=48, codec="mpeg4")
    path = avi_cut_after(src, tmp_path / "short.avi", 46)
    assert probe(path).num_frames == 48
    read = read_clip(path, SPEC)
    clip, indices = read.frames, read.indices
    assert indices.tolist() == sample_segment_indices(46, SPEC).tolist()
    assert [read_index(f) for f in clip.numpy()] == indices.tolist()
    assert read.info.num_frames == 46  # the count the decode found
    assert len(list(iter_frames(path))) == 46


def test_decoding_has_a_time_bound(tmp_path):
    path = make_video(tmp_path / "video.mp4", frames=30)
    with pytest.raises(VideoError, match="longer than"):
        load_clip(path, ClipSpec(size=(32, 32), timeout_s=1e-9))
    with pytest.raises(VideoError, match="longer than"):
        list(iter_frames(path, timeout_s=1e-9))
