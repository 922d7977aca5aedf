from dataclasses import replace

import numpy as np
import pytest
import torch

from kvq.data.datasets import (
    EpochSampler,
    VideoQualityDataset,
    collate_clips,
    random_splits,
    split_indices,
)
from kvq.data.labels import VideoLabel, write_video_labels
from kvq.data.registry import (
    DatasetError,
    DatasetSpec,
    get_dataset_spec,
    list_datasets,
    register_dataset,
    resolve_dataset,
)
from kvq.train.config import DataSection
from kvq.train.data import build_run_data
from kvq.video import ClipSpec, sample_segment_indices
from video_factory import make_video, read_index

SPEC = ClipSpec(num_segments=2, frames_per_segment=2, stride=1, size=(32, 32))


def test_registry_knows_the_standard_sets_and_resolves_them_under_a_data_root(tmp_path):
    assert {
        "lsvq_train",
        "lsvq_test",
        "lsvq_1080p",
        "konvid_1k",
        "live_vqc",
        "youtube_ugc",
        "kvq",
    } <= set(list_datasets())
    assert get_dataset_spec("konvid_1k").mos_range == (1.0, 5.0)
    assert get_dataset_spec("lsvq_test").label_file == "LSVQ/labels_test.txt"
    (tmp_path / "KoNViD").mkdir()
    with pytest.raises(DatasetError, match=r"label file .*KoNViD/labels.txt not found"):
        resolve_dataset("konvid_1k", tmp_path)
    labels_root = tmp_path / "examplar_data_labels"
    (labels_root / "KoNViD").mkdir(parents=True)
    (labels_root / "KoNViD" / "labels.txt").write_text("a.mp4, 8, 30, 3.5\n")
    source = resolve_dataset("konvid_1k", tmp_path, labels_root)
    assert source.video_root == tmp_path / "KoNViD" and source.whole_set
    with pytest.raises(DatasetError, match="unknown dataset 'konvid'"):
        resolve_dataset("konvid", tmp_path)


def test_custom_sets_by_registration_or_label_file(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "mine.csv").write_text("path,mos\na.mp4,1\n")
    register_dataset(DatasetSpec("my_set", "mine.csv", "clips", (0, 10), True))
    with pytest.raises(DatasetError, match="already registered"):
        register_dataset(DatasetSpec("my_set", "x.txt", "x", (0, 1), True))
    assert resolve_dataset("my_set", tmp_path).video_root == tmp_path / "clips"
    direct = resolve_dataset(str(tmp_path / "mine.csv"), video_root=tmp_path / "clips")
    assert direct.name == "mine" and direct.labels_path == tmp_path / "mine.csv"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i in range(3):
        make_video(root / f"v{i}.mp4", frames=8, size=(32, 32), pattern="gradient")
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


def test_unreadable_videos_are_reported_and_skipped(videos):
    labels = [
        VideoLabel("v0.mp4", 1),
        VideoLabel("missing.mp4", 2),
        VideoLabel("broken.mp4", 3),
        VideoLabel("v1.mp4", 4),
    ]
    dataset = VideoQualityDataset(labels, videos, SPEC)
    batch = collate_clips([dataset[i] for i in range(4)])
    assert batch["clip"].shape == (2, 4, 32, 32, 3) and batch["clip"].dtype == torch.uint8
    assert batch["mos"].tolist() == [1, 4] and batch["index"].tolist() == [0, 3]
    reasons = dict(batch["skipped"])
    assert set(reasons) == {str(videos / "missing.mp4"), str(videos / "broken.mp4")}
    assert "not found" in reasons[str(videos / "missing.mp4")]
    # Training keeps its batch size: the next readable video stands in, the failures are named.
    train = VideoQualityDataset(labels, videos, SPEC, train=True, substitute_failed=True)
    sample = train[(1, 7)]
    assert sample["index"] == 3 and sample["mos"] == 4 and len(sample["skipped"]) == 2
    # Decoding in DataLoader workers.
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, num_workers=2, collate_fn=collate_clips
    )
    (batch_from_workers,) = list(loader)
    assert torch.equal(batch_from_workers["clip"], batch["clip"])


def test_training_sampling_is_seeded(tmp_path):
    """Item ``(i, seed)`` of a training set: the same seed gives the same frames and view,
    other seeds other ones (the frames are those the seed's draw names); inference sampling
    ignores the seed."""
    make_video(tmp_path / "long.mp4", frames=48, size=(48, 64), pattern="index")
    labels = [VideoLabel("long.mp4", 1)]
    spec = ClipSpec(num_segments=2, frames_per_segment=2, stride=1, size=(32, 32))
    train = VideoQualityDataset(labels, tmp_path, spec, train=True)

    def frames(dataset, seed: int) -> list[int]:
        return [read_index(frame) for frame in dataset[(0, seed)]["clip"].numpy()]

    draws = {seed: frames(train, seed) for seed in range(6)}
    assert frames(train, 3) == draws[3]
    assert len({tuple(d) for d in draws.values()}) >= 5, draws  # 23² possible draws
    for seed, drawn in draws.items():
        expected = sample_segment_indices(48, spec, train=True, rng=np.random.default_rng(seed))
        assert drawn == expected.tolist()
    # The spatial view follows the seed too: random crops of the same frames differ.
    crops = VideoQualityDataset(labels, tmp_path, replace(spec, view="random_crop"), train=True)
    views = [crops[(0, seed)]["clip"] for seed in range(6)]
    assert torch.equal(views[2], crops[(0, 2)]["clip"])
    assert len({v.numpy().tobytes() for v in views}) > 1
    inference = VideoQualityDataset(labels, tmp_path, spec)
    assert len({tuple(frames(inference, seed)) for seed in range(4)}) == 1


