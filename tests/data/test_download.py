import dataclasses
import hashlib
import http.server
import io
import os
import tarfile
import threading
from functools import partial

import pytest

from aimc_lsh.data import (
    Checksum,
    ChecksumError,
    download_cifar,
    download_file,
    safe_extract_tar,
    verify_checksum,
)

PAYLOAD = os.urandom(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests = 0

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).requests += 1
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "blob.bin").write_bytes(PAYLOAD)
    _CountingHandler.requests = 0
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_CountingHandler, directory=str(served))
    )
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_http_download_verified_and_cached(server, tmp_path):
    url, _ = server
    dest = tmp_path / "out" / "blob.bin"
    assert download_file(f"{url}/blob.bin", dest, SHA, progress=False, timeout=10) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _CountingHandler.requests == 1
    download_file(f"{url}/blob.bin", dest, SHA, md5=MD5, progress=True, timeout=10)  # present + valid
    assert _CountingHandler.requests == 1
    dest.write_bytes(b"stale")  # corrupt copy: fetched again and replaced
    download_file(f"{url}/blob.bin", dest, sha256_prefix=SHA[:8], progress=False, timeout=10)
    assert dest.read_bytes() == PAYLOAD and _CountingHandler.requests == 2


def test_http_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, _ = server
    dest = tmp_path / "out" / "blob.bin"
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=rf"expected {wrong}, got {SHA}"):
        download_file(f"{url}/blob.bin", dest, wrong, progress=False, timeout=10)
    assert not dest.exists() and os.listdir(dest.parent) == []
    with pytest.raises(ChecksumError, match="md5 mismatch"):
        download_file(f"{url}/blob.bin", dest, md5="f" * 32, progress=False, timeout=10)
    with pytest.raises(ChecksumError, match="starting with deadbeef"):
        download_file(f"{url}/blob.bin", dest, sha256_prefix="deadbeef", progress=False, timeout=10)


def test_http_missing_file(server, tmp_path):
    url, _ = server
    with pytest.raises(OSError, match="cannot download"):
        download_file(f"{url}/nope.bin", tmp_path / "x", SHA, progress=False, timeout=10)


def test_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "dest.bin"
    download_file(src.as_uri(), dest, SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        download_file(src.as_uri(), tmp_path / "other.bin", "1" * 64, progress=False)
    assert not (tmp_path / "other.bin").exists()


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="unverified downloads are not allowed"):
        download_file("https://example.org/x", tmp_path / "x")
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        download_file("ftp://example.org/x", tmp_path / "x", SHA)
    with pytest.raises(ValueError, match="64..64 hex digits"):
        download_file("https://example.org/x", tmp_path / "x", SHA[:10])
    with pytest.raises(ValueError, match="hexadecimal"):
        Checksum(md5="z" * 32)


def test_verify_checksum(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert verify_checksum(path, Checksum(sha256=SHA, md5=MD5)) == path
    with pytest.raises(ChecksumError, match=str(path)):
        verify_checksum(path, Checksum(sha256="2" * 64))
    with pytest.raises(FileNotFoundError):
        verify_checksum(tmp_path / "missing", Checksum(sha256=SHA))


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_safe_extract_accepts_plain_archive(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [_file("top/a.txt", b"hello"), _file("top/sub/b.txt")])
    files = safe_extract_tar(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "a.txt").read_bytes() == b"hello"
    assert len(files) == 2


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_safe_extract_rejects_escapes(tmp_path, kind):
    if kind == "dotdot":
        member = _file("../escaped.txt")
    elif kind == "absolute":
        member = _file(str(tmp_path / "abs.txt"))
    else:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        info.linkname = "/etc/passwd"
        member = (info, None)
    archive = _tar(tmp_path / "bad.tar.gz", [_file("fine.txt"), member])
    with pytest.raises(ValueError, match="unsafe member"):
        safe_extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "fine.txt").exists()


def test_download_cifar_enforces_official_digests(tmp_path):
    fake = _tar(tmp_path / "cifar-10-python.tar.gz", [_file("cifar-10-batches-py/test_batch")])
    with pytest.raises(
        ChecksumError, match="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    ):
        download_cifar(tmp_path / "root", "cifar10", url=fake.as_uri(), progress=False)
    assert not (tmp_path / "root" / "cifar-10-batches-py").exists()


def test_resolve_cifar_dir_downloads_into_the_cache_only_when_no_root_is_given(served_cifar10, tmp_path):
    from aimc_lsh.data import load_dataset, resolve_cifar_dir

    cached = tmp_path / "cache" / "data" / "cifar-10-batches-py"
    with pytest.raises(FileNotFoundError, match=r"downloading is off \(--no-download\).*--data-root"):
        resolve_cifar_dir(None, "cifar10", download=False)
    with pytest.raises(
        FileNotFoundError, match="CIFAR-10 not found"
    ):  # a named root is never downloaded into
        resolve_cifar_dir(tmp_path / "elsewhere", "cifar10")
    assert not cached.exists() and not (tmp_path / "elsewhere").exists()

    assert resolve_cifar_dir(None, "cifar10") == cached  # fetched, verified, extracted
    assert not (cached.parent / "cifar-10-python.tar.gz").exists()
    images, labels = served_cifar10
    test = load_dataset("cifar10", root=cached, train=False)
    assert len(test) == 9 and test.tensors()[1].tolist() == labels["labels"]
    assert resolve_cifar_dir(None, "cifar10", download=False) == cached  # cached: no download needed


def test_failed_cifar_download_says_where_it_looked(served_cifar10, tmp_path, monkeypatch):
    from aimc_lsh.data import CIFAR_ARCHIVES, resolve_cifar_dir

    gone = dataclasses.replace(CIFAR_ARCHIVES["cifar10"], url=(tmp_path / "gone.tar.gz").as_uri())
    monkeypatch.setitem(CIFAR_ARCHIVES, "cifar10", gone)
    with pytest.raises(
        FileNotFoundError, match=r"not found in .*cache.*downloading it failed: cannot download"
    ):
        resolve_cifar_dir(None, "cifar10")
