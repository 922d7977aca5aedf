"""``kvq annotate``: run the region-wise annotation web app and manage its campaign database.

    kvq annotate serve --images DIR [--db FILE] [--host H] [--port P] [--admin-token T]
    kvq annotate add-rater NAME [--db FILE] [--base-url URL]
    kvq annotate reset-token NAME [--db FILE] [--base-url URL]
    kvq annotate progress [--db FILE]
    kvq annotate export OUT_DIR [--db FILE] [--no-screening] [--min-raters N]

``serve`` records the address it listens on in the campaign database, and the links that
``add-rater`` and ``reset-token`` print use it unless --base-url says otherwise.

See docs/annotate.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from kvq.cli.common import CLIError, check_writable_folder

if TYPE_CHECKING:
    from kvq.annotate import AnnotationStore

log = logging.getLogger(__name__)

DEFAULT_DB = "annotate.sqlite"
# The link's address when no server has recorded one: serve's default host and port.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# Hosts that mean "every interface": a link to one reaches no other machine.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
ADMIN_TOKEN_ENV = "KVQ_ANNOTATE_ADMIN_TOKEN"
# What ``serve`` imports from the ``annotate`` extra (FastAPI brings starlette and pydantic).
_SERVE_PACKAGES = ("fastapi", "uvicorn", "starlette", "pydantic")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("annotate", help="region-wise quality annotation web app (LPVQ)")
    sub = p.add_subparsers(dest="annotate_command", metavar="ACTION", required=True)

    def with_db(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--db", default=DEFAULT_DB, help="campaign database")
        return parser

    serve = with_db(sub.add_parser("serve", help="serve the rater and admin pages"))
    serve.add_argument("--images", required=True, help="folder of images to rate (recursive)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on (0: a free one); the campaign records host and port for the "
        "links add-rater prints",
    )
    serve.add_argument(
        "--admin-token",
        default=os.environ.get(ADMIN_TOKEN_ENV),
        help=f"admin token (default: ${ADMIN_TOKEN_ENV}, else a random one printed at start)",
    )
    serve.add_argument(
        "--glance-seconds",
        type=float,
        default=3.0,
        help="how long raters see the whole image before its cells",
    )
    serve.add_argument(
        "--cell-order",
        choices=("shuffled", "row-major"),
        default="shuffled",
        help="order of an image's cells: a fixed shuffle per rater and image, or row by row",
    )
    serve.set_defaults(func=run_serve)

    for name, text in (
        ("add-rater", "create a rater and print their private link"),
        ("reset-token", "issue a new private link for a rater"),
    ):
        q = with_db(sub.add_parser(name, help=text))
        q.add_argument("name", help="the rater's name (1–64 printable characters)")
        q.add_argument(
            "--base-url",
            help="server address in the link, e.g. behind a proxy (default: the address "
            f"kvq annotate serve last listened on for this campaign, else {DEFAULT_BASE_URL})",
        )
        q.set_defaults(func=run_issue_link)

    progress = with_db(sub.add_parser("progress", help="print completion per rater"))
    progress.set_defaults(func=run_progress)

    export = with_db(sub.add_parser("export", help="write LPVQ labels, raw CSV and report"))
    export.add_argument("out", help="output folder")
    export.add_argument("--no-screening", action="store_true", help="skip BT.500 screening")
    export.add_argument("--min-raters", type=int, default=1, help="kept raters needed per image")
    export.set_defaults(func=run_export)


def _existing_store(path: str) -> AnnotationStore:
    """The campaign at ``path``; a mistyped --db must not silently start an empty campaign."""
    from pathlib import Path

    from kvq.annotate import AnnotateError, AnnotationStore

    if not Path(path).is_file():
        raise AnnotateError(f"no campaign database {path} (kvq annotate serve creates it)")
    return AnnotationStore(path)


def run_serve(args: argparse.Namespace) -> int:
    import secrets
    from pathlib import Path

    from kvq.annotate import AnnotateError, AnnotationStore
    from kvq.annotate.storage import scan_images

    try:
        import uvicorn  # noqa: F401 (run_server imports it late: a missing one is refused here)

        from kvq.annotate.server import AnnotateSettings, create_app, run_server, server_url
    except ImportError as err:
        if (err.name or "").partition(".")[0] not in _SERVE_PACKAGES:
            raise
        raise CLIError(
            f"serve needs FastAPI and uvicorn ({err.name} is not installed): "
            "pip install 'kvq-vqa[annotate]'"
        ) from None

    try:
        store = AnnotationStore(args.db)
        images = store.sync_images(scan_images(args.images))
        settings = AnnotateSettings(
            images_dir=Path(args.images).resolve(),
            admin_token=args.admin_token or secrets.token_urlsafe(24),
            glance_seconds=args.glance_seconds,
            cell_order=args.cell_order,
        )
    except AnnotateError as err:
        raise CLIError(err) from None
    print(f"{len(images)} images from {args.images}; database {args.db}")

    def listening(port: int) -> None:
        base = server_url(args.host, port)
        try:
            store.set_server_url(base)
        except AnnotateError as err:  # serving matters more than the recorded address
            log.warning("%s; add-rater links will not know this address", err)
        print(f"admin page: {base}/admin#token={settings.admin_token}", flush=True)

    if not run_server(create_app(store, settings), args.host, args.port, listening):
        raise CLIError(f"cannot listen on {args.host}:{args.port} (see the error above)")
    return 0


def run_issue_link(args: argparse.Namespace) -> int:
    """``add-rater`` and ``reset-token``: print the rater's (new) private link."""
    from kvq.annotate import AnnotateError

    try:
        store = _existing_store(args.db)
        if args.annotate_command == "add-rater":
            token = store.add_rater(args.name)[1]
        else:
            token = store.reset_token(args.name)
        base = args.base_url or _recorded_base_url(store, args.db)
    except AnnotateError as err:
        raise CLIError(err) from None
    link = f"{base.rstrip('/')}/rate#token={token}"
    print(f"rater: {args.name.strip()}\ntoken: {token}\nlink:  {link}")
    return 0


