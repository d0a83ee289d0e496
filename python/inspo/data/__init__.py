"""Datasets: the episode-buffer format and the transition store."""
from inspo.data.buffer import DatasetError, load_episode_buffer, save_episode_buffer
from inspo.data.transitions import TransitionBatch, TransitionStore

__all__ = ["DatasetError", "load_episode_buffer", "save_episode_buffer", "TransitionBatch", "TransitionStore"]
