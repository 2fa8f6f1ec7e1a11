import hashlib
import os

import pytest

from aimc_lsh.utils import atomic_path, atomic_write_bytes, atomic_write_text, file_digest, sha256_file


def test_atomic_write_bytes_creates_parents_and_content(tmp_path):
    target = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(target, b"\x00\x01payload")
    assert target.read_bytes() == b"\x00\x01payload"
    assert os.listdir(target.parent) == ["file.bin"]  # no temporary left behind


def test_atomic_write_text_replaces_existing(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    atomic_write_text(target, "new ü")
    assert target.read_text(encoding="utf-8") == "new ü"


def test_failed_write_keeps_old_content_and_cleans_up(tmp_path):
    target = tmp_path / "keep.csv"
    target.write_text("previous")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["keep.csv"]


def test_atomic_path_for_name_based_writers(tmp_path):
    target = tmp_path / "x.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json"
        tmp.write_text("{}")
    assert target.read_text() == "{}"


def test_type_errors(tmp_path):
    with pytest.raises(TypeError, match="bytes"):
        atomic_write_bytes(tmp_path / "x", "text")
    with pytest.raises(TypeError, match="str"):
        atomic_write_text(tmp_path / "x", b"bytes")


def test_digests_match_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert file_digest(path, "md5") == hashlib.md5(data).hexdigest()
    with pytest.raises(ValueError, match="unknown hash algorithm"):
        file_digest(path, "nope")


def test_written_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        target = atomic_write_text(tmp_path / "results.csv", "a,b\n")
        assert target.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert atomic_write_text(tmp_path / "private.csv", "a\n").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)


def test_atomic_path_refuses_a_folder_before_the_block_runs(tmp_path):
    ran = []
    with pytest.raises(IsADirectoryError, match=f"cannot write {tmp_path}: it is a folder"):
        with atomic_path(tmp_path):
            ran.append(True)
    with pytest.raises(IsADirectoryError):
        atomic_write_text(tmp_path, "x")
    assert ran == [] and list(tmp_path.iterdir()) == []  # no temporary file left behind
