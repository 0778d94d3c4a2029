"""Batch read rate (images/s) of a benchmark dataset from its memory map, on a synthetic file in the
official MPI3D layout (``mpi3d_toy.npz``: ``images`` (N, 64, 64, 3) uint8, compressed) written to
a temporary folder.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_read_speed.py [--grid 6 6 2 3 3 8 8] \
        [--batches 300] [--batch-size 64] [--stored] [--keep DIR]

Steps: write the file (``np.savez_compressed``; ``--stored``: ``np.savez``, mapped in place), load
it with ``ppl_data.load("mpi3d", ..., factor_sizes=grid)`` (timing the one-time conversion into the
``.npy`` cache), then draw ``--batches`` random batches of ``--batch-size`` items and time

* ``map``: the uint8 pixels read from the map (``data.read(index)``);
* ``batch``: ``data.batch(index)``, the float tensors in [0, 1] that training gets;

each ``cold`` (the file's pages dropped from the page cache first with ``posix_fadvise``, so the
reads go to the disk; where the kernel keeps them, cold reads as warm) and ``warm`` (a second pass
over the same batches). The default grid (41,472 items, 0.5 GB) is MPI3D's with 8 positions per
axis instead of 40; the rate per batch does not depend on the file's size once the pages are cached.
The last line is ``map_warm_images_per_s=<rate>``.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ppl_data  # noqa: E402
from inference.cli import OneLineParser, positive_int  # noqa: E402


def write_file(path: Path, grid, stored: bool) -> None:
    """An MPI3D-layout file whose image i carries its index in its first pixels (cheap to compress)."""
    n = math.prod(grid)
    images = np.zeros((n, 64, 64, 3), np.uint8)
    images[:, 0, :4, 0] = np.arange(n, dtype=">u4").view(np.uint8).reshape(n, 4)
    images[:, 8:56, 8:56] = (np.arange(n) % 251).astype(np.uint8)[:, None, None, None]
    with open(path, "wb") as fh:
        (np.savez if stored else np.savez_compressed)(fh, images=images)


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rate(read, batches) -> float:
    t0 = time.perf_counter()
    for index in batches:
        read(index)
    return len(batches) * len(batches[0]) / (time.perf_counter() - t0)


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", type=positive_int, nargs=7, default=[6, 6, 2, 3, 3, 8, 8])
    p.add_argument("--batches", type=positive_int, default=300)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--stored", action="store_true", help="write np.savez (mapped in place, no cache)")
    p.add_argument("--keep", default=None, help="write into this folder and keep it (default: a temp folder)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="data_read_speed."))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = folder / "mpi3d_toy.npz"
        t0 = time.perf_counter()
        write_file(path, args.grid, args.stored)
        print(f"wrote {path.name}: {math.prod(args.grid)} items, {path.stat().st_size / 2**20:.0f} MiB "
              f"({'stored' if args.stored else 'compressed'}) in {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        data = ppl_data.load("mpi3d", root=folder, factor_sizes=args.grid, cache_dir=folder / "cache")
        mapped = Path(data.pixels.filename)
        print(f"first load (conversion into the .npy cache where compressed): {time.perf_counter() - t0:.2f}s; "
              f"map: {mapped.name} ({mapped.stat().st_size / 2**20:.0f} MiB)")
        gen = torch.Generator().manual_seed(0)
        batches = [torch.randint(len(data), (args.batch_size,), generator=gen) for _ in range(args.batches)]
        got = data.read(batches[0][:4]).permute(0, 2, 3, 1)[:, 0, :4, 0].contiguous().numpy()
        assert (got.view(">u4").reshape(-1) == batches[0][:4].numpy()).all(), "read the wrong items"
        results = {}
        for name, read in (("map", data.read), ("batch", data.batch)):
            drop_page_cache(mapped)
            results[f"{name}_cold"] = rate(read, batches)
            results[f"{name}_warm"] = rate(read, batches)
        for key, value in results.items():
            print(f"{key:>10}: {value:12,.0f} images/s  ({args.batch_size}-item random batches)")
        print(f"map_warm_images_per_s={results['map_warm']:.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
