"""Arrays of the field's data files (``.npz``, HDF5), memory-mapped so a batch reads only its items.

The official files are too large to load: MPI3D real holds 12.7 GB of pixels, Shapes3D 5.9 GB,
dSprites 3 GB once decompressed. An array is therefore read through a memory map (``np.memmap``):
a batch touches only the pages of its own items, and every process reading the same file shares
those pages in the operating system's page cache.

* An array stored uncompressed in an ``.npz`` (``np.savez``) is mapped **in place**, at its offset
  inside the zip archive: no copy.
* An array compressed in an ``.npz`` (``np.savez_compressed``) or held in an HDF5 file is converted
  **once** into an uncompressed ``.npy`` cache, streamed in chunks of :data:`CHUNK_BYTES` (never the
  whole array in memory, let alone twice), written to a temporary file in the cache folder and
  renamed into place (``os.replace``), so a reader never sees half a cache and two processes that
  convert at once both end with a whole one. Later uses map the cache (``np.load(mmap_mode="r")``).

Where the cache goes (the first that applies):

1. the ``cache_dir`` the caller gives;
2. the folder named by the environment variable ``PPL_DATA_CACHE``;
3. beside the data file, when its folder is writable;
4. otherwise (a read-only data folder) ``$XDG_CACHE_HOME/ppl_data``, by default ``~/.cache/ppl_data``.

The cache's name is ``<file name>.<array>.<tag>.npy``; the tag hashes the source's absolute path,
size and modification time, so a replaced source file is converted again (and the stale cache of
the same array removed), while the conversion is skipped whenever the source is unchanged.

A damaged file (not an archive, truncated, a failed checksum, a missing array) raises
:class:`~ppl_data.base.DataError` with one line naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .base import DataError

CACHE_ENV = "PPL_DATA_CACHE"
#: Bytes converted per chunk: bounds the memory the conversion holds.
CHUNK_BYTES = 64 << 20
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # a zip member's local file header (30 bytes)
_LOCAL_SIGNATURE = 0x04034B50


def cache_folder(source: Path, cache_dir=None) -> Path:
    """The folder the cache of ``source`` goes to (see the module's docstring for the order)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.access(source.parent, os.W_OK):
        return source.parent
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ppl_data"


def cache_path(source: Path, key: str, cache_dir=None) -> Path:
    """The ``.npy`` cache of array ``key`` of ``source``; its name changes when the source does."""
    st = source.stat()
    tag = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{key}".encode()).hexdigest()[:12]
    return cache_folder(source, cache_dir) / f"{source.name}.{key}.{tag}.npy"


def _read_npy_header(fh, where: str):
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fh)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{where}: not a readable .npy array ({err})") from None
    raise DataError(f"{where}: unsupported .npy format version {version}")


def _write_streamed(dest: Path, shape: tuple, dtype: np.dtype, fortran: bool,
                    chunks: Callable[[], object], where: str) -> None:
    """Write a ``.npy`` at ``dest`` from ``chunks()`` (an iterator of arrays or bytes), atomically."""
    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{where}: cannot create the cache folder {folder} ({err}); "
                        f"set {CACHE_ENV} or cache_dir= to a writable folder") from None
    nbytes = math.prod(shape) * dtype.itemsize
    free = shutil.disk_usage(folder).free
    if free < nbytes + (16 << 20):
        raise DataError(f"{where}: its uncompressed cache needs {nbytes / 2**30:.1f} GiB and {folder} "
                        f"has {free / 2**30:.1f} GiB free; set {CACHE_ENV} or cache_dir= to another folder")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=dest.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                       "fortran_order": fortran, "shape": shape})
            written = 0
            for chunk in chunks():
                view = memoryview(np.ascontiguousarray(chunk)).cast("B")
                out.write(view)
                written += view.nbytes
            if written != nbytes:
                raise DataError(f"{where}: expected {nbytes} bytes of data, read {written} (truncated file)")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for stale in folder.glob(dest.name.rsplit(".", 2)[0] + ".*.npy"):  # older caches of this array
        if stale != dest:
            stale.unlink(missing_ok=True)


def _map_cache(dest: Path, shape: tuple, dtype: np.dtype):
    """The cache at ``dest`` mapped read-only, or None when absent or not of this shape and dtype."""
    if not dest.is_file():
        return None
    try:
        arr = np.load(dest, mmap_mode="r")
    except (ValueError, OSError):
        return None
    return arr if arr.shape == tuple(shape) and arr.dtype == dtype else None


