"""config.precision = "bf16": the networks' matmuls under torch.autocast, everything else float32 (the ops'
inputs, the targets, the parameters and the optimizer state); the runs still train."""

from __future__ import annotations

import pytest
import torch

from inspo.config import make_config
from inspo.loop import train
from inspo.nets import AgentMLP, CentralCritic, set_precision
from inspo_ext import _backend
from train_testing import rows, tiny


def test_bf16_networks_compute_in_bf16_and_return_float32():
    torch.manual_seed(0)
    actor = AgentMLP(2, 3, 6, 5, (32, 32))
    critic = CentralCritic(2, 4, 3, 5, (32,))
    for seed in range(2):
        actor.reset_seed(seed)
        critic.reset_seed(seed)
    obs, state = torch.randn(2, 64, 3, 6), torch.randn(2, 64, 4)
    actions = torch.randint(5, (2, 64, 3))
    fp32 = actor(obs), critic(state, actions), actor.forward_agent(torch.tensor([1, 2]), obs[:, :, 0])
    set_precision(actor, "bf16")
    set_precision(critic, "bf16")
    bf16 = actor(obs), critic(state, actions), actor.forward_agent(torch.tensor([1, 2]), obs[:, :, 0])
    for low, full in zip(bf16, fp32):
        assert low.dtype == torch.float32
        assert not torch.equal(low, full)  # rounded: the matmuls ran in bf16
        torch.testing.assert_close(low, full, rtol=0.05, atol=0.05)
    assert all(p.dtype == torch.float32 for p in (*actor.parameters(), *critic.parameters()))
    set_precision(actor, "fp32")
    assert torch.equal(actor(obs), fp32[0])


@pytest.mark.parametrize("algo", ["inspo", "omiga"])
def test_a_bf16_run_trains_and_its_ops_see_float32(algo, tmp_path, monkeypatch):
    seen = set()
    launch = _backend.launch

    def spy(op, tensors, *args, **kwargs):
        seen.update(
            (op, t.dtype)
            for name, t in tensors.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and name != "uniforms"  # float64 draws
        )
        return launch(op, tensors, *args, **kwargs)

    monkeypatch.setattr(_backend, "launch", spy)
    runs, dtypes = {}, {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        runs[precision] = train(tiny(algo, 0, precision=precision), out_dir=out, progress=False)
        state = torch.load(out / "checkpoint.pt", weights_only=False)["learner"]
        dtypes[precision] = {key: value.dtype for key, value in state.items()}
    assert dtypes["bf16"] == dtypes["fp32"]  # parameters and optimizer state as at fp32
    assert torch.bfloat16 not in dtypes["bf16"].values()
    if algo == "inspo":
        assert {dtype for _, dtype in seen} == {torch.float32} and len({op for op, _ in seen}) >= 3
    metrics = rows(tmp_path / "bf16")
    assert all(
        torch.isfinite(torch.tensor(value)) for row in metrics for value in row.values() if isinstance(value, float)
    )
    # XOR: both precisions learn the same (optimal) joint action
    assert runs["bf16"]["scores"] == pytest.approx(runs["fp32"]["scores"], abs=0.05)


def test_precision_is_checked():
    with pytest.raises(ValueError, match=r"config.precision must be one of \('fp32', 'bf16'\), got 'fp16'"):
        make_config("xor", precision="fp16")
