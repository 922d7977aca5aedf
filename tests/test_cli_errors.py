"""Every refusal of a ``kvq`` sub-command: one line on stderr and a documented exit status.

Exit statuses (README, ``kvq score``): 0 every input scored, 1 some inputs failed, 2 the run
itself could not proceed (arguments, weights, output, device). "Unwritable" places are paths
below a regular file or in /proc: chmod does not stop root.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import kvq
from kvq.cli.main import main
from kvq.models import save_pretrained
from kvq.scoring.predictor import Predictor
from video_factory import make_image, make_video

FAILED, REFUSED = 1, 2
INPUT = {"size": [64, 64], "num_segments": 2}
CALIBRATION = {"a": 2.0, "b": 3.0, "low": 1.0, "high": 5.0, "scale": "MOS 1-5"}
# The "kvq" metadata of broken copies of the tiny weights, from the good header.
BAD_HEADERS = {
    "bad_json": lambda h: "{not json",
    "list_header": lambda h: "[1, 2]",
    "model_type": lambda h: _changed(h, "model", embed_dim="wide"),
    "model_not_object": lambda h: json.dumps({**h, "model": "kvq-xs"}),
    "input_value": lambda h: _changed(h, "input", size="big"),
    "input_type": lambda h: _changed(h, "input", num_segments="2"),
    "calibration_type": lambda h: _changed(h, "calibration", a="two"),
    "calibration_key": lambda h: _changed(h, "calibration", slope=2.0),
    "calibration_range": lambda h: _changed(h, "calibration", low=5.0, high=1.0),
    "status_type": lambda h: json.dumps({**h, "status": 3}),
}


def _changed(header: dict, section: str, **values) -> str:
    return json.dumps({**header, section: {**header[section], **values}})


@dataclass
class Case:
    """``kvq ARGV`` must exit ``code`` with one stderr line that contains ``says`` ({name}
    fields in both are paths of the ``files`` fixture)."""

    name: str
    argv: list[str]
    says: str
    code: int = REFUSED
    hide_modules: tuple[str, ...] = ()  # as if these packages were not installed
    skip: str = ""


def score(*args: str) -> list[str]:
    return ["score", "{pic}", "{pic2}", "--quiet", *args]


CASES = [
    Case(
        "device_cuda_without_cuda",
        score("--weights", "{tiny}", "--device", "cuda"),
        "cuda",
        skip="CUDA is available here" if torch.cuda.is_available() else "",
    ),
    Case("device_cuda_index", score("--weights", "{tiny}", "--device", "cuda:99"), "cuda:99"),
    Case("device_unknown", score("--weights", "{tiny}", "--device", "tpu"), "tpu"),
    # Every sub-command that runs a model refuses a device that is not there alike.
    *(
        Case(f"device_unknown_{argv.split()[0]}", argv.split(), "unknown device 'tpu'")
        for argv in (
            "eval {tiny} --sets {tmp}/none.txt --device tpu",
            "train {train_yaml} --output-dir {tmp}/tpu_run --set device=tpu",
            "lpvq eval --images {sources} --labels {tmp}/none.txt --weights {tiny} --device tpu",
        )
    ),
    Case(
        "device_cuda_index_eval",
        ["eval", "{tiny}", "--sets", "{tmp}/none.txt", "--device", "cuda:99"],
        "cuda:99",
    ),
    Case("weights_random_bytes", score("--weights", "{random}"), "random.safetensors"),
    Case("weights_pickle_needs_objects", score("--weights", "{pickle}"), "evil.pth"),
    Case("weights_unknown_name", score("--weights", "no-such-weights"), "no-such-weights"),
    Case("weights_folder", score("--weights", "{folder}"), "folder"),
    *(
        Case(f"weights_header_{key}", score("--weights", f"{{{key}}}"), f"{key}.safetensors")
        for key in BAD_HEADERS
    ),
    Case("arch_unknown", score("--weights", "{pickle}", "--arch", "kvq-huge"), "kvq-huge"),
    Case("input_list_missing", ["score", "@/nonexistent.txt", "--quiet"], "/nonexistent.txt"),
    Case("out_below_a_file", score("--weights", "{tiny}", "--out", "{blocker}/r.jsonl"), "--out"),
    Case("out_in_proc", score("--weights", "{tiny}", "--out", "/proc/kvq-r.jsonl"), "--out"),
    Case("out_is_a_folder", score("--weights", "{tiny}", "--out", "{out_folder}"), "--out"),
    Case("maps_below_a_file", score("--weights", "{tiny}", "--maps", "{blocker}/m"), "--maps"),
    Case("batch_size_zero", score("--weights", "{tiny}", "--batch-size", "0"), "--batch-size"),
    Case("workers_negative", score("--weights", "{tiny}", "--workers", "-1"), "--workers"),
    Case(
        "nan_weights_fail_each_input",
        score("--weights", "{nan}", "--out", "{tmp}/nan.jsonl"),
        "2 of 2 input(s) failed",
        code=FAILED,
    ),
    Case(
        "synth_below_a_file",
        ["synth", "{blocker}/corpus", "--sources", "{sources}", "--small", "--no-progress"],
        "{blocker}",
    ),
    Case(
        "train_below_a_file",
        ["train", "{train_yaml}", "--output-dir", "{blocker}/run"],
        "{blocker}",
    ),
    Case(
        "train_torn_checkpoint", ["train", "{train_yaml}", "--output-dir", "{torn}"], "--no-resume"
    ),
    Case(
        "train_batch_above_the_training_set",
        "train {train_yaml} --output-dir {tmp}/big_batch --set optim.batch_size=8".split(),
        "fewer than one batch of 8 (optim.batch_size)",
    ),
    Case(
        "annotate_export_below_a_file",
        ["annotate", "export", "{blocker}/x", "--db", "{db}"],
        "{blocker}",
    ),
    Case(
        "annotate_serve_without_its_extra",
        ["annotate", "serve", "--images", "{sources}", "--db", "{tmp}/serve.sqlite"],
        "pip install",
        hide_modules=("fastapi", "uvicorn", "kvq.annotate.server"),
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_errors")
    torch.manual_seed(0)
    model = kvq.build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1))
    header = {"input": INPUT, "calibration": CALIBRATION}
    tiny = save_pretrained(model, root / "tiny.safetensors", header)
    paths = {"tmp": root, "tiny": tiny, **_bad_weights(tiny, root)}
    paths["pic"] = make_image(root / "pic.png", size=(50, 70))
    paths["pic2"] = make_image(root / "pic2.png", size=(40, 60), pattern="gradient")
    paths["blocker"] = root / "file.txt"
    paths["blocker"].write_text("a regular file\n")
    paths["folder"], paths["out_folder"] = root / "folder", root / "out.jsonl"
    for name in ("folder", "out_folder"):
        paths[name].mkdir()
    paths["sources"] = root / "sources"
    paths["sources"].mkdir()
    for i in range(3):
        make_image(paths["sources"] / f"s{i}.png", size=(64, 64), pattern="gradient")
    paths["train_yaml"], paths["torn"] = _train_setup(root)
    from kvq.annotate import AnnotationStore

    paths["db"] = root / "campaign.sqlite"
    AnnotationStore(paths["db"])
    return paths


def _bad_weights(tiny: Path, root: Path) -> dict[str, Path]:
    """Copies of ``tiny`` with broken headers (:data:`BAD_HEADERS`) or NaN weights, random
    bytes, and a pickle that needs an arbitrary object."""
    with safe_open(str(tiny), framework="pt") as f:
        header = json.loads(f.metadata()["kvq"])
    tensors = load_file(str(tiny))
    out = {}
    for key, text in BAD_HEADERS.items():
        out[key] = root / f"{key}.safetensors"
        save_file(tensors, str(out[key]), metadata={"kvq": text(header)})
    nan = {k: torch.full_like(v, float("nan")) for k, v in tensors.items()}
    out["nan"] = root / "nan.safetensors"
    save_file(nan, str(out["nan"]), metadata={"kvq": json.dumps(header)})
    out["random"] = root / "random.safetensors"
    out["random"].write_bytes(torch.randint(0, 256, (4000,), dtype=torch.uint8).numpy().tobytes())
    out["pickle"] = root / "evil.pth"
    torch.save({"weight": torch.zeros(2), "extra": _Opaque()}, out["pickle"])
    return out


class _Opaque:
    """An object ``torch.load(weights_only=True)`` refuses to rebuild."""


def _train_setup(root: Path) -> tuple[Path, Path]:
    """A tiny training config, and an output folder whose ``last.pt`` was cut short."""
    corpus = root / "corpus"
    corpus.mkdir()
    lines = []
    for i in range(4):
        make_video(corpus / f"v{i}.mp4", frames=8, size=(32, 32), pattern="noise")
        lines.append(f"v{i}.mp4, 1, 8, {1 + i}\n")
    (corpus / "train.txt").write_text("".join(lines))
    config = {
        "output_dir": str(root / "run"),
        "progress": False,
        "model": {
            "arch": "kvq-xs",
            "overrides": {"embed_dim": 16, "depths": [1, 1, 2, 1], "num_heads": [1, 1, 2, 4]},
        },
        "data": {
            "data_root": str(corpus),
            "train": str(corpus / "train.txt"),
            "val_fraction": 0.5,
            "test": [],
            "clip": {"num_segments": 2, "frames_per_segment": 2, "stride": 2, "size": [32, 32]},
            "num_workers": 0,
        },
        "optim": {"epochs": 1, "batch_size": 2, "warmup_epochs": 0},
    }
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    torn = root / "torn"
    torn.mkdir()
    torch.save({"format": "kvq-train-state/1", "model": torch.zeros(1 << 20)}, torn / "last.pt")
    data = (torn / "last.pt").read_bytes()
    (torn / "last.pt").write_bytes(data[: len(data) // 2])
    return path, torn


def run_kvq(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse
        return int(stop.code)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_refusal_is_one_line_with_its_exit_status(case, files, monkeypatch, capsys):
    if case.skip:
        pytest.skip(case.skip)
    for name in case.hide_modules:  # kvq's own modules are imported afresh, the others fail
        if name.startswith("kvq."):
            monkeypatch.delitem(sys.modules, name, raising=False)
        else:
            monkeypatch.setitem(sys.modules, name, None)
    forwards = []
    original = Predictor.forward
    monkeypatch.setattr(Predictor, "forward", lambda p, x: forwards.append(x) or original(p, x))
    argv = [a.format(**files) for a in case.argv]
    code = run_kvq(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\x1b[" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert code == case.code, err
    assert case.says.format(**files) in err
    if code == REFUSED:
        assert err.startswith(f"kvq {argv[0]}: error: "), err
        assert not forwards, "refused only after scoring"


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_non_finite_outputs_are_error_rows_in_strict_json(files, tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    argv = ["score", str(files["pic"]), "--weights", str(files["nan"]), "--out", str(out)]
    assert run_kvq([*argv, "--quiet"]) == FAILED
    text = out.read_text()
    strict = functools.partial(json.loads, parse_constant=_not_json)
    rows = [strict(line) for line in text.splitlines()] if suffix == ".jsonl" else strict(text)
    assert [(r["score"], r["raw_score"]) for r in rows] == [(None, None)]
    assert "not finite" in rows[0]["error"]
