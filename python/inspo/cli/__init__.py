"""The `inspo` command line: one module per command, each with `HELP`, `add_arguments(parser)` and `run(args)`.

inspo train    train a run, seeds batched, or the main job (inspo.cli.train)
inspo eval     evaluate a checkpoint (inspo.cli.eval)
inspo data     look at, convert and make datasets (inspo.cli.data)
inspo bench    benchmark the fused ops and a training iteration (inspo.cli.bench)
inspo sweep    run a sweep spec on Ray (inspo.cli.sweep)

A command's module is imported only when that command runs, so `inspo --help` and `inspo data info` stay
free of the training stack.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from inspo import __version__

# name -> (module, help)
COMMANDS = {
    "train": ("inspo.cli.train", "train (no arguments: the main job and its table)"),
    "eval": ("inspo.cli.eval", "evaluate a checkpoint"),
    "data": ("inspo.cli.data", "look at, convert and make datasets (info, convert, SMAX make/check)"),
    "bench": ("inspo.cli.bench", "benchmark the fused ops and a training iteration against PyTorch"),
    "sweep": ("inspo.cli.sweep", "run a sweep spec (configs x seeds) on Ray, here or on a cluster"),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="inspo", description="In-Sample Sequential Policy Optimization")
        parser.add_argument("--version", action="version", version=f"inspo {__version__}")
        commands = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name, (_, help_text) in COMMANDS.items():
            commands.add_parser(name, help=help_text, add_help=False)
        parser.parse_args(argv)  # --version, --help, or an unknown command (argparse's error)
        parser.print_help()
        return 0
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"inspo {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return run_reporting_errors(name, lambda: module.run(args), args)


def run_reporting_errors(command: str, body, args: Optional[argparse.Namespace] = None) -> int:
    """body() with user mistakes and faults as one line `inspo COMMAND: error: ...` (exit 2) and Ctrl-C
    as one line saying how to continue (exit 130; inspo.cli.train keeps args.run_folder current)."""
    try:
        return int(body() or 0)
    except BrokenPipeError:  # the reader of stdout went away (`| head`): nothing more to say to anyone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the exit's flush would fail again)
        return 141  # 128 + SIGPIPE, what a tool killed by the signal reports
    except (ValueError, OSError) as error:  # bad input (ValueError), unusable paths (OSError names them)
        print(f"inspo {command}: error: {describe_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"inspo {command}: interrupted{resume_advice(getattr(args, 'run_folder', None))}", file=sys.stderr)
        return 130


def describe_error(error: Exception) -> str:
    """The error's message; an OSError's as PATH: what is wrong there (not "[Errno 20] ..."), a path
    through a file naming that file."""
    if not isinstance(error, OSError) or error.filename is None:
        return str(error)
    path = Path(os.fsdecode(error.filename))
    if error.errno == errno.ENOTDIR:
        blocker = next((part for part in path.parents if part.is_file()), None)
        if blocker is not None:
            return f"cannot use {path}: {blocker} is a file, not a folder"
    return f"{path}: {error.strerror or error}"


def resume_advice(out: Optional[Path]) -> str:
    """How to continue the run interrupted in folder `out` (none: not a training run)."""
    from inspo.cli.train import MAIN_JOB
    from inspo.runfolder import CHECKPOINT, CONFIG

    if out is None:
        return ""
    if any((out / name).is_file() for name in (CHECKPOINT, CONFIG, MAIN_JOB)) or any(out.glob(f"seed*/{CONFIG}")):
        return f"; continue with: inspo train --out {shlex.quote(str(out))} --resume"
    return f"; nothing was written to {out} yet"
