"""Scoring runs under faults an operator meets: a second run on the same results file, file
names that are not UTF-8 or hold a newline, killed and interrupted runs, the rank files of a
killed sharded run, and data-loader workers whose parent dies.

The kill tests kill real ``kvq score`` processes (``python -m kvq.cli.main``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import kvq
from kvq.cli.main import main as kvq_main
from kvq.fileio import ExclusiveLock
from kvq.runtime import WorkerInit
from kvq.scoring.batch import ResultsFile, expand_inputs, rank_file, run_scoring

KVQ = [sys.executable, "-m", "kvq.cli.main"]
ODD_NAME = os.fsdecode(b"odd \xff\nname.mp4")  # not UTF-8, and a newline


@pytest.fixture(scope="module")
def many(media, tmp_path_factory) -> Path:
    """40 copies of a tiny video: a run that lasts long enough to be killed midway."""
    folder = tmp_path_factory.mktemp("many")
    for i in range(40):
        shutil.copy(media / "sub" / "b.mkv", folder / f"v{i:02d}.mkv")
    return folder


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.Popen(
        [*KVQ, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip


def _wait_for_rows(out: Path, proc: subprocess.Popen, rows: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= rows:
            return
        if proc.poll() is not None:
            pytest.fail(f"kvq score ended early: {proc.stderr.read().decode()[-1000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("no rows written in time")


def _processes_with(marker: str) -> list[int]:
    """Live processes (not zombies) whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_a_second_run_on_a_locked_results_file_is_refused(weights, media, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["score", str(media), "--weights", str(weights), "--out", str(out), "--quiet"]
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from kvq.fileio import ExclusiveLock; ExclusiveLock(sys.argv[1])"
         ".acquire(); print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        assert kvq_main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"being written by another run (pid {holder.pid} " in err
        assert not out.exists()  # nothing scored, nothing written
    finally:
        holder.kill()
        holder.wait()
    assert kvq_main(args) == 0  # the lock went with its holder
    assert len(out.read_text().splitlines()) == 3
    assert not Path(f"{out}.lock").exists()
    with ExclusiveLock(out):  # in one process too: a second lock of the same file is refused
        assert kvq_main(args) == 2
    assert "being written by another run" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "json"])
