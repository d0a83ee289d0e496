"""The package as a library: the compiled backend is present, torch.library registrations (opcheck),
results independent of the thread count, zero-copy outputs, the reference fallback."""

import pytest
import torch

import inspo_ext
from inspo_ext import _backend
from ops_testing import GAMMA, HYPER, bellman_pair, joint_batch, loss_pair, next_step, ratios_pair, weights_pair


def test_build_has_the_compiled_cpu_backend():
    """A broken build must fail CI instead of silently running the reference."""
    info = inspo_ext.build_info()
    assert info["compiled"], info
    for key in (
        "version",
        "compiler",
        "build_type",
        "openmp",
        "openmp_max_threads",
        "cuda",
        "cuda_version",
        "cuda_architectures",
        "cuda_device_available",
    ):
        assert key in info
    assert isinstance(info["cuda_device_available"], bool)
    if not info["cuda_device_available"]:
        assert info["cuda_device_error"]  # the reason, instead of a crash
    assert _backend.has_kernels(torch.device("cpu"))


def test_opcheck_forward_ops():
    d = joint_batch(6, 3, 4, seed=70)
    n = next_step(6, 3, 4, seed=71)
    ops = torch.ops.inspo_ext
    cases = [
        (ops.in_sample_weights.default, (d["q_local"], d["log_mu"], d["avail"], d["actions"], 0.1, 0.2, 10.0)),
        (
            ops.teammate_log_ratios.default,
            (d["logits"], d["log_mu"], d["avail"], d["actions"], d["order"], d["q_local"], None, 0, 0.1, 0.2, 0.3, 4.6),
        ),
        (
            ops.teammate_log_ratios.default,
            (
                d["logits"],
                d["log_mu"],
                d["avail"],
                d["actions"],
                d["order"],
                None,
                d["updated_log_probs"],
                1,
                0.1,
                0.2,
                0.3,
                4.6,
            ),
        ),
        (
            ops.soft_bellman_target.default,
            (
                n["reward"],
                n["done"],
                n["q_next"],
                n["next_logits"],
                n["next_log_mu"],
                n["next_avail"],
                n["next_actions"],
                GAMMA,
                0.1,
                0.2,
                4.6,
            ),
        ),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_same_result_for_one_and_two_threads():
    """Bitwise: fixed chunks, per-chunk partial sums combined in chunk order (B spans several chunks)."""
    d = joint_batch(1500, 4, 7, seed=72)
    n = next_step(1500, 4, 7, seed=73)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = []
            for ratio in ("importance", "self_normalized"):
                ours, grad = loss_pair(d, ratio)[:2]
                out += [*ours, grad]
            out += [*weights_pair(d)[0], ratios_pair(d, "target")[0], *bellman_pair(n)[0]]
            out += [*inspo_ext.resample(ratios_pair(d, "target")[0], generator=torch.Generator().manual_seed(0))]
            results.append(out)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results):
        assert torch.equal(a.detach(), b.detach())


def test_outputs_are_written_in_place_without_copies():
    """The compiled module refuses a wrong dtype or layout instead of converting (a hidden copy of an output
    would be written and lost)."""
    d = joint_batch(4, 2, 3, seed=74)
    out = [torch.empty(4, 2, dtype=torch.float64) for _ in range(3)]
    args = (d["q_local"], d["log_mu"], d["avail"], d["actions"])
    hyper = (HYPER["alpha"], HYPER["beta"], HYPER["log_w_max"])
    assert _backend._C.in_sample_weights(*args, *out, *hyper) == _backend._C.STATUS_OK
    assert torch.equal(out[0], weights_pair(d)[0].weight)
    with pytest.raises(TypeError):
        _backend._C.in_sample_weights(*args, out[0].float(), *out[1:], *hyper)
    with pytest.raises(TypeError):
        _backend._C.in_sample_weights(*args, torch.empty(2, 4, dtype=torch.float64).T, *out[1:], *hyper)


def test_views_with_a_storage_offset_read_their_own_entries():
    """Contiguous slices of larger tensors (a storage offset, as a minibatch sliced from a batch is) give the results
    of their copies: the kernels get the views' own data through DLPack, not their storages' first entries."""
    d = joint_batch(9, 3, 5, dtype=torch.float32, seed=76)
    views = {k: v if k == "order" else v[2:] for k, v in d.items()}
    assert views["logits"].storage_offset() > 0 and views["logits"].is_contiguous()
    copies = {k: v.clone() for k, v in views.items()}

    def outputs(x):
        loss, grad, _, _ = loss_pair(x, "importance")
        return [*weights_pair(x)[0], ratios_pair(x, "target")[0], *loss, grad]

    ours, expected = outputs(views), outputs(copies)
    assert len(ours) == len(expected) == 10
    for a, b in zip(ours, expected):
        assert torch.equal(a, b)


