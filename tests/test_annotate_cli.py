"""``kvq annotate`` on the command line: the address in rater links, odd image names."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

import kvq.annotate.server
from kvq.annotate import AnnotateError, AnnotationStore
from kvq.annotate.storage import scan_images
from kvq.cli.main import main
from test_annotate_api import write_images
from test_annotate_limits import stop_server


def link_of(out: str) -> str:
    return out.split("link:  ")[1].split()[0]


def token_of(link: str) -> str:
    return link.split("#token=")[1]


def test_a_rater_link_points_at_the_port_the_server_listens_on(tmp_path: Path, capsys):
    # --port 0: the port is the one the server got, which no configuration names.
    write_images(tmp_path / "images", 1)
    db = tmp_path / "c.sqlite"
    command = [sys.executable, "-m", "kvq.cli.main", "annotate", "serve", "--port", "0"]
    command += ["--images", str(tmp_path / "images"), "--db", str(db), "--admin-token", "a"]
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30.0
        # serve prints the admin page once it listens and has recorded its address.
        while "admin page:" not in (tmp_path / "server.log").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (tmp_path / "server.log").read_text()
                pytest.fail(f"kvq annotate serve did not start:\n{log_text}")
            time.sleep(0.1)
        assert main(["annotate", "add-rater", "ann", "--db", str(db)]) == 0
        out, err = capsys.readouterr()
        link = link_of(out)
        address = urlsplit(link)
        assert address.hostname == "127.0.0.1" and address.port not in (None, 0, 8000)
        state = httpx.get(
            f"{address.scheme}://{address.netloc}/api/rater/state",
            headers={"Authorization": f"Bearer {token_of(link)}"},
            timeout=10.0,
        )
        assert state.status_code == 200 and state.json()["rater"] == "ann"
        assert "warning" not in err
        # reset-token prints a link to the same server.
        assert main(["annotate", "reset-token", "ann", "--db", str(db)]) == 0
        assert link_of(capsys.readouterr().out).startswith(f"http://127.0.0.1:{address.port}/rate")
    finally:
        stop_server(process)
    log_text = (tmp_path / "server.log").read_text()
    assert f"admin page: http://127.0.0.1:{address.port}/admin#token=a" in log_text


@pytest.fixture
def fake_serving(monkeypatch):
    """``kvq annotate serve`` without a server: it 'listens' on port 4321 and returns."""

    def run_server(app, host, port, on_listening, log_level="info") -> bool:
        on_listening(4321)
        return True

    monkeypatch.setattr(kvq.annotate.server, "run_server", run_server)


@pytest.mark.parametrize(
    ("host", "recorded"),
    [("127.0.0.1", "http://127.0.0.1:4321"), ("::1", "http://[::1]:4321")],
)
def test_serve_records_its_address_for_add_rater(tmp_path, capsys, fake_serving, host, recorded):
    write_images(tmp_path / "images", 1)
    db = str(tmp_path / "c.sqlite")
    serve = ["annotate", "serve", "--images", str(tmp_path / "images"), "--db", db]
    assert main([*serve, "--host", host, "--port", "9999", "--admin-token", "a"]) == 0
    assert f"admin page: {recorded}/admin#token=a" in capsys.readouterr().out
    assert AnnotationStore(db).server_url() == recorded
    assert main(["annotate", "add-rater", "bo", "--db", db]) == 0
    assert link_of(capsys.readouterr().out).startswith(f"{recorded}/rate#token=")
    # --base-url wins (a reverse proxy, https), and a trailing slash is no double slash.
    base = ["--base-url", "https://rate.example.org/"]
    assert main(["annotate", "reset-token", "bo", "--db", db, *base]) == 0
    assert link_of(capsys.readouterr().out).startswith("https://rate.example.org/rate#token=")


def test_add_rater_says_when_the_link_may_not_reach_the_server(tmp_path, capsys):
    db = str(tmp_path / "c.sqlite")
    store = AnnotationStore(db)
    assert main(["annotate", "add-rater", "cy", "--db", db]) == 0
    out, err = capsys.readouterr()
    assert link_of(out).startswith("http://127.0.0.1:8000/rate#token=")
    assert (
        err.startswith("kvq annotate: warning: no server address recorded") and "--base-url" in err
    )
    store.set_server_url("http://0.0.0.0:8123")
    assert main(["annotate", "add-rater", "di", "--db", db]) == 0
    out, err = capsys.readouterr()
    assert link_of(out).startswith("http://0.0.0.0:8123/rate#token=")
    assert "listens on every address (0.0.0.0)" in err and "--base-url http://ADDRESS:8123" in err
    assert main(["annotate", "add-rater", "ed", "--db", db, "--base-url", "http://lab:8123"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_help_tells_where_the_link_address_comes_from(capsys):
    with pytest.raises(SystemExit):
        main(["annotate", "add-rater", "--help"])
    assert "kvq annotate serve last listened on" in " ".join(capsys.readouterr().out.split())


ODD_NAMES = {
    "whitespace": ["with space.png", "tab\tname.png", "sub dir/x.png"],
    "comment": ["#hash.png"],
    "encoding": [os.fsdecode(b"\xffbad.png")],
}


def write_odd_images(folder: Path) -> None:
    write_images(folder, 2)
    (folder / "sub dir").mkdir()
    for name in (n for names in ODD_NAMES.values() for n in names):
        (folder / name).write_bytes((folder / "img0.png").read_bytes())


def test_images_with_names_the_label_file_cannot_hold_are_skipped(tmp_path, caplog):
    write_odd_images(tmp_path / "images")
    with caplog.at_level(logging.WARNING, logger="kvq"):
        assert scan_images(tmp_path / "images") == ["img0.png", "img1.png"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert {r.name for r in warnings} == {"kvq.annotate.storage"}
    assert len(warnings) == len(ODD_NAMES)  # one per kind of problem, listing its images
    text = "\n".join(r.getMessage() for r in warnings)
    assert "3 images" in text and "whitespace" in text and "'with space.png'" in text
    assert "'#hash.png'" in text and "comment" in text and "UTF-8" in text
    assert all("rename" in r.getMessage() for r in warnings)
    (tmp_path / "images" / "img0.png").unlink()
    (tmp_path / "images" / "img1.png").unlink()
    with pytest.raises(AnnotateError, match=r"every image .* was skipped"):
        scan_images(tmp_path / "images")


def test_serve_warns_about_a_skipped_image_and_goes_on(tmp_path, capsys, fake_serving):
    write_images(tmp_path / "images", 2)
    (tmp_path / "images" / "img1.png").rename(tmp_path / "images" / "my photo.png")
    db = str(tmp_path / "c.sqlite")
    serve = ["annotate", "serve", "--images", str(tmp_path / "images"), "--db", db]
    assert main(serve) == 0
    out, err = capsys.readouterr()
    assert out.startswith("1 images from")
    assert err.startswith("kvq annotate: warning: skipping 1 image under")
    assert "'my photo.png'" in err and "rename" in err and len(err.splitlines()) == 1
    assert [im.name for im in AnnotationStore(db).images()] == ["img0.png"]
