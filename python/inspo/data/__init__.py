"""Datasets: the episode-buffer format (other formats: inspo.data.formats), the in-memory transition store
and its memory-mapped twin."""

from inspo.data.buffer import DatasetError, load_episode_buffer, save_episode_buffer
from inspo.data.mapped import MappedTransitions
from inspo.data.transitions import TransitionBatch, TransitionStore, minibatch, stack_batches

__all__ = [
    "DatasetError",
    "load_episode_buffer",
    "save_episode_buffer",
    "MappedTransitions",
    "TransitionBatch",
    "TransitionStore",
    "minibatch",
    "stack_batches",
]
