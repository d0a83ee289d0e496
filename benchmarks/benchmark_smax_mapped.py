"""Training throughput of InSPO's fused and exact modes on a SMAX dataset read from memory-mapped files.

    python benchmarks/benchmark_smax_mapped.py --dataset ~/.cache/inspo/smax/2s3z/seed0/expert-1m --batch 256 1024

One timed iteration = draw a minibatch of rows, gather them from the mapped episode arrays
(``inspo.data.MappedTransitions.index``) and run the InSPO learner's iteration (critic step + the
agents' pass), exactly what ``inspo train --set dataset_storage=mapped`` does per step apart from
logging. The behaviour policy mu is fitted briefly by BC on the same store first and its log-probs
cached for the whole dataset (one pass over the files, timed separately). Medians over repeats;
ratios from the same run. torch threads are set by --threads (the machine's cores are shared with
JAX only in other processes).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from inspo.learners.inspo import InspoLearner


def _learner(config, store, mu_state=None) -> "InspoLearner":
    from inspo.learners.inspo import InspoLearner
    from inspo.learners.learner import Dims

    torch.manual_seed(0)  # every case starts from the same networks and fresh optimizers
    learner = InspoLearner(config, 1, Dims(store.n_agents, store.obs_dim, store.state_dim, store.n_actions))
    learner.initialize_seed(0)
    if mu_state is not None:
        learner.mu.load_state_dict(mu_state)
        learner.actor.load_state_dict(mu_state)  # pi starts as mu, as in training
    return learner


def run(dataset: Path, modes, batches, iterations: int, repeats: int, bc_steps: int, overrides: dict, log) -> dict:
    import inspo_ext
    from inspo.config import make_config
    from inspo.data import MappedTransitions, stack_batches
    from inspo.data.card import load_dataset
    from inspo.learners.bc import fit_behaviour

    started = time.perf_counter()
    arrays, meta = load_dataset(dataset)  # memory-mapped, checked against its card
    store = MappedTransitions(arrays)
    card = meta["card"]
    result = dict(
        dataset=str(dataset),
        env=card["env"],
        tier=card["tier"],
        transitions=len(store),
        dataset_bytes=sum(f["bytes"] for f in card["files"].values()),
        index_seconds=round(time.perf_counter() - started, 2),
        threads=torch.get_num_threads(),
        compiled_ops=bool(inspo_ext.build_info()["compiled"]),
        torch=torch.__version__,
        rows=[],
    )
    log(f"{card['env']} {card['tier']}: {len(store)} transitions, {result['dataset_bytes'] / 2**30:.2f} GiB mapped")
    config = make_config(card["env"], dataset_path=str(dataset), **{**overrides, "bc_steps": bc_steps})
    learner = _learner(config, store)
    cache_started = time.perf_counter()
    fit_behaviour(learner.mu, [store], config, [torch.Generator().manual_seed(0)])  # BC, then the cache
    result["behaviour_cache_seconds"] = round(time.perf_counter() - cache_started, 1)
    log(f"BC ({bc_steps} steps) and behaviour cache over the whole dataset: {result['behaviour_cache_seconds']} s")
    mu_state = learner.mu.state_dict()
    for batch_size in batches:
        for mode in modes:
            mode_config = make_config(
                card["env"], dataset_path=str(dataset), **{**overrides, "inspo.mode": mode, "batch_size": batch_size}
            )
            learner = _learner(mode_config, store, mu_state)
            learner.mu.requires_grad_(False)
            generators = [torch.Generator().manual_seed(1)]
            first = mode_config.inspo.critic_warmup_steps
            draw = torch.Generator().manual_seed(2)
            gather_times, step_times = [], []
            for repeat in range(repeats + 1):  # the first repeat warms up
                gather, compute = 0.0, 0.0
                for i in range(iterations):
                    t0 = time.perf_counter()
                    batch = stack_batches([store.index(torch.randint(len(store), (batch_size,), generator=draw))])
                    t1 = time.perf_counter()
                    learner.update(batch, learner.draw(generators, first + i), first + i)
                    t2 = time.perf_counter()
                    gather, compute = gather + t1 - t0, compute + t2 - t1
                if repeat:
                    gather_times.append(gather / iterations)
                    step_times.append(compute / iterations)
            gather_ms = 1e3 * statistics.median(gather_times)
            step_ms = 1e3 * statistics.median(step_times)
            row = dict(
                mode=mode,
                batch=batch_size,
                gather_ms=round(gather_ms, 3),
                step_ms=round(step_ms, 3),
                samples_per_s=round(batch_size / ((gather_ms + step_ms) / 1e3), 1),
                step_only_samples_per_s=round(batch_size / (step_ms / 1e3), 1),
            )
            result["rows"].append(row)
            log(json.dumps(row))
    result["index_bytes"] = int(store.episode.nbytes + store.step.nbytes + store.next_step.nbytes + store.done.nbytes)
    result["behaviour_cache_bytes"] = int(store.log_mu.nbytes + store.next_log_mu.nbytes)
    result["private_rss_bytes"] = _private_rss()
    return result


def _private_rss() -> int:
    """Anonymous (private) resident memory of this process: what a copy of the dataset would add to.
    The mapped files' pages count as file-backed memory, which the kernel drops under pressure."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return -1


def markdown(result: dict) -> str:
    lines = [
        f"Dataset {result['env']} {result['tier']}: {result['transitions']:,} transitions, "
        f"{result['dataset_bytes'] / 2**30:.2f} GiB memory-mapped (index built in {result['index_seconds']} s; "
        f"behaviour cache pass {result['behaviour_cache_seconds']} s); torch {result['torch']}, "
        f"{result['threads']} thread(s), inspo_ext ops "
        f"{'compiled' if result['compiled_ops'] else 'REFERENCE fallback'}. In RAM: the row index "
        f"{result['index_bytes'] / 2**20:.0f} MiB and the behaviour cache {result['behaviour_cache_bytes'] / 2**20:.0f} "
        f"MiB; private resident memory of the whole process at the end "
        f"{result['private_rss_bytes'] / 2**30:.2f} GiB (the dataset's pages stay file-backed).",
        "",
        "| batch | mode | gather (ms) | InSPO step (ms) | samples/s | step-only samples/s | fused / exact |",
        "|---|---|---|---|---|---|---|",
    ]
    by_key = {(row["batch"], row["mode"]): row for row in result["rows"]}
    for row in result["rows"]:
        exact = by_key.get((row["batch"], "exact"))
        ratio = f"{row['samples_per_s'] / exact['samples_per_s']:.2f}x" if exact and row["mode"] == "fused" else ""
        lines.append(
            f"| {row['batch']} | {row['mode']} | {row['gather_ms']:.2f} | {row['step_ms']:.2f} | "
            f"{row['samples_per_s']:,.0f} | {row['step_only_samples_per_s']:,.0f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/benchmark_smax_mapped.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", type=Path, required=True, help="a SMAX dataset directory (with its card)")
    parser.add_argument("--modes", nargs="+", default=["fused", "exact"])
    parser.add_argument("--batch", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--iterations", type=int, default=20, help="iterations per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bc-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    from inspo.config import parse_overrides

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"steps": 10_000, **parse_overrides(args.overrides)}  # on top of the trainer's SMAX preset
    result = run(
        args.dataset,
        args.modes,
        args.batch,
        args.iterations,
        args.repeats,
        args.bc_steps,
        overrides,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
