"""SQLite storage of the annotation campaign: images, raters and their cell ratings.

The database runs in WAL mode so that raters read while others write; every call opens its own
short-lived connection, which makes the store safe to use from the server's worker threads.
Each rating is one row keyed by (rater, image, cell) and is written in its own transaction the
moment it arrives, so a crash or a closed browser loses nothing. Rater tokens are stored only
as SHA-256 digests: the plain token is shown once, when it is issued.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kvq.data.labels import LPVQ_GRID

log = logging.getLogger(__name__)

NUM_CELLS = LPVQ_GRID * LPVQ_GRID
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MAX_NAME_LENGTH = 64
# The integers an SQLite column can hold; no row has an id outside (SQLite cannot look it up).
SQLITE_INTEGERS = range(-(2**63), 2**63)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS raters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    image_id INTEGER NOT NULL REFERENCES images(id),
    cell INTEGER NOT NULL CHECK (cell >= 0 AND cell < 49),
    score REAL NOT NULL CHECK (score >= 1 AND score <= 5),
    updated REAL NOT NULL,
    PRIMARY KEY (rater_id, image_id, cell)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
# The settings key of the address ``kvq annotate serve`` last listened on (for rater links).
SERVER_URL_KEY = "server_url"
# Names that would be lost or garbled on the way to the LPVQ label file: why, and the fix.
_NAME_PROBLEMS: dict[str, tuple[str, str]] = {
    "encoding": (
        "names that are not valid UTF-8, which the database and the label file cannot store",
        "rename them to UTF-8 names",
    ),
    "whitespace": (
        "names with whitespace, which the LPVQ label file reads as the end of the name",
        "rename them (e.g. spaces to '_')",
    ),
    "comment": (
        "names starting with '#', which the LPVQ label file reads as a comment",
        "rename them (no leading '#')",
    ),
}
# How many skipped names a warning lists.
_NAMES_SHOWN = 5


class AnnotateError(ValueError):
    """Invalid input to the annotation tool: a bad score, cell, image, rater name or folder."""


@dataclass(frozen=True)
class Rater:
    id: int
    name: str


@dataclass(frozen=True)
class Image:
    id: int
    name: str


@dataclass(frozen=True)
class RaterProgress:
    """Completion of one rater over the active images."""

    name: str
    done: int
    total: int
    images_complete: int


@dataclass(frozen=True)
class Rating:
    """One stored rating; ``cell`` is the row-major index ``7·row + col`` of the 7×7 grid."""

    rater: str
    image: str
    cell: int
    score: float
    updated: float


def validate_score(score: float) -> float:
    """Return ``score`` if it is on the 1–5 scale in steps of 0.5, else raise AnnotateError."""
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise AnnotateError(f"score must be a number, got {score!r}")
    if not (1.0 <= score <= 5.0) or float(score) * 2 != round(float(score) * 2):
        raise AnnotateError(f"score must be one of 1, 1.5, …, 5; got {score!r}")
    return float(score)


def validate_cell(cell: int) -> int:
    if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell < NUM_CELLS:
        raise AnnotateError(f"cell must be an integer in 0..{NUM_CELLS - 1}, got {cell!r}")
    return cell


def validate_rater_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise AnnotateError(f"rater name must be 1–{MAX_NAME_LENGTH} printable characters")
    return name


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def name_problem(name: str) -> str | None:
    """Why image ``name`` cannot join a campaign (a key of ``_NAME_PROBLEMS``), or None."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate escapes)
        return "encoding"
    if any(ch.isspace() for ch in name):
        return "whitespace"
    if name.startswith("#"):
        return "comment"
    return None


