"""``kvq lpvq eval`` end to end on tiny random-weight models, tiny images and a generated
LPVQ label file; metrics checked against scipy on the models' own pooled Q."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

import kvq
from kvq.cli.main import main as kvq_main
from kvq.data.labels import write_lpvq_labels
from kvq.lpvq import figure_size, grid_figure
from kvq.lpvq.figures import CELL, HEADER, MARGIN, PANEL
from kvq.models import save_pretrained
from kvq.video import ClipSpec, load_clip, normalize_clip
from video_factory import make_image

VARIANTS = ("iwa", "cwa", "fwa")


class Weights(NamedTuple):
    path: Path
    model: torch.nn.Module
    size: int


IMAGES = {
    "a.png": ((50, 70), "gradient"),
    "sub/c.png": ((40, 90), "noise"),
    "d.jpg": ((56, 48), "index"),
}


def tiny_weights(path: Path, attention: str, seed: int, size: int) -> Weights:
    torch.manual_seed(seed)
    model = kvq.build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1), attention=attention)
    spec = {"size": [size, size], "num_segments": 1, "frames_per_segment": 2, "image_frames": 2}
    return Weights(save_pretrained(model, path, {"input": spec}), model.eval(), size)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> list[Weights]:
    """IWA at 224 (a 7×7 map), CWA at 64 and FWA at 96 (2×2 and 3×3 maps, pooled adaptively)."""
    root = tmp_path_factory.mktemp("weights")
    sizes = {"iwa": 224, "cwa": 64, "fwa": 96}
    return [
        tiny_weights(root / f"{a}.safetensors", a, seed, sizes[a])
        for seed, a in enumerate(VARIANTS)
    ]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> tuple[Path, Path, dict]:
    """Images folder and label file: three readable images, one missing, one broken."""
    root = tmp_path_factory.mktemp("lpvq")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    for name, (size, pattern) in IMAGES.items():
        make_image(images / name, size=size, pattern=pattern)
    (images / "broken.png").write_bytes(np.random.default_rng(0).bytes(3000))
    rng = np.random.default_rng(1)
    names = [*IMAGES, "missing.png", "broken.png"]
    labels = {name: rng.integers(2, 11, size=(7, 7)) / 2 for name in names}
    write_lpvq_labels(root / "labels.txt", labels)
    return images, root / "labels.txt", labels


def model_grids(model, images: Path, size: int, pool) -> dict[str, np.ndarray]:
    """The model's Q on each readable image (2-frame static clip), mean over time, ``pool``ed."""
    spec = ClipSpec(size=(size, size), image_frames=2)
    out = {}
    for name in IMAGES:
        x = normalize_clip(load_clip(images / name, spec))[None]
        with torch.no_grad():
            q = model(x).local_quality[0].double().mean(dim=0).numpy()
        out[name] = pool(q)
    return out


def scipy_metrics(pred: dict[str, np.ndarray], labels: dict) -> dict[str, float]:
    names = list(pred)
    a = {n: pred[n].ravel() for n in names}
    b = {n: labels[n].ravel() for n in names}
    pooled_a, pooled_b = np.concatenate(list(a.values())), np.concatenate(list(b.values()))
    return {
        "inter_srcc": stats.spearmanr(pooled_a, pooled_b)[0],
        "inter_plcc": stats.pearsonr(pooled_a, pooled_b)[0],
        "intra_srcc": np.mean([stats.spearmanr(a[n], b[n])[0] for n in names]),
        "intra_plcc": np.mean([stats.pearsonr(a[n], b[n])[0] for n in names]),
    }


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def lpvq_eval(*args) -> int:
    return kvq_main(["lpvq", "eval", *map(str, args)])


