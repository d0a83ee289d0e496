"""Statistics of the field's library, rliable (Agarwal et al., 2021): the interquartile mean (IQM) with
stratified-bootstrap 95% confidence intervals, and the probability of improvement.

Scores are arrays of shape (runs, tasks); one task is an array of seeds. The bootstrap draws
BOOTSTRAP_REPS resamples from a fixed random state, so the same runs always give the same interval.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0


def _rliable():
    try:
        from rliable import library, metrics
    except ImportError as error:
        raise ValueError("IQM and bootstrap intervals need rliable: pip install 'inspo[sweep]'") from error
    return library, metrics


def as_matrix(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Seeds of one task as a (runs, 1) matrix; a (runs, tasks) matrix as it is."""
    array = np.asarray(scores, dtype=float)
    return array[:, None] if array.ndim == 1 else array


def _estimate(library, scores, function):
    # rliable's StratifiedBootstrap draws its resampling indices from numpy's global generator, whatever
    # random_state says: seed that one for the call (and put it back), so the intervals are reproducible
    saved = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        with warnings.catch_warnings():  # arch's notice that it prefers a Generator to the RandomState rliable passes
            warnings.simplefilter("ignore", FutureWarning)
            return library.get_interval_estimates(
                scores, function, reps=BOOTSTRAP_REPS, random_state=np.random.RandomState(BOOTSTRAP_SEED)
            )
    finally:
        np.random.set_state(saved)


def iqm_point(scores: Sequence[float] | np.ndarray) -> float:
    """The IQM over runs and tasks, without an interval (the protocol's curves and selection rule)."""
    matrix = as_matrix(scores)
    if matrix.size == 0:
        return float("nan")
    return float(_rliable()[1].aggregate_iqm(matrix))


def iqm_interval(scores: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(IQM, low, high): the IQM over runs and tasks and its stratified-bootstrap 95% interval."""
    matrix = as_matrix(scores)
    if matrix.size == 0:
        return float("nan"), float("nan"), float("nan")
    library, metrics = _rliable()
    if matrix.shape[0] < 2:  # one run per task: nothing to resample
        value = float(metrics.aggregate_iqm(matrix))
        return value, value, value
    point, interval = _estimate(library, {"x": matrix}, lambda x: np.array([metrics.aggregate_iqm(x)]))
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def probability_of_improvement(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> tuple[float, float, float]:
    """(P(X > Y), low, high): the probability that a run of X scores above a run of Y on the same task,
    averaged over tasks, with its stratified-bootstrap 95% interval."""
    mx, my = as_matrix(x), as_matrix(y)
    if mx.size == 0 or my.size == 0:
        return float("nan"), float("nan"), float("nan")
    library, metrics = _rliable()
    point, interval = _estimate(
        library, {"x": (mx, my)}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)])
    )
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def format_interval(value: tuple[float, float, float], digits: int = 3) -> str:
    """ "IQM [low, high]" (or "—" when there is nothing to aggregate)."""
    point, low, high = value
    if np.isnan(point):
        return "—"
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
