"""Maps: file names (each input's whole name below the folder it was found under) and the
drawing (over the real frames at their aspect ratio, cells where the model's view took them,
fixed colour ranges on the calibrated scale, the MP4 over the whole video)."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import kvq
from conftest import CALIBRATION
from kvq.scoring.batch import find_inputs
from kvq.scoring.maps import (
    FALLBACK_FPS,
    LEGEND_H,
    QS_ALPHA,
    QUALITY_COLOURS,
    RAW_RANGE,
    SALIENCY_HIGH,
    MapsError,
    calibrated_quality,
    cell_index,
    check_map_files,
    map_files,
    quality_colours,
    quality_range,
    render_sheet,
    slice_at,
    video_rate,
    video_size,
    write_overlay_video,
)
from kvq.scoring.predictor import Calibration
from kvq.video import ClipSpec, plan_view
from video_factory import make_image, make_video


def test_find_inputs_records_the_folder_each_input_was_found_under(tmp_path):
    (tmp_path / "v" / "sub").mkdir(parents=True)
    for name in ("v/a.png", "v/sub/b.png", "c.png"):
        make_image(tmp_path / name)
    v, c = str(tmp_path / "v"), str(tmp_path / "c.png")
    found = find_inputs([v, str(tmp_path / "v" / "*" / "*.png"), c, "missing.mp4"])
    assert found == {
        str(tmp_path / "v" / "a.png"): v,  # first found under the folder argument
        str(tmp_path / "v" / "sub" / "b.png"): v,
        c: str(tmp_path),  # a file named directly: its own folder
        "missing.mp4": ".",
    }
    glob = find_inputs([str(tmp_path / "v" / "s*" / "*.png")])
    assert glob == {str(tmp_path / "v" / "sub" / "b.png"): v}  # the glob's fixed folder


def test_map_files_keep_the_whole_name_and_sub_folder():
    found = {f"v/{name}": "v" for name in ("clip.mp4", "e.jpg", "e.png", "sub/clip.mp4")}
    files = map_files(found, "m", video=True)
    assert {p: [f.as_posix() for f in fs] for p, fs in files.items()} == {
        "v/clip.mp4": ["m/clip.mp4.maps.png", "m/clip.mp4.maps.mp4"],
        "v/e.jpg": ["m/e.jpg.maps.png", "m/e.jpg.maps.mp4"],
        "v/e.png": ["m/e.png.maps.png", "m/e.png.maps.mp4"],
        "v/sub/clip.mp4": ["m/sub/clip.mp4.maps.png", "m/sub/clip.mp4.maps.mp4"],
    }
    # Inputs found under different folders keep those folders' names below their common one.
    files = map_files({"a/x.mp4": "a", "b/x.mp4": "b"}, "m", video=False)
    assert [f.as_posix() for fs in files.values() for f in fs] == [
        "m/a/x.mp4.maps.png",
        "m/b/x.mp4.maps.png",
    ]
    assert map_files({}, "m", video=True) == {}


def test_map_files_onto_an_input_are_refused(tmp_path):
    folder = str(tmp_path)
    check_map_files(map_files({f"{folder}/pic.png": folder}, folder, video=True))
    found = {f"{folder}/pic.png": folder, f"{folder}/pic.png.maps.png": folder}
    with pytest.raises(MapsError, match=r"pic\.png\.maps\.png over the input .*pic\.png\.maps"):
        check_map_files(map_files(found, folder, video=False))
    # The same folder reached through a link is still the input's folder.
    (tmp_path / "link").symlink_to(tmp_path)
    linked = {f"{folder}/link/pic.mp4": f"{folder}/link", f"{folder}/pic.mp4.maps.mp4": folder}
    with pytest.raises(MapsError):
        check_map_files(map_files(linked, Path(folder), video=True))


# --- Drawing: over the real frames, at their aspect ratio, on the calibrated scale ---


@pytest.fixture(scope="module")
def predictor(weights):
    return kvq.load(weights, device="cpu")


def mp4_frames(path: Path) -> tuple[list[np.ndarray], float, float]:
    """The decoded RGB frames of an MP4, its frame rate and its duration (s)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        rate = float(stream.average_rate)
        duration = float(stream.duration * stream.time_base)
    return frames, rate, duration


def with_maps(result, quality: np.ndarray, saliency: float = 1.0):
    """``result`` with the calibrated local quality ``quality`` (a·Q + b = quality) per slice
    ``(T', H', W')`` and a uniform saliency."""
    a, b = CALIBRATION["a"], CALIBRATION["b"]
    q = np.broadcast_to((np.asarray(quality, dtype=np.float32) - b) / a, result.local_quality.shape)
    s = np.full_like(result.saliency, saliency)
    return dataclasses.replace(result, local_quality=q.copy(), saliency=s)


