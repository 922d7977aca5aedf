"""The annotation web app (FastAPI): rater and admin JSON APIs plus the static pages.

Authentication is a bearer token in the ``Authorization`` header. A rater's token identifies the
rater, and every rater endpoint acts on that rater only (no endpoint takes a rater id), so one
rater can neither read nor change another's ratings. Admin endpoints need the admin token. The
pages receive their token in the URL fragment (``/rate#token=…``), which browsers never send to
the server, so tokens do not end up in access logs.

Request bodies are small JSON objects (a score, a rater name): :class:`BodyLimit` refuses any
body over :data:`MAX_BODY_BYTES` with 413, and endpoints read their body only after the token
was checked, so an unauthenticated client cannot make the server hold a large body.
"""

from __future__ import annotations

import hmac
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kvq.annotate.export import compute_mos, ratings_csv
from kvq.annotate.storage import (
    NUM_CELLS,
    AnnotateError,
    AnnotationStore,
    Rater,
    validate_score,
)
from kvq.data.labels import LPVQ_GRID, write_lpvq_labels

STATIC_DIR = Path(__file__).parent / "static"
# The largest request body accepted: a score or a rater name takes well under 200 bytes.
MAX_BODY_BYTES = 4096
# A validation error's answer clips each part of the place it names and its message to these
# many characters (an unknown field's name is client input).
MAX_LOCATION_PART = 32
MAX_ERROR_MESSAGE = 160
# How an integer in a path is written: " 1", "1.0", "01" or "+1" are not 1.
CANONICAL_INTEGER = re.compile(r"0|-?[1-9][0-9]*")

# The five criteria of the LPVQ protocol (supplement Tab. 3), shown next to every cell.
CRITERIA: tuple[tuple[str, str], ...] = (
    (
        "Sharpness",
        "Are edges and fine textures crisp, or smeared by defocus, motion blur or camera shake?",
    ),
    ("Noise", "Is the region clean, or covered by grain, speckles or colour noise?"),
    (
        "Compression artifacts",
        "Do you see blocks, ringing around edges, banding in smooth areas or smeared detail?",
    ),
    (
        "Exposure and colour",
        "Are brightness, contrast and colours natural, without blown highlights, crushed "
        "shadows or colour casts?",
    ),
    (
        "Overall quality of the region",
        "All of the above together: how good does this region look? Judge the picture "
        "quality, not how interesting the content is.",
    ),
)
SCALE_LABELS = {1: "Bad", 2: "Poor", 3: "Fair", 4: "Good", 5: "Excellent"}


@dataclass(frozen=True)
class AnnotateSettings:
    """How the server presents the campaign.

    ``glance_seconds``: how long the whole image is shown before its cells are rated.
    ``cell_order``: ``"shuffled"`` (a fixed random order per rater and image, so that no
    spatial sweep biases neighbouring cells) or ``"row-major"``.
    """

    images_dir: Path
    admin_token: str
    glance_seconds: float = 3.0
    cell_order: Literal["shuffled", "row-major"] = "shuffled"

    def __post_init__(self) -> None:
        if not self.admin_token:
            raise AnnotateError("the admin token must not be empty")
        if not 0 <= self.glance_seconds <= 60:
            raise AnnotateError(f"glance_seconds must be in 0..60, got {self.glance_seconds}")
        if self.cell_order not in ("shuffled", "row-major"):
            raise AnnotateError(f"cell_order must be 'shuffled' or 'row-major': {self.cell_order}")


class ScoreIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    score: float


class RaterIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    name: str


def _canonical_integer(value: object) -> object:
    if isinstance(value, str) and not CANONICAL_INTEGER.fullmatch(value):
        raise ValueError("must be a plain decimal integer")
    return value


# An image id or cell index in a path: only its canonical decimal form is accepted.
PathInt = Annotated[int, BeforeValidator(_canonical_integer)]

BodyModel = TypeVar("BodyModel", bound=BaseModel)


def json_body(model: type[BodyModel]) -> Any:
    """A dependency that parses the JSON request body as ``model``.

    FastAPI reads a body parameter before any dependency runs; as a dependency declared after
    the token's, the body is read only once the caller is authenticated.
    """

    async def parse(request: Request) -> BodyModel:
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as err:
            errors = err.errors(include_url=False, include_input=False)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in errors]
            ) from None

    return Depends(parse)


