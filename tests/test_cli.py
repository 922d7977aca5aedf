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
