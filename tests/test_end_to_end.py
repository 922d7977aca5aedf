"""The README's smallest end-to-end run through the ``kvq`` command: synth → train → eval → lpvq."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import kvq
from kvq.cli.main import main
from test_synth_distortions import textured_clip

CONFIG = Path(__file__).parents[1] / "configs" / "default_weights.yaml"


def _finite(values: dict, keys: tuple[str, ...]) -> bool:
    return all(isinstance(values[k], float) and math.isfinite(values[k]) for k in keys)


@pytest.mark.slow
def test_smallest_end_to_end_run_of_the_readme(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    for k in range(3):  # one source per split
        Image.fromarray(textured_clip(1, 120, 200, seed=k)[0]).save(sources / f"photo{k}.png")
    syn, run = tmp_path / "syn", tmp_path / "runs" / "small"

    assert main(["synth", str(syn), "--sources", str(sources), "--small", "--no-progress"]) == 0
    sizes = {
        s: len((syn / "labels" / f"{s}.txt").read_text().splitlines()) for s in ("val", "test")
    }
    assert min(sizes.values()) >= 3, sizes  # enough clips for the metrics

    # The README's quick flags; --data-root alone moves the config's label paths to syn/.
    quick = ["--set", "optim.epochs=1", "--set", "optim.batch_size=16"]
    quick += ["--set", "data.stem_cache_views=1"]
    argv = ["train", str(CONFIG), "--data-root", str(syn), "--output-dir", str(run), *quick]
    assert main(argv) == 0
    used = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert used["val"] == str(syn / "labels" / "val.txt")
    assert used["train_groups"] == str(syn / "labels" / "train_groups.csv")
    assert used["train_local"] == str(syn / "labels" / "train_local.txt")
    with (run / "train_log.csv").open() as log:
        assert all(math.isfinite(float(row["local_label"])) for row in csv.DictReader(log))
    tested = json.loads((run / "test_metrics.json").read_text())["test"]
    assert tested["n"] == 4 and _finite(tested, ("srcc", "plcc", "krcc", "rmse"))
    weights = run / "best.safetensors"
    predictor = kvq.load(weights, device="cpu")
    assert math.isfinite(predictor.score(syn / "videos" / "00000.mp4").score)

    evaluated = run / "eval"
    argv = ["eval", str(weights), "--sets", str(syn / "labels" / "test.txt"), "--data-root"]
    argv += [str(syn), "--output-dir", str(evaluated), "--workers", "0", "--device", "cpu"]
    argv += ["--groups", str(syn / "labels" / "test_groups.csv")]
    assert main(argv) == 0
    metrics = json.loads((evaluated / "metrics.json").read_text())["sets"]["test"]
    assert metrics["n"] == 4 and _finite(metrics, ("srcc", "plcc", "krcc", "rmse"))
    within = metrics["within_group"]  # the small corpus' 4 test clips are one ladder
    assert (within["groups"], within["undefined"]) == (1, 0) and -1 <= within["srcc"] <= 1
    assert metrics["srcc"] == pytest.approx(tested["srcc"])  # the trainer's own test
    assert (evaluated / "test_predictions.csv").is_file()

    lpvq = run / "lpvq"
    argv = ["lpvq", "eval", "--images", str(syn), "--labels", str(syn / "labels/test_stills.txt")]
    argv += ["--weights", str(weights), "--size", "native", "--view", "fragments"]
    assert main([*argv, "--out", str(lpvq), "--no-figures", "--device", "cpu"]) == 0
    report = json.loads((lpvq / "lpvq_results.json").read_text())
    assert report["images"]["used"] == 4
    (variant,) = report["variants"]
    grids = np.array(list(variant["grids"].values()))
    assert grids.shape == (4, 49) and np.isfinite(grids).all()
