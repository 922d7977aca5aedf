"""What a hostile or broken client can do to the annotation server: oversized bodies, bodies
sent before authentication. Raw sockets against a real uvicorn server, so that the test sees
when the server answers, not only what."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kvq.annotate import AnnotationStore
from kvq.annotate.server import MAX_BODY_BYTES, AnnotateSettings, BackgroundServer, create_app
from kvq.annotate.storage import scan_images
from test_annotate_api import write_images

ADMIN_TOKEN = "admin-secret"
# How long a test waits for an answer that must come before the body is complete.
ANSWER_TIMEOUT_S = 3.0


@pytest.fixture
def server(tmp_path: Path):
    """(host, port, rater token, image id) of a running server with one image and one rater."""
    write_images(tmp_path / "images", 1)
    store = AnnotationStore(tmp_path / "c.sqlite")
    (image,) = store.sync_images(scan_images(tmp_path / "images"))
    _, token = store.add_rater("alice")
    app = create_app(store, AnnotateSettings(tmp_path / "images", ADMIN_TOKEN, glance_seconds=0))
    with BackgroundServer(app) as running:
        address = urlsplit(running.url)
        yield address.hostname, address.port, token, image.id
    store.close()


def answer_to(host: str, port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str]]:
    """Send a request head and part of its body, keep the connection open and return the status
    and headers of the answer; fails when no answer comes within ANSWER_TIMEOUT_S."""
    with socket.create_connection((host, port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(head.encode("ascii") + b"\r\n" + body)
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"no answer within {ANSWER_TIMEOUT_S} s to {head.splitlines()[0]}")
            if not chunk:
                pytest.fail(f"connection closed without an answer to {head.splitlines()[0]}")
            received += chunk
    status_line, *lines = received.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers


def request_head(method: str, path: str, token: str | None, *framing: str) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join([*lines, *framing]) + "\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n"


@pytest.mark.parametrize("who", ["rater", "no-token", "wrong-token"])
def test_a_declared_oversized_body_is_refused_before_it_is_sent(server, who):
    host, port, token, image = server
    token = {"rater": token, "no-token": None, "wrong-token": "nope"}[who]
    head = request_head(
        "PUT", f"/api/rater/images/{image}/cells/0", token, "Content-Length: 200000000"
    )
    status, headers = answer_to(host, port, head)  # not one byte of the body is sent
    assert status == 413
    assert headers["connection"] == "close"


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/api/rater/images/{image}/cells/0", None, 401),
        ("/api/rater/images/{image}/cells/0", "nope", 401),
        ("/api/admin/raters", None, 401),
        ("/api/admin/raters", "nope", 403),
        ("/api/admin/raters", "{rater}", 403),
    ],
)
def test_a_body_is_read_only_after_the_token_is_checked(server, path, token, status):
    host, port, rater, image = server
    token = token.format(rater=rater) if token else None
    method = "PUT" if "cells" in path else "POST"
    head = request_head(method, path.format(image=image), token, "Transfer-Encoding: chunked")
    # The body has begun and is never finished: only a server that does not wait for it answers.
    assert answer_to(host, port, head, chunk(b'{"score": '))[0] == status


def test_a_body_without_length_is_read_only_up_to_the_limit(server):
    host, port, token, image = server
    head = request_head(
        "PUT", f"/api/rater/images/{image}/cells/0", token, "Transfer-Encoding: chunked"
    )
    body = chunk(b'{"score": [' + b"1," * MAX_BODY_BYTES)  # no final chunk: it never ends
    status, headers = answer_to(host, port, head, body)
    assert status == 413
    assert headers["connection"] == "close"


def test_a_small_body_is_still_accepted(server):
    host, port, token, image = server
    body = b'{"score": 4.5}'
    head = request_head(
        "PUT", f"/api/rater/images/{image}/cells/0", token, f"Content-Length: {len(body)}"
    )
    assert answer_to(host, port, head, body)[0] == 200