def adaptive_pool(q: np.ndarray) -> np.ndarray:
    """Average over bins [floor(i·n/7), ceil((i+1)·n/7)) per axis, written out by hand
    (the identity on a 7×7 map)."""

    def bins(n: int) -> list[slice]:
        return [slice(i * n // 7, math.ceil((i + 1) * n / 7)) for i in range(7)]

    return np.array([[q[r, c].mean() for c in bins(q.shape[1])] for r in bins(q.shape[0])])


def test_compares_several_weights_end_to_end(weights, campaign, tmp_path, capsys):
    images, label_file, labels = campaign
    out = tmp_path / "out"
    rc = lpvq_eval("--images", images, "--labels", label_file,
                   "--weights", *(w.path for w in weights), "--names", "IWA", "CWA", "FWA",
                   "--frames", 2, "--size", "native", "--out", out, "--device", "cpu")  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "used 3 of 5 labelled images (2 skipped)" in captured.out
    assert "missing.png" in captured.err and "broken.png" in captured.err
    assert "| FWA |" in captured.out

    table = read_csv(out / "lpvq_table.csv")
    assert [row["variant"] for row in table] == ["IWA", "CWA", "FWA"]
    results = json.loads((out / "lpvq_results.json").read_text())
    assert {s["image"] for s in results["images"]["skipped"]} == {"missing.png", "broken.png"}
    assert results["images"]["used"] == 3 and results["protocol"]["size"] == "native"
    markdown = (out / "lpvq_table.md").read_text()
    for row, w, variant in zip(table, weights, results["variants"]):
        assert variant["input_size"] == [w.size, w.size] and variant["frames"] == 2
        grids = model_grids(w.model, images, w.size, adaptive_pool)
        for name, grid in grids.items():
            np.testing.assert_allclose(variant["grids"][name], grid.ravel(), atol=1e-5)
        for column, value in scipy_metrics(grids, labels).items():
            assert float(row[column]) == pytest.approx(value, abs=2e-6), (row["variant"], column)
        assert f"| {row['variant']} | {float(row['inter_srcc']):.4f} |" in markdown

    per_image = read_csv(out / "lpvq_per_image.csv")
    assert len(per_image) == 3 * 3
    assert {(r["image"], r["variant"]) for r in per_image} == {
        (name, v) for name in IMAGES for v in ("IWA", "CWA", "FWA")
    }
    intra = np.mean([float(r["intra_srcc"]) for r in per_image if r["variant"] == "CWA"])
    assert intra == pytest.approx(float(table[1]["intra_srcc"]), abs=1e-5)

    figures = sorted((out / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["a.png", "d.png", "sub_c.png"]
    for f in figures:
        assert Image.open(f).size == figure_size(3)


def test_paper_size_pools_14x14_in_2x2_blocks(weights, campaign, tmp_path, capsys):
    images, label_file, labels = campaign
    out = tmp_path / "out"
    rc = lpvq_eval("--images", images, "--labels", label_file, "--weights", weights[0].path,
                   "--frames", 2, "--out", out, "--device", "cpu", "--no-figures")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    result = json.loads((out / "lpvq_results.json").read_text())["variants"][0]
    assert result["name"] == "iwa" and result["attention"] == "iwa"
    assert result["input_size"] == [448, 448]
    blocks = model_grids(weights[0].model, images, 448, lambda q: q.reshape(7, 2, 7, 2))
    grids = {name: b.mean(axis=(1, 3)) for name, b in blocks.items()}
    for name, grid in grids.items():
        np.testing.assert_allclose(result["grids"][name], grid.ravel(), atol=1e-5)
    for column, value in scipy_metrics(grids, labels).items():
        assert result[column] == pytest.approx(value, abs=1e-5)
    assert not (out / "figures").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--labels": "nowhere.txt"}, "no such label file"),
        ({"--images": "nowhere"}, "no such folder"),
        ({"--weights": "nowhere.safetensors"}, "no such weights file"),
        ({"--names": "ONE TWO"}, "2 names for 1 weights"),
        ({"--frames": "0"}, "frames must be >= 1"),
    ],
)
def test_bad_input_is_a_clear_error(weights, campaign, tmp_path, capsys, change, message):
    images, label_file, _ = campaign
    options = {
        "--images": str(images),
        "--labels": str(label_file),
        "--weights": str(weights[0].path),
        "--frames": "2",
        "--size": "224",
        "--out": str(tmp_path / "out"),
        **change,
    }
    argv = [part for key, value in options.items() for part in (key, *value.split())]
    assert lpvq_eval(*argv) == 2
    assert message in capsys.readouterr().err


def test_no_usable_image_is_an_error_not_a_crash(weights, tmp_path, capsys):
    write_lpvq_labels(tmp_path / "labels.txt", {"gone.png": np.full((7, 7), 3.0)})
    (tmp_path / "images").mkdir()
    rc = lpvq_eval("--images", tmp_path / "images", "--labels", tmp_path / "labels.txt",
                   "--weights", weights[0].path, "--out", tmp_path / "out")  # fmt: skip
    assert rc == 2
    assert "none of the 1 labelled images could be used" in capsys.readouterr().err


def test_lpvq_without_action_prints_help(capsys):
    assert kvq_main(["lpvq"]) == 2
    assert "eval" in capsys.readouterr().out


def test_figure_colours_cells_by_label(tmp_path):
    labels = np.full((7, 7), 1.0)
    labels[0, 0] = 5.0
    predicted = np.arange(49, dtype=float).reshape(7, 7)
    frame = np.zeros((30, 50, 3), np.uint8)
    path = grid_figure(frame, labels, [("model", predicted)], tmp_path / "f.png", "x.png")
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert image.shape[1::-1] == figure_size(1)
    top = MARGIN + HEADER

    def corner(panel: int, r: int, c: int) -> np.ndarray:  # a pixel inside the cell, off text
        return image[top + r * CELL + 3, MARGIN + panel * (PANEL + MARGIN) + c * CELL + 3]

    good, bad = corner(1, 0, 0), corner(1, 3, 3)
    assert good[1] > good[0] and bad[0] > bad[1]  # green for 5, red for 1
    low, high = corner(2, 0, 0), corner(2, 6, 6)  # predictions: own min → red, max → green
    assert low[0] > low[1] and high[1] > high[0]
    assert corner(0, 3, 3).sum() == 0  # the black picture


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(weights, campaign, tmp_path, capsys):
    images, label_file, _ = campaign
    rc = lpvq_eval("--images", images, "--labels", label_file, "--weights", weights[0].path,
                   "--device", "cuda", "--out", tmp_path / "out")  # fmt: skip
    assert rc == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_native_size_of_fragment_weights_is_the_stitched_frame():
    """Weights trained on a 7×7 grid of 32² fragments saw 224² frames, whatever ``size`` says."""
    from kvq.lpvq.runner import LpvqProtocol

    fragments = ClipSpec(size=(448, 448), view="fragments", fragment_grid=7, fragment_size=32)
    spec = LpvqProtocol(frames=4, size=None).clip_spec(fragments)
    assert spec.view == "resize" and spec.size == (224, 224) and spec.image_frames == 4
    resized = ClipSpec(size=(320, 320))
    assert LpvqProtocol(frames=4, size=None).clip_spec(resized).size == (320, 320)
    assert LpvqProtocol(frames=4, size=448).clip_spec(fragments).size == (448, 448)


def test_fragments_view_gives_each_label_cell_its_own_fragment(tmp_path):
    """With ``view="fragments"`` output cell (r, c) of a 7×7 map sees only label cell (r, c)."""
    from kvq.lpvq import LpvqEvalError
    from kvq.lpvq.runner import LpvqProtocol

    trained = ClipSpec(size=(448, 448), view="fragments", fragment_grid=7, fragment_size=32)
    spec = LpvqProtocol(frames=2, size=None, view="fragments").clip_spec(trained)
    assert spec.view == "fragments" and spec.output_size == (224, 224) and spec.image_frames == 2
    with pytest.raises(LpvqEvalError, match="fragments"):
        LpvqProtocol(size=448, view="fragments")
    with pytest.raises(LpvqEvalError, match="view"):
        LpvqProtocol(view="crop")
    # an image 7 × 40 px square whose cells are flat grey levels 0, 5, …, 240 (row-major)
    levels = (np.arange(49) * 5).reshape(7, 7).astype(np.uint8)
    picture = np.kron(levels, np.ones((40, 40), np.uint8))
    Image.fromarray(np.stack([picture] * 3, axis=-1)).save(tmp_path / "cells.png")
    clip = load_clip(tmp_path / "cells.png", spec)  # (T, H, W, 3) uint8
    stitched = clip[0, :, :, 0].numpy().reshape(7, 32, 7, 32)
    assert np.all(stitched == levels[:, None, :, None])


def test_fragments_view_from_the_command_line(weights, campaign, tmp_path, capsys):
    images, label_file, _ = campaign
    out = tmp_path / "out"
    rc = lpvq_eval("--images", images, "--labels", label_file, "--weights", weights[0].path,
                   "--frames", 2, "--view", "fragments", "--out", out, "--no-figures",
                   "--device", "cpu")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    results = json.loads((out / "lpvq_results.json").read_text())
    assert results["protocol"]["view"] == "fragments"
    assert results["variants"][0]["input_size"] == [224, 224]
    assert "fragments view" in (out / "lpvq_table.md").read_text()
    rc = lpvq_eval("--images", images, "--labels", label_file, "--weights", weights[0].path,
                   "--view", "fragments", "--size", "448", "--out", out)  # fmt: skip
    assert rc == 2 and "--size applies to the resize view" in capsys.readouterr().err
