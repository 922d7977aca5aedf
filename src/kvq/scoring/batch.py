"""Scoring many files: input expansion, resumable result files, decoding workers, sharding.

A run appends one row per input to its result file as soon as the input is scored (flushed and
fsynced), so a crashed or killed run loses at most the row being written; restarted with the
same ``--out`` it drops a torn last row and skips every input already there. A run holds an
exclusive lock on its result file (:class:`~kvq.fileio.ExclusiveLock`): a second run on the same
file is refused instead of writing the same rows again. Under ``torchrun`` every rank scores its
share into ``OUT.rankN.jsonl`` and rank 0 merges them into ``OUT`` in input order; the rank files
of a killed sharded run are reused by the next one, whatever its number of processes.

Paths are kept exactly as the file system gives them, in every format. A name that is not
valid UTF-8 holds Python's *surrogate escapes* (``os.fsdecode``): a ``.jsonl``/``.json`` row
writes them as JSON escapes (``"\\udcff"``), a ``.csv`` row as the original bytes, so that
``os.fsencode(row["path"])`` gives back the name's bytes; CSV quotes a name with a newline.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from kvq.fileio import ExclusiveLock, FileLockedError, atomic_write
from kvq.runtime import WorkerInit, any_rank, current_env
from kvq.scoring.predictor import Predictor, ScoreResult, decode_input
from kvq.video import IMAGE_EXTENSIONS, ClipSpec, VideoError

# Containers FFmpeg reads that users keep videos in; images are scored as static clips.
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .flv .wmv .asf .mpg .mpeg .m2v .ts .m2ts .mts .3gp .3g2 "
    ".ogv .ogg .mxf .vob .y4m .nut .dv .gif .hevc .h264 .264 .ivf".split()
)
# Audio files are media too: in a folder they are inputs, which get an error row ("no video
# stream") rather than being passed over in silence.
AUDIO_EXTENSIONS = frozenset(
    ".mp3 .wav .flac .aac .m4a .opus .oga .wma .aif .aiff .ac3 .amr .caf".split()
)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS | AUDIO_EXTENSIONS
# How media files begin (offset, bytes): a file in a folder without a media extension (an
# upload stored under a hashed name) is an input when it begins like one of these.
_TS_PACKET = 188  # bytes of an MPEG transport-stream packet
MEDIA_SIGNATURES = (
    (4, b"ftyp"),  # MP4, MOV, 3GP, M4A, HEIF/AVIF
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska, WebM
    (0, b"RIFF"),  # AVI, WAV, WebP
    (0, b"OggS"),
    (0, b"FLV\x01"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),  # ASF, WMV
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x00\x00\x01\xb3"),  # MPEG-1/2 video
    (0, b"YUV4MPEG2"),
    (0, b"DKIF"),  # IVF (VP8/VP9/AV1)
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"GIF8"),
    (0, b"II*\x00"),  # TIFF
    (0, b"MM\x00*"),
    (0, b"ID3"),  # MP3
    (0, b"fLaC"),
)
CSV_FIELDS = (
    "path", "score", "raw_score", "error", "duration", "fps", "num_frames", "width", "height",
    "codec", "decode_s", "model_s", "segments", "weights", "scale", "higher_is_better",
    "pooled_mean", "pooled_min", "pooled_max", "pooled_harmonic_mean", "kvq_version",
)  # fmt: skip


def expand_inputs(items: Iterable[str]) -> list[str]:
    """Files, folders (recursively, media files only: by extension, or by their first bytes
    where the name has none of :data:`MEDIA_EXTENSIONS`), globs and ``@list.txt`` files (one
    path per line; blank lines and lines starting with ``#`` are skipped) → paths in a stable
    order, without duplicates. A name that matches nothing is kept, so that it is reported as
    a failed input rather than silently dropped."""
    return list(find_inputs(items))


def find_inputs(items: Iterable[str]) -> dict[str, str]:
    """The paths of :func:`expand_inputs`, each with the folder it was found under: the folder
    argument it was walked from, a glob's folder before its first wildcard, or (a file named
    directly) its own folder. Where a path is found twice, its first folder is kept.
    An ``@list`` file that cannot be read raises :class:`InputsError`."""
    out: dict[str, str] = {}
    for item in items:
        if item.startswith("@"):
            lines = [ln.strip() for ln in _read_input_list(item[1:])]
            listed = (ln for ln in lines if ln and not ln.startswith("#"))
            for line, root in find_inputs(listed).items():
                out.setdefault(line, root)
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(root, name)
                    if Path(name).suffix.lower() in MEDIA_EXTENSIONS or looks_like_media(path):
                        out.setdefault(path, item)
        elif glob.has_magic(item):
            for match in sorted(glob.glob(item, recursive=True)):
                if os.path.isfile(match):
                    out.setdefault(match, _glob_root(item))
        else:
            out.setdefault(item, os.path.dirname(item) or ".")
    return out


def looks_like_media(path: str) -> bool:
    """Whether the file at ``path`` begins like a media file (:data:`MEDIA_SIGNATURES`, or
    MPEG-TS: a sync byte 0x47 at the start of each of its first three 188-byte packets)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_TS_PACKET * 3)
    except OSError:
        return False
    if len(head) == _TS_PACKET * 3 and all(
        head[i] == 0x47 for i in range(0, len(head), _TS_PACKET)
    ):
        return True
    return any(head[at : at + len(magic)] == magic for at, magic in MEDIA_SIGNATURES)


