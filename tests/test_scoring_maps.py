"""Map file names: each input's whole name below the folder it was found under."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvq.scoring.batch import find_inputs
from kvq.scoring.maps import MapsError, check_map_files, map_files
from video_factory import make_image


def test_find_inputs_records_the_folder_each_input_was_found_under(tmp_path):
    (tmp_path / "v" / "sub").mkdir(parents=True)
    for name in ("v/a.png", "v/sub/b.png", "c.png"):
        make_image(tmp_path / name)
    v, c = str(tmp_path / "v"), str(tmp_path / "c.png")
    found = find_inputs([v, str(tmp_path / "v" / "*" / "*.png"), c, "missing.mp4"])
    assert found == {
        str(tmp_path / "v" / "a.png"): v,  # first found under the folder argument
        str(tmp_path / "v" / "sub" / "b.png"): v,
        c: str(tmp_path),  # a file named directly: its own folder
        "missing.mp4": ".",
    }
    glob = find_inputs([str(tmp_path / "v" / "s*" / "*.png")])
    assert glob == {str(tmp_path / "v" / "sub" / "b.png"): v}  # the glob's fixed folder


def test_map_files_keep_the_whole_name_and_sub_folder():
    found = {f"v/{name}": "v" for name in ("clip.mp4", "e.jpg", "e.png", "sub/clip.mp4")}
    files = map_files(found, "m", video=True)
    assert {p: [f.as_posix() for f in fs] for p, fs in files.items()} == {
        "v/clip.mp4": ["m/clip.mp4.maps.png", "m/clip.mp4.maps.mp4"],
        "v/e.jpg": ["m/e.jpg.maps.png", "m/e.jpg.maps.mp4"],
        "v/e.png": ["m/e.png.maps.png", "m/e.png.maps.mp4"],
        "v/sub/clip.mp4": ["m/sub/clip.mp4.maps.png", "m/sub/clip.mp4.maps.mp4"],
    }
    # Inputs found under different folders keep those folders' names below their common one.
    files = map_files({"a/x.mp4": "a", "b/x.mp4": "b"}, "m", video=False)
    assert [f.as_posix() for fs in files.values() for f in fs] == [
        "m/a/x.mp4.maps.png",
        "m/b/x.mp4.maps.png",
    ]
    assert map_files({}, "m", video=True) == {}


def test_map_files_onto_an_input_are_refused(tmp_path):
    folder = str(tmp_path)
    check_map_files(map_files({f"{folder}/pic.png": folder}, folder, video=True))
    found = {f"{folder}/pic.png": folder, f"{folder}/pic.png.maps.png": folder}
    with pytest.raises(MapsError, match=r"pic\.png\.maps\.png over the input .*pic\.png\.maps"):
        check_map_files(map_files(found, folder, video=False))
    # The same folder reached through a link is still the input's folder.
    (tmp_path / "link").symlink_to(tmp_path)
    linked = {f"{folder}/link/pic.mp4": f"{folder}/link", f"{folder}/pic.mp4.maps.mp4": folder}
    with pytest.raises(MapsError):
        check_map_files(map_files(linked, Path(folder), video=True))