def test_clip_cache_decodes_once(videos, tmp_path, monkeypatch):
    labels = [VideoLabel("v2.mp4", 1)]
    cached = VideoQualityDataset(labels, videos, SPEC, train=True, cache_dir=tmp_path / "cache")
    first = cached[(0, 1)]["clip"]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    assert torch.equal(first, VideoQualityDataset(labels, videos, SPEC)[0]["clip"])

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr("kvq.data.datasets.load_clip", no_decoding)
    assert torch.equal(cached[(0, 2)]["clip"], first)


def test_epoch_sampler_order_is_seeded_sharded_and_resumable():
    def epoch(world, rank, e, start=0, seed=0):
        sampler = EpochSampler(10, global_batch=4, seed=seed, rank=rank, world_size=world)
        sampler.set_epoch(e, start)
        return list(sampler)

    one = epoch(1, 0, 0)
    assert len(one) == 8 and len({i for i, _ in one}) == 8  # 2 full batches, no repeats
    # Two ranks see the same global batches, each its consecutive half.
    r0, r1 = epoch(2, 0, 0), epoch(2, 1, 0)
    assert one == r0[:2] + r1[:2] + r0[2:] + r1[2:]
    assert epoch(1, 0, 1) != one and epoch(1, 0, 0, seed=1) != one
    assert epoch(1, 0, 0, start=1) == one[4:]
    with pytest.raises(ValueError, match="divisible"):
        EpochSampler(10, global_batch=3, world_size=2)


def test_random_splits_protocol():
    splits = random_splits(100, num_splits=10, test_fraction=0.2, seed=3)
    assert len(splits) == 10
    for train, test in splits:
        assert len(test) == 20 and len(train) == 80
        assert not set(train) & set(test) and set(train) | set(test) == set(range(100))
    assert not np.array_equal(splits[0][1], splits[1][1])
    # Split i does not depend on how many are drawn, and repeats with the seed.
    np.testing.assert_array_equal(random_splits(100, 4, 0.2, seed=3)[3][1], splits[3][1])
    assert split_indices(5, 0.0, 0)[1].size == 0
    with pytest.raises(ValueError, match="fraction"):
        split_indices(5, 1.0, 0)


def test_run_data_keeps_test_apart_from_train_and_val(tmp_path):
    labels = [VideoLabel(f"v{i}.mp4", float(i)) for i in range(50)]
    write_video_labels(tmp_path / "all.txt", labels)
    data = DataSection(
        data_root=str(tmp_path), train=str(tmp_path / "all.txt"), split_index=2, val_fraction=0.1
    )
    run = build_run_data(data)
    paths = [{lb.path for lb in part.labels} for part in (run.train, run.val, run.tests[0])]
    assert [len(p) for p in paths] == [36, 4, 10]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    expected_test = {labels[i].path for i in random_splits(50, 3, 0.2, seed=0)[2][1]}
    assert paths[2] == expected_test  # the same test part `kvq eval --splits` scores


def test_group_sampler_batches_hold_whole_groups_in_a_seeded_order():
    from kvq.data.datasets import GroupSampler

    groups = [k // 4 for k in range(24)] + [99, 99]  # six ladders of 4, a pair left over
    sampler = GroupSampler(groups, global_batch=8, group_size=4, seed=3)
    assert sampler.batches_per_epoch == 3  # the pair cannot fill a chunk of 4
    order = [i for i, _ in sampler]
    assert sorted(order) == list(range(24))
    for chunk in range(0, 24, 4):
        assert len({groups[i] for i in order[chunk : chunk + 4]}) == 1
    again = [i for i, _ in GroupSampler(groups, 8, 4, seed=3)]
    other = [i for i, _ in GroupSampler(groups, 8, 4, seed=4)]
    assert order == again and order != other
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != order
    # two ranks split each global batch: rank 1 takes the second group of each batch
    ranks = [[i for i, _ in GroupSampler(groups, 8, 4, 3, rank, 2)] for rank in (0, 1)]
    assert [order[k : k + 4] for k in range(0, 24, 8)] == [
        ranks[0][k : k + 4] for k in range(0, 12, 4)
    ]
    assert [order[k + 4 : k + 8] for k in range(0, 24, 8)] == [
        ranks[1][k : k + 4] for k in range(0, 12, 4)
    ]
