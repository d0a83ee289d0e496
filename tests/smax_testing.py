"""Shared setup of the SMAX tests (import it right after ``pytest.importorskip("jaxmarl")``).

Compiling SMAX rollouts dominates these tests' time. XLA's optimizations cost about a third of each
compile and buy run-time speed the tiny tests do not need, so they are switched off for the test
process (JAX's own debugging flag; results are deterministic within the process either way).
"""

import jax

jax.config.update("jax_disable_most_optimizations", True)
