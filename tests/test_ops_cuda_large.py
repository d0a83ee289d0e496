"""Every op at B = 262,144 samples on CUDA against the CPU backend: N = 8 and 27 agents, A = 1 and 1,024
actions (2^31 entries of a [B, N, A] array at N = 8, A = 1,024: the flat indices past int32). float32, every
action available, inputs drawn on the GPU; the comparison runs on the GPU. A shape whose arrays do not fit in
the device's free memory is skipped, saying so.

Skipped without a CUDA device and a CUDA build of inspo_ext (the GPU check runs it: benchmarks/gpu_check.sh)."""

from __future__ import annotations

import pytest
import torch

import inspo_ext
from ops_testing import cuda_ready, run_loss, run_ratios, run_weights

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of inspo_ext"),
    pytest.mark.filterwarnings("error::RuntimeWarning"),
]

DEV = torch.device("cuda")
BATCH = 262_144
TOL = dict(rtol=1e-4, atol=1e-5)


def _fits(agents: int, actions: int) -> bool:
    """Four float32 [B, N, A] arrays (logits, log_mu, q_local, the gradient) and a bool one on the GPU, with a
    margin for the chunked comparison (and their CPU copies in host memory)."""
    entries = BATCH * agents * actions
    free, _ = torch.cuda.mem_get_info(DEV)
    return entries * (4 * 4 + 1) * 1.3 < free


def _inputs(agents: int, actions: int) -> dict:
    g = torch.Generator(DEV).manual_seed(7)
    shape = (BATCH, agents, actions)
    logits = torch.randn(shape, generator=g, device=DEV)
    log_mu = torch.log_softmax(torch.randn(shape, generator=g, device=DEV), -1)
    return dict(
        logits=logits,
        log_mu=log_mu,
        avail=torch.ones(shape, dtype=torch.bool, device=DEV),
        actions=torch.randint(actions, (BATCH, agents), generator=g, device=DEV),
        q_local=torch.randn(shape, generator=g, device=DEV),
        order=torch.randperm(agents, generator=g, device=DEV),
        updated_log_probs=-torch.rand((BATCH, agents), generator=g, device=DEV),
    )


def _same(gpu: list, cpu: list, rows: int = 16_384) -> None:
    """Each GPU output equals its CPU twin, compared on the GPU a slab of rows at a time (no full-size copy)."""
    assert len(gpu) == len(cpu)
    for a, e in zip(gpu, cpu):
        assert a.shape == e.shape
        for start in range(0, max(1, a.shape[0]), rows):
            torch.testing.assert_close(a[start : start + rows], e[start : start + rows].to(DEV), **TOL)


@pytest.mark.parametrize("actions", [1, 1024])
@pytest.mark.parametrize("agents", [8, 27])
def test_every_op_at_a_large_batch_equals_the_cpu_backend(agents, actions):
    if not _fits(agents, actions):
        pytest.skip(f"B={BATCH}, N={agents}, A={actions} does not fit in this device's free memory")
    gpu = _inputs(agents, actions)
    cpu = {key: value.cpu() for key, value in gpu.items()}
    _same(list(run_weights(gpu)), list(run_weights(cpu)))
    _same([run_ratios(gpu, "policy")], [run_ratios(cpu, "policy")])
    for data in (gpu, cpu):
        data["logits"].requires_grad_(True)
    for ratio in ("importance", "self_normalized"):
        results = []
        for data in (gpu, cpu):
            data["logits"].grad = None
            out = run_loss(data, ratio)
            out.loss.sum().backward()
            results.append([t.detach() for t in out] + [data["logits"].grad])
        _same(*results)
    done = (gpu["actions"][:, 0] % 2).float()
    targets = [
        inspo_ext.soft_bellman_target(
            d["updated_log_probs"][:, 0].contiguous(),
            done.to(d["logits"].device),
            d["updated_log_probs"][:, -1].contiguous(),
            d["logits"].detach(),
            d["log_mu"],
            d["avail"],
            d["actions"],
            gamma=0.99,
            alpha=0.1,
            beta=0.05,
        )
        for d in (gpu, cpu)
    ]
    _same(list(targets[0]), list(targets[1]))
    log_rho = gpu["updated_log_probs"] * 20.0  # a wide range of weights
    uniforms = torch.rand(log_rho.shape, dtype=torch.float64, device=DEV)
    for method, u in (("multinomial", uniforms), ("systematic", uniforms[:1])):
        ours = inspo_ext.resample(log_rho, method=method, uniforms=u)
        theirs = inspo_ext.resample(log_rho.cpu(), method=method, uniforms=u.cpu())
        different = (ours.indices.cpu() != theirs.indices).double().mean().item()
        assert different <= 1e-3, (method, different)  # float32 exp: a last-bit difference moves a rare draw
        torch.testing.assert_close(ours.ess, theirs.ess.to(DEV), **TOL)
