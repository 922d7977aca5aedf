"""The annotation server's HTTP API (FastAPI TestClient): validation, isolation, admin, export."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kvq.annotate import AnnotateError, AnnotationStore
from kvq.annotate.server import AnnotateSettings, create_app
from kvq.annotate.storage import NUM_CELLS, scan_images
from kvq.cli.main import main
from kvq.data.labels import read_lpvq_labels

with warnings.catch_warnings():
    # Recent Starlette prefers the httpx2 fork and warns about httpx; both work.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADMIN = {"Authorization": "Bearer admin-secret"}


def write_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(21, 28, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")


@pytest.fixture
def campaign(tmp_path: Path):
    write_images(tmp_path / "images", 3)
    store = AnnotationStore(tmp_path / "a.sqlite")
    store.sync_images(scan_images(tmp_path / "images"))
    settings = AnnotateSettings(tmp_path / "images", "admin-secret", glance_seconds=0.2)
    # Entering the client keeps one event loop for the whole test (much faster requests).
    with TestClient(create_app(store, settings)) as client:
        yield store, client


def new_rater(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/api/admin/raters", json={"name": name}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["link"].endswith(f"/rate#token={r.json()['token']}")
    return {"Authorization": f"Bearer {r.json()['token']}"}


def image_ids(client: TestClient, auth: dict[str, str]) -> list[int]:
    return [im["id"] for im in client.get("/api/rater/state", headers=auth).json()["images"]]


def test_pages_and_static_files_are_served(campaign):
    _, client = campaign
    for path in ("/rate", "/admin", "/static/common.js", "/static/rate.js", "/static/admin.js"):
        assert client.get(path).status_code == 200, path
    assert client.get("/", follow_redirects=False).headers["location"] == "/rate"


def test_rating_is_stored_and_resumed(campaign):
    _, client = campaign
    alice = new_rater(client, "alice")
    state = client.get("/api/rater/state", headers=alice).json()
    assert state["rater"] == "alice" and state["glance_seconds"] == 0.2
    assert len(state["criteria"]) == 5 and len(state["images"]) == 3
    first = state["images"][0]["id"]
    for cell, score in ((0, 3.5), (48, 1), (7, 5), (7, 4.5)):  # the last one replaces a score
        r = client.put(
            f"/api/rater/images/{first}/cells/{cell}", json={"score": score}, headers=alice
        )
        assert r.status_code == 200, r.text
    assert r.json() == {"image_done": 3}
    got = client.get(f"/api/rater/images/{first}", headers=alice).json()
    assert got["scores"] == {"0": 3.5, "7": 4.5, "48": 1.0}
    assert sorted(got["order"]) == list(range(NUM_CELLS))
    assert got["order"] == client.get(f"/api/rater/images/{first}", headers=alice).json()["order"]
    done = {
        im["id"]: im["done"]
        for im in client.get("/api/rater/state", headers=alice).json()["images"]
    }
    assert done[first] == 3 and sum(done.values()) == 3
    assert client.get(f"/api/rater/images/{first}/file", headers=alice).content[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "body",
    [
        {"score": 0.5},
        {"score": 5.5},
        {"score": 3.25},
        {"score": "3"},
        {"score": True},
        {"score": None},
        {"score": float("nan")},
        {},
        {"score": 3, "cell": 2},
    ],
    ids=["low", "high", "quarter", "string", "bool", "null", "nan", "missing", "extra-field"],
)
def test_bad_scores_are_rejected_and_not_stored(campaign, body):
    store, client = campaign
    alice = new_rater(client, "alice")
    first = image_ids(client, alice)[0]
    if body.get("score") != body.get("score"):  # NaN is not valid JSON; send it raw
        r = client.put(
            f"/api/rater/images/{first}/cells/0",
            content=b'{"score": NaN}',
            headers={**alice, "Content-Type": "application/json"},
        )
    else:
        r = client.put(f"/api/rater/images/{first}/cells/0", json=body, headers=alice)
    assert r.status_code == 422, r.text
    assert store.ratings() == []


MARKER = "echo" * 750  # 3000 characters: the body stays under the size limit


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("put", "/api/rater/images/{image}/cells/0", {"score": MARKER}),
        ("put", "/api/rater/images/{image}/cells/0", {"score": 3, MARKER: 1}),
        ("put", "/api/rater/images/{image}/cells/0", {"score": [1] * 1300}),
        ("put", "/api/rater/images/{image}/cells/" + MARKER, {"score": 3}),
        ("put", "/api/rater/images/{image}/cells/0", '{"score": "' + MARKER),
        ("post", "/api/admin/raters", {"name": [MARKER]}),
        ("get", "/api/admin/export/labels?min_raters=" + MARKER, None),
        ("post", "/api/admin/raters/reset-token", {"name": MARKER}),
        ("put", "/api/rater/images/{image}/cells/" + "9" * 4000, {"score": 3}),
    ],
    ids=[
        "score",
        "extra-field",
        "long-list",
        "cell",
        "broken-json",
        "rater-name",
        "query",
        "unknown-rater",
        "huge-cell",
    ],
)
def test_validation_errors_are_short_and_never_repeat_the_input(campaign, method, path, body):
    _, client = campaign
    alice = new_rater(client, "alice")
    auth = ADMIN if "/admin/" in path else alice
    url = path.format(image=image_ids(client, alice)[0])
    sent = {"content": body} if isinstance(body, str) else {"json": body}
    r = client.request(method, url, headers={**auth, "Content-Type": "application/json"}, **sent)
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and len(r.content) < 300, r.text
    # At most a clipped field name comes back (an unknown key's first 32 characters).
    flat = r.text.replace(" ", "")
    assert MARKER[:40] not in flat and "[1," not in flat, r.text


NOT_CANONICAL = [" 1", "1 ", "1.0", "01", "+1", "1_0", "1e0", "-0", "\u0661"]


@pytest.mark.parametrize("cell", ["-1", "49", "1000", "abc", "2.5", *NOT_CANONICAL])
def test_bad_cells_are_rejected(campaign, cell):
    store, client = campaign
    alice = new_rater(client, "alice")
    first = image_ids(client, alice)[0]
    r = client.put(f"/api/rater/images/{first}/cells/{cell}", json={"score": 3}, headers=alice)
    assert r.status_code == 422, r.text
    assert store.ratings() == []


def image_requests(image: str) -> list[tuple[str, str]]:
    """(method, path) of every rater endpoint that takes an image id."""
    base = f"/api/rater/images/{image}"
    return [("get", base), ("get", f"{base}/file"), ("put", f"{base}/cells/0")]


@pytest.mark.parametrize("written", ["{} ", "{}.0", "0{}", "+{}"])
def test_image_ids_are_accepted_only_in_their_canonical_form(campaign, written):
    store, client = campaign
    alice = new_rater(client, "alice")
    for method, path in image_requests(written.format(image_ids(client, alice)[0])):
        r = client.request(method, path, json={"score": 3}, headers=alice)
        assert r.status_code == 422, path
    assert store.ratings() == []


def test_unknown_or_retired_images_are_not_found(campaign, tmp_path):
    store, client = campaign
    alice = new_rater(client, "alice")
    ids = image_ids(client, alice)
    # Ids beyond SQLite's 64-bit integers cannot even be looked up: still just not found.
    for missing in (max(ids) + 1, -1, 2**63, -(2**63) - 1, 10**40):
        for method, path in image_requests(str(missing)):
            r = client.request(method, path, json={"score": 3}, headers=alice)
            assert r.status_code == 404, path
    # An image that left the folder keeps its ratings but is no longer offered or ratable.
    client.put(f"/api/rater/images/{ids[0]}/cells/0", json={"score": 2}, headers=alice)
    names = {im.id: im.name for im in store.images()}
    store.sync_images([n for i, n in names.items() if i != ids[0]])
    assert ids[0] not in image_ids(client, alice)
    r = client.put(f"/api/rater/images/{ids[0]}/cells/1", json={"score": 3}, headers=alice)
    assert r.status_code == 404
    assert [(r.image, r.score) for r in store.ratings()] == [(names[ids[0]], 2.0)]


def test_raters_cannot_see_or_change_each_others_ratings(campaign):
    store, client = campaign
    alice, bob = new_rater(client, "alice"), new_rater(client, "bob")
    image = image_ids(client, alice)[0]
    client.put(f"/api/rater/images/{image}/cells/5", json={"score": 4}, headers=alice)
    assert client.get(f"/api/rater/images/{image}", headers=bob).json()["scores"] == {}
    assert (
        sum(im["done"] for im in client.get("/api/rater/state", headers=bob).json()["images"]) == 0
    )
    client.put(f"/api/rater/images/{image}/cells/5", json={"score": 1}, headers=bob)
    assert client.get(f"/api/rater/images/{image}", headers=alice).json()["scores"] == {"5": 4.0}
    by_rater = {(r.rater, r.cell): r.score for r in store.ratings()}
    assert by_rater == {("alice", 5): 4.0, ("bob", 5): 1.0}


def test_tokens_and_admin_protection(campaign):
    _, client = campaign
    alice = new_rater(client, "alice")
    assert client.get("/api/rater/state").status_code == 401
    assert (
        client.get("/api/rater/state", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    assert client.get("/api/rater/state", headers={"Authorization": "Basic x"}).status_code == 401
    for path in (
        "/api/admin/progress",
        "/api/admin/export/labels",
        "/api/admin/export/ratings.csv",
    ):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=alice).status_code == 403
        assert client.get(path, headers={"Authorization": "Bearer admin-secreT"}).status_code == 403
        assert client.get(path, headers=ADMIN).status_code == 200
    r = client.post("/api/admin/raters", json={"name": "mallory"}, headers=alice)
    assert r.status_code == 403
    assert client.get("/api/rater/state", headers=alice).headers["cache-control"] == "no-store"


def test_rater_names_are_validated_and_tokens_can_be_reissued(campaign):
    _, client = campaign
    alice = new_rater(client, "alice")
    for name in ("alice", "", "   ", "x" * 65, "tab\there"):
        r = client.post("/api/admin/raters", json={"name": name}, headers=ADMIN)
        assert r.status_code == 422, name
    r = client.post("/api/admin/raters/reset-token", json={"name": "alice"}, headers=ADMIN)
    assert r.status_code == 200
    assert client.get("/api/rater/state", headers=alice).status_code == 401
    fresh = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.get("/api/rater/state", headers=fresh).json()["rater"] == "alice"
    r = client.post("/api/admin/raters/reset-token", json={"name": "nobody"}, headers=ADMIN)
    assert r.status_code == 422


def rate_all(store: AnnotationStore, auth: dict[str, str], image: int, scores: np.ndarray) -> None:
    # Bulk ratings go straight to the store: the HTTP path is covered by the tests above.
    rater = store.rater_for_token(auth["Authorization"].removeprefix("Bearer "))
    for cell, score in enumerate(scores.ravel()):
        store.rate(rater, image, cell, float(score))


def test_export_gives_mean_of_complete_ratings_in_lpvq_format(campaign, tmp_path):
    store, client = campaign
    rng = np.random.default_rng(1)
    raters = [new_rater(client, name) for name in ("alice", "bob")]
    ids = sorted(image_ids(client, raters[0]))
    names = {im.id: im.name for im in store.images()}
    given = rng.integers(2, 11, size=(2, 2, 7, 7)) / 2  # raters × images × grid, 1 to 5
    for k, auth in enumerate(raters):
        for j in range(2):
            rate_all(store, auth, ids[j], given[k, j])
    # bob rates a third image only partly: it must be left out (incomplete) of the labels.
    client.put(f"/api/rater/images/{ids[2]}/cells/0", json={"score": 5}, headers=raters[1])

    r = client.get("/api/admin/export/labels?screening=false", headers=ADMIN)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    path = tmp_path / "labels.txt"
    path.write_text(r.text, encoding="utf-8")
    labels = read_lpvq_labels(path)
    assert list(labels) == [names[ids[0]], names[ids[1]]]
    for j in range(2):
        np.testing.assert_allclose(labels[names[ids[j]]], given[:, j].mean(axis=0), atol=1e-3)

    report = client.get("/api/admin/export/report?min_raters=2", headers=ADMIN).json()
    assert report["images_exported"] == 2 and report["images_left_out"] == {names[ids[2]]: 0}
    assert [r["images_complete"] for r in report["raters"]] == [2, 2]
    too_few = client.get("/api/admin/export/labels?min_raters=3", headers=ADMIN)
    assert too_few.status_code == 200 and too_few.text == ""

    rows = list(
        csv.DictReader(io.StringIO(client.get("/api/admin/export/ratings.csv", headers=ADMIN).text))
    )
    assert len(rows) == 2 * 2 * NUM_CELLS + 1
    first = next(
        r for r in rows if r["rater"] == "bob" and r["image"] == names[ids[1]] and r["cell"] == "9"
    )
    assert (first["row"], first["col"], float(first["score"])) == ("1", "2", given[1, 1, 1, 2])
    progress = client.get("/api/admin/progress", headers=ADMIN).json()
    assert progress["images"] == 3
    assert [(p["name"], p["done"], p["total"]) for p in progress["raters"]] == [
        ("alice", 98, 147),
        ("bob", 99, 147),
    ]


def test_cli_add_rater_progress_and_export(tmp_path, capsys):
    write_images(tmp_path / "images", 1)
    db = tmp_path / "c.sqlite"
    store = AnnotationStore(db)
    (image,) = store.sync_images(scan_images(tmp_path / "images"))
    assert main(["annotate", "add-rater", "dora", "--db", str(db)]) == 0
    token = capsys.readouterr().out.split("token: ")[1].split()[0]
    dora = store.rater_for_token(token)
    assert dora is not None and dora.name == "dora"
    for cell in range(NUM_CELLS):
        store.rate(dora, image.id, cell, 1 + (cell % 9) / 2)
    assert main(["annotate", "add-rater", "dora", "--db", str(db)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["annotate", "reset-token", "dora", "--db", str(db)]) == 0
    new_token = capsys.readouterr().out.split("token: ")[1].split()[0]
    assert store.rater_for_token(token) is None
    assert store.rater_for_token(new_token) == dora
    assert main(["annotate", "progress", "--db", str(db)]) == 0
    assert "100%" in capsys.readouterr().out
    assert main(["annotate", "progress", "--db", str(tmp_path / "typo.sqlite")]) == 2
    assert "no campaign database" in capsys.readouterr().err
    assert not (tmp_path / "typo.sqlite").exists()
    assert main(["annotate", "export", str(tmp_path / "out"), "--db", str(db)]) == 0
    labels = read_lpvq_labels(tmp_path / "out" / "lpvq_labels.txt")
    expected = (1 + (np.arange(NUM_CELLS) % 9) / 2).reshape(7, 7)
    np.testing.assert_allclose(labels["img0.png"], expected)
    assert (tmp_path / "out" / "ratings.csv").read_text().count("\n") == NUM_CELLS + 1
    assert '"rejected": false' in (tmp_path / "out" / "screening.json").read_text()


def test_image_folder_validation(tmp_path):
    with pytest.raises(AnnotateError, match="does not exist"):
        scan_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotateError, match="no images"):
        scan_images(tmp_path / "empty")
    write_images(tmp_path / "bad", 1)
    (tmp_path / "bad" / "img0.png").rename(tmp_path / "bad" / "with space.png")
    with pytest.raises(AnnotateError, match="every image"):  # skipped (test_annotate_cli.py)
        scan_images(tmp_path / "bad")
    write_images(tmp_path / "nested" / "sub", 2)
    assert scan_images(tmp_path / "nested") == ["sub/img0.png", "sub/img1.png"]
    with pytest.raises(AnnotateError, match="cannot open"):
        AnnotationStore(tmp_path / "missing-dir" / "db.sqlite")
    with pytest.raises(AnnotateError):
        AnnotateSettings(tmp_path, "", glance_seconds=1)
    with pytest.raises(AnnotateError):
        AnnotateSettings(tmp_path, "t", cell_order="spiral")  # type: ignore[arg-type]
