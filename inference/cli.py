"""What every script shares: a parser whose errors are one line, and a main that turns user
errors into one line on stderr and exit status 2 (no traceback), a failed write into one line and
exit status 74, and a preempted run (SIGTERM, SIGINT) into one line and 143 or 130."""

from __future__ import annotations

import argparse
import errno
import math
import os
import shlex
import sys
from pathlib import Path

from .errors import USER_ERRORS, ConfigError, WriteError
from .preemption import Preempted
from .runlock import LOCK

EXIT_USER_ERROR = 2
#: sysexits.h EX_IOERR: the machine could not write (full disk, read-only or removed folder)
EXIT_WRITE_ERROR = 74


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` that reports a bad command line as a single line (no usage block)."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def resume_command(argv, resume_flag: str = "") -> str:
    """The shell command that continues this process's run: how Python was started, the script, its
    arguments ``argv`` and ``resume_flag`` (added once; ``""`` for a script whose own command
    resumes it)."""
    args = list(argv)
    if resume_flag and resume_flag not in args:
        args.append(resume_flag)
    orig = list(getattr(sys, "orig_argv", []))
    given = len(sys.argv) - 1  # the interpreter, its options and the script (or -m module) come first
    if orig and len(orig) > given:
        head = orig[:len(orig) - given]
    else:
        head = ["python", sys.argv[0]]
    return shlex.join(head + args)


def run_main(main, argv=None, resume_flag: str | None = None) -> int:
    """Run ``main(argv)``; a user error prints ``<prog>: error: <message>`` and returns 2.

    A write that failed (:class:`~inference.errors.WriteError`; also any other ``OSError`` naming a
    file, e.g. a picture that could not be saved) prints one line and returns 74. A run stopped by
    SIGTERM or SIGINT (:class:`~inference.preemption.Preempted`) prints where its checkpoint is and,
    for a script with a ``resume_flag`` (``--resume``; ``""`` where the same command resumes, as
    ``reproduce.py``'s does), the exact command that resumes it; returns 143 or 130.
    """
    prog = os.path.basename(sys.argv[0]) or "script"
    try:
        main(argv)
    except SystemExit as exit_:  # the parser's own exit (bad flag, --help)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USER_ERROR
    except Preempted as stop:
        how = ""
        if resume_flag is not None and stop.checkpoint is not None:
            how = f"; resume with: {resume_command(sys.argv[1:] if argv is None else argv, resume_flag)}"
        print(f"{prog}: {stop}{how}", file=sys.stderr)
        return stop.exit_code
    except WriteError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_WRITE_ERROR
    except USER_ERRORS as err:
        msg = str(err).replace("\n", " ")
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:
        if err.filename is None:  # not a file the machine failed to write or read: a bug, show it
            raise
        name = errno.errorcode.get(err.errno, "") if err.errno is not None else ""
        print(f"{prog}: error: {err.filename}: {err.strerror or err}" + (f" ({name})" if name else ""),
              file=sys.stderr)
        return EXIT_WRITE_ERROR
    except KeyboardInterrupt:  # asked twice: stopped at once, from the last checkpoint written
        how = ("" if resume_flag is None else "; run the same command to resume from the last checkpoint"
               if resume_flag == "" else f"; resume with {resume_flag} from the last checkpoint")
        print(f"{prog}: interrupted{how}", file=sys.stderr)
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
finite_float = _number_type(float, math.isfinite, "a finite number")
#: numpy, scikit-learn and Pyro take seeds in [0, 2**32); anything else fails deep inside them.
random_seed = _number_type(int, lambda v: 0 <= v < 2 ** 32, "a seed in [0, 2**32)")
fraction = _number_type(float, lambda v: 0 < v < 1, "a number in (0, 1)")
fraction_or_one = _number_type(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def torch_device(text: str) -> str:
    """An argparse ``type``: a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    Returns the text (it goes into JSON settings); ``cuda`` without a CUDA device is refused here, at
    parse time, instead of as a driver traceback once the data are loaded.
    """
    import torch

    expected = "cpu, cuda or cuda:N"
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if dev.type == "cpu":
        return text
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r} was asked for, but no CUDA device is available")
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA device(s)")
        return text
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r} was asked for, but no MPS device is available")
        return text
    raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")


def default_device() -> str:
    """``cuda`` when this machine has one, else ``cpu``: the default of every ``--device``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_items(items: list, text: str, what: str) -> list:
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
    twice = [item for i, item in enumerate(items) if item in items[:i]]
    if twice:
        raise argparse.ArgumentTypeError(f"{twice[0]!r} is listed twice in {text!r}")
    return items


def comma_list(choices):
    """An argparse ``type``: a non-empty comma-separated list of distinct names from ``choices``."""
    choices = tuple(choices)

    def parse(text: str) -> list[str]:
        items = _check_items([t.strip() for t in text.split(",") if t.strip()], text, ", ".join(choices))
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, bad))} in {text!r}; "
                                             f"expected some of {', '.join(choices)}")
        return items
    parse.__name__ = "comma-separated list"
    return parse


def number_list(item):
    """An argparse ``type``: a non-empty comma-separated list of distinct values of the type ``item``."""
    def parse(text: str) -> list:
        values = []
        for part in text.split(",") if text.strip() else []:
            try:
                values.append(item(part.strip()))
            except argparse.ArgumentTypeError as err:
                raise argparse.ArgumentTypeError(f"{err} in {text!r}") from None
        return _check_items(values, text, "numbers")
    parse.__name__ = "comma-separated list"
    return parse


def existing_dir(text: str) -> str:
    """An argparse ``type``: a folder that exists (``--data-root``)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder" if path.exists()
                                         else f"folder {text!r} does not exist")
    return text


def ray_address(text: str) -> str:
    """An argparse ``type``: a Ray cluster address, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    host, sep, port = text.removeprefix("ray://").rpartition(":")
    if text == "auto" or (sep and host and not any(c.isspace() or c == "/" for c in host)
                          and port.isdigit() and 0 < int(port) < 65536):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, HOST:PORT or ray://HOST:PORT, got {text!r}")


def check_output_dir(path, *, continuing: bool = False, how: str | None = None) -> Path:
    """``path`` as a ``Path`` if it can take a run's outputs without overwriting anything; creates nothing.

    Refused: a path that exists and is not a folder, a path under a file or an unwritable folder, and
    (unless ``continuing``, e.g. with ``--resume``) a folder that is not empty. ``how`` says which flag
    would continue an existing folder ("--resume to continue it"), for the message.
    """
    if not str(path).strip():
        raise ConfigError(f"--out must name a folder, got {str(path)!r}")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.is_dir():
        if not continuing and any(p.name != LOCK for p in out.iterdir()):
            hint = f"use {how}, or another --out" if how else "use another --out"
            raise ConfigError(f"--out {out} already exists and is not empty ({hint})")
        parent = out
    else:
        parent = next((p for p in out.absolute().parents if p.exists()), Path("/"))
        if not parent.is_dir():
            raise ConfigError(f"--out {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {parent} is not writable")
    return out


def check_batch_size(batch_size: int, dataset_size: int, dataset: str) -> None:
    """A batch larger than the dataset is a typo (or the wrong ``--data``), not a request."""
    if batch_size > dataset_size:
        raise ConfigError(f"--batch-size {batch_size} is larger than the dataset ({dataset}: "
                          f"{dataset_size} items)")


def experiment_parser(description: str, default_out: str) -> OneLineParser:
    """The flags every paper experiment shares: ``--quick``, ``--out``, ``--device``, ``--seed``."""
    p = OneLineParser(description=description)
    p.add_argument("--quick", action="store_true", help="CPU settings (minutes), else the paper's")
    p.add_argument("--out", default=default_out, help=f"output folder (default {default_out}); "
                   "an existing non-empty one is refused unless --force")
    p.add_argument("--force", action="store_true", help="write into --out even if it holds earlier results")
    return add_seed_and_device(p, "cpu")


def data_experiment_parser(prog: str, description: str, default_out: str, quick_help: str) -> OneLineParser:
    """Flags of an experiment on MNIST or, by default, the procedural shapes: ``--quick``,
    ``--data-root``, ``--out``, ``--steps``."""
    p = OneLineParser(prog=prog, description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--data-root", type=existing_dir, help="MNIST folder (IDX files); default: procedural dSprites")
    p.add_argument("--out", default=default_out)
    p.add_argument("--steps", type=positive_int)
    return p


def add_seed_and_device(p: OneLineParser, device: str | None = None) -> OneLineParser:
    """``--seed`` (default 0) and ``--device`` (default ``device``; None: cuda when available)."""
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--device", type=torch_device, default=device,
                   help=f"cpu, cuda or cuda:N (default: {device or 'cuda when available'})")
    return p


def add_overrides(p: OneLineParser, overrides: dict) -> None:
    """A ``--name`` flag (a positive integer) for each setting ``name: what`` that a run may override."""
    for name, what in overrides.items():
        p.add_argument("--" + name.replace("_", "-"), type=positive_int, help=f"override {what}")


def overrides_of(args, overrides: dict) -> dict:
    """The values of the :func:`add_overrides` flags, by setting name (``None`` where not given)."""
    return {name: getattr(args, name) for name in overrides}


def experiment_settings(args, quick: dict, paper: dict, overrides: dict | None = None):
    """``(settings, out_dir)``: the quick or paper settings with the non-None ``overrides`` applied.

    Quick runs use one thread: on a small shared CPU, two threads per process fighting other jobs
    ran small models up to 10× slower. The output folder is checked (:func:`check_output_dir`;
    ``--force`` writes into a non-empty one), then created.
    """
    import torch

    out = check_output_dir(args.out, continuing=getattr(args, "force", False),
                           how="--force to write into it")
    settings = dict(quick if args.quick else paper)
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if args.quick:
        torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    return settings, out
