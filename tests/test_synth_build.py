"""Corpus building: label files, splits by content, determinism, resuming, CLI errors."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kvq.cli.main import main
from kvq.data.labels import read_lpvq_labels, read_video_labels
from kvq.synth import SynthConfig, SynthError, build_corpus, find_sources, plan_corpus
from kvq.synth.build import map_in_processes
from kvq.synth.distortions import encode_h264
from kvq.synth.motion import MAX_ZOOM, MIN_ZOOM, CameraPath
from test_synth_distortions import textured_clip


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Four generated photographs and one generated video."""
    root = tmp_path_factory.mktemp("sources")
    for k in range(4):
        Image.fromarray(textured_clip(1, 240, 400, seed=10 + k)[0]).save(root / f"photo{k}.png")
    (root / "clips").mkdir()
    encode_h264(
        textured_clip(20, 120, 200, seed=20), str(root / "clips" / "walk.mp4"), 25.0, 18, "veryfast"
    )
    return root


CONFIG = SynthConfig.small(num_videos=12, num_frames=10, ladder=2)


@pytest.fixture(scope="module")
def corpus(sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    summary = build_corpus(out, [sources], CONFIG, workers=2, progress=False)
    assert summary.num_items == summary.num_built == 12
    return out


def label_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "labels").iterdir())}


def test_corpus_has_videos_stills_and_valid_labels(corpus):
    records = 0
    for split in ("train", "val", "test"):
        videos = read_video_labels(corpus / "labels" / f"{split}.txt")
        local = read_lpvq_labels(corpus / "labels" / f"{split}_local.txt")
        stills = read_lpvq_labels(corpus / "labels" / f"{split}_stills.txt")
        assert [v.path for v in videos] == list(local)
        assert len(stills) == len(videos) > 0
        for v in videos:
            assert (corpus / v.path).stat().st_size > 0
            assert 1.0 <= v.mos <= 5.0
            assert v.duration == pytest.approx(CONFIG.duration) and v.fps == CONFIG.fps
        for name, grid in {**local, **stills}.items():
            assert (corpus / name).exists()
            assert grid.shape == (7, 7) and np.all((grid >= 1) & (grid <= 5))
        records += len(videos)
    assert records == CONFIG.num_videos
    still = np.asarray(Image.open(next((corpus / "stills").iterdir())))
    assert still.shape == (CONFIG.height, CONFIG.width, 3)


def test_labels_are_measured_not_constant(corpus):
    import json

    items = json.loads((corpus / "manifest.json").read_text())["items"]
    assert len({it["mos"] for it in items}) > 1
    # a clip whose distortions are all regional has unequal cells
    regional = [
        it
        for it in items
        if it["distortions"] and all(d["mask"]["kind"] != "full" for d in it["distortions"])
    ]
    assert any(np.ptp(it["local_mos"]) > 0.2 for it in regional)


def test_splits_share_no_source(corpus, sources):
    import json

    manifest = json.loads((corpus / "manifest.json").read_text())
    split_of: dict[str, set[str]] = {}
    for item in manifest["items"]:
        split_of.setdefault(item["source"], set()).add(item["split"])
    assert all(len(splits) == 1 for splits in split_of.values())
    assert {s for splits in split_of.values() for s in splits} == {"train", "val", "test"}
    # the plan agrees, for other seeds as well
    for seed in range(5):
        plans = plan_corpus(find_sources([sources]), SynthConfig.small(seed=seed))
        by_source: dict[str, set[str]] = {}
        for p in plans:
            by_source.setdefault(p.source.name, set()).add(p.split)
        assert all(len(s) == 1 for s in by_source.values())


def test_same_seed_gives_byte_identical_labels(corpus, sources, tmp_path):
    build_corpus(tmp_path, [sources], CONFIG, workers=1, progress=False)
    assert label_bytes(tmp_path) == label_bytes(corpus)
    assert (tmp_path / "manifest.json").read_bytes() == (corpus / "manifest.json").read_bytes()
    other = plan_corpus(find_sources([sources]), SynthConfig.small(num_videos=12, ladder=2, seed=1))
    assert other != plan_corpus(find_sources([sources]), CONFIG)


def test_rerun_resumes_and_rebuilds_only_missing_items(corpus, sources):
    before = label_bytes(corpus)
    assert build_corpus(corpus, [sources], CONFIG, progress=False).num_built == 0
    (corpus / "items" / "00003.json").unlink()
    (corpus / "videos" / "00003.mp4").unlink()
    assert build_corpus(corpus, [sources], CONFIG, progress=False).num_built == 1
    assert label_bytes(corpus) == before