class InputsError(ValueError):
    """An input argument that cannot be expanded (an unreadable ``@list`` file)."""


def _read_input_list(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputsError(f"@{path}: cannot read the input list ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise InputsError(f"@{path}: the input list is not UTF-8 text ({err.reason})") from None


def _glob_root(pattern: str) -> str:
    """The folder of a glob pattern before its first wildcard (``.`` for none)."""
    root = os.path.dirname(pattern)
    while glob.has_magic(root):
        root = os.path.dirname(root)
    return root or "."


def flat_row(row: dict) -> dict:
    """A result row with its nested fields flattened into :data:`CSV_FIELDS`."""
    flat = {k: row.get(k) for k in ("path", "score", "raw_score", "error")}
    flat.update({k: row.get("info", {}).get(k) for k in CSV_FIELDS[4:10]})
    flat.update({k: row.get("timings", {}).get(k) for k in ("decode_s", "model_s")})
    flat["segments"] = json.dumps(row.get("segments", []), allow_nan=False)
    flat.update({k: row.get(k) for k in ("weights", "scale", "higher_is_better", "kvq_version")})
    flat.update({f"pooled_{k}": v for k, v in (row.get("pooled") or {}).items()})
    return flat


class ResultsFileError(ValueError):
    """A result file that this run cannot write to (its name, or the weights it holds)."""


def results_kind(path: str | Path) -> str:
    """``"jsonl"``, ``"csv"`` or ``"json"``: the format a result file's name asks for."""
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in ("jsonl", "csv", "json"):
        raise ResultsFileError(f"--out must end in .jsonl, .csv or .json, got {Path(path).name}")
    return kind


class ResultsFile:
    """An append-only result file (``.jsonl`` or ``.csv``) that survives being killed.

    ``.json`` outputs are journalled in ``OUT.partial.jsonl`` and written whole by
    :meth:`finalize`. Rows are strict JSON: a NaN or infinity in a row raises ``ValueError``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.kind = results_kind(self.path)
        self.journal = self.path.with_suffix(".partial.jsonl") if self.kind == "json" else self.path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, dict] = {}
        self.csv_fields = CSV_FIELDS  # an existing file keeps its own header's columns
        if self.kind == "json" and self.path.exists() and not self.journal.exists():
            for row in json.loads(self.path.read_text(encoding="utf-8")):
                self.rows[row["path"]] = row
        elif self.journal.exists():
            self._read_journal()

    def _read_journal(self) -> None:
        data = self.journal.read_bytes()
        complete = data[: _end_of_complete_rows(data, self.kind)]  # a torn last row is dropped
        if len(complete) != len(data):
            with self.journal.open("r+b") as f:
                f.truncate(len(complete))
        text = complete.decode("utf-8", _PATH_ERRORS)
        if self.kind == "csv":
            reader = csv.DictReader(io.StringIO(text))
            for row in reader:
                self.rows[row["path"]] = row
            self.csv_fields = tuple(reader.fieldnames or CSV_FIELDS)
        else:
            for line in text.splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["path"]] = row

    def done(self, path: str) -> bool:
        return path in self.rows

    def other_weights(self, weights_id: str) -> set[str]:
        """Weights other than ``weights_id`` that rows of this file were scored with (rows
        without a ``weights`` field, from before it was recorded, are taken as they are)."""
        return {row.get("weights") for row in self.rows.values()} - {weights_id, None, ""}

    def clear(self) -> None:
        self.journal.unlink(missing_ok=True)
        self.rows, self.csv_fields = {}, CSV_FIELDS

    def append(self, row: dict) -> None:
        new_file = not self.journal.exists() or self.journal.stat().st_size == 0
        with self.journal.open("a", encoding="utf-8", errors=_PATH_ERRORS, newline="") as f:
            if self.kind == "csv":
                writer = csv.DictWriter(f, fieldnames=self.csv_fields, extrasaction="ignore")
                if new_file:
                    writer.writeheader()
                writer.writerow(flat_row(row))
            else:
                f.write(json.dumps(row, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows[row["path"]] = row

    def finalize(self, order: list[str] | None = None) -> None:
        """For ``.json``: write all rows (in ``order`` where given) atomically, drop the journal."""
        if self.kind != "json":
            return
        rows = (
            [self.rows[p] for p in order if p in self.rows] if order else list(self.rows.values())
        )
        text = json.dumps(rows, indent=1, allow_nan=False)
        atomic_write(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self.journal.unlink(missing_ok=True)


# A path that is not UTF-8 holds surrogate escapes: CSV writes (and reads back) their bytes.
_PATH_ERRORS = "surrogateescape"


def _end_of_complete_rows(data: bytes, kind: str) -> int:
    """The length of the complete rows at the start of a result file's ``data``: up to its
    last row end. In a CSV file a newline inside a quoted field (a file name with a newline)
    does not end a row: a row ends at a newline after an even number of quotes (CSV doubles
    a quote inside a field)."""
    end = data.rfind(b"\n")
    if kind == "csv":
        while end >= 0 and data.count(b'"', 0, end) % 2:
            end = data.rfind(b"\n", 0, end)
    return end + 1


def rank_file(out: str | Path, rank: int) -> Path:
    """The scratch file of ``rank`` in a sharded run writing to ``out``: ``OUT.rankN.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.name}.rank{rank}.jsonl")


def _rank_files(out: str | Path) -> list[Path]:
    """Every rank file of ``out`` on disk, of this run or of a killed one with more ranks."""
    out = Path(out)
    pattern = re.compile(re.escape(out.name) + r"\.rank\d+\.jsonl")
    return sorted(
        p
        for p in out.parent.glob(f"{glob.escape(out.name)}.rank*.jsonl")
        if pattern.fullmatch(p.name)
    )


@dataclass
class DecodedItem:
    """What a decoding worker hands to the model loop."""

    path: str
    frames: torch.Tensor | None = None
    info: dict | None = None
    indices: object = None
    decode_s: float = 0.0
    error: str | None = None


class DecodeDataset(Dataset):
    """Decodes inputs in DataLoader workers; unreadable files become items with ``error``."""

    def __init__(self, paths: list[str], spec: ClipSpec) -> None:
        self.paths = paths
        self.spec = spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> DecodedItem:
        path = self.paths[i]
        start = time.perf_counter()
        try:
            frames, info, indices = decode_input(path, self.spec)
        except VideoError as err:
            return DecodedItem(path, error=str(err))
        except Exception as err:  # a decoder bug must not end a long run: record and go on
            return DecodedItem(path, error=f"{path}: unexpected {type(err).__name__}: {err}")
        return DecodedItem(path, frames, info, indices, time.perf_counter() - start)


def _collate(items: list[DecodedItem]) -> list[DecodedItem]:
    return items


def score_paths(
    predictor: Predictor,
    paths: list[str],
    batch_size: int = 1,
    workers: int = 0,
) -> Iterator[ScoreResult]:
    """Score ``paths`` in order; decoding runs ahead in ``workers`` processes (0: inline).
    The clips of a batch run through the model in groups of one shape (videos and images)."""
    if not paths:
        return
    loader = DataLoader(
        DecodeDataset(paths, predictor.spec),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=2 if workers else None,
        worker_init_fn=WorkerInit(),
    )
    for items in loader:
        outputs = {}
        for group in _same_shape_groups(items):
            start = time.perf_counter()
            raw, quality, saliency = predictor.forward(torch.stack([it.frames for it in group]))
            model_s = (time.perf_counter() - start) / len(group)
            for j, it in enumerate(group):
                outputs[it.path] = (raw[j], quality[j], saliency[j], model_s)
        for it in items:
            if it.error is not None:
                yield predictor.failed(it.path, it.error)
                continue
            raw_j, q_j, s_j, model_s = outputs[it.path]
            timings = {"decode_s": round(it.decode_s, 4), "model_s": round(model_s, 4)}
            yield predictor.result(
                it.path, it.frames, raw_j, q_j, s_j, it.info, it.indices, timings
            )


def _same_shape_groups(items: list[DecodedItem]) -> list[list[DecodedItem]]:
    """The decoded items of a batch grouped by clip shape, in order of first appearance: one
    model batch each (an image's static clip has ``spec.image_frames`` frames, a video's
    ``spec.clip_len``)."""
    groups: dict[tuple[int, ...], list[DecodedItem]] = {}
    for it in items:
        if it.error is None:
            groups.setdefault(tuple(it.frames.shape), []).append(it)
    return list(groups.values())


def run_scoring(
    predictor: Predictor,
    inputs: list[str],
    out: str | Path,
    batch_size: int = 1,
    workers: int = 0,
    on_result: Callable[[ScoreResult], None] | None = None,
    progress: bool = False,
) -> list[dict]:
    """Score every input not yet in ``out``; returns all rows of ``out`` in input order.
    ``progress``: a progress bar of this process's inputs on stderr.

    The run holds the lock of ``out`` throughout; a file that another run holds, or that holds
    rows of other weights than the predictor's ``weights_id``, is refused
    (:class:`ResultsFileError`) before anything is scored. ``on_result`` sees each new result
    (maps, progress).

    Under ``torchrun`` (``WORLD_SIZE`` > 1, a process group initialised by the caller) the
    inputs not yet in ``out`` nor in any rank file left by an earlier run are shared out: rank
    ``r`` scores every ``world``-th of them into ``OUT.rank{r}.jsonl``; after a barrier rank 0
    merges every rank file's rows into ``out`` and removes the rank files (the other ranks
    return ``[]``). Every rank refuses alike when rank 0 cannot take the lock.
    """
    env = current_env()
    rank, world = env.rank, env.world_size
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    lock = ExclusiveLock(out)
    try:
        refusal = None
        if rank == 0:
            try:
                lock.acquire()
            except FileLockedError as err:
                refusal = str(err)
        if any_rank(refusal is not None):
            raise ResultsFileError(refusal or f"{out}: rank 0 could not take the lock of {out}")
        results = ResultsFile(out)
        other = results.other_weights(predictor.weights_id) if predictor.weights_id else set()
        if other:  # the same on every rank: they all stop here alike
            raise ResultsFileError(
                f"{results.path} holds scores of other weights ({', '.join(sorted(other))}), "
                f"not {predictor.weights_id}: write to another --out, or delete it to score again"
            )
        if world == 1:
            _adopt_rank_files(results, inputs, predictor.weights_id)  # of a killed sharded run
            pending = [p for p in inputs if not results.done(p)]
            _score_into(results, predictor, pending, batch_size, workers, on_result, progress)
        else:
            _score_sharded(results, predictor, inputs, batch_size, workers, on_result, progress)
            if rank != 0:
                return []  # rank 0 holds the merged rows
        results.finalize(inputs)
        return [results.rows[p] for p in inputs if p in results.rows]
    finally:
        lock.release()


def _score_into(
    sink: ResultsFile,
    predictor: Predictor,
    paths: list[str],
    batch_size: int,
    workers: int,
    on_result: Callable[[ScoreResult], None] | None,
    progress: bool = False,
) -> None:
    bar = None
    if progress and paths:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="input", desc="scoring", file=sys.stderr)
    try:
        for result in score_paths(predictor, paths, batch_size, workers):
            sink.append(result.to_row())
            if bar is not None:
                bar.update()
            if on_result is not None:
                on_result(result)
    finally:
        if bar is not None:
            bar.close()