def scan_images(folder: str | Path) -> list[str]:
    """Relative POSIX paths of the images under ``folder`` (recursive), sorted.

    Images whose names the LPVQ label file cannot hold (see :func:`name_problem`) are skipped
    with a warning that says how to include them, so one odd file does not stop the campaign.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AnnotateError(f"image folder {folder} does not exist")
    found = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    skipped: dict[str, list[str]] = {}
    names: list[str] = []
    for name in found:
        problem = name_problem(name)
        if problem is None:
            names.append(name)
        else:
            skipped.setdefault(problem, []).append(name)
    for problem, (why, fix) in _NAME_PROBLEMS.items():
        if problem in skipped:
            count = _count(len(skipped[problem]), "image")
            listed = _listed(skipped[problem])
            log.warning(
                "skipping %s under %s: %s: %s; %s to include them", count, folder, why, listed, fix
            )
    if found and not names:
        found_count = _count(len(found), "image")
        raise AnnotateError(
            f"every image in {folder} was skipped ({found_count}; see the warnings)"
        )
    if not names:
        raise AnnotateError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    return names


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _listed(names: list[str]) -> str:
    # repr shows a space, a tab or an undecodable byte for what it is.
    shown = ", ".join(repr(n) for n in names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


class AnnotationStore:
    """The campaign database at ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            db = self._db()
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise AnnotateError(f"cannot open the campaign database {self.path}: {err}") from None

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (one per thread: sqlite3 connections are not thread-safe).

        Autocommit mode: each statement is its own transaction, so a rating is on disk when the
        call returns (synchronous=FULL also survives power loss); busy_timeout lets concurrent
        writers queue instead of failing. Connections stay open because closing the last one
        checkpoints the WAL, which made every call ~10× slower.
        """
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
            with self._lock:
                self._opened.append(db)
        return db

    def close(self) -> None:
        """Close the connections of all threads (call when no thread uses the store anymore)."""
        with self._lock:
            for db in self._opened:
                db.close()
            self._opened.clear()
        self._local = threading.local()

    # images -----------------------------------------------------------------------------------
    def sync_images(self, names: list[str]) -> list[Image]:
        """Register ``names`` (new ones are added) and mark only these as active.

        Images that left the folder stay in the database with their ratings but are no longer
        offered to raters.
        """
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE images SET active = 0")
            db.executemany(
                "INSERT INTO images(name, active) VALUES (?, 1) "
                "ON CONFLICT(name) DO UPDATE SET active = 1",
                [(n,) for n in names],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return self.images()

    def images(self, active_only: bool = True) -> list[Image]:
        query = "SELECT id, name FROM images" + (" WHERE active = 1" if active_only else "")
        db = self._db()
        return [Image(*row) for row in db.execute(query + " ORDER BY id")]

    def image(self, image_id: int) -> Image:
        """The active image with ``image_id``; AnnotateError if there is none."""
        if image_id not in SQLITE_INTEGERS:
            raise AnnotateError("no image with an id beyond SQLite's 64-bit integers")
        db = self._db()
        row = db.execute(
            "SELECT id, name FROM images WHERE id = ? AND active = 1", (image_id,)
        ).fetchone()
        if row is None:
            raise AnnotateError(f"no image with id {image_id!r}")
        return Image(*row)

    # settings ---------------------------------------------------------------------------------
    def set_server_url(self, url: str) -> None:
        """Record the address the campaign's server listens on (``add-rater`` links use it)."""
        try:
            self._db().execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (SERVER_URL_KEY, url),
            )
        except sqlite3.Error as err:
            raise AnnotateError(f"cannot record the server address in {self.path}: {err}") from None

    def server_url(self) -> str | None:
        """The address recorded by :meth:`set_server_url`; None if no server recorded one."""
        row = (
            self._db()
            .execute("SELECT value FROM settings WHERE key = ?", (SERVER_URL_KEY,))
            .fetchone()
        )
        return row[0] if row else None

    # raters -----------------------------------------------------------------------------------
    def add_rater(self, name: str) -> tuple[Rater, str]:
        """Create a rater → (rater, plain token); only a digest of the token is stored."""
        name = validate_rater_name(name)
        token = secrets.token_urlsafe(24)
        try:
            cur = self._db().execute(
                "INSERT INTO raters(name, token_sha256, created) VALUES (?, ?, ?)",
                (name, hash_token(token), time.time()),
            )
        except sqlite3.IntegrityError:
            raise AnnotateError(f"a rater named {name!r} already exists") from None
        return Rater(int(cur.lastrowid), name), token

    def reset_token(self, name: str) -> str:
        """Issue a new token for rater ``name``; the old link stops working."""
        name = validate_rater_name(name)
        token = secrets.token_urlsafe(24)
        db = self._db()
        cur = db.execute(
            "UPDATE raters SET token_sha256 = ? WHERE name = ?", (hash_token(token), name)
        )
        if cur.rowcount != 1:
            raise AnnotateError(f"no rater named {name!r}")
        return token

    def rater_for_token(self, token: str) -> Rater | None:
        db = self._db()
        row = db.execute(
            "SELECT id, name FROM raters WHERE token_sha256 = ?", (hash_token(token),)
        ).fetchone()
        return Rater(*row) if row else None

    def raters(self) -> list[Rater]:
        db = self._db()
        return [Rater(*row) for row in db.execute("SELECT id, name FROM raters ORDER BY id")]

    # ratings ----------------------------------------------------------------------------------
    def rate(self, rater: Rater, image_id: int, cell: int, score: float) -> None:
        """Store (or replace) ``rater``'s score of one cell; durable when this returns."""
        score, cell = validate_score(score), validate_cell(cell)
        self.image(image_id)
        db = self._db()
        db.execute(
            "INSERT INTO ratings(rater_id, image_id, cell, score, updated) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(rater_id, image_id, cell) "
            "DO UPDATE SET score = excluded.score, updated = excluded.updated",
            (rater.id, image_id, cell, score, time.time()),
        )

    def cell_scores(self, rater: Rater, image_id: int) -> dict[int, float]:
        """``{cell: score}`` of one rater on one image."""
        db = self._db()
        rows = db.execute(
            "SELECT cell, score FROM ratings WHERE rater_id = ? AND image_id = ?",
            (rater.id, image_id),
        )
        return dict(rows.fetchall())

    def cells_done(self, rater: Rater) -> dict[int, int]:
        """``{image id: number of rated cells}`` of one rater (active images only)."""
        db = self._db()
        rows = db.execute(
            "SELECT r.image_id, COUNT(*) FROM ratings r JOIN images i ON i.id = r.image_id "
            "WHERE r.rater_id = ? AND i.active = 1 GROUP BY r.image_id",
            (rater.id,),
        )
        return dict(rows.fetchall())

    def progress(self) -> list[RaterProgress]:
        """Completion of every rater, in creation order."""
        total = len(self.images()) * NUM_CELLS
        out = []
        for rater in self.raters():
            done = self.cells_done(rater).values()
            complete = sum(1 for n in done if n == NUM_CELLS)
            out.append(RaterProgress(rater.name, sum(done), total, complete))
        return out

    def ratings(self) -> list[Rating]:
        """Every stored rating, ordered by rater, image and cell."""
        db = self._db()
        rows = db.execute(
            "SELECT ra.name, i.name, r.cell, r.score, r.updated FROM ratings r "
            "JOIN raters ra ON ra.id = r.rater_id JOIN images i ON i.id = r.image_id "
            "ORDER BY ra.id, i.id, r.cell"
        )
        return [Rating(*row) for row in rows]
