"""End-to-end training on generated videos: learning, exact resume, model selection files."""

import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import kvq
from kvq.cli.main import main
from kvq.data.labels import VideoLabel, read_video_labels, write_video_labels
from kvq.train import TrainError, config_from_dict, train
from kvq.train.checkpoint import atomic_save, load_state

SIZE, FRAMES = 64, 16


def _write_video(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    """Lossless H.264 (qp 0, 4:4:4) so that the noise a label measures survives."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.time_base = "yuv444p", Fraction(1, fps)
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(video_frame.reformat(format="yuv444p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def noise_corpus(tmp_path_factory) -> Path:
    """48 grey block-textured videos, MOS = 5 − σ/10 for additive noise σ ∈ [0, 40];
    labels split into train (36) and test (12) files."""
    root = tmp_path_factory.mktemp("noise_corpus")
    rng = np.random.default_rng(0)
    labels = []
    for i in range(48):
        blocks = rng.uniform(110, 146, (4, 4, 1)).repeat(3, axis=2)
        image = np.kron(blocks, np.ones((SIZE // 4, SIZE // 4, 1)))
        sigma = rng.uniform(0, 40)
        frames = [
            np.roll(image, t, axis=1) + rng.normal(0, sigma, image.shape) for t in range(FRAMES)
        ]
        _write_video(root / f"v{i:02d}.mp4", np.clip(frames, 0, 255).astype(np.uint8))
        labels.append(VideoLabel(f"v{i:02d}.mp4", 5 - sigma / 10, FRAMES / 8, 8))
    write_video_labels(root / "train.txt", labels[:36])
    write_video_labels(root / "test.txt", labels[36:])
    return root


def _config(root: Path, out: Path, **changes) -> dict:
    config = {
        "output_dir": str(out),
        "progress": False,
        "model": {
            "arch": "kvq-xs",
            "overrides": {
                "embed_dim": 16,
                "depths": [1, 1, 2, 1],
                "num_heads": [1, 1, 2, 4],
                "head_dropout": 0.0,
            },
        },
        "data": {
            "data_root": str(root),
            "train": str(root / "train.txt"),
            "val_fraction": 0.25,
            "test": [str(root / "test.txt")],
            "clip": {"num_segments": 2, "frames_per_segment": 2, "stride": 2, "size": [SIZE, SIZE]},
            "num_workers": 0,
        },
        "optim": {
            "epochs": 3,
            "batch_size": 6,
            "warmup_epochs": 0.5,
            "lr": 2e-3,
            "backbone_lr_mult": 1.0,
            "ema_decay": 0.9,
        },
    }
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    return config


@pytest.mark.slow
def test_tiny_training_learns_noise_strength_on_held_out_videos(noise_corpus, tmp_path):
    result = train(config_from_dict(_config(noise_corpus, tmp_path / "run")))
    assert result.finished and result.steps == 3 * (27 // 6)
    test = result.tests["test"]
    assert test["n"] == 12
    assert test["srcc"] > 0.7, test  # chance is 0 ± 0.3 for 12 videos
    # The selected weights and the logs are on disk.
    out = result.output_dir
    assert (out / "best.safetensors").is_file() and (out / "last.pt").is_file()
    assert len((out / "val_log.csv").read_text().splitlines()) == 1 + 3
    rows = (out / "test_test.csv").read_text().splitlines()
    assert rows[0] == "path,mos,prediction" and len(rows) == 13

    # The weights carry a calibration to the labels' scale, fitted on the validation split.
    predictor = kvq.load(out / "best.safetensors", device="cpu")
    clip = config_from_dict(_config(noise_corpus, tmp_path / "run")).data.clip
    assert predictor.spec == clip  # the weights carry their whole input spec
    mos = [lb.mos for lb in read_video_labels(noise_corpus / "train.txt")]
    assert (predictor.calibration.low, predictor.calibration.high) == (min(mos), max(mos))
    assert predictor.calibration.a != 1.0
    first = read_video_labels(noise_corpus / "test.txt")[0]
    result = predictor.score(noise_corpus / first.path)
    assert min(mos) <= result.score <= max(mos)
    assert result.score == pytest.approx(
        min(max(mos), max(min(mos), predictor.calibration(result.raw_score)))
    )

    # kvq eval on the selected weights: the same test metrics; a missing video is skipped.
    labels = read_video_labels(noise_corpus / "test.txt")
    write_video_labels(tmp_path / "with_missing.txt", [*labels, VideoLabel("gone.mp4", 3.0)])
    sets = [str(noise_corpus / "test.txt"), str(tmp_path / "with_missing.txt")]
    argv = [
        "eval",
        str(out / "best.safetensors"),
        "--sets",
        *sets,
        "--data-root",
        str(noise_corpus),
        "--output",
        str(tmp_path / "eval"),
        "--splits",
        "3",
        "--test-fraction",
        "0.5",
        "--num-workers",
        "0",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["mapping"] == "linear"
    assert report["sets"]["test"]["srcc"] == pytest.approx(test["srcc"])
    missing = report["sets"]["with_missing"]
    assert missing["n"] == 12 and missing["skipped"] == [str(noise_corpus / "gone.mp4")]
    splits = missing["random_splits"]
    assert len(splits["splits"]) == 3 and all(s["n"] in (5, 6) for s in splits["splits"])
    assert splits["mean"]["srcc"] == pytest.approx(np.mean([s["srcc"] for s in splits["splits"]]))
    with Image.open(tmp_path / "eval" / "test_scatter.png") as png:
        assert png.size == (640, 480)
    assert main([*argv, "--mapping", "logistic"]) == 0
    logistic = json.loads((tmp_path / "eval" / "metrics.json").read_text())["sets"]["test"]
    assert logistic["mapping"] == "logistic" and logistic["srcc"] == pytest.approx(test["srcc"])


def test_killed_run_resumes_bit_identical(noise_corpus, tmp_path):
    small = tmp_path / "small.txt"
    write_video_labels(small, read_video_labels(noise_corpus / "train.txt")[:16])
    changes = {
        "data.train": str(small),
        "data.test": [],
        "optim.batch_size": 4,
        "optim.epochs": 2,
        "log_every": 1,
    }
    # 12 training videos → 3 steps per epoch; the kill falls inside the second epoch.
    full = train(config_from_dict(_config(noise_corpus, tmp_path / "full", **changes)))
    assert full.steps == 6
    interrupted = _config(noise_corpus, tmp_path / "resumed", **changes, max_steps=4)
    stopped = train(config_from_dict(interrupted))
    assert (stopped.steps, stopped.finished) == (4, False)
    resumed = train(config_from_dict(_config(noise_corpus, tmp_path / "resumed", **changes)))
    assert (resumed.steps, resumed.finished) == (6, True)

    a, b = load_state(tmp_path / "full" / "last.pt"), load_state(tmp_path / "resumed" / "last.pt")
    for key in ("model", "optimizer", "ema"):
        _assert_identical(a[key], b[key], key)
    assert a["best"] == b["best"]
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    logs = [(tmp_path / run / "train_log.csv").read_text() for run in ("full", "resumed")]
    assert logs[0] == logs[1]


def _assert_identical(x, y, where):
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y), where
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            _assert_identical(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, list | tuple):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_identical(u, v, f"{where}[{i}]")
    else:
        assert x == y, where


def test_resume_with_a_changed_recipe_is_refused(noise_corpus, tmp_path):
    changes = {"data.test": [], "optim.epochs": 1, "max_steps": 1}
    train(config_from_dict(_config(noise_corpus, tmp_path / "run", **changes)))
    changed = _config(noise_corpus, tmp_path / "run", **changes)
    changed["optim"]["lr"] = 1e-4
    with pytest.raises(TrainError, match="optim"):
        train(config_from_dict(changed))


def test_resume_of_a_model_that_no_longer_matches_is_refused(noise_corpus, tmp_path):
    changes = {"data.test": [], "optim.epochs": 1, "max_steps": 1}
    train(config_from_dict(_config(noise_corpus, tmp_path / "run", **changes)))
    state = load_state(tmp_path / "run" / "last.pt")
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 1, 2)  # as if the architecture had changed since
    atomic_save(state, tmp_path / "run" / "last.pt")
    longer = _config(noise_corpus, tmp_path / "run", **{**changes, "max_steps": 2})
    with pytest.raises(TrainError, match=r"does not match.*another output_dir"):
        train(config_from_dict(longer))


def _ddp_train_worker(rank, world, port, config):
    import os

    import torch.distributed as dist

    os.environ.update(
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        train(config_from_dict(config))  # joins the group from the environment and leaves it
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_training_matches_one_process(noise_corpus, tmp_path, free_port):
    import torch.multiprocessing as mp

    changes = {"data.test": [], "optim.batch_size": 4, "optim.epochs": 1, "max_steps": 2}
    configs = {}
    for run in ("single", "ddp"):
        configs[run] = _config(noise_corpus, tmp_path / run, **changes)
        configs[run]["model"]["overrides"]["drop_path_rate"] = 0.0  # no per-rank randomness
    train(config_from_dict(configs["single"]))
    mp.spawn(_ddp_train_worker, args=(2, free_port, configs["ddp"]), nprocs=2)
    single = load_state(tmp_path / "single" / "last.pt")
    ddp = load_state(tmp_path / "ddp" / "last.pt")
    assert ddp["step"] == single["step"] == 2 and len(ddp["rng"]) == 2
    # Three biases have a zero true gradient: the two in front of the per-slice softmax of the
    # saliency, and the quality head's last one, which shifts every score by the same amount
    # (the saliency weights average to 1) while all three losses are shift-invariant (z-scored
    # PLCC and LPC, rank differences). Adam turns the float round-off left in such a gradient
    # into full-size steps, so these are not comparable.
    zero_gradient = {"saliency_head.fc_last.bias", "prior_fusion.bias", "quality_head.fc_last.bias"}
    for key, value in single["model"].items():
        if key not in zero_gradient:
            torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=2e-5)


def test_cli_train_stops_and_reports(noise_corpus, tmp_path, capsys):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config(noise_corpus, tmp_path / "run", **{"data.test": []})))
    assert main(["train", str(path), "--max-steps", "1"]) == 0
    assert "stopped after 1 steps" in capsys.readouterr().out
    # The trainer's messages (its logger) reach stderr while kvq train runs, and only then.
    assert main(["train", str(path), "--max-steps", "2"]) == 0
    captured = capsys.readouterr()
    assert "stopped after 2 steps" in captured.out
    assert captured.err.count(f"resumed from {tmp_path / 'run' / 'last.pt'} at step 1\n") == 1
    assert not logging.getLogger("kvq").handlers
    path.write_text("optim: {lr: fast}\n")
    assert main(["train", str(path)]) == 2
    assert "optim.lr" in capsys.readouterr().err


def test_a_too_small_validation_or_test_set_is_refused_before_training(
    noise_corpus, tmp_path, capsys
):
    import yaml

    write_video_labels(tmp_path / "two.txt", read_video_labels(noise_corpus / "test.txt")[:2])
    for key, value in (
        ("data.val", str(tmp_path / "two.txt")),
        ("data.test", [str(tmp_path / "two.txt")]),
    ):
        out = tmp_path / key
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump(_config(noise_corpus, out, **{key: value})))
        assert main(["train", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "two has 2 video(s)" in err and "at least 3" in err, err
        assert not out.exists()  # refused before any work


def test_unreadable_validation_videos_skip_the_metric_with_a_warning(
    noise_corpus, tmp_path, caplog
):
    labels = read_video_labels(noise_corpus / "train.txt")
    write_video_labels(tmp_path / "train.txt", labels[2:14])
    # Three labelled validation videos, one of them missing: two are too few for the metrics.
    write_video_labels(tmp_path / "val.txt", [*labels[:2], VideoLabel("gone.mp4", 3.0)])
    changes = {
        "data.train": str(tmp_path / "train.txt"),
        "data.val": str(tmp_path / "val.txt"),
        "data.test": [str(noise_corpus / "test.txt"), str(tmp_path / "val.txt")],
        "optim.batch_size": 4,
        "optim.epochs": 1,
    }
    with caplog.at_level(logging.WARNING, logger="kvq"):
        result = train(config_from_dict(_config(noise_corpus, tmp_path / "run", **changes)))
    assert result.finished and result.best is None
    assert "epoch 0: no validation metrics on val" in caplog.text
    assert "1 of 3 videos unreadable" in caplog.text
    assert "test set val: no metrics" in caplog.text
    assert list(result.tests) == ["test"] and result.tests["test"]["n"] == 12
    assert not (tmp_path / "run" / "val_log.csv").exists()
    # With no epoch validated the final EMA weights are left as best.safetensors.
    predictor = kvq.load(tmp_path / "run" / "best.safetensors", device="cpu")
    assert np.isfinite(predictor.score(noise_corpus / labels[0].path).score)
