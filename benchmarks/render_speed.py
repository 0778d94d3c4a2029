"""Procedural dSprites rendering speed, batches of 10,000 (target: >= 50,000 images/s on a 2-core CPU).

    .venv/bin/python benchmarks/render_speed.py [--device cpu|cuda] [--repeats 5] [--markdown FILE]

Last line: ``images_per_second=<float32 images/s>``.
"""

from __future__ import annotations

import statistics
import time

from inference.cli import OneLineParser, default_device, positive_int, torch_device
import torch

from ppl_data import DSprites


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", type=torch_device, default=default_device())
    p.add_argument("--batch", type=positive_int, default=10_000)
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--markdown", help="also append the rows to this markdown file")
    args = p.parse_args(argv)
    data = DSprites()
    factors = data.sample_factors(args.batch, generator=torch.Generator().manual_seed(0)).to(args.device)
    rates = {}
    for dtype in (torch.uint8, torch.float32):
        data.images(factors, dtype=dtype)  # warm-up
        times = []
        for _ in range(args.repeats):
            if args.device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            data.images(factors, dtype=dtype)
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        rates[dtype] = args.batch / statistics.median(times)
    print(f"dSprites 64x64, batches of {args.batch}, device {args.device}, {torch.get_num_threads()} threads")
    print("| dtype | images/s |\n|---|---|")
    for dtype, rate in rates.items():
        print(f"| {str(dtype).replace('torch.', '')} | {rate:,.0f} |")
    if args.markdown:
        from markdown_table import append_rows  # benchmarks/ is on sys.path when run as a script
        append_rows(args.markdown, [("render_speed, dSprites 64x64", str(dtype).replace("torch.", ""),
                                      args.batch, rate, None, "procedural rendering")
                                     for dtype, rate in rates.items()])
    print(f"images_per_second={rates[torch.float32]:.0f}")


if __name__ == "__main__":
    main()
