"""Shared by the command-line tests."""
import pytest

from inspo.cli import main


def main_interrupted(argv):
    """main(argv) for a run that Ctrl-C stops: the interrupt must not reach the caller."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of inspo.cli.main as a KeyboardInterrupt (a traceback)")
