"""CIFAR-10 / CIFAR-100 in the standard python-pickle layouts: locating, reading, validating.

Layouts (as published at https://www.cs.toronto.edu/~kriz/cifar.html):

* CIFAR-10 ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
  ``batches.meta``; each batch a pickled dict with ``data`` (N x 3072 uint8, channel-major rows: 1024 red,
  1024 green, 1024 blue values of a 32 x 32 image) and ``labels`` (N ints in 0..9).
* CIFAR-100 ``cifar-100-python/``: ``train``, ``test``, ``meta``; keys ``data``, ``fine_labels``
  (0..99) and ``coarse_labels`` (0..19).

Any number of images per batch is accepted (the shared exact subset has 1,017 per batch). Pickles are
read with a restricted unpickler that only admits the NumPy array reconstruction a CIFAR batch needs, so
a foreign pickle cannot execute code. The data root comes from an argument (``--data-root``) or the
``AIMC_LSH_DATA`` environment variable and may be either the folder *containing*
``cifar-10-batches-py/`` / ``cifar-100-python/`` or that folder itself.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_ENV",
    "CACHE_ENV",
    "CifarFormatError",
    "CifarSpec",
    "CIFAR_SPECS",
    "CIFAR_ARCHIVES",
    "CifarArchive",
    "default_cache_dir",
    "download_cifar",
    "find_cifar_dir",
    "resolve_cifar_dir",
    "load_cifar_arrays",
    "read_cifar_batch",
    "read_cifar_pickle",
]

DATA_ENV = "AIMC_LSH_DATA"
"""Environment variable naming the data root."""
CACHE_ENV = "AIMC_LSH_CACHE"
"""Environment variable naming the cache root (downloads land in ``<cache>/data`` and ``<cache>/models``)."""

IMAGE_SHAPE = (3, 32, 32)


class CifarFormatError(ValueError):
    """A file is not a valid CIFAR pickle (truncated, foreign, wrong keys, shapes or labels)."""


@dataclass(frozen=True)
class CifarSpec:
    """Layout of one CIFAR variant in the python-pickle format."""

    name: str
    """Human-readable name (``"CIFAR-10"``)."""
    folder: str
    """Folder the official archive extracts to."""
    train_files: tuple[str, ...]
    """Training batch file names, in order."""
    test_files: tuple[str, ...]
    """Test batch file names."""
    label_keys: dict[str, tuple[str, int]]
    """Label mode -> (pickle key, number of classes)."""
    meta_file: str
    """File holding the class names."""
    meta_keys: dict[str, str]
    """Label mode -> meta key holding the class names."""


CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="CIFAR-10",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_keys={"fine": ("labels", 10)},
        meta_file="batches.meta",
        meta_keys={"fine": "label_names"},
    ),
    "cifar100": CifarSpec(
        name="CIFAR-100",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_keys={"fine": ("fine_labels", 100), "coarse": ("coarse_labels", 20)},
        meta_file="meta",
        meta_keys={"fine": "fine_label_names", "coarse": "coarse_label_names"},
    ),
}


@dataclass(frozen=True)
class CifarArchive:
    """An official CIFAR download with the digests it is verified against."""

    url: str
    """Official download URL."""
    filename: str
    """Archive file name."""
    md5: str
    """MD5 published on the CIFAR page (https://www.cs.toronto.edu/~kriz/cifar.html)."""
    sha256: str
    """SHA-256 of the same archive as pinned by widely used loaders (Keras ``get_file(file_hash=...)``,
    torchvision's prototype datasets); the archive has been unchanged since 2009."""
    size: int
    """Size in bytes."""


CIFAR_ARCHIVES: dict[str, CifarArchive] = {
    "cifar10": CifarArchive(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        filename="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        size=170_498_071,
    ),
    "cifar100": CifarArchive(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        filename="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        size=169_001_437,
    ),
}

# Globals a CIFAR pickle may reference: NumPy array reconstruction (numpy 1.x and 2.x module names) and
# what protocol-2 pickles use for byte strings (``_codecs.encode``; ``bytes()`` for empty ones).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("__builtin__", "bytes"),
    ("builtins", "bytes"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise CifarFormatError(
                f"it references {module}.{name}, which a CIFAR batch never contains (refused to load)"
            )
        return super().find_class(module, name)


def _spec(dataset: str) -> CifarSpec:
    if dataset not in CIFAR_SPECS:
        raise ValueError(f"unknown CIFAR dataset {dataset!r}; allowed: {sorted(CIFAR_SPECS)}")
    return CIFAR_SPECS[dataset]


def default_cache_dir(kind: str) -> Path:
    """Return the download folder for ``kind`` (``"data"`` or ``"models"``).

    That is ``$AIMC_LSH_CACHE/<kind>`` when the variable is set, else ``~/.cache/aimc_lsh/<kind>``.
    """
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "aimc_lsh"
    return root / kind


def read_cifar_pickle(path: str | os.PathLike[str]) -> dict[str, object]:
    """Load one CIFAR pickle safely and return it with ``str`` keys.

    Args:
        path: A batch or meta file.

    Returns:
        The unpickled dict; byte-string keys (Python 2 pickles) are decoded to ``str``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CifarFormatError: If the file is truncated, corrupt, references anything but NumPy arrays, or
            is not a dict.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file {path} does not exist")
    try:
        with open(path, "rb") as handle:
            obj = _CifarUnpickler(handle, encoding="bytes").load()
    except CifarFormatError as err:
        raise CifarFormatError(f"{path} is not a CIFAR pickle: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise CifarFormatError(
            f"{path} is a truncated or corrupt pickle ({type(err).__name__}: {err}); "
            "re-extract or re-download the dataset"
        ) from err
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{path} is not a CIFAR batch: expected a dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def read_cifar_batch(
    path: str | os.PathLike[str], label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one CIFAR batch file.

    Args:
        path: Batch file (``data_batch_1``, ``test_batch``, ``train``, ``test``...).
        label_key: ``"labels"`` (CIFAR-10), ``"fine_labels"`` or ``"coarse_labels"`` (CIFAR-100).
        num_classes: Labels must lie in ``[0, num_classes)``.

    Returns:
        ``(images, labels)``: uint8 array (N, 3, 32, 32) and int64 array (N,).

    Raises:
        CifarFormatError: If keys are missing or the data/labels have the wrong type, shape or range.
        FileNotFoundError: If ``path`` does not exist.

    """
    batch = read_cifar_pickle(path)
    for key in ("data", label_key):
        if key not in batch:
            raise CifarFormatError(
                f"{path} is not a CIFAR batch: missing key {key!r} (found {sorted(batch)})"
            )
    data = batch["data"]
    n_values = int(np.prod(IMAGE_SHAPE))
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != n_values
    ):
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise CifarFormatError(
            f"{path}: 'data' must be a uint8 array of shape (N, {n_values}) (3 x 32 x 32, channel-major), "
            f"got {dtype} with shape {shape}"
        )
    if data.shape[0] == 0:
        raise CifarFormatError(f"{path}: the batch holds no images")
    try:
        labels = np.asarray(batch[label_key])
    except (TypeError, ValueError) as err:
        raise CifarFormatError(f"{path}: {label_key!r} is not a list of integers ({err})") from err
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise CifarFormatError(
            f"{path}: {label_key!r} must be {data.shape[0]} integers (one per image), "
            f"got {labels.dtype} with shape {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise CifarFormatError(
            f"{path}: labels must lie in [0, {num_classes - 1}], found range [{labels.min()}, {labels.max()}]"
        )
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _looks_like(folder: Path, spec: CifarSpec) -> bool:
    return folder.is_dir() and any((folder / f).is_file() for f in (*spec.train_files, *spec.test_files))


def find_cifar_dir(
    root: str | os.PathLike[str] | None = None, dataset: str = "cifar10", *, download: bool = False
) -> Path:
    """Locate the extracted CIFAR folder, downloading it when asked and missing.

    Args:
        root: Data root: the folder containing ``cifar-10-batches-py/`` (or ``cifar-100-python/``), or
            that folder itself. ``None`` means ``$AIMC_LSH_DATA``, else (only with ``download=True``)
            the cache ``$AIMC_LSH_CACHE/data`` or ``~/.cache/aimc_lsh/data``.
        dataset: ``"cifar10"`` or ``"cifar100"``.
        download: Download and extract the official archive into ``root`` if the folder is missing.

    Returns:
        The folder holding the batch files.

    Raises:
        FileNotFoundError: If no folder is found and ``download`` is False, or the download fails (the
            message says where it looked and how to provide one).
        ChecksumError: If a downloaded archive does not match the official digests.
        ValueError: If ``dataset`` is unknown.

    """
    spec = _spec(dataset)
    source = "argument"
    if root is None and os.environ.get(DATA_ENV):
        root, source = os.environ[DATA_ENV], f"${DATA_ENV}"
    if root is None:
        if not download:
            raise FileNotFoundError(
                f"no {spec.name} data folder given: pass --data-root / root=<folder containing "
                f"{spec.folder}/>, set {DATA_ENV}, or use download=True to fetch it"
            )
        root, source = default_cache_dir("data"), "cache"
    root = Path(root).expanduser()
    candidates = [root] if root.name == spec.folder else [root / spec.folder, root]
    for folder in candidates:
        if _looks_like(folder, spec):
            return folder
    looked = " and ".join(f"{c}/" for c in candidates)
    if download:
        try:
            return download_cifar(root, dataset)
        except OSError as err:  # offline, or the server refused: say what was looked for, then why
            raise FileNotFoundError(
                f"{spec.name} not found in {looked} (root from {source}) and downloading it failed: {err}. "
                f"Pass --data-root / root=<folder containing {spec.folder}/> or set {DATA_ENV}"
            ) from err
    raise FileNotFoundError(
        f"{spec.name} not found: looked in {looked} (root from {source}) for "
        f"{', '.join((*spec.train_files, *spec.test_files))}. Pass --data-root / root=<folder containing "
        f"{spec.folder}/>, set {DATA_ENV}, or use download=True"
    )


def resolve_cifar_dir(
    root: str | os.PathLike[str] | None = None, dataset: str = "cifar10", *, download: bool = True
) -> Path:
    """The CIFAR folder a command-line study reads, with the studies' download rule.

    A root given as ``root`` or ``$AIMC_LSH_DATA`` is used as it is: a missing folder there is an error,
    never a download into a folder the user named. With neither, the data live in the cache
    (``$AIMC_LSH_CACHE/data`` or ``~/.cache/aimc_lsh/data``), downloaded and verified on first use
    unless ``download`` is False (the studies' ``--no-download``).

    Args:
        root: Data root (``--data-root``), or None.
        dataset: ``"cifar10"`` or ``"cifar100"``.
        download: Allow the download into the cache.

    Returns:
        The folder holding the batch files.

    Raises:
        FileNotFoundError: If the data are not where the root says, or not cached and downloading is
            off or fails (the message says how to provide them).
        ChecksumError: If a downloaded archive does not match the official digests.

    """
    if root is not None or os.environ.get(DATA_ENV):
        return find_cifar_dir(root, dataset)
    if download:
        return find_cifar_dir(None, dataset, download=True)
    spec, cache = _spec(dataset), default_cache_dir("data")
    with contextlib.suppress(FileNotFoundError):  # already in the cache
        return find_cifar_dir(cache, dataset)
    raise FileNotFoundError(
        f"no {spec.name} data: no data root given, {DATA_ENV} unset, nothing in the cache {cache}/ and "
        f"downloading is off (--no-download). Pass --data-root <folder containing {spec.folder}/> or set "
        f"{DATA_ENV}"
    )


def download_cifar(
    root: str | os.PathLike[str],
    dataset: str = "cifar10",
    *,
    url: str | None = None,
    progress: bool = True,
    keep_archive: bool = False,
) -> Path:
    """Download the official CIFAR archive into ``root``, verify it (MD5 and SHA-256), extract it safely.

    Args:
        root: Folder to place ``cifar-10-batches-py/`` (or ``cifar-100-python/``) in.
        dataset: ``"cifar10"`` or ``"cifar100"``.
        url: Alternative URL of the *same* archive (a mirror or a ``file://`` copy); the official
            digests are still enforced.
        progress: Show a progress bar.
        keep_archive: Keep the ``.tar.gz`` after extraction.

    Returns:
        The extracted folder.

    Raises:
        ChecksumError: If the archive does not match the official digests.
        CifarFormatError: If the archive does not contain the expected folder.

    """
    from aimc_lsh.data.download import download_file, safe_extract_tar

    spec, archive = _spec(dataset), CIFAR_ARCHIVES[dataset]
    root = Path(root).expanduser()
    tarball = download_file(
        url or archive.url, root / archive.filename, sha256=archive.sha256, md5=archive.md5, progress=progress
    )
    safe_extract_tar(tarball, root)
    if not keep_archive:
        tarball.unlink()
    folder = root / spec.folder
    if not _looks_like(folder, spec):
        raise CifarFormatError(f"{tarball} did not contain {spec.folder}/ with the expected batch files")
    return folder


def load_cifar_arrays(
    root: str | os.PathLike[str] | None = None,
    dataset: str = "cifar10",
    *,
    train: bool = False,
    label_mode: str = "fine",
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Read every batch of one split.

    Args:
        root: Data root; see :func:`find_cifar_dir`.
        dataset: ``"cifar10"`` or ``"cifar100"``.
        train: Training batches if True, else the test batch.
        label_mode: ``"fine"`` (default) or, for CIFAR-100, ``"coarse"`` (20 superclasses).
        download: Download when missing.

    Returns:
        ``(images, labels, class_names)``: uint8 (N, 3, 32, 32), int64 (N,), and the class names from
        the meta file (``None`` if the meta file is absent).

    Raises:
        FileNotFoundError: If the folder or a batch file is missing.
        CifarFormatError: If a file is malformed.
        ValueError: If ``dataset`` or ``label_mode`` is unknown.

    """
    spec = _spec(dataset)
    if label_mode not in spec.label_keys:
        raise ValueError(
            f"label_mode {label_mode!r} is not available for {spec.name}; allowed: {sorted(spec.label_keys)}"
        )
    label_key, num_classes = spec.label_keys[label_mode]
    folder = find_cifar_dir(root, dataset, download=download)
    images, labels = [], []
    for name in spec.train_files if train else spec.test_files:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name} batch {path} is missing (incomplete extraction?)")
        x, y = read_cifar_batch(path, label_key, num_classes)
        images.append(x)
        labels.append(y)
    names = None
    meta_path = folder / spec.meta_file
    if meta_path.is_file():
        meta = read_cifar_pickle(meta_path)
        raw = meta.get(spec.meta_keys[label_mode])
        if isinstance(raw, list) and len(raw) == num_classes:
            names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw]
    return np.concatenate(images), np.concatenate(labels), names
