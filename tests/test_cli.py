"""The ``kvq`` console command."""

from __future__ import annotations

import subprocess
import sys

import kvq
from kvq.cli.main import main


def test_info_lists_architectures_with_parameter_counts(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"kvq {kvq.__version__}" in out
    assert "device: cpu" in out or "device: cuda" in out
    for name in kvq.list_models():
        n = sum(p.numel() for p in kvq.build_model(name).parameters())
        assert f"{n:,}" in out and name in out


def test_console_script_without_command_prints_help():
    result = subprocess.run(
        [sys.executable, "-m", "kvq.cli.main"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "info" in result.stdout


def test_train_rejects_a_malformed_override_before_training(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'run'}\n")
    assert main(["train", str(config), "--set", "optim.lr"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["train", str(config), "--set", "optim.warmup=2"]) == 2
    assert "warmup" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_eval_list_needs_no_weights_or_sets(capsys):
    assert main(["eval", "--list"]) == 0
    out = capsys.readouterr().out
    assert "konvid_1k" in out and "KoNViD/labels.txt" in out and "lsvq_train" in out
    assert main(["eval"]) == 2  # without --list, weights and --sets are still required
    assert "--sets" in capsys.readouterr().err


def test_eval_creates_no_output_when_no_set_can_be_scored(tmp_path, capsys):
    weights = kvq.models.save_pretrained(
        kvq.build_model("kvq-xs", embed_dim=24, depths=(1, 1, 2, 1)),
        tmp_path / "tiny.safetensors",
        {"input": {"size": [64, 64], "num_segments": 2}},
    )
    (tmp_path / "gone.txt").write_text("gone.mp4, 1, 8, 3.0\n")  # its video is missing
    out = tmp_path / "results"

    def argv_of(*sets: str) -> list[str]:
        paths = [str(tmp_path / name) for name in sets]
        argv = ["eval", str(weights), "--sets", *paths, "--data-root", str(tmp_path)]
        return [*argv, "--output", str(out), "--num-workers", "0", "--device", "cpu"]

    def run(*sets: str) -> int:
        return main(argv_of(*sets))

    # A missing label file, a set whose videos are all unreadable, and both.
    for sets in (["none.txt"], ["gone.txt"], ["none.txt", "gone.txt"]):
        assert run(*sets) == 1
        assert not out.exists(), sets
        assert "nothing written" in capsys.readouterr().err
    assert main([*argv_of("gone.txt"), "--groups", str(tmp_path / "none.csv")]) == 2
    assert "none.csv" in capsys.readouterr().err  # a missing --groups file: refused up front
    (tmp_path / "bad.csv").write_text("video,ladder\ngone.mp4,1\n")
    assert main([*argv_of("gone.txt"), "--groups", str(tmp_path / "bad.csv")]) == 2
    assert "path,group" in capsys.readouterr().err
    out.write_text("a file\n")  # an --output that is a file is refused before any work
    assert run("gone.txt") == 2
    assert "--output" in capsys.readouterr().err and out.read_text() == "a file\n"


def test_version_and_help_import_neither_torch_nor_the_video_stack():
    code = (
        "import sys, contextlib, io\n"
        "from kvq.cli.main import main\n"
        "for argv in (['--version'], ['--help'], ['score', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('torch', 'av', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_option_has_help_that_gives_its_default():
    from kvq.cli.main import build_parser

    def options(parser, name):
        for action in parser._actions:
            if isinstance(getattr(action, "choices", None), dict):
                for sub, subparser in action.choices.items():
                    yield from options(subparser, f"{name} {sub}")
            elif action.option_strings and action.dest != "help":
                yield name, action

    helpless = []
    for name, action in options(build_parser(), "kvq"):
        if not action.help:
            helpless.append(f"{name} {action.option_strings[0]}")
    assert helpless == []
    help_text = " ".join(subprocess_help("eval").split())
    assert "share of each random split held out (default: 0.2)" in help_text


def subprocess_help(command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "kvq.cli.main", command, "--help"], capture_output=True, text=True
    )
    return result.stdout