def _scratch_rows(out: Path, weights: str | None) -> dict[str, dict]:
    """The rows of every rank file of ``out`` scored with ``weights`` (rows without a
    ``weights`` field are taken as they are)."""
    rows: dict[str, dict] = {}
    for part in map(ResultsFile, _rank_files(out)):
        for path, row in part.rows.items():
            if not weights or row.get("weights") in (weights, None, ""):
                rows.setdefault(path, row)
    return rows


def _adopt_rank_files(results: ResultsFile, inputs: list[str], weights: str | None) -> None:
    """Move the rows of ``results``' rank files into it, in input order; remove the files."""
    scratch = _scratch_rows(results.path, weights)
    for path in inputs:
        if path in scratch and not results.done(path):
            results.append(scratch[path])
    for part in _rank_files(results.path):
        part.unlink(missing_ok=True)


def _score_sharded(
    results: ResultsFile,
    predictor: Predictor,
    inputs: list[str],
    batch_size: int,
    workers: int,
    on_result: Callable[[ScoreResult], None] | None,
    progress: bool,
) -> None:
    """This rank's share of a ``torchrun`` run, then (rank 0) the merge into ``results``."""
    env = current_env()
    done = _scratch_rows(results.path, predictor.weights_id)
    # Every rank has read the rank files before any rank writes to them: all share out alike.
    torch.distributed.barrier()
    pending = [p for p in inputs if not results.done(p) and p not in done]
    sink = ResultsFile(rank_file(results.path, env.rank))
    if predictor.weights_id and sink.other_weights(predictor.weights_id):
        sink.clear()  # this rank's scratch rows of an interrupted run with other weights
    shard = pending[env.rank :: env.world_size]
    _score_into(sink, predictor, shard, batch_size, workers, on_result, progress)
    torch.distributed.barrier()
    if env.rank == 0:
        _adopt_rank_files(results, inputs, predictor.weights_id)
    torch.distributed.barrier()