@pytest.mark.parametrize(
    "size",
    [(720, 1280), (1280, 720), (100, 300), (224, 224), (1080, 1920), (333, 500)],
)
def test_fragment_cells_are_where_the_view_cut_their_patches(size):
    spec = ClipSpec(view="fragments", fragment_grid=7, fragment_size=32)
    plan = plan_view(size, spec)
    rows, cols = cell_index(size, (7, 7), plan)
    assert rows.shape == (size[0],) and cols.shape == (size[1],)
    # Frames under 224 pixels were upscaled for the view: back to the frame's pixels.
    sy, sx = (size[a] / plan.source_size[a] for a in (0, 1))
    for k, (y, x) in enumerate(plan.corners):
        r, c = divmod(k, 7)
        ys = slice(math.ceil(y * sy), math.floor((y + 32) * sy))
        xs = slice(math.ceil(x * sx), math.floor((x + 32) * sx))
        assert set(rows[ys]) == {r} and set(cols[xs]) == {c}
    # Each cell is one seventh of the frame: the grid has the frame's aspect ratio.
    for index, length in ((rows, size[0]), (cols, size[1])):
        assert list(index) == sorted(index) and set(index) == set(range(7))
        extents = np.bincount(index)
        assert extents.max() - extents.min() <= length / 7 / 16 + 2