def test_fallback_to_the_reference(monkeypatch):
    d = joint_batch(16, 3, 4, seed=75)
    n = next_step(16, 3, 4, seed=76)
    kernels = [loss_pair(d, "self_normalized"), weights_pair(d)[0], ratios_pair(d, "policy")[0], bellman_pair(n)[0]]
    monkeypatch.setattr(_backend, "has_kernels", lambda device: False)
    _backend.warn_fallback.cache_clear()
    with pytest.warns(RuntimeWarning, match="inspo_ext._C has no cpu backend"):
        fallback = [
            loss_pair(d, "self_normalized"),
            weights_pair(d)[0],
            ratios_pair(d, "policy")[0],
            bellman_pair(n)[0],
        ]
    kernel_tensors, fallback_tensors = _tensors(kernels), _tensors(fallback)
    assert len(kernel_tensors) == len(fallback_tensors) == 20
    for a, b in zip(kernel_tensors, fallback_tensors):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-10, atol=1e-10)


def _tensors(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    return [t for item in obj for t in _tensors(item)]


def test_meta_tensors_give_shapes():
    d = {k: v.to("meta") for k, v in joint_batch(5, 3, 4, seed=77).items()}
    out = inspo_ext.sequential_policy_loss(
        d["logits"], d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"], **HYPER
    )
    assert all(t.device.type == "meta" and t.shape == (3,) for t in out)
    weights = inspo_ext.in_sample_weights(d["q_local"], d["log_mu"], d["avail"], d["actions"], alpha=0.1, beta=0.1)
    assert all(t.shape == (5, 3) for t in weights)
    assert inspo_ext.resample(weights.weight).indices.shape == (5, 3)


def test_fallback_with_problems(monkeypatch):
    """The reference fallback takes the leading problem dimension too, with the kernels' errors."""
    from ops_testing import stack_problems

    d = stack_problems([joint_batch(16, 3, 4, seed=78 + s) for s in range(2)])
    n = stack_problems([next_step(16, 3, 4, seed=80 + s) for s in range(2)])
    uniforms = torch.rand(2, 16, 3, dtype=torch.float64)

    def run():
        log_rho = ratios_pair(d, "target")[0]
        return [
            *loss_pair(d, "self_normalized")[:2],
            *weights_pair(d)[0],
            log_rho,
            *bellman_pair(n)[0],
            *inspo_ext.resample(log_rho, uniforms=uniforms),
        ]

    kernels = run()
    bad = uniforms.clone()
    bad[1, 2, 0] = 1.0
    with pytest.raises(ValueError) as kernel_error:
        inspo_ext.resample(kernels[7], uniforms=bad)
    monkeypatch.setattr(_backend, "has_kernels", lambda device: False)
    _backend.warn_fallback.cache_clear()
    with pytest.warns(RuntimeWarning, match="inspo_ext._C has no cpu backend"):
        fallback = run()
        with pytest.raises(ValueError) as fallback_error:
            inspo_ext.resample(kernels[7], uniforms=bad)
    assert str(fallback_error.value) == str(kernel_error.value) == "uniforms[1, 2, 0] = 1.0 must be in [0, 1)"
    for a, b in zip(_tensors(kernels), _tensors(fallback)):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-10, atol=1e-10)


def test_problem_dimension_same_result_for_one_and_two_threads():
    """Bitwise with S problems too: each problem's chunks and their order do not depend on the threads."""
    from ops_testing import stack_problems

    d = stack_problems([joint_batch(600, 3, 5, seed=82 + s) for s in range(2)])
    uniforms = torch.rand(2, 600, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ours, grad = loss_pair(d, "self_normalized")[:2]
            log_rho = ratios_pair(d, "target")[0]
            results.append([*ours, grad, log_rho, *inspo_ext.resample(log_rho, uniforms=uniforms)])
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results):
        assert torch.equal(a.detach(), b.detach())


def test_forward_ops_return_constants():
    """The forward-only ops detach their inputs: no gradient flows into them by design."""
    d = joint_batch(8, 3, 4, seed=16)
    logits = d["logits"].clone().requires_grad_()
    q = d["q_local"].clone().requires_grad_()
    log_rho = inspo_ext.teammate_log_ratios(
        logits, d["log_mu"], d["avail"], d["actions"], d["order"], q_local=q, alpha=HYPER["alpha"], beta=HYPER["beta"]
    )
    weights = inspo_ext.in_sample_weights(q, d["log_mu"], d["avail"], d["actions"], alpha=0.1, beta=0.0)
    assert not log_rho.requires_grad and not weights.weight.requires_grad
    n = next_step(8, 3, 4, seed=17)
    n["next_logits"].requires_grad_()
    assert not inspo_ext.soft_bellman_target(**n, gamma=GAMMA, alpha=0.1, beta=0.1).target.requires_grad
