"""inspo: In-Sample Sequential Policy Optimization (offline cooperative MARL), the training package.

The hot math runs through the fused ops of `inspo_ext`; this package holds the environments, the
datasets, the networks, the trainer and the `inspo` command line.
"""

__version__ = "0.2.0"


def __getattr__(name: str):
    # `inspo.train_seeds(configs, out_dirs)`: runs that differ only in their seed, batched in one process
    # (imported on first use, so that `import inspo` stays free of torch)
    if name == "train_seeds":
        from inspo.loop import train_seeds

        return train_seeds
    raise AttributeError(f"module 'inspo' has no attribute {name!r}")
