"""inspo: In-Sample Sequential Policy Optimization (offline cooperative MARL), the training package.

The hot math runs through the fused ops of `inspo_ext`; this package holds the environments, the
datasets, the networks, the learners, the training loop and the `inspo` command line.
"""

__version__ = "0.2.0"


def __getattr__(name: str):
    # imported on first use, so that `import inspo` stays free of torch:
    # `inspo.train(config, out_dir=...)`: one run of any algorithm; `inspo.train_seeds(configs, out_dirs)`: runs
    # that differ only in their seed, batched in one process
    if name in ("train", "train_seeds"):
        from inspo import loop

        return getattr(loop, name)
    # `inspo.load_policy(run_dir)`: a run folder's trained policy, policy(obs, avail) -> logits
    if name == "load_policy":
        from inspo.policy import load_policy

        return load_policy
    raise AttributeError(f"module 'inspo' has no attribute {name!r}")
