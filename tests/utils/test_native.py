"""build_shared_library: a real compile with the system's C compiler, cached, rebuilt on change, errors."""

import ctypes
import os
import shutil

import pytest

from aimc_lsh.utils import NativeBuildError, build_shared_library, native_cache_dir

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler")

SOURCE = "int answer(int x) { return x + 41; }\n"


def write(path, text):
    path.write_text(text)
    return path


def test_builds_a_library_that_loads_and_runs(tmp_path):
    library = build_shared_library(write(tmp_path / "answer.c", SOURCE), cache_dir=tmp_path / "cache")
    assert library.parent == tmp_path / "cache" and library.name.startswith("answer-")
    assert ctypes.CDLL(str(library)).answer(1) == 42


def test_a_second_call_reuses_the_cached_build_and_an_edited_source_gets_a_new_one(tmp_path):
    source = write(tmp_path / "answer.c", SOURCE)
    first = build_shared_library(source, cache_dir=tmp_path)
    stamp = first.stat().st_mtime_ns
    assert build_shared_library(source, cache_dir=tmp_path) == first
    assert first.stat().st_mtime_ns == stamp  # not rebuilt
    write(source, SOURCE.replace("41", "40"))
    second = build_shared_library(source, cache_dir=tmp_path)
    assert second != first
    assert ctypes.CDLL(str(second)).answer(1) == 41


def test_other_flags_get_another_build(tmp_path):
    source = write(tmp_path / "answer.c", SOURCE)
    assert build_shared_library(source, cache_dir=tmp_path) != build_shared_library(
        source, flags=("-O0", "-shared", "-fPIC"), cache_dir=tmp_path
    )


def test_a_compile_error_names_the_file_and_quotes_the_compiler_and_leaves_nothing(tmp_path):
    source = write(tmp_path / "broken.c", "int broken( { return; }\n")
    with pytest.raises(NativeBuildError, match=r"compiling broken\.c failed .*error"):
        build_shared_library(source, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_a_missing_compiler_or_source_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing.c not found"):
        build_shared_library(tmp_path / "missing.c", cache_dir=tmp_path)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(NativeBuildError, match="no-such-cc.*could not be run.*set CC"):
        build_shared_library(write(tmp_path / "answer.c", SOURCE), cache_dir=tmp_path)


def test_cache_folder_follows_aimc_lsh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AIMC_LSH_CACHE", str(tmp_path))
    assert native_cache_dir() == tmp_path / "native"
    monkeypatch.delenv("AIMC_LSH_CACHE")
    assert native_cache_dir().parts[-3:] == (".cache", "aimc_lsh", "native")
