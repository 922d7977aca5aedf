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
