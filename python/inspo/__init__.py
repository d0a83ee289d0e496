"""inspo: In-Sample Sequential Policy Optimization (offline cooperative MARL), the training package.

The hot math runs through the fused ops of `inspo_ext`; this package holds the environments, the
datasets, the networks, the trainer and the `inspo` command line.
"""
__version__ = "0.1.0"
