"""The CPU kernels at every vector width they can run, against the reference.

The row drivers (and rows across lanes, up to A = 24) pick SSE2 (16 bytes), AVX2 (32) or AVX-512 (64) at run time and read a row's last
partial vector past the row's end (masked): each width is forced with INSPO_CPU_VECTOR_BYTES (read once
per process, hence one subprocess per width) on row lengths around every vector width, with poisoned
unavailable entries (NaN / inf: a lane read without its mask would show) and the last rows of the
arrays (the tail that is copied instead). A cap above what the CPU has runs its widest width. At AVX-512, rows
across lanes transpose float blocks with gathers or in registers (INSPO_CPU_ROW_TRANSPOSE; each CPU runs one of the
two by default): both are checked.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import inspo_ext

CHECKS = r"""
import torch
from ops_testing import (assert_policy_loss_close, bellman_pair, close, joint_batch, loss_pair, next_step,
                         ratios_pair, weights_pair)

torch.set_num_threads(1)
for dtype in (torch.float64, torch.float32):
    for actions in (1, 3, 5, 8, 9, 16, 17, 24, 25, 37):
        for mask in ("random", "padding"):
            data = joint_batch(11, 3, actions, dtype=dtype, seed=actions, mask=mask)
            ours, ref = weights_pair(data)
            for a, b in zip(ours, ref):
                close(a, b)
            ours, ref = ratios_pair(data, "target")
            close(ours, ref)
            ours, ours_grad, ref, ref_grad = loss_pair(data, "self_normalized")
            assert_policy_loss_close(ours, ref)
            close(ours_grad, ref_grad)
            ours, ref = bellman_pair(next_step(11, 3, actions, dtype=dtype, mask=mask))
            for a, b in zip(ours, ref):
                close(a, b)
print("ok")
"""


@pytest.mark.skipif(not inspo_ext.build_info().get("compiled", False), reason="no compiled kernels")
@pytest.mark.parametrize(
    "vector_bytes, row_transpose", [("16", "registers"), ("32", "registers"), ("64", "registers"), ("64", "gathers")]
)
def test_ops_match_the_reference_at_each_vector_width(vector_bytes, row_transpose):
    env = dict(
        os.environ, INSPO_CPU_VECTOR_BYTES=vector_bytes, INSPO_CPU_ROW_TRANSPOSE=row_transpose, OMP_NUM_THREADS="1"
    )
    result = subprocess.run(
        [sys.executable, "-c", CHECKS], cwd=Path(__file__).parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr


@pytest.mark.parametrize("name, value", [("INSPO_CPU_VECTOR_BYTES", "33"), ("INSPO_CPU_ROW_TRANSPOSE", "gather")])
def test_a_path_variable_the_kernels_would_ignore_is_warned_at_import(name, value):
    env = dict(os.environ, **{name: value})
    program = "import warnings; warnings.simplefilter('always'); import inspo_ext"
    # from tests/, as the package is installed (a `python -c` in the checkout's root would import its source folder)
    run = dict(cwd=Path(__file__).parent, capture_output=True, text=True, timeout=120)
    result = subprocess.run([sys.executable, "-c", program], env=env, **run)
    assert result.returncode == 0, result.stderr
    assert f"{name}={value!r} is not one of" in result.stderr and "ignored" in result.stderr, result.stderr
    # a known value is quiet
    env[name] = {"INSPO_CPU_VECTOR_BYTES": "32", "INSPO_CPU_ROW_TRANSPOSE": "gathers"}[name]
    result = subprocess.run([sys.executable, "-c", program], env=env, **run)
    assert result.returncode == 0 and "is not one of" not in result.stderr, result.stderr