class BodyTooLarge(HTTPException):
    """413 for a request body over :data:`MAX_BODY_BYTES`; the connection is closed after it, so
    the server does not read the rest of the body."""

    def __init__(self) -> None:
        detail = f"the request body is larger than {MAX_BODY_BYTES} bytes"
        super().__init__(413, detail, headers={"Connection": "close"})


class BodyLimit:
    """ASGI middleware that refuses request bodies over :data:`MAX_BODY_BYTES` with 413.

    A declared ``Content-Length`` over the limit is refused before the app runs; a body without
    one (chunked) is counted while the app reads it, and reading stops at the limit.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            err = BodyTooLarge()
            response = JSONResponse({"detail": err.detail}, err.status_code, err.headers)
            await response(scope, receive, send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise BodyTooLarge
            return message

        await self.app(scope, bounded_receive, send)


def validation_detail(errors: Sequence[Any]) -> str:
    """A one-line account of the first of ``errors`` (where and what), without the input.

    FastAPI's default answer repeats every error with its input: a large invalid body came back
    whole, and building that answer on the event loop stalled every other request.
    """
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(_clip(str(part), MAX_LOCATION_PART) for part in first.get("loc", ()))
    what = _clip(str(first.get("msg", "bad value")), MAX_ERROR_MESSAGE)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid {where}: {what}{more}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def current_rater(request: Request, authorization: str | None = Header(default=None)) -> Rater:
    rater = request.app.state.store.rater_for_token(_bearer(authorization))
    if rater is None:
        raise HTTPException(401, "unknown rater token")
    return rater


def require_admin(request: Request, authorization: str | None = Header(default=None)) -> None:
    given = _bearer(authorization).encode("utf-8")
    if not hmac.compare_digest(given, request.app.state.settings.admin_token.encode("utf-8")):
        raise HTTPException(403, "wrong admin token")


RaterDep = Annotated[Rater, Depends(current_rater)]
ScoreBody = Annotated[ScoreIn, json_body(ScoreIn)]
RaterBody = Annotated[RaterIn, json_body(RaterIn)]


def image_order(rater: Rater, image_ids: list[int]) -> list[int]:
    """The rater's fixed presentation order of the images (shuffled per rater, as BT.500 asks)."""
    order = sorted(image_ids)
    random.Random(f"images/{rater.id}").shuffle(order)
    return order


def cell_order(rater: Rater, image_id: int, how: str) -> list[int]:
    order = list(range(NUM_CELLS))
    if how == "shuffled":
        random.Random(f"cells/{rater.id}/{image_id}").shuffle(order)
    return order