def test_resize_and_crop_cells_are_shares_of_the_frame():
    rows, cols = cell_index((720, 1280), (7, 7), plan_view((720, 1280), ClipSpec(size=(224, 224))))
    assert np.array_equal(rows, (np.arange(720) + 0.5) * 7 // 720)
    assert np.array_equal(cols, (np.arange(1280) + 0.5) * 7 // 1280)
    crop = plan_view((720, 1280), ClipSpec(view="center_crop", size=(224, 224)))
    rows, cols = cell_index((720, 1280), (7, 7), crop)
    seen = np.flatnonzero(cols >= 0)
    assert (seen[0], seen[-1] + 1) == (528, 752)  # the centred 224-pixel window, nothing else
    assert np.array_equal(cols[seen], np.arange(224) // 32)


def test_quality_colours_have_a_fixed_range_on_the_calibrated_scale():
    calibration = Calibration(**CALIBRATION)
    assert quality_range(calibration) == (1.0, 5.0)
    assert quality_range(Calibration()) == RAW_RANGE  # raw weights: the documented fallback
    assert quality_range(Calibration(a=2.0, b=3.0, low=1.0)) == (1.0, 5.0)
    # A cell's colour depends on its own value only: the same in a good and in a bad video.
    good = calibrated_quality(np.array([[0.5, 1.0], [0.9, 0.8]]), calibration)
    bad = calibrated_quality(np.array([[0.5, -1.0], [-0.9, -0.8]]), calibration)
    assert good.max() == 5.0 and bad.min() == 1.0  # clipped like the score
    assert np.array_equal(
        quality_colours(good, calibration)[0, 0], quality_colours(bad, calibration)[0, 0]
    )
    assert tuple(quality_colours(np.array(5.0), calibration)) == QUALITY_COLOURS[-1]
    assert tuple(quality_colours(np.array(1.0), calibration)) == QUALITY_COLOURS[0]
    lower_is_better = Calibration(**{**CALIBRATION, "higher_is_better": False})
    assert tuple(quality_colours(np.array(1.0), lower_is_better)) == QUALITY_COLOURS[-1]


def test_a_portrait_video_gives_a_portrait_sheet_and_mp4(predictor, tmp_path):
    # A phone video: coded 48×96 landscape, a display matrix turning it to 96×48 portrait.
    video = make_video(tmp_path / "phone.mp4", frames=48, size=(48, 96), rotation=90)
    result = predictor.score(video)
    assert (result.info["height"], result.info["width"]) == (96, 48)
    assert result.frames.shape[1:3] == (64, 64)  # the model's input is square
    sheet = render_sheet(result, tmp_path / "s.png", predictor.calibration, predictor.spec)
    with Image.open(sheet) as img:
        assert img.width == 4 * 80  # four portrait panels of 80×160
    mp4 = write_overlay_video(result, tmp_path / "v.mp4", predictor.calibration, predictor.spec)
    frames, rate, duration = mp4_frames(mp4)
    assert frames[0].shape == (video_size((96, 48))[0] + LEGEND_H, 160, 3)
    assert video_size((96, 48)) == (320, 160)  # small: enlarged to MIN_SIDE, aspect kept
    assert (len(frames), rate, duration) == (48, 24.0, pytest.approx(2.0))


def test_the_mp4_covers_the_whole_video_at_the_documented_rate(predictor, tmp_path):
    fast = make_video(tmp_path / "fast.mp4", frames=30, size=(48, 64), fps=60)
    result = predictor.score(fast)
    mp4 = write_overlay_video(result, tmp_path / "f.mp4", predictor.calibration, predictor.spec)
    frames, rate, duration = mp4_frames(mp4)
    assert video_rate(60.0) == (2, 30)  # above MAX_FPS: every other frame
    assert (len(frames), rate, duration) == (15, 30.0, pytest.approx(0.5))
    assert video_size((1080, 1920)) == (360, 640) and video_size((1081, 1921)) == (360, 640)
    assert video_rate(30000 / 1001) == (1, Fraction(30000, 1001)) and video_rate(50.0) == (2, 25)


def test_each_mp4_frame_shows_the_slice_that_covers_its_time(predictor, tmp_path):
    video = make_video(tmp_path / "v.mp4", frames=48, size=(64, 64), pattern="marker")
    result = predictor.score(video)
    slices = result.local_quality.shape[0]
    values = np.linspace(1.0, 5.0, slices)[:, None, None]  # one uniform quality per slice
    result = with_maps(result, values, saliency=SALIENCY_HIGH)
    calibration = predictor.calibration
    mp4 = write_overlay_video(result, tmp_path / "o.mp4", calibration, predictor.spec)
    frames, _, _ = mp4_frames(mp4)
    expected = QS_ALPHA[1] * quality_colours(values[:, 0, 0], calibration)  # over black
    h = video_size((64, 64))[0]
    shown = []
    for frame in frames:
        pixel = frame[h // 2 : h - 4, h // 2 : h - 4].reshape(-1, 3).mean(axis=0)
        shown.append(int(np.argmin(np.abs(expected - pixel).sum(axis=1))))
    fps = result.info["fps"]
    covering = [slice_at(result, i / fps, slices, 48, fps) for i in range(48)]
    assert shown == covering and sorted(set(shown)) == list(range(slices))
    assert covering == sorted(covering)  # in time order, each slice its stretch of the video


def test_a_uniformly_good_and_a_uniformly_bad_video_get_different_colours(
    predictor, media, tmp_path
):
    result = predictor.score(media / "a.mp4")
    calibration, spec = predictor.calibration, predictor.spec
    shape = result.local_quality.shape
    mean = {}
    for name, value in (("good", 5.0), ("bad", 1.0)):
        uniform = with_maps(result, np.full(shape, value))
        sheet = render_sheet(uniform, tmp_path / f"{name}.png", calibration, spec)
        mp4 = write_overlay_video(uniform, tmp_path / f"{name}.mp4", calibration, spec)
        frames, _, _ = mp4_frames(mp4)
        with Image.open(sheet) as img:
            mean[name] = (
                np.asarray(img.convert("RGB"), dtype=float).mean(axis=(0, 1)),
                np.mean(frames, axis=(0, 1, 2)),
            )
    for good, bad in zip(*mean.values()):  # the same frames under: only the overlay differs
        difference = good - bad
        assert difference[1] > 20 and difference[0] < -20  # good is greener, bad redder


def test_sheets_of_an_image_and_of_a_clip_tensor(predictor, media, tmp_path):
    calibration, spec = predictor.calibration, predictor.spec
    image = predictor.score(media / "c.png")
    with Image.open(render_sheet(image, tmp_path / "c.png", calibration, spec)) as img:
        assert img.width == 4 * 160  # 50×70: landscape panels of 160×114
    frames, _, duration = mp4_frames(
        write_overlay_video(image, tmp_path / "c.mp4", calibration, spec)
    )
    assert len(frames) == 1 and duration == pytest.approx(1.0)  # a still
    clip = predictor.score(torch.from_numpy(image.frames))
    with Image.open(render_sheet(clip, tmp_path / "t.png", calibration, spec)) as img:
        assert img.width == 4 * 160
    frames, rate, _ = mp4_frames(write_overlay_video(clip, tmp_path / "t.mp4", calibration, spec))
    assert len(frames) == clip.frames.shape[0] and rate == FALLBACK_FPS
    with pytest.raises(ValueError, match="no maps to draw"):
        render_sheet(
            predictor.score(tmp_path / "missing.mp4"), tmp_path / "x.png", calibration, spec
        )
