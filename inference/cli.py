"""What every script shares: a parser whose errors are one line, and a main that turns user
errors into one line on stderr and exit status 2 (no traceback)."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import USER_ERRORS

EXIT_USER_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` that reports a bad command line as a single line (no usage block)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def run_main(main, argv=None) -> int:
    """Run ``main(argv)``; a user error prints ``<prog>: error: <message>`` and returns 2."""
    prog = os.path.basename(sys.argv[0]) or "script"
    try:
        main(argv)
    except SystemExit as exit_:  # the parser's own exit (bad flag, --help)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USER_ERROR
    except USER_ERRORS as err:
        msg = str(err).replace("\n", " ")
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; resume with --resume from the last checkpoint", file=sys.stderr)
        return 130
    return 0


def _number_type(cast, accept, expected: str):
    """An argparse ``type`` that casts with ``cast`` and rejects values ``accept`` refuses."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    parse.__name__ = expected
    return parse


positive_int = _number_type(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number_type(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number_type(float, lambda v: 0 < v < float("inf"), "a positive number")


def experiment_parser(description: str, default_out: str) -> OneLineParser:
    """The flags every paper experiment shares: ``--quick``, ``--out``, ``--device``, ``--seed``."""
    p = OneLineParser(description=description)
    p.add_argument("--quick", action="store_true", help="CPU settings (minutes), else the paper's")
    p.add_argument("--out", default=default_out)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    return p


def experiment_settings(args, quick: dict, paper: dict, overrides: dict | None = None):
    """``(settings, out_dir)``: the quick or paper settings with the non-None ``overrides`` applied.

    Quick runs use one thread: on a small shared CPU, two threads per process fighting other jobs
    ran small models up to 10× slower. The output folder is created.
    """
    import torch
    from pathlib import Path

    settings = dict(quick if args.quick else paper)
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if args.quick:
        torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return settings, out