def create_app(store: AnnotationStore, settings: AnnotateSettings) -> FastAPI:
    """Build the app over ``store``; images are served from ``settings.images_dir``."""
    app = FastAPI(title="kvq annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.settings = settings
    app.add_middleware(BodyLimit)  # inside no_cache_api, so a 413 gets its headers too

    @app.middleware("http")
    async def no_cache_api(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(err.errors())}, status_code=422)

    @app.exception_handler(AnnotateError)
    async def bad_input(request: Request, err: AnnotateError) -> JSONResponse:
        return JSONResponse({"detail": _clip(str(err), MAX_ERROR_MESSAGE)}, status_code=422)

    def active_image(image_id: int) -> Any:
        try:
            return store.image(image_id)
        except AnnotateError as err:
            raise HTTPException(404, str(err)) from None

    # pages --------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/rate")

    @app.get("/rate", include_in_schema=False)
    def rate_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "rate.html")

    @app.get("/admin", include_in_schema=False)
    def admin_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "admin.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # rater API ----------------------------------------------------------------------------
    @app.get("/api/rater/state")
    def rater_state(rater: RaterDep) -> dict[str, Any]:
        done = store.cells_done(rater)
        ids = image_order(rater, [im.id for im in store.images()])
        return {
            "rater": rater.name,
            "grid": LPVQ_GRID,
            "glance_seconds": settings.glance_seconds,
            "criteria": [{"name": n, "text": t} for n, t in CRITERIA],
            "scale": [{"score": s, "label": label} for s, label in SCALE_LABELS.items()],
            "images": [{"id": i, "done": done.get(i, 0)} for i in ids],
        }

    @app.get("/api/rater/images/{image_id}")
    def rater_image(image_id: PathInt, rater: RaterDep) -> dict[str, Any]:
        active_image(image_id)
        scores = store.cell_scores(rater, image_id)
        return {
            "id": image_id,
            "order": cell_order(rater, image_id, settings.cell_order),
            "scores": {str(cell): score for cell, score in scores.items()},
        }

    @app.get("/api/rater/images/{image_id}/file")
    def rater_image_file(image_id: PathInt, rater: RaterDep) -> FileResponse:
        path = settings.images_dir / active_image(image_id).name
        if not path.is_file():
            raise HTTPException(404, "the image file is missing on the server")
        return FileResponse(path)

    @app.put("/api/rater/images/{image_id}/cells/{cell}")
    # rater before body: the token is checked before the body is read.
    def rate_cell(
        image_id: PathInt, cell: PathInt, rater: RaterDep, body: ScoreBody
    ) -> dict[str, Any]:
        active_image(image_id)
        store.rate(rater, image_id, cell, validate_score(body.score))
        return {"image_done": len(store.cell_scores(rater, image_id))}

    # admin API ----------------------------------------------------------------------------
    admin = [Depends(require_admin)]

    @app.get("/api/admin/progress", dependencies=admin)
    def progress() -> dict[str, Any]:
        return {"images": len(store.images()), "raters": [asdict(p) for p in store.progress()]}

    def link(request: Request, token: str) -> str:
        return f"{str(request.base_url).rstrip('/')}/rate#token={token}"

    @app.post("/api/admin/raters", dependencies=admin, status_code=201)
    def add_rater(body: RaterBody, request: Request) -> dict[str, str]:
        rater, token = store.add_rater(body.name)
        return {"name": rater.name, "token": token, "link": link(request, token)}

    @app.post("/api/admin/raters/reset-token", dependencies=admin)
    def reset_token(body: RaterBody, request: Request) -> dict[str, str]:
        token = store.reset_token(body.name)
        return {"name": body.name, "token": token, "link": link(request, token)}

    @app.get("/api/admin/export/labels", dependencies=admin)
    def export_labels(screening: bool = True, min_raters: int = 1) -> PlainTextResponse:
        grids, _ = compute_mos(store.ratings(), screening=screening, min_raters=min_raters)
        return PlainTextResponse(
            _lpvq_text(grids),
            headers={"Content-Disposition": 'attachment; filename="lpvq_labels.txt"'},
        )

    @app.get("/api/admin/export/report", dependencies=admin)
    def export_report(screening: bool = True, min_raters: int = 1) -> JSONResponse:
        _, report = compute_mos(store.ratings(), screening=screening, min_raters=min_raters)
        return JSONResponse(asdict(report))

    @app.get("/api/admin/export/ratings.csv", dependencies=admin)
    def export_ratings() -> PlainTextResponse:
        return PlainTextResponse(
            ratings_csv(store.ratings()),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="ratings.csv"'},
        )

    return app


def _lpvq_text(grids: dict) -> str:
    # write_lpvq_labels is the one writer of the format; go through a temporary file.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.txt"
        write_lpvq_labels(path, grids)
        return path.read_text(encoding="utf-8")


def server_url(host: str, port: int) -> str:
    """The ``http://`` address of a server listening on ``host``:``port``."""
    if ":" in host and not host.startswith("["):  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}"


def run_server(
    app: FastAPI, host: str, port: int, on_listening: Callable[[int], None], log_level: str = "info"
) -> bool:
    """Serve ``app`` with uvicorn until stopped (as ``uvicorn.run``); False if it never started.

    ``on_listening(port)`` is called once the socket is bound, with the port it got (``port=0``
    picks a free one), before any request is served: an address recorded or printed there is
    one the server answers at, not one it failed to bind.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                on_listening(self.servers[0].sockets[0].getsockname()[1])

    server = _Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    try:
        server.run()
    except SystemExit:
        if server.started:
            raise
        return False  # uvicorn's startup logged why (e.g. the port is taken) and exits
    return server.started


class BackgroundServer:
    """Run ``app`` with uvicorn in a daemon thread (tests, notebooks); ``port=0`` picks a free one.

    Use as a context manager; ``url`` is the base address once entered.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.host = host
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 15.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the annotation server did not start")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10.0)
