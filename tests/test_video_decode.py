"""Decoding real (tiny) files: codecs, pixel formats, geometry, streams, views, determinism."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from kvq.video import ClipSpec, iter_frames, load_clip, plan_view, probe, sample_segment_indices
from video_factory import make_frame, make_image, make_video, read_index

SMALL = ClipSpec(size=(32, 48))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """``video(name, **make_video kwargs)`` → path; each file is encoded once per module."""
    root = tmp_path_factory.mktemp("videos")
    cache = {}

    def make(name: str, **kwargs):
        if name not in cache:
            cache[name] = make_video(root / name, **kwargs)
        return cache[name]

    return make


def sampled_indices(clip: torch.Tensor) -> list[int]:
    return [read_index(frame) for frame in clip.numpy()]


CODECS = {
    "h264.mp4": {"codec": "libx264"},
    "mpeg4.avi": {"codec": "mpeg4"},
    "vp9.webm": {"codec": "libvpx-vp9"},
    "mjpeg.avi": {"codec": "mjpeg", "pix_fmt": "yuvj420p"},
    "yuv444.mp4": {"pix_fmt": "yuv444p"},
    "yuv420p10.mp4": {"pix_fmt": "yuv420p10le"},
    "gray.mkv": {"codec": "ffv1", "pix_fmt": "gray"},
    "vfr.mp4": {"vfr": True},
    "audio_first.mp4": {"audio": "first"},
    "several_streams.mp4": {"audio": True, "extra_video": True},
}


@pytest.mark.parametrize("name", list(CODECS))
def test_codecs_formats_and_streams_give_the_sampled_frames(video, name):
    path = video(name, frames=40, **CODECS[name])
    info = probe(path)
    assert (info.num_frames, info.width, info.height) == (40, 64, 48)
    assert not info.is_image and info.fps > 0 and info.duration > 0
    clip = load_clip(path, SMALL)
    assert clip.shape == (32, 32, 48, 3) and clip.dtype == torch.uint8
    assert sampled_indices(clip) == sample_segment_indices(40, SMALL).tolist()


def test_probe_reports_codec_and_pixel_format(video):
    info = probe(video("yuv420p10.mp4", frames=40, pix_fmt="yuv420p10le"))
    assert (info.codec, info.pix_fmt, info.rotation) == ("h264", "yuv420p10le", 0)
    assert probe(video("gray.mkv", frames=40, codec="ffv1", pix_fmt="gray")).pix_fmt == "gray"


def test_frame_count_without_header_is_counted(video):
    # Matroska/WebM store no frame count: it is learned by demuxing.
    info = probe(video("vp9.webm", frames=40, codec="libvpx-vp9"))
    assert info.num_frames == 40 and info.duration == pytest.approx(40 / 24, abs=0.05)


def test_variable_frame_rate(video):
    path = video("vfr.mp4", frames=40, vfr=True)
    info = probe(path)
    # Durations of 1, 2, 3 ticks: 40 frames last 79 ticks, an average of about 12 fps.
    assert info.num_frames == 40 and info.fps == pytest.approx(40 / 79 * 24, rel=0.05)
    assert [read_index(f) for f in iter_frames(path)] == list(range(40))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_matches_ffmpeg_autorotate(video, rotation):
    path = video(f"rot{rotation}.mp4", frames=2, rotation=rotation, pattern="marker")
    info = probe(path)
    assert info.rotation == rotation
    assert (info.height, info.width) == ((64, 48) if rotation % 180 else (48, 64))
    ffmpeg = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1"]
    raw = subprocess.run(
        [*ffmpeg, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True
    ).stdout
    reference = np.frombuffer(raw, np.uint8).reshape(info.height, info.width, 3)
    assert np.array_equal(next(iter_frames(path)), reference)


def test_rotated_clip_is_upright_at_any_output_size(video):
    path = video("rot90.mp4", frames=2, rotation=90, pattern="marker")
    clip = load_clip(path, ClipSpec(size=(40, 30))).numpy()
    assert clip.shape == (32, 40, 30, 3)
    # The marker (coded top-left) is bottom-left once turned 90° counter-clockwise.
    assert clip[:, -5:, :5].mean() > 200 and clip[:, :5, :5].mean() < 50


@pytest.mark.parametrize("frames", [1, 3])
def test_one_frame_and_very_short_videos_wrap(video, frames):
    path = video(f"short{frames}.mp4", frames=frames)
    clip = load_clip(path, SMALL)
    assert clip.shape[0] == 32
    assert sampled_indices(clip) == sample_segment_indices(frames, SMALL).tolist()


def test_tiny_video_is_upsampled(video):
    path = video("tiny.mp4", size=(16, 16), pattern="index")
    assert load_clip(path, ClipSpec(size=(448, 448))).shape == (32, 448, 448, 3)
    frags = load_clip(path, ClipSpec(view="fragments"))
    assert frags.shape == (32, 224, 224, 3)
    assert load_clip(path, ClipSpec(size=(64, 64), view="center_crop")).shape == (32, 64, 64, 3)


def test_odd_dimensions(video):
    path = video("odd.mp4", size=(47, 63), pix_fmt="yuv444p")
    info = probe(path)
    assert (info.height, info.width) == (47, 63)
    assert next(iter_frames(path)).shape == (47, 63, 3)
    assert load_clip(path, ClipSpec(size=(33, 17), view="random_crop"), train=True).shape[1:] == (
        33,
        17,
        3,
    )


def test_8k_video_decodes_to_target_size(video):
    path = video("8k.mp4", frames=2, size=(4320, 7680))
    info = probe(path)
    assert (info.width, info.height) == (7680, 4320)
    clip = load_clip(path, SMALL)
    assert sampled_indices(clip) == sample_segment_indices(2, SMALL).tolist()


def test_iter_frames_order_and_resize(video):
    path = video("h264.mp4", frames=40)
    frames = list(iter_frames(path, size=(24, 40)))
    assert len(frames) == 40 and frames[0].shape == (24, 40, 3)
    assert [read_index(f) for f in frames] == list(range(40))


def test_resize_matches_swscale_of_the_same_frame(video):
    path = video("gradient.mp4", frames=10, pattern="gradient")
    full = list(iter_frames(path, size=(32, 48)))
    clip = load_clip(path, SMALL).numpy()
    for t, i in enumerate(sample_segment_indices(10, SMALL)):
        assert np.array_equal(clip[t], full[i])


@pytest.mark.parametrize("view", ["center_crop", "fragments"])
def test_crop_views_are_native_pixels(video, view):
    path = video("gradient_large.mkv", frames=6, size=(256, 320), codec="ffv1", pix_fmt="yuv444p",
                 pattern="gradient")  # fmt: skip
    spec = ClipSpec(size=(64, 96), view=view, fragment_grid=4, fragment_size=16)
    clip = load_clip(path, spec).numpy()
    full = list(iter_frames(path))
    plan = plan_view((256, 320), spec)
    for t, i in enumerate(sample_segment_indices(6, spec)):
        expected = np.empty_like(clip[t])
        plan.apply(full[i], expected)
        assert np.array_equal(clip[t], expected)
    # Lossless input: the native pixels are (nearly) the pattern that was encoded.
    y, x = plan.corners[0]
    reference = make_frame(int(sample_segment_indices(6, spec)[0]), (256, 320), "gradient")
    patch = clip[0, : plan.patch_size[0], : plan.patch_size[1]].astype(int)
    assert np.abs(patch - reference[y : y + patch.shape[0], x : x + patch.shape[1]]).max() <= 3


def test_images_become_static_clips(tmp_path):
    for name in ("still.png", "still.jpg"):
        path = make_image(tmp_path / name, size=(48, 64), pattern="marker")
        info = probe(path)
        assert info.is_image and info.num_frames == 1 and (info.width, info.height) == (64, 48)
        clip = load_clip(path, ClipSpec(size=(40, 40), image_frames=16))
        assert clip.shape == (16, 40, 40, 3)
        assert (clip == clip[0]).all()
        assert clip[0, :5, :5].float().mean() > 200 and clip[0, -5:, -5:].float().mean() < 50


def test_inference_is_deterministic(video):
    """``load_clip`` at inference takes the centred frames and view whatever ``rng`` it is
    given (seeds, generators or none): the clip depends on the file alone."""
    rngs = [None, 0, 1, np.random.default_rng(2), None]
    path = video("gradient.mp4", frames=10, pattern="gradient")
    for view in ("resize", "random_crop", "fragments"):
        spec = ClipSpec(size=(32, 32), view=view, fragment_grid=2, fragment_size=16)
        clips = [load_clip(path, spec, rng=rng) for rng in rngs]
        assert all(torch.equal(c, clips[0]) for c in clips), view
    path = video("h264_long.mp4", frames=120)
    for spec in (ClipSpec(size=(32, 48)), ClipSpec(size=(32, 48), num_clips=2)):
        expected = sample_segment_indices(120, spec).reshape(spec.num_clips, -1).tolist()
        for rng in rngs:
            clips = load_clip(path, spec, rng=rng).reshape(spec.num_clips, -1, 32, 48, 3)
            assert [sampled_indices(c) for c in clips] == expected


def test_training_draws_depend_on_the_rng(video):
    path = video("h264_long.mp4", frames=120)
    spec = ClipSpec(size=(32, 48))
    a = load_clip(path, spec, train=True, rng=0)
    assert torch.equal(a, load_clip(path, spec, train=True, rng=0))
    draws = {tuple(sampled_indices(load_clip(path, spec, train=True, rng=s))) for s in range(4)}
    assert len(draws) > 1
    assert tuple(sampled_indices(a)) == tuple(sample_segment_indices(120, spec, True, 0))


def test_multiple_clips(video):
    path = video("h264_long.mp4", frames=120)
    spec = ClipSpec(size=(32, 48), num_clips=3)
    clips = load_clip(path, spec)
    assert clips.shape == (3, 32, 32, 48, 3)
    expected = sample_segment_indices(120, spec)
    assert [sampled_indices(c) for c in clips] == expected.tolist()


@pytest.mark.parametrize("name, codec, opens", [("a.mp4", "libx264", 1), ("a.mkv", "ffv1", 2)])
def test_scoring_reads_a_file_once(tmp_path, monkeypatch, name, codec, opens):
    """The file's properties come from the decode's own pass: one open (and, for a container
    that declares no frame count, one packet count), not a probe and then a decode."""
    import av

    import kvq.video.decode as decode
    from kvq.scoring.predictor import decode_input

    path = make_video(tmp_path / name, frames=20, codec=codec)
    expected = probe(path)
    calls = []
    real_open = av.open
    monkeypatch.setattr(decode.av, "open", lambda *a, **k: calls.append(a) or real_open(*a, **k))
    frames, info, indices = decode_input(path, ClipSpec(size=(32, 32), num_segments=2))
    assert len(calls) == opens
    assert info == {k: getattr(expected, k) for k in info}  # the facts probe would give
    assert frames.shape[0] == len(indices)


B_FRAMES = {
    "bframes.mp4": {
        "codec": "libx264",
        "options": {"g": "30", "bf": "3", "x264-params": "b-pyramid=normal"},
    },
    "bframes_vfr.mkv": {"codec": "libx264", "vfr": True, "options": {"g": "30", "bf": "3"}},
    "hevc.mkv": {
        "codec": "libx265",
        "options": {"g": "30", "x265-params": "bframes=4:b-pyramid=1:log-level=error"},
    },
}


@pytest.mark.parametrize("name", list(B_FRAMES))
def test_unwanted_frames_are_dropped_and_the_rest_keep_their_positions(video, name):
    from kvq.video.decode import Deadline, open_video, positioned_frames

    path = video(name, frames=60, **B_FRAMES[name])
    wanted = {0, 5, 17, 18, 33, 59}
    with open_video(path, Deadline(path, None)) as source:
        given = [
            (i, read_index(f.to_ndarray(format="rgb24")))
            for i, f in positioned_frames(source, wanted)
        ]
    assert all(position == shown for position, shown in given)  # each frame shows its number
    assert wanted <= {position for position, _ in given}
    assert len(given) < 45  # non-reference frames were dropped


# Files where dropping must fall back or stay off, and still read the same clips.
ODD_FOR_DROPPING = {
    "edit_list.mp4": {"codec": "libx264", "first_pts": -10, "options": {"g": "30", "bf": "3"}},
    "hevc_layers.mkv": {
        "codec": "libx265",
        "options": {"g": "30", "x265-params": "bframes=4:temporal-layers=3:log-level=error"},
    },
    "h264.ts": {"codec": "libx264", "options": {"g": "30", "bf": "3"}},
}


@pytest.mark.parametrize("name, dropping", [("hevc.mkv", True), ("hevc_layers.mkv", False),
                                            ("bframes.mp4", True), ("h264.ts", False)])  # fmt: skip
def test_frames_are_dropped_only_where_that_is_exact(video, name, dropping):
    from kvq.video.decode import Deadline, drops_frames, open_video

    path = video(name, frames=60, **{**B_FRAMES, **ODD_FOR_DROPPING}[name])
    with open_video(path, Deadline(path, None)) as source:
        assert drops_frames(source) is dropping


@pytest.mark.parametrize("name", [*B_FRAMES, *ODD_FOR_DROPPING])
def test_dropping_frames_reads_the_same_clips(video, name, monkeypatch):
    import kvq.video.decode as decode
    from kvq.video import read_clip

    path = video(name, frames=60, **{**B_FRAMES, **ODD_FOR_DROPPING}[name])
    fragments = ClipSpec(size=(32, 32), view="fragments", fragment_grid=2, fragment_size=16)
    crops = ClipSpec(size=(32, 32), view="random_crop", num_clips=2)
    specs = [(SMALL, False), (fragments, False), (crops, True)]
    dropped = [read_clip(path, spec, train=train, rng=7) for spec, train in specs]
    monkeypatch.setattr(decode, "DROPPABLE_CODECS", frozenset())
    for (spec, train), clip in zip(specs, dropped):
        full = read_clip(path, spec, train=train, rng=7)
        assert torch.equal(clip.frames, full.frames)
        assert np.array_equal(clip.indices, full.indices) and clip.info == full.info


def test_frames_that_timestamps_cannot_place_are_read_by_counting(video, monkeypatch):
    import kvq.video.decode as decode

    path = video("bframes.mp4", frames=60, **B_FRAMES["bframes.mp4"])
    placed = []

    def lost(self, frame):
        placed.append(frame.pts)
        raise decode.OrderLost

    monkeypatch.setattr(decode.DisplayOrder, "place", lost)
    clip = load_clip(path, SMALL)
    assert placed  # the timestamp route was tried, then every frame was counted
    assert sampled_indices(clip) == sample_segment_indices(60, SMALL).tolist()


def test_a_read_that_falls_back_draws_the_same_views(video, monkeypatch):
    import kvq.video.decode as decode
    from kvq.video import read_clip

    path = video("bframes.mp4", frames=60, **B_FRAMES["bframes.mp4"])
    spec = ClipSpec(size=(32, 32), view="random_crop", num_clips=2)
    place = decode.DisplayOrder.place

    def lost_late(self, frame):
        position = place(self, frame)
        if position > 40:  # views already drawn on the first kept frame
            raise decode.OrderLost
        return position

    monkeypatch.setattr(decode.DisplayOrder, "place", lost_late)
    fallen_back = read_clip(path, spec, train=True, rng=7)
    monkeypatch.setattr(decode, "DROPPABLE_CODECS", frozenset())
    counted = read_clip(path, spec, train=True, rng=7)
    assert torch.equal(fallen_back.frames, counted.frames)


def test_a_cut_with_an_edit_list_is_not_truncated(video):
    # ffmpeg -ss ... -c copy keeps the samples before the cut and hides them with an edit list:
    # the header counts 60 frames, 50 are shown.
    path = video("edit_list.mp4", frames=60, **ODD_FOR_DROPPING["edit_list.mp4"])
    clip = load_clip(path, SMALL)
    assert sampled_indices(clip) == [10 + i for i in sample_segment_indices(50, SMALL).tolist()]