def test_bad_input_gives_clear_errors(tmp_path, capsys):
    with pytest.raises(SynthError, match="does not exist"):
        find_sources([tmp_path / "missing"])
    with pytest.raises(SynthError, match="no images or videos"):
        find_sources([tmp_path])
    with pytest.raises(SynthError, match="unknown quality factors"):
        SynthConfig.small(factors=("sepia",))
    assert (
        main(["synth", str(tmp_path / "out"), "--sources", str(tmp_path / "nope"), "--small"]) == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_cli_builds_small_corpus(sources, tmp_path, capsys):
    code = main(
        [
            "synth",
            str(tmp_path),
            "--sources",
            str(sources),
            "--small",
            "--num-videos",
            "4",
            "--ladder",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "4 clips" in capsys.readouterr().out
    assert len(read_video_labels(tmp_path / "labels" / "train.txt")) >= 1


def test_ladders_share_everything_but_a_growing_severity(sources):
    config = SynthConfig.small(num_videos=24, ladder=4, pristine_prob=0.5)
    plans = plan_corpus(find_sources([sources]), config)
    groups: dict[str, list] = {}
    for plan in plans:
        groups.setdefault(plan.group, []).append(plan)
    assert all(len(rungs) == 4 for rungs in groups.values())
    pristine_first = 0
    for rungs in groups.values():
        assert len({(r.source, r.view, r.split) for r in rungs}) == 1
        distorted = [r for r in rungs if r.distortions]
        pristine_first += len(distorted) == 3
        assert len(distorted) >= 3 and not rungs[-1].distortions == ()
        shapes = {
            tuple((a.factor, a.mask, tuple(sorted(a.params.items()))) for a in r.distortions)
            for r in distorted
        }
        assert len(shapes) == 1
        severities = [r.distortions[0].severity for r in distorted]
        assert severities == sorted(severities) and len(set(severities)) == len(severities)
    assert 0 < pristine_first < len(groups)


def test_group_files_list_every_clip_of_a_split(corpus):
    from kvq.data.labels import read_groups

    for split in ("train", "val", "test"):
        groups = read_groups(corpus / "labels" / f"{split}_groups.csv")
        labels = read_video_labels(corpus / "labels" / f"{split}.txt")
        assert sorted(groups) == sorted(lb.path for lb in labels)
        assert all(list(groups.values()).count(g) == CONFIG.ladder for g in groups.values())


def test_every_evaluation_split_gets_enough_clips_for_its_metrics(sources, caplog):
    from kvq.eval.metrics import MIN_SAMPLES
    from kvq.synth.build import split_ladders

    def clips(**overrides) -> dict[str, int]:
        plans = plan_corpus(find_sources([sources]), SynthConfig.small(**overrides))
        return {split: sum(p.split == split for p in plans) for split in ("train", "val", "test")}

    assert clips() == {"train": 16, "val": 4, "test": 4}  # the --small preset
    # 20 clips in pairs: a 15 % share is one pair, too few; train gives up the difference.
    assert clips(num_videos=20, ladder=2) == {"train": 12, "val": 4, "test": 4}
    assert clips(num_videos=12, ladder=1) == {"train": 6, "val": 3, "test": 3}
    # The documented corpora keep their layout (docs/synth.md, scripts/build_default_weights.sh).
    assert split_ladders(SynthConfig.default(num_videos=686)) == [120, 25, 25]
    # Too few videos to give every split enough: the shares stand, with a warning.
    with caplog.at_level("WARNING", logger="kvq.synth"):
        assert clips(num_videos=4, ladder=1) == {"train": 2, "val": 1, "test": 1}
    assert f"val, test get fewer than {MIN_SAMPLES} clips" in caplog.text


def test_camera_views_range_from_whole_pictures_to_close_ups():
    rng = np.random.default_rng(0)
    zooms = np.array([CameraPath.sample(rng).zoom for _ in range(400)])
    assert zooms.min() >= MIN_ZOOM and zooms.max() <= MAX_ZOOM
    assert np.all(np.abs(np.log(zooms[:, 1] / zooms[:, 0])) <= np.log(1.25) + 1e-3)
    # log-uniform: about as many views above the middle octave as below it
    assert 0.3 < np.mean(zooms[:, 0] > np.sqrt(MIN_ZOOM * MAX_ZOOM)) < 0.7
    assert np.mean(zooms[:, 0] > 3.0) > 0.1


def test_wide_views_of_a_large_picture_are_filtered_not_aliased():
    # 1-pixel stripes, 16× wider than the frame: shrunk without a filter they would beat into
    # coarse stripes; filtered they average to flat grey
    stripes = np.zeros((360, 1280, 3), np.uint8)
    stripes[:, ::2] = 255
    frames = CameraPath(zoom=(1.1, 1.1)).render(stripes, 2, 45, 80)
    assert frames.shape == (2, 45, 80, 3)
    assert frames[..., 0].std() < 12 and abs(frames.mean() - 127.5) < 8
    # a close-up of the same picture keeps them: one picture pixel per frame pixel
    close = CameraPath(zoom=(8.0, 8.0)).render(stripes, 1, 45, 80)
    assert close[..., 0].std() > 100


def _die_on_two(k: int) -> int:
    if k == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as a segfault or the out-of-memory killer would
    return k * 10


def _fail_on_one(k: int) -> int:
    if k == 1:
        raise ValueError("bad item 1")
    return k


def test_worker_processes_return_every_result():
    assert sorted(map_in_processes(_die_on_two, [0, 1, 3], workers=2)) == [0, 10, 30]


def test_a_worker_that_dies_is_a_clear_error_not_a_hang():
    with pytest.raises(SynthError, match=r"worker process died.*run the same command again"):
        list(map_in_processes(_die_on_two, [0, 1, 2, 3], workers=2))


def test_an_error_in_a_worker_reaches_the_caller():
    with pytest.raises(ValueError, match="bad item 1"):
        list(map_in_processes(_fail_on_one, [0, 1, 2], workers=2))
