"""SMAX (JaxMARL's JAX re-implementation of the StarCraft Multi-Agent Challenge) for inspo.

Needs the optional extra: ``pip install 'inspo[smax]'`` (jaxmarl 0.2.0, jax and jaxlib 0.10.2).
Importing this package is free (it only sets XLA's environment flags, ``_runtime.limit_xla_threads``,
which every submodule needs set before JAX creates its CPU backend); the submodules import JAX.

* ``inspo.smax.env``: the environment adapter (many battles in one jitted step, masks, per-agent
  observations, the global state, arrays handed to torch without copies).
* ``inspo.smax.ippo``: IPPO/MAPPO behaviour policies trained online, with checkpoints.
* ``inspo.smax.tiers``: the CFCQL-style quality tiers (expert, medium, medium-replay, mixed) and
  a scripted tier, written in the episode-buffer format with a dataset card.
* ``inspo.smax.task``: ``smax:<map>`` for the trainer: sizes, datasets by tier name, and the evaluation of
  torch policies (greedy and stochastic on the same battles).

Its command line is ``inspo data`` (``inspo.cli.data``); the evaluation protocol, its campaign and the
campaign's plan are experiments (``experiments/smax``), outside the package.

SMAX returns lie in [0, ~2] (enemy health removed plus 1 for a win), not SMAC's ~20: numbers
obtained here are not comparable with SMAC papers.
"""

from inspo.smax._runtime import limit_xla_threads

limit_xla_threads()  # before any submodule imports jax: they all import this package first

MAPS = ("3m", "2s3z", "3s_vs_5z", "5m_vs_6m", "6h_vs_8z")
"""Maps this package was checked on (any JaxMARL SMAX scenario name is accepted)."""

ENV_PREFIX = "smax:"


def map_from_env_name(env_name: str) -> str:
    """``"smax:3m"`` -> ``"3m"``; raises ValueError for names without the prefix."""
    if not env_name.startswith(ENV_PREFIX) or len(env_name) == len(ENV_PREFIX):
        raise ValueError(f"env: expected 'smax:<map>' (e.g. smax:3m), got {env_name!r}")
    return env_name[len(ENV_PREFIX) :]
