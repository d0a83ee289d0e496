"""Benchmark of the dataset readers: building the transition store from each format (npy, h5, vault),
in memory and memory-mapped, and the time of one minibatch gather from it.

A random dataset (PyMARL layout, --episodes x --steps transitions, 5 agents, 30-dim observations, 60-dim
state, 11 actions) is written once as .npy and converted to HDF5 and a vault (needs inspo[data]);
then a Markdown table: format, storage, transitions, build seconds, milliseconds per minibatch of 256
(median of 20 draws after one warm-up draw that fills the chunk caches).

    python benchmarks/benchmark_dataset_formats.py --episodes 2000 --steps 50 --out runs/bench/datasets
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from inspo.data import save_episode_buffer
from inspo.data.formats import build_store, read_dataset, write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/datasets"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    E, T, N, O, S, A = args.episodes, args.steps, 5, 30, 60, 11
    arrays = dict(
        obs=rng.normal(size=(E, T + 1, N, O)).astype(np.float32),
        state=rng.normal(size=(E, T + 1, S)).astype(np.float32),
        actions=rng.integers(0, A, size=(E, T + 1, N, 1)),
        reward=rng.normal(size=(E, T + 1, 1)).astype(np.float32),
        terminated=np.zeros((E, T + 1, 1), np.uint8),
        filled=np.ones((E, T + 1, 1), np.int64),
        avail_actions=np.ones((E, T + 1, N, A), np.int32),
    )
    arrays["terminated"][:, T - 1] = 1
    paths = {"npy": args.out / "npy", "h5": args.out / "data.h5", "vault": args.out / "vault"}
    if not paths["npy"].exists():
        save_episode_buffer(paths["npy"], arrays, {})
    source = read_dataset(paths["npy"])
    for format in ("h5", "vault"):
        if not paths[format].exists():
            write_dataset(paths[format], source.arrays, source.meta, format)
    print("| format | storage | transitions | build | minibatch (256) |\n|---|---|---|---|---|")
    for format, path in paths.items():
        for mapped in (False, True):
            start = time.perf_counter()
            store = build_store(read_dataset(path), mapped=mapped)
            build = time.perf_counter() - start
            store.index(torch.randint(len(store), (256,)))
            draws = []
            for _ in range(20):
                rows = torch.randint(len(store), (256,))
                start = time.perf_counter()
                store.index(rows)
                draws.append(time.perf_counter() - start)
            print(
                f"| {format} | {'mapped' if mapped else 'memory'} | {len(store)} | {build:.1f} s | "
                f"{statistics.median(draws) * 1000:.1f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
