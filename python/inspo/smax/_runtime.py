"""Importing JaxMARL's SMAX: a clear error without the extra, one XLA thread, no stray prints."""

import io
import os
import sys
from pathlib import Path
from types import ModuleType

# Two cores are shared with torch: XLA's CPU backend would otherwise start a thread per core for
# every op and fight torch's intra-op pool. One XLA thread; the user's XLA_FLAGS win if set.
_ONE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
DATA_ROOT = Path(os.environ.get("INSPO_DATA", Path.home() / ".cache" / "inspo"))  # datasets, compile cache
JAX_CACHE_DIR = DATA_ROOT / "jax"
INSTALL_HINT = "SMAX needs the optional extra: pip install 'inspo[smax]'"


def limit_xla_threads() -> None:
    """Ask XLA for one CPU thread unless INSPO_JAX_THREADS=all or XLA_FLAGS already says otherwise,
    and keep compiled programs in a disk cache (JAX_COMPILATION_CACHE_DIR overrides its place).

    Must run before JAX creates its CPU backend (the first computation): ``inspo.smax`` (the package,
    imported before any of its submodules) calls it at import.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("INSPO_JAX_THREADS", "1") != "all" and "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + _ONE_THREAD_FLAGS).strip()
    # JAX on a machine without accelerators still probes for them; say CPU up front.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    # Every training run's evaluation compiles the same dozens of small SMAX programs (~8 s a run on
    # 2 cores): keep them on disk so a grid of runs, or a second process, compiles them once.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(JAX_CACHE_DIR))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def import_smax() -> ModuleType:
    """Return JaxMARL's ``jaxmarl.environments.smax`` module.

    jaxmarl 0.2.0 prints two lines on import and its MaBrax module resets ``sys.stdout`` to
    ``sys.__stdout__``; both are swallowed so a command that prints JSON stays clean.
    """
    saved = sys.stdout, sys.__stdout__
    sys.stdout = sys.__stdout__ = io.StringIO()
    try:
        from jaxmarl.environments import smax
    except ImportError as error:
        # ModuleNotFoundError, so that the env registry reports it as a missing optional module
        raise ModuleNotFoundError(f"{INSTALL_HINT} ({error})") from error
    finally:
        sys.stdout, sys.__stdout__ = saved
    return smax
