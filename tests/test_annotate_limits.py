"""What a hostile or broken client can do to the annotation server: oversized bodies, bodies
sent before authentication, all of it while many raters rate. Raw sockets against a real
uvicorn server, so that the tests see when the server answers, not only what."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from kvq.annotate import AnnotationStore
from kvq.annotate.server import MAX_BODY_BYTES, AnnotateSettings, BackgroundServer, create_app
from kvq.annotate.storage import NUM_CELLS, scan_images
from test_annotate_api import write_images
from test_annotate_concurrency import expected_score

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


# The load test: raters at once with clients that send oversized bodies, against `kvq annotate
# serve` in its own process (so that its memory can be read).
RATERS = 20
IMAGES = 4
WARM_UP_S = 1.0  # raters only: the server's threads and connections exist before the baseline
LOAD_S = 3.0  # raters and oversized bodies
OVERSIZED_BYTES = 32 * 2**20
MAX_RSS_GROWTH = 100 * 2**20
MAX_PAGE_WAIT_S = 5.0  # an unrelated GET /rate waited 23.5 s behind one large invalid body
REQUEST_TIMEOUT_S = 20.0


@dataclass
class Rated:
    """One rater's session: the acknowledged ratings {(image id, cell): score}, and failures."""

    acked: dict[tuple[int, int], float]
    failures: list[str]


def memory_bytes(pid: int, field: str) -> int:
    """VmRSS (resident now) or VmHWM (resident at the peak) of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def start_server(tmp_path: Path, port: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "kvq.cli.main", "annotate", "serve"]
    command += ["--images", str(tmp_path / "images"), "--db", str(tmp_path / "c.sqlite")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--admin-token", ADMIN_TOKEN]
    command += ["--glance-seconds", "0"]
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/rate", timeout=1.0).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    stop_server(process)
    pytest.fail("kvq annotate serve did not start:\n" + (tmp_path / "server.log").read_text())


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # still busy with what it was sent
        process.kill()
        process.wait()


def rate_until(url: str, token: str, rater: int, stop: float) -> Rated:
    """Rate cell after cell until ``stop`` (at least one), each cell once, so each acknowledged
    rating must be stored exactly once; the first failure ends the session."""
    done = Rated({}, [])
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=auth, timeout=REQUEST_TIMEOUT_S) as client:
        try:
            ids = sorted(im["id"] for im in client.get("/api/rater/state").json()["images"])
            for j, image in enumerate(ids):
                for cell in range(NUM_CELLS):
                    if done.acked and time.monotonic() > stop:
                        return done
                    score = expected_score(rater, j, cell)
                    r = client.put(f"/api/rater/images/{image}/cells/{cell}", json={"score": score})
                    if r.status_code != 200 or r.json()["image_done"] != cell + 1:
                        done.failures.append(f"{r.status_code} {r.text[:100]}")
                        return done
                    done.acked[image, cell] = score
        except httpx.HTTPError as err:
            done.failures.append(repr(err))
    return done


def send_oversized(
    url: str, body: bytes, token: str | None, chunked: bool, start: float, stop: float
) -> Counter[str]:
    """Send ``body`` again and again from ``start`` to ``stop`` → how each attempt ended: "413",
    "closed" (the server answered and closed while the body was being sent) or what else."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    view = memoryview(body)
    outcomes: Counter[str] = Counter()
    time.sleep(max(0.0, start - time.monotonic()))
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < stop:
            chunks = (view[i : i + 2**16] for i in range(0, len(view), 2**16))
            try:
                r = client.put("/api/rater/images/1/cells/0", content=chunks if chunked else body)
                outcomes[str(r.status_code)] += 1
            except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
                outcomes["closed"] += 1
            except httpx.TimeoutException:
                outcomes["timeout"] += 1
    return outcomes


def longest_page_wait(url: str, start: float, stop: float) -> float:
    """The longest an unrelated GET /rate took, asked every 50 ms from ``start`` to ``stop``."""
    time.sleep(max(0.0, start - time.monotonic()))
    longest = 0.0
    while time.monotonic() < stop:
        began = time.monotonic()
        try:
            httpx.get(f"{url}/rate", timeout=REQUEST_TIMEOUT_S).raise_for_status()
        except httpx.TimeoutException:
            pass
        longest = max(longest, time.monotonic() - began)
        time.sleep(0.05)
    return longest


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads memory from /proc")
def test_many_raters_and_oversized_bodies_at_once(tmp_path: Path, free_port: int):
    write_images(tmp_path / "images", IMAGES)
    store = AnnotationStore(tmp_path / "c.sqlite")
    store.sync_images(scan_images(tmp_path / "images"))
    tokens = [store.add_rater(f"rater{k}")[1] for k in range(RATERS)]
    store.close()
    body = b'{"score": [' + b"1," * (OVERSIZED_BYTES // 2) + b"1]}"  # valid JSON, bad score
    # No token, a wrong one, a rater's with Content-Length and a rater's chunked.
    senders = [(None, False), ("nope", False), (tokens[0], False), (tokens[1], True)]
    process, url = start_server(tmp_path, free_port)
    try:
        load = time.monotonic() + WARM_UP_S
        stop = load + LOAD_S
        with ThreadPoolExecutor(RATERS + len(senders) + 1) as pool:
            raters = [pool.submit(rate_until, url, t, k, stop) for k, t in enumerate(tokens)]
            oversized = [pool.submit(send_oversized, url, body, *s, load, stop) for s in senders]
            page_wait = pool.submit(longest_page_wait, url, load, stop)
            time.sleep(max(0.0, load - time.monotonic()))
            Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            baseline = memory_bytes(process.pid, "VmRSS")
            outcomes = [f.result() for f in oversized]
            growth = memory_bytes(process.pid, "VmHWM") - baseline
            sessions = [f.result() for f in raters]
    finally:
        stop_server(process)

    assert growth < MAX_RSS_GROWTH, f"the server grew by {growth / 2**20:.0f} MB"
    assert page_wait.result() < MAX_PAGE_WAIT_S, f"GET /rate took {page_wait.result():.1f} s"
    assert all(o and set(o) <= {"413", "closed"} for o in outcomes), outcomes
    assert [s.failures for s in sessions] == [[]] * RATERS
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    reopened = AnnotationStore(tmp_path / "c.sqlite")  # what is on disk
    stored = [(r.rater, r.image, r.cell, r.score) for r in reopened.ratings()]
    names = {im.id: im.name for im in reopened.images()}
    reopened.close()
    acknowledged = [
        (f"rater{k}", names[image], cell, score)
        for k, session in enumerate(sessions)
        for (image, cell), score in session.acked.items()
    ]
    assert sorted(stored) == sorted(acknowledged)