class NpzArchive:
    """An ``.npz`` file: its arrays' headers, small arrays in memory, large ones memory-mapped."""

    def __init__(self, path: Path, what: str = ""):
        self.path = Path(path)
        self.what = what
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise DataError(f"{self.path}: not a readable .npz archive{self._hint()} "
                            f"(truncated, or another format: {err})") from None
        self.keys = tuple(n[:-4] for n in self._zip.namelist() if n.endswith(".npy"))

    def _hint(self) -> str:
        return f" for {self.what}" if self.what else ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._zip.close()

    def _member(self, key: str) -> zipfile.ZipInfo:
        if key not in self.keys:
            raise DataError(f"{self.path}: no array {key!r} (it holds {', '.join(self.keys) or 'none'})")
        return self._zip.getinfo(key + ".npy")

    def header(self, key: str) -> tuple[tuple, bool, np.dtype]:
        """``(shape, fortran_order, dtype)`` of array ``key``, without reading its data."""
        info = self._member(key)
        try:
            with self._zip.open(info) as fh:
                return _read_npy_header(fh, f"{self.path}[{key}]")
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise DataError(f"{self.path}: array {key!r} is damaged ({err})") from None

    def read(self, key: str) -> np.ndarray:
        """Array ``key`` in memory (for the small ones: labels, factor classes)."""
        info = self._member(key)
        try:
            with self._zip.open(info) as fh:
                return np.lib.format.read_array(fh, allow_pickle=False)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as err:
            raise DataError(f"{self.path}: array {key!r} is damaged or truncated ({err})") from None

    def mapped(self, key: str, cache_dir=None) -> np.ndarray:
        """Array ``key`` memory-mapped: in place when stored uncompressed, else through the cache."""
        info = self._member(key)
        where = f"{self.path}[{key}]"
        if info.compress_type == zipfile.ZIP_STORED:
            return self._map_in_place(info, where)
        shape, fortran, dtype = self.header(key)
        dest = cache_path(self.path, key, cache_dir)
        arr = _map_cache(dest, shape, dtype)
        if arr is not None:
            return arr
        nbytes = math.prod(shape) * dtype.itemsize

        def chunks():
            try:
                with self._zip.open(info) as fh:
                    _read_npy_header(fh, where)
                    left = nbytes
                    while left:
                        buf = fh.read(min(CHUNK_BYTES, left))
                        if not buf:
                            break
                        left -= len(buf)
                        yield buf
                    fh.read(1)  # reaching the member's end makes zipfile check its CRC
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
                raise DataError(f"{self.path}: array {key!r} is damaged or truncated ({err})") from None

        _write_streamed(dest, shape, dtype, fortran, chunks, where)
        return np.load(dest, mmap_mode="r")

    def _map_in_place(self, info: zipfile.ZipInfo, where: str) -> np.ndarray:
        with open(self.path, "rb") as fh:
            fh.seek(info.header_offset)
            raw = fh.read(_LOCAL_HEADER.size)
            if len(raw) < _LOCAL_HEADER.size or _LOCAL_HEADER.unpack(raw)[0] != _LOCAL_SIGNATURE:
                raise DataError(f"{where}: damaged zip member header (truncated file?)")
            n_name, n_extra = _LOCAL_HEADER.unpack(raw)[-2:]
            fh.seek(info.header_offset + _LOCAL_HEADER.size + n_name + n_extra)
            shape, fortran, dtype = _read_npy_header(fh, where)
            offset = fh.tell()
        need = offset + math.prod(shape) * dtype.itemsize
        size = self.path.stat().st_size
        if size < need:
            raise DataError(f"{where}: truncated file ({size} bytes, the array ends at byte {need})")
        if dtype.hasobject:
            raise DataError(f"{where}: holds Python objects, not numbers")
        return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape,
                         order="F" if fortran else "C")


class H5Archive:
    """An HDF5 file (h5py, the optional ``h5`` extra) with :class:`NpzArchive`'s interface."""

    def __init__(self, path: Path, what: str = ""):
        try:
            import h5py
        except ImportError:
            raise DataError(f"{path}: reading HDF5 files needs h5py: pip install "
                            "'pyro-disentangle[h5]'") from None
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            hint = f" for {what}" if what else ""
            raise DataError(f"{self.path}: not a readable HDF5 file{hint} "
                            f"(truncated, or another format: {str(err).splitlines()[0]})") from None
        self.keys = tuple(k for k in self._file.keys() if isinstance(self._file[k], h5py.Dataset))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._file.close()

    def _dataset(self, key: str):
        if key not in self.keys:
            raise DataError(f"{self.path}: no dataset {key!r} (it holds {', '.join(self.keys) or 'none'})")
        return self._file[key]

    def header(self, key: str) -> tuple[tuple, bool, np.dtype]:
        ds = self._dataset(key)
        return tuple(ds.shape), False, np.dtype(ds.dtype)

    def read(self, key: str) -> np.ndarray:
        try:
            return self._dataset(key)[()]
        except OSError as err:
            raise DataError(f"{self.path}: dataset {key!r} is damaged or truncated ({err})") from None

    def mapped(self, key: str, cache_dir=None) -> np.ndarray:
        ds = self._dataset(key)
        shape, _, dtype = self.header(key)
        dest = cache_path(self.path, key, cache_dir)
        arr = _map_cache(dest, shape, dtype)
        if arr is not None:
            return arr
        row = max(1, math.prod(shape[1:]) * dtype.itemsize)
        step = max(1, CHUNK_BYTES // row)

        def chunks():
            try:
                for start in range(0, shape[0], step):
                    yield ds[start:start + step]
            except OSError as err:
                raise DataError(f"{self.path}: dataset {key!r} is damaged or truncated ({err})") from None

        _write_streamed(dest, shape, dtype, False, chunks, f"{self.path}[{key}]")
        return np.load(dest, mmap_mode="r")


def open_archive(path: Path, what: str = ""):
    """:class:`NpzArchive` or :class:`H5Archive`, chosen by the file's first bytes."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        return H5Archive(path, what)
    return NpzArchive(path, what)


__all__ = ["CACHE_ENV", "CHUNK_BYTES", "cache_folder", "cache_path", "NpzArchive", "H5Archive",
           "open_archive"]
