"""inspo_ext: fused CPU (OpenMP) and CUDA kernels of InSPO's math, as torch.library custom ops.

Every op has a pure-PyTorch twin in `inspo_ext.reference` that defines its math; the ops here match it
(float64 to rounding), check their inputs (exceptions name the argument and the index), and fall back to
the reference with a warning when the compiled module lacks the tensors' device. Inside
`deferred_status()` and while a CUDA graph is captured, the ops do not read their error status back;
`check_status()` raises the first error later (inspo_ext/_status.py).
"""

from __future__ import annotations

import torch  # noqa: F401  (import torch before the extension: both then share one libgomp)

from . import _backend
from ._compile_cache import tag_compile_caches
from ._status import check_status, deferred_status
from .in_sample_weights import in_sample_weights
from .reference import InSampleWeights, PolicyLoss, Resampled, SoftBellmanTarget
from .resample import resample
from .sequential_policy_loss import InSPOPolicyLoss, sequential_policy_loss
from .soft_bellman_target import soft_bellman_target
from .teammate_log_ratios import teammate_log_ratios

tag_compile_caches(_backend.SOURCE_HASH)  # a changed inspo_ext never reuses another's compiled graphs

try:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    __version__ = _version("inspo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "soft_bellman_target",
    "in_sample_weights",
    "teammate_log_ratios",
    "resample",
    "sequential_policy_loss",
    "InSPOPolicyLoss",
    "SoftBellmanTarget",
    "InSampleWeights",
    "Resampled",
    "PolicyLoss",
    "build_info",
    "check_status",
    "deferred_status",
]


def build_info() -> dict:
    """What this build has: version, compiler, build type, the hash of its native sources (source_hash), OpenMP (and its max threads), CUDA (version,
    architectures), whether the compiled module imports, and whether a CUDA device is usable now
    (cudaGetDeviceCount; its error string when there is no driver or device)."""
    info = {"version": __version__, "compiled": _backend.COMPILED}
    if _backend._C is None:
        info.update(
            compiler=None,
            build_type=None,
            source_hash=None,
            openmp=False,
            openmp_max_threads=1,
            cuda=False,
            cuda_version=None,
            cuda_architectures=None,
            cuda_device_available=False,
            cuda_device_count=0,
            cuda_device_error=None,
            import_error=_backend._IMPORT_ERROR,
        )
        return info
    info.update(_backend._C.build_info())
    return info