def test_file_names_survive_every_format_exactly(weights, media, tmp_path, suffix):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", ODD_NAME, "z.mp4"):
        shutil.copy(media / "a.mp4", folder / name)
    inputs = expand_inputs([str(folder)])
    assert str(folder / ODD_NAME) in inputs
    out = tmp_path / f"r.{suffix}"
    # A real process with a strict UTF-8 stdout: the table must print the odd name too.
    proc = _start(["score", str(folder), "--weights", str(weights), "--out", str(out)])
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert b"odd \\xff\\nname.mp4" in stdout  # shown escaped, on one line
    rows = ResultsFile(out).rows
    assert list(rows) == inputs
    assert all(os.path.exists(os.fsencode(p)) for p in rows)
    if suffix != "csv":
        lines = out.read_text(encoding="ascii").splitlines()  # JSON escapes, plain ASCII
        assert len(lines) == 3 if suffix == "jsonl" else json.loads("\n".join(lines))
    else:
        # A run killed just after the newline inside the quoted odd name: the torn row is
        # dropped on resume and written again; no extra row appears.
        data = out.read_bytes()
        cut = data.index(b"\xff\n") + 2
        out.write_bytes(data[:cut])
        assert list(ResultsFile(out).rows) == inputs[:1]
        seen = []
        predictor = kvq.load(weights, device="cpu")
        run_scoring(predictor, inputs, out, on_result=lambda r: seen.append(r.path))
        assert seen == inputs[1:]
        assert list(ResultsFile(out).rows) == inputs


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_killed_run_resumes_in_input_order_without_orphans(weights, many, tmp_path, suffix):
    out = tmp_path / f"r.{suffix}"
    args = ["score", str(many), "--weights", str(weights), "--out", str(out), "--quiet"]
    proc = _start([*args, "--workers", "2"])
    _wait_for_rows(out, proc, 4)
    os.kill(proc.pid, signal.SIGKILL)  # the scoring process only: its workers are orphaned
    proc.wait()
    deadline = time.monotonic() + 10
    while _processes_with(str(many)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_with(str(many)), "decoding workers outlived their killed parent"
    killed = list(ResultsFile(out).rows)
    inputs = expand_inputs([str(many)])
    assert 3 <= len(killed) < len(inputs) and killed == inputs[: len(killed)]
    assert kvq_main(args) == 0
    assert list(ResultsFile(out).rows) == inputs
    assert len(out.read_text().splitlines()) == len(inputs) + (suffix == "csv")


@pytest.mark.slow
def test_ctrl_c_stops_a_run_with_one_line_and_keeps_its_rows(weights, many, tmp_path):
    out = tmp_path / "r.jsonl"
    args = ["score", str(many), "--weights", str(weights), "--out", str(out), "--quiet"]
    proc = _start(args)
    _wait_for_rows(out, proc, 2)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    lines = stderr.decode().splitlines()
    assert lines == [f"kvq score: interrupted: the results so far are kept in {out}; run the "
                     "same command again to go on"]  # fmt: skip
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    inputs = expand_inputs([str(many)])
    assert 2 <= len(kept) < len(inputs) and [r["path"] for r in kept] == inputs[: len(kept)]
    assert kvq_main(args) == 0
    assert list(ResultsFile(out).rows) == inputs


def test_ctrl_c_swallowed_by_a_finalizer_still_stops_the_run(
    weights, many, tmp_path, monkeypatch, capsys
):
    # Python drops a KeyboardInterrupt raised inside a finalizer or callback; the run must
    # stop at the next input all the same.
    append = ResultsFile.append

    def append_then_lose_a_ctrl_c(self, row):
        append(self, row)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here
        except KeyboardInterrupt:
            pass

    monkeypatch.setattr(ResultsFile, "append", append_then_lose_a_ctrl_c)
    out = tmp_path / "r.jsonl"
    args = ["score", str(many), "--weights", str(weights), "--out", str(out), "--quiet"]
    assert kvq_main([*args, "--workers", "0"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 1


def test_rank_files_of_a_killed_sharded_run_are_reused(weights, media, tmp_path):
    predictor = kvq.load(weights, device="cpu")
    inputs = expand_inputs([str(media)])
    reference = run_scoring(predictor, inputs, tmp_path / "ref.jsonl")
    out = tmp_path / "r.csv"
    # A killed 3-process run left rank 2's row of the last input (marked, to see it reused)
    # and rank 0's row of other weights (which must be scored again).
    ResultsFile(rank_file(out, 2)).append({**reference[2], "timings": {"decode_s": -1.0}})
    ResultsFile(rank_file(out, 0)).append({**reference[0], "weights": "other.safetensors#0"})
    seen = []
    rows = run_scoring(predictor, inputs, out, on_result=lambda r: seen.append(r.path))
    assert seen == inputs[:2]
    assert [r["path"] for r in rows] == inputs
    assert float(ResultsFile(out).rows[inputs[2]]["decode_s"]) == -1.0
    assert not list(tmp_path.glob("r.csv.rank*"))


def test_dataloader_workers_die_with_their_parent(tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(
        "import os, sys, time\n"
        "import torch\n"
        "from kvq.runtime import WorkerInit\n"
        "class Slow(torch.utils.data.Dataset):\n"
        "    def __len__(self): return 4\n"
        "    def __getitem__(self, i):\n"
        "        open(os.path.join(sys.argv[1], f'{os.getpid()}.pid'), 'w').close()\n"
        "        time.sleep(120)  # a long decode: PyTorch's own check never runs\n"
        "        return i\n"
        "loader = torch.utils.data.DataLoader(Slow(), num_workers=2, worker_init_fn=WorkerInit())\n"
        "list(loader)\n"
    )
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(pids)])
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(p.stem) for p in pids.iterdir()]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [pid for pid in workers if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "workers outlived their killed parent"


@pytest.mark.parametrize("hang_up", ["before_asking", "before_receiving"])
def test_a_worker_is_quiet_when_its_parent_abandons_a_batch(hang_up, monkeypatch, capfd):
    # Ctrl-C in the middle of receiving a batch's tensors closes the descriptor-passing
    # connection on the worker; its thread must not print a traceback under the one line.
    from multiprocessing import connection, process, resource_sharer

    def abandon(self):
        address, key = self._id
        with connection.Client(address, authkey=process.current_process().authkey) as conn:
            if hang_up == "before_receiving":
                conn.send((key, os.getpid()))
        raise KeyboardInterrupt

    monkeypatch.setattr(resource_sharer.DupFd, "detach", abandon)
    tensors = [torch.zeros(1000)] * 2
    loader = torch.utils.data.DataLoader(
        tensors, batch_size=None, num_workers=1, worker_init_fn=WorkerInit()
    )
    with pytest.raises(KeyboardInterrupt):
        next(iter(loader))
    time.sleep(0.5)  # the worker's thread has failed by now
    assert "Traceback" not in capfd.readouterr().err


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    from kvq.fileio import atomic_write, slug

    target = tmp_path / "deep" / "w.safetensors"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"old"))
    assert target.read_bytes() == b"old" and oct(target.stat().st_mode & 0o777) != "0o600"

    def torn(tmp):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, torn)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["w.safetensors"]  # no temporary left
    assert slug("sets/KoNViD 1k: test") == "sets_KoNViD_1k_test" and slug("../") == "file"
