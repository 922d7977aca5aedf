"""Scoring as a product: predictor, batch runs with resume, broken files, sharding, maps."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import kvq
from conftest import CALIBRATION, INPUT
from kvq.cli.main import main as kvq_main
from kvq.models import load_model, save_pretrained
from kvq.scoring.batch import (
    CSV_FIELDS,
    ResultsFile,
    expand_inputs,
    flat_row,
    rank_file,
    run_scoring,
    score_paths,
)
from kvq.scoring.maps import LEGEND_H, local_grid, render_sheet, write_overlay_video
from video_factory import make_image


@pytest.fixture()
def broken(media, tmp_path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("a.mp4", "c.png"):
        (folder / name).write_bytes((media / name).read_bytes())
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.mov").write_bytes(np.random.default_rng(0).bytes(5000))
    good = (media / "a.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 3])
    return folder


def strip_timings(rows):
    return [{k: v for k, v in r.items() if k != "timings"} for r in rows]


def test_predictor_scores_are_deterministic_and_calibrated(weights, media):
    predictor = kvq.load(weights, device="cpu")
    assert predictor.scale == "MOS 1-5" and predictor.higher_is_better
    a, b = predictor.score(media / "a.mp4"), predictor.score(media / "a.mp4")
    assert a.error is None
    assert a.score == b.score and np.array_equal(a.local_quality, b.local_quality)
    assert a.score == pytest.approx(min(5.0, max(1.0, 2.0 * a.raw_score + 3.0)))
    assert a.local_quality.shape == a.saliency.shape == (4, 2, 2)
    assert len(a.segments) == 4
    # The segments cover the timeline, each its share, around the frames the model saw.
    bounds = [(s.start_s, s.end_s) for s in a.segments]
    assert bounds[0][0] == 0 and bounds[-1][1] == pytest.approx(a.info["duration"])
    assert all(x[1] == y[0] and x[0] < x[1] for x, y in itertools.pairwise(bounds))
    assert all(s.start_s <= (s.seen_start_s + s.seen_end_s) / 2 <= s.end_s for s in a.segments)
    # On the score's scale: the calibration of each slice's mean of Q·S, whose mean is the raw
    # score; pooled as VMAF pools its frames.
    assert np.mean([s.raw_score for s in a.segments]) == pytest.approx(a.raw_score, rel=1e-5)
    assert [s.score for s in a.segments] == pytest.approx(
        [min(5.0, max(1.0, 2.0 * s.raw_score + 3.0)) for s in a.segments]
    )
    scores = [s.score for s in a.segments]
    assert a.pooled["min"] == min(scores) and a.pooled["max"] == max(scores)
    assert a.pooled["mean"] == pytest.approx(np.mean(scores))
    assert a.pooled["harmonic_mean"] == pytest.approx(len(scores) / sum(1 / x for x in scores))
    row = a.to_row()
    assert (row["scale"], row["higher_is_better"]) == ("MOS 1-5", True)
    assert row["kvq_version"] == kvq.__version__ and row["weights"] == predictor.weights_id
    from_tensor = predictor.score(torch.from_numpy(a.frames))
    assert from_tensor.raw_score == pytest.approx(a.raw_score, rel=1e-6)


def test_several_clips_per_video_are_averaged(weights, media, tmp_path):
    model, header = kvq.models.load_model(weights)
    multi = save_pretrained(
        model, tmp_path / "multi.safetensors", {**header, "input": {**INPUT, "num_clips": 2}}
    )
    predictor = kvq.load(multi, device="cpu")
    result = predictor.score(media / "a.mp4")
    assert result.error is None and result.local_quality.shape == (4, 2, 2)
    assert result.frames.shape == (8, 64, 64, 3)
    assert len(result.segments) == 4
    clips = torch.from_numpy(np.stack([result.frames, result.frames]))[None]
    raw, _, _ = predictor.forward(clips)
    single, _, _ = predictor.forward(clips[:, 0])
    assert raw[0] == pytest.approx(single[0], rel=1e-5)


def test_unreadable_file_gives_error_result_not_exception(weights, broken):
    predictor = kvq.load(weights, device="cpu")
    result = predictor.score(broken / "empty.mp4")
    assert result.score is None and "empty.mp4" in result.error


def test_expand_inputs(media, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text(f"{media / 'c.png'}\n\n{media / 'a.mp4'}\n")
    paths = expand_inputs([str(media), f"@{listed}", str(media / "*.png"), "missing.mp4"])
    names = [Path(p).name for p in paths]
    assert names == ["a.mp4", "c.png", "b.mkv", "missing.mp4"]


def test_folder_with_broken_files_is_scored_and_reported(weights, broken, tmp_path, capsys):
    out = tmp_path / "new" / "folder" / "r.jsonl"  # folders of --out are created
    code = kvq_main(["score", str(broken), "--weights", str(weights), "--out", str(out)])
    assert code == 1  # some inputs failed
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"a.mp4", "c.png", "empty.mp4", "noise.mov", "truncated.mp4"}
    for name in ("empty.mp4", "noise.mov", "truncated.mp4"):
        assert rows[name]["score"] is None and name in rows[name]["error"]
    for name in ("a.mp4", "c.png"):
        assert rows[name]["error"] is None and 1.0 <= rows[name]["score"] <= 5.0
    assert "3 of 5 input(s) failed" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "json"])
def test_resume_after_kill_neither_loses_nor_duplicates(weights, media, tmp_path, suffix):
    predictor = kvq.load(weights, device="cpu")
    inputs = expand_inputs([str(media)])
    reference = run_scoring(predictor, inputs, tmp_path / f"ref.{suffix}")
    out = tmp_path / f"r.{suffix}"
    # A killed run: the first two rows landed, the third was torn mid-write.
    partial = ResultsFile(out)
    for row in reference[:2]:
        partial.append(row)
    torn = json.dumps(reference[2])[:25]
    with partial.journal.open("a") as f:
        f.write(torn if suffix != "csv" else "/x/torn.mp4,1.0,2")
    seen = []
    rows = run_scoring(predictor, inputs, out, on_result=lambda r: seen.append(r.path))
    assert seen == [inputs[2]]  # only the unfinished input was scored again
    assert [r["path"] for r in rows] == inputs
    again = ResultsFile(out)
    assert list(again.rows) == inputs  # in input order, each once
    assert [float(again.rows[p]["score"]) for p in inputs] == pytest.approx(
        [r["score"] for r in reference]
    )
    if suffix == "json":
        assert not again.journal.exists()
        assert len(json.loads(out.read_text())) == len(inputs)
    else:
        assert len(out.read_text().splitlines()) == len(inputs) + (suffix == "csv")


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_resuming_with_other_weights_is_refused(weights, media, tmp_path, capsys, suffix):
    out = tmp_path / f"r.{suffix}"
    inputs = expand_inputs([str(media)])
    predictor = kvq.load(weights, device="cpu")
    assert predictor.weights_id.startswith(f"{weights.name}#")
    assert predictor.score(inputs[0]).weights == predictor.weights_id  # API and files alike
    run_scoring(predictor, inputs[:1], out)
    assert [r["weights"] for r in ResultsFile(out).rows.values()] == [predictor.weights_id]
    # Same file name, other tensors: a new id, and the file is not extended with its scores.
    other = tmp_path / "other" / weights.name
    other.parent.mkdir()
    model, _ = load_model(weights)
    torch.nn.init.ones_(model.quality_head.fc_last.bias)
    save_pretrained(model, other, {"input": INPUT, "calibration": CALIBRATION})
    assert kvq.load(other, device="cpu").weights_id != predictor.weights_id
    before = out.read_bytes()
    args = ["score", str(media), "--weights", str(other), "--out", str(out), "--quiet"]
    assert kvq_main(args) == 2
    assert "holds scores of other weights" in capsys.readouterr().err
    assert out.read_bytes() == before
    # The same weights resume as before.
    assert (
        kvq_main(["score", str(media), "--weights", str(weights), "--out", str(out), "--quiet"])
        == 0
    )
    assert len(ResultsFile(out).rows) == len(inputs)


def test_resuming_a_csv_keeps_its_header_columns(weights, media, tmp_path):
    # A file written before the `weights` column existed: new rows follow its header.
    predictor = kvq.load(weights, device="cpu")
    inputs = expand_inputs([str(media)])
    out = tmp_path / "old.csv"
    reference = run_scoring(predictor, inputs[:1], tmp_path / "ref.jsonl")
    old_fields = [f for f in CSV_FIELDS if f != "weights"]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerow(flat_row(reference[0]))
    run_scoring(predictor, inputs, out)
    with out.open(newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == old_fields
    assert [len(line) for line in lines[1:]] == [len(old_fields)] * len(inputs)
    assert [line[0] for line in lines[1:]] == inputs


def test_videos_and_images_batch_together_like_one_at_a_time(weights, media, tmp_path):
    # An image is a static clip of spec.image_frames (16) frames, a video one of 8: a batch
    # holding both is run in groups of equal clips, and gives each input its own result.
    predictor = kvq.load(weights, device="cpu")
    make_image(tmp_path / "d.jpg", size=(40, 30), pattern="gradient")
    inputs = [str(p) for p in (media / "c.png", media / "a.mp4", tmp_path / "d.jpg")]
    inputs += [str(media / "sub" / "b.mkv"), str(tmp_path / "missing.mp4")]
    batched = list(score_paths(predictor, inputs, batch_size=4))
    assert [r.path for r in batched] == inputs
    assert batched[-1].score is None and "missing.mp4" in batched[-1].error
    assert [r.frames.shape[0] for r in batched[:-1]] == [16, 8, 16, 8]
    for result in batched[:-1]:
        single = predictor.score(result.path)
        assert result.raw_score == pytest.approx(single.raw_score, rel=1e-5, abs=1e-6)
        assert result.score == pytest.approx(single.score, rel=1e-5, abs=1e-6)
        assert np.allclose(result.local_quality, single.local_quality, rtol=1e-5, atol=1e-6)
        assert [s.start_s for s in result.segments] == [s.start_s for s in single.segments]
    out = tmp_path / "r.jsonl"
    args = ["score", str(media), "--weights", str(weights), "--out", str(out), "--quiet"]
    assert kvq_main([*args, "--batch-size", "4"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == expand_inputs([str(media)])


def test_two_runs_give_identical_output(weights, media, tmp_path):
    for name in ("one", "two"):
        out = tmp_path / f"{name}.jsonl"
        kvq_main(["score", str(media), "--weights", str(weights), "--out", str(out), "--quiet"])
    one, two = ((tmp_path / f"{n}.jsonl").read_text().splitlines() for n in ("one", "two"))
    assert strip_timings(map(json.loads, one)) == strip_timings(map(json.loads, two))


def test_maps_files_have_the_right_sizes(weights, media, tmp_path):
    predictor = kvq.load(weights, device="cpu")
    result = predictor.score(media / "a.mp4")
    calibration, spec = predictor.calibration, predictor.spec
    sheet = render_sheet(result, tmp_path / "a.png", calibration, spec)
    with Image.open(sheet) as img:
        assert img.width == 4 * 160  # frame + three overlays, 160 px each for a landscape clip
        assert img.height > 4 * 120
    video = write_overlay_video(result, tmp_path / "a.mp4", calibration, spec)
    with av.open(str(video)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == result.info["num_frames"]  # the whole video at its 24 fps
    assert (frames[0].height, frames[0].width) == (240 + LEGEND_H, 320)  # 72×96 → MIN_SIDE
    grid = local_grid(np.arange(2 * 14 * 14, dtype=np.float64).reshape(2, 14, 14))
    expected = np.arange(14 * 14, dtype=np.float64).reshape(14, 14) + 98
    assert np.allclose(grid, expected.reshape(7, 2, 7, 2).mean(axis=(1, 3)))


def test_cli_writes_maps_per_input(weights, media, tmp_path):
    maps = tmp_path / "maps"
    args = ["score", str(media), "--weights", str(weights), "--maps", str(maps), "--quiet"]
    assert kvq_main(args) == 0
    written = sorted(p.relative_to(maps).as_posix() for p in maps.rglob("*") if p.is_file())
    assert written == ["a.mp4.maps.png", "c.png.maps.png", "sub/b.mkv.maps.png"]


def test_cli_maps_never_overwrite_inputs_or_each_other(weights, media, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("clip.mp4", "sub/clip.mp4"):
        (folder / name).write_bytes((media / "a.mp4").read_bytes())
    make_image(folder / "e_image.jpg", pattern="gradient")
    make_image(folder / "e_image.png")
    inputs = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    args = ["score", str(folder), "--weights", str(weights), "--quiet"]
    assert kvq_main([*args, "--maps", str(folder), "--maps-video"]) == 0
    assert {p: p.read_bytes() for p in inputs} == inputs
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.maps.*"))
    assert written == [
        f"{name}.maps.{ext}"
        for name in ("clip.mp4", "e_image.jpg", "e_image.png", "sub/clip.mp4")
        for ext in ("mp4", "png")
    ]
    # A file named directly gets its sheet next to it, under its whole name.
    pic = folder / "sub" / "pic.png"
    pic.write_bytes(inputs[folder / "e_image.png"])
    args = ["score", str(pic), "--weights", str(weights), "--maps", str(pic.parent), "--quiet"]
    assert kvq_main(args) == 0
    assert pic.read_bytes() == inputs[folder / "e_image.png"]
    with Image.open(folder / "sub" / "pic.png.maps.png") as sheet:
        assert sheet.width == 4 * 160


def test_cli_refuses_maps_onto_an_input_before_scoring(weights, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_image(folder / "pic.png")
    make_image(folder / "pic.png.maps.png", pattern="gradient")  # an earlier run's sheet
    inputs = {p: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "results" / "r.jsonl"
    args = ["score", str(folder), "--weights", str(weights), "--out", str(out), "--quiet"]
    assert kvq_main([*args, "--maps", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "over the input" in err
    assert f"{folder / 'pic.png.maps.png'} over the input {folder / 'pic.png.maps.png'}" in err
    assert not out.parent.exists()  # nothing scored
    assert {p: p.read_bytes() for p in folder.iterdir()} == inputs


def test_cli_argument_errors_exit_2_before_joining_a_group(
    weights, media, tmp_path, monkeypatch, capsys
):
    # Under torchrun (WORLD_SIZE > 1) these must fail on every rank without touching the
    # process group: RANK and MASTER_ADDR are deliberately missing, so joining would raise.
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert kvq_main(["score", str(media), "--weights", str(weights), "--quiet"]) == 2
    assert "--out is required under torchrun" in capsys.readouterr().err
    assert kvq_main(["score", str(tmp_path / "nothing*.mp4"), "--out", "r.jsonl"]) == 2
    assert "no inputs found" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_match_one_process(weights, media, tmp_path, free_port):
    single = tmp_path / "single.jsonl"
    kvq_main(["score", str(media), "--weights", str(weights), "--out", str(single), "--quiet"])
    sharded = tmp_path / "sharded.jsonl"
    # A killed 3-process run left rank 2's row of the image: the two ranks reuse it.
    first = [json.loads(line) for line in single.read_text().splitlines()]
    ResultsFile(rank_file(sharded, 2)).append({**first[2], "timings": {"decode_s": -1.0}})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(free_port), "-m", "kvq.cli.main", "score", str(media),
        "--weights", str(weights), "--out", str(sharded), "--device", "cpu", "--quiet",
    ]  # fmt: skip
    # A session of its own, so that a hang kills the ranks too, not only the launcher.
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, stderr[-2000:]
    one = strip_timings(map(json.loads, single.read_text().splitlines()))
    two = strip_timings(map(json.loads, sharded.read_text().splitlines()))
    assert [r["path"] for r in two] == [r["path"] for r in one]
    for a, b in zip(one, two):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    reused = json.loads(sharded.read_text().splitlines()[-1])
    assert reused["path"] == first[2]["path"] and reused["timings"] == {"decode_s": -1.0}
    assert not list(tmp_path.glob("sharded.jsonl.*"))  # no rank file, no lock left


@pytest.mark.parametrize(
    "header, says",
    [
        ({"calibration": {**CALIBRATION, "a": -10.45}}, "slope -10.45 (not positive)"),
        ({"calibration": CALIBRATION, "status": "random weights"}, "random weights"),
    ],
)
def test_weights_that_are_not_a_quality_model_say_so(
    weights, media, tmp_path, capsys, caplog, header, says
):
    model, _ = load_model(weights)
    path = tmp_path / "w.safetensors"
    save_pretrained(model, path, {"input": INPUT, **header})  # flagged when saved ...
    assert "saved as not a quality model: " in caplog.text and says in caplog.text
    assert says in load_model(path)[1]["status"]  # ... and in the file
    assert says in kvq.load(path, device="cpu").status
    assert kvq.load(weights, device="cpu").status is None
    args = ["score", str(media / "c.png"), "--weights", str(path), "--quiet"]
    assert kvq_main(args) == 0  # it still scores, and says so on stderr
    err = [line for line in capsys.readouterr().err.splitlines() if "quality model" in line]
    assert len(err) == 1 and says in err[0]
    assert err[0].startswith(f"kvq score: warning: {path}: not a quality model: ")


def test_kvq_models_lists_architectures_and_bundled_weights(capsys):
    assert kvq_main(["models"]) == 0
    out = capsys.readouterr().out
    for name in kvq.list_models():
        assert name in out
    assert f"{kvq.scoring.DEFAULT_WEIGHTS}  (default): kvq-lite" in out
    assert "synth_test_srcc" in out and "model card:" in out


def test_folders_take_media_by_their_bytes_and_audio_gets_an_error_row(weights, media, tmp_path):
    import av

    folder = tmp_path / "uploads"
    folder.mkdir()
    shutil.copy(media / "a.mp4", folder / "3f9a0c")  # an upload under a hashed name
    (folder / "README").write_text("not media\n")
    (folder / "notes.txt").write_text("not media either\n")
    with av.open(str(folder / "voice.m4a"), "w", format="mp4") as container:  # audio only
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    listed = tmp_path / "list.txt"
    listed.write_text(f"# uploads of the day\n{folder / '3f9a0c'}\n  # {media / 'c.png'}\n")
    assert expand_inputs([f"@{listed}"]) == [str(folder / "3f9a0c")]  # comments skipped
    inputs = expand_inputs([str(folder)])
    assert inputs == [str(folder / "3f9a0c"), str(folder / "voice.m4a")]
    rows = run_scoring(kvq.load(weights, device="cpu"), inputs, tmp_path / "r.jsonl")
    assert rows[0]["error"] is None and rows[0]["score"] is not None
    assert rows[1]["score"] is None and "no video stream" in rows[1]["error"]


def test_rows_print_as_they_are_scored_above_a_progress_bar(
    weights, media, tmp_path, capsys, monkeypatch
):
    seen = []  # what stdout held when each row was written
    append = ResultsFile.append

    def append_and_look(self, row):
        seen.append(capsys.readouterr().out)
        append(self, row)

    monkeypatch.setattr(ResultsFile, "append", append_and_look)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    out = tmp_path / "r.jsonl"
    assert kvq_main(["score", str(media), "--weights", str(weights), "--out", str(out)]) == 0
    assert seen[0] == "" and "a.mp4" in seen[1] and "c.png" in seen[2]  # one row at a time
    assert "scoring" in capsys.readouterr().err  # the bar, on stderr
    monkeypatch.setattr(ResultsFile, "append", append)
    assert kvq_main(["score", str(media), "--weights", str(weights), "--out", str(out)]) == 0
    table = capsys.readouterr().out  # a finished run: every row, from the file
    assert all(name in table for name in ("a.mp4", "c.png", "b.mkv", "(score scale: MOS 1-5)"))


def test_silent_no_ops_warn_and_bad_flags_show_the_subcommand(weights, media, capsys):
    args = ["score", str(media / "c.png"), "--weights", str(weights)]
    assert kvq_main([*args, "--maps-video", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "kvq score: warning: --maps-video does nothing without --maps" in err
    assert "kvq score: warning: --quiet without --out" in err
    with pytest.raises(SystemExit) as exited:
        kvq_main([*args, "--bogus"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "kvq score: error: unrecognized arguments: --bogus (see kvq score --help)\n"
    with pytest.raises(SystemExit):
        kvq_main(["score", "--help"])
    assert "inputs per model batch (default: 1)" in " ".join(capsys.readouterr().out.split())