def _recorded_base_url(store: AnnotationStore, db: str) -> str:
    """The address the campaign's server listens on, with a warning where a link to it cannot
    work for the raters as it stands."""
    from urllib.parse import urlsplit

    base = store.server_url()
    if base is None:
        log.warning(
            "no server address recorded in %s (kvq annotate serve records it when it starts); "
            "the link assumes %s, pass --base-url to change it",
            db,
            DEFAULT_BASE_URL,
        )
        return DEFAULT_BASE_URL
    host = urlsplit(base).hostname or ""
    if host in WILDCARD_HOSTS:
        log.warning(
            "the server listens on every address (%s): raters need the address or name they "
            "reach this machine at in the link; pass --base-url http://ADDRESS:%s",
            host or "*",
            urlsplit(base).port,
        )
    return base


def run_progress(args: argparse.Namespace) -> int:
    from kvq.annotate import AnnotateError

    try:
        progress = _existing_store(args.db).progress()
    except AnnotateError as err:
        raise CLIError(err) from None
    print(f"{'rater':<24}{'ratings':>10}{'of':>8}{'done':>7}{'images':>8}")
    for p in progress:
        pct = 100 * p.done // p.total if p.total else 0
        print(f"{p.name:<24}{p.done:>10}{p.total:>8}{pct:>6}%{p.images_complete:>8}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from kvq.annotate import AnnotateError, export_campaign

    check_writable_folder(args.out, "output folder")
    try:
        report = export_campaign(
            _existing_store(args.db),
            args.out,
            screening=not args.no_screening,
            min_raters=args.min_raters,
        )
    except AnnotateError as err:
        raise CLIError(err) from None
    rejected = [r.name for r in report.raters if r.rejected]
    print(f"{report.images_exported} images exported to {args.out}")
    print(f"raters rejected by BT.500 screening: {', '.join(rejected) or 'none'}")
    if report.images_left_out:
        print(
            f"{len(report.images_left_out)} images left out (fewer than {args.min_raters} raters)"
        )
    return 0
