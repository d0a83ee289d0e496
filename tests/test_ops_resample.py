"""resample against reference.resample (same uniforms -> same indices), and its statistics."""

import math

import pytest
import torch

import inspo_ext
from inspo_ext import reference
from inspo_ext.reference import RESAMPLE_METHODS
from ops_testing import CPU, assert_nearly_equal_draws, close, random_log_rho, run_resample, to_cpu, uniforms_for


def _log_rho(batch, agents, seed, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, agents, generator=g, dtype=torch.float64) * scale).to(dtype)


def _pair(log_rho, method, seed, device=CPU):
    """resample on `device` with a seeded generator there, and the reference on the CPU with the same draws."""
    generator = torch.Generator(device).manual_seed(seed)
    ours = to_cpu(inspo_ext.resample(log_rho.to(device), method=method, generator=generator))
    shape = log_rho.shape if method == "multinomial" else (1, log_rho.shape[1])
    generator = torch.Generator(device).manual_seed(seed)
    uniforms = torch.rand(shape, generator=generator, dtype=torch.float64, device=device).cpu()
    return ours, reference.resample(log_rho, uniforms, method)


@pytest.mark.parametrize("method", ["multinomial", "systematic"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (7, 1), (500, 4), (64, 27)])
def test_resample_equals_reference(method, dtype, shape, backend):
    log_rho = _log_rho(*shape, seed=40, dtype=dtype)
    ours, ref = _pair(log_rho, method, seed=41, device=backend)
    assert ours.indices.dtype == torch.int64 and ours.ess.dtype == dtype
    if dtype == torch.float64:
        assert torch.equal(ours.indices, ref.indices)
    else:  # a float32 exp on the device may differ from the host's in the last bit
        assert_nearly_equal_draws(ours.indices, ref.indices, log_rho)
    close(ours.ess, ref.ess)


def test_nearly_equal_draws_allows_only_a_move_to_the_neighbouring_positive_sample():
    """The float32 comparison of draws accepts a draw moved to the next sample of positive weight (over zero-weight
    ones) and nothing further."""
    log_rho = torch.tensor([[0.0], [-math.inf], [0.0], [0.0], [0.0]])
    expected = torch.tensor([[0], [2], [2], [3], [4]])
    moved = expected.clone()
    moved[0, 0] = 2  # past the zero-weight sample 1: the neighbouring positive sample
    assert_nearly_equal_draws(moved, expected, log_rho, max_fraction=0.5)
    moved[0, 0] = 3  # two positive samples away
    with pytest.raises(AssertionError, match="neighbouring sample"):
        assert_nearly_equal_draws(moved, expected, log_rho, max_fraction=0.5)


@pytest.mark.parametrize("batch", [8, 40])
def test_a_draw_on_a_cumulative_weight_takes_the_next_sample(batch, backend):
    """Ties: a point equal to a cdf entry draws the next sample of positive weight, as searchsorted(right=True).
    Weights 1 (cdf 1, 2, ..., B) and uniforms m / 8, so that the points m B / 8 are whole numbers; in the second
    column some samples have zero weight (flat stretches of the cdf). Draws are searched 16 at a time
    (csrc/cpu/resample.cpp): B = 8 is one partial group, B = 40 two full groups and a partial one."""
    agents = 3
    log_rho = torch.zeros(batch, agents, dtype=torch.float64)
    log_rho[3::5, 1] = -math.inf
    m = torch.arange(batch * agents).reshape(batch, agents) % 8
    uniforms = m.double() / 8
    ours = run_resample(log_rho.to(backend), uniforms.to(backend), "multinomial")
    ref = reference.resample(log_rho, uniforms, "multinomial")
    assert torch.equal(ours.indices.cpu(), ref.indices)
    assert torch.equal(ref.indices[:, 0], m[:, 0] * batch // 8)  # point k = cdf[k - 1]: sample k
    assert not bool(torch.isin(ours.indices[:, 1].cpu(), torch.arange(3, batch, 5)).any())


def test_zero_weight_samples_are_never_drawn():
    log_rho = _log_rho(400, 3, seed=42)
    zero = torch.rand(400, 3, generator=torch.Generator().manual_seed(43)) < 0.5
    zero[-1] = True  # including the last sample (the end of the cdf)
    zero[0] = True
    log_rho = log_rho.masked_fill(zero, -math.inf)
    for method in ("multinomial", "systematic"):
        for seed in range(5):
            ours, ref = _pair(log_rho, method, seed)
            assert torch.equal(ours.indices, ref.indices)
            drawn_zero = zero.gather(0, ours.indices)
            assert not drawn_zero.any()


def test_systematic_spacing():
    """Systematic draws are evenly spaced: indices are sorted and each sample is drawn floor or ceil of
    B p_b times."""
    batch = 300
    log_rho = _log_rho(batch, 4, seed=44)
    indices = inspo_ext.resample(log_rho, method="systematic", generator=torch.Generator().manual_seed(45)).indices
    p = torch.softmax(log_rho, 0)
    for i in range(4):
        assert torch.all(indices[1:, i] >= indices[:-1, i])
        counts = torch.bincount(indices[:, i], minlength=batch).double()
        assert torch.all((counts - batch * p[:, i]).abs() < 1.0 + 1e-9)


def test_multinomial_frequencies():
    """Loose statistical check, seeded (cannot flake): counts of 40k draws within 5 sigma of B p."""
    batch = 40_000
    base = torch.tensor([0.0, math.log(2.0), math.log(4.0), -math.inf, math.log(3.0)], dtype=torch.float64)
    log_rho = base.repeat(batch // 5).unsqueeze(1).repeat(1, 2)  # 8000 copies of 5 weights, 2 agents
    indices = inspo_ext.resample(log_rho, generator=torch.Generator().manual_seed(46)).indices
    p = torch.tensor([1.0, 2.0, 4.0, 0.0, 3.0], dtype=torch.float64) / 10.0
    for i in range(2):
        counts = torch.bincount(indices[:, i] % 5, minlength=5).double()
        sigma = (batch * p * (1 - p)).sqrt()
        assert counts[3] == 0
        assert torch.all((counts - batch * p).abs() <= 5 * sigma + 1e-9)


def test_ess():
    uniform = torch.zeros(50, 3, dtype=torch.float64)
    close(inspo_ext.resample(uniform).ess, torch.full((3,), 50.0, dtype=torch.float64))
    log_rho = _log_rho(50, 3, seed=47, scale=30.0)  # wide range: the shifted computation must stay finite
    rho = torch.exp(log_rho - log_rho.max(0).values)
    close(inspo_ext.resample(log_rho).ess, rho.sum(0) ** 2 / (rho**2).sum(0))


def test_resample_opcheck():
    log_rho = _log_rho(20, 3, seed=48)
    for method in (0, 1):
        uniforms = torch.rand((20, 3) if method == 0 else (1, 3), dtype=torch.float64)
        torch.library.opcheck(torch.ops.inspo_ext.resample.default, (log_rho, uniforms, method))


def test_draws_exactly_on_cdf_values():
    """Points that equal a cdf value (and flat runs of zero weights) take the first b with cdf > point,
    as searchsorted(right=True): the branch-free search must agree on every tie."""
    weights = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    log_rho = weights.log().unsqueeze(1).repeat(1, 2)  # cdf 1 1 1 2 3 3 4 4, total 4
    uniforms = torch.tensor([0.0, 0.25, 0.5, 0.75, 0.25, 0.5, 0.75, 0.0], dtype=torch.float64)
    uniforms = uniforms.unsqueeze(1).repeat(1, 2)  # points 0 1 2 3 1 2 3 0: each one a cdf value
    method = reference.RESAMPLE_METHODS.index("multinomial")
    indices, _ = torch.ops.inspo_ext.resample(log_rho, uniforms, method)
    expected = torch.tensor([0, 3, 4, 6, 3, 4, 6, 0]).unsqueeze(1).repeat(1, 2)
    assert torch.equal(indices, expected)
    assert torch.equal(indices, reference.resample(log_rho, uniforms, "multinomial").indices)


# ---- a leading problem dimension S and explicit uniforms ---------------------------------------------------
@pytest.mark.parametrize("method", ["multinomial", "systematic"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_resample_with_problems_and_uniforms(method, dtype):
    """Problem s of a batched call equals the call on slice s with that slice's uniforms (bit for bit), and
    the reference; indices stay within each problem's own B rows."""
    log_rho = torch.stack([_log_rho(300, 4, seed=42 + s, dtype=dtype) for s in range(3)])
    log_rho[1, :, 2] = torch.where(torch.arange(300) % 3 == 0, log_rho[1, :, 2], -math.inf)
    draws = (300, 4) if method == "multinomial" else (1, 4)
    uniforms = torch.rand((3,) + draws, generator=torch.Generator().manual_seed(43), dtype=torch.float64)
    ours = inspo_ext.resample(log_rho, method=method, uniforms=uniforms)
    ref = reference.resample(log_rho, uniforms, method)
    assert ours.indices.shape == (3, 300, 4) and ours.ess.shape == (3, 4)
    assert torch.equal(ours.indices, ref.indices)
    close(ours.ess, ref.ess)
    assert (ours.indices[1, :, 2] % 3 == 0).all()  # zero weights of problem 1 never drawn
    for s in range(3):
        single = inspo_ext.resample(log_rho[s], method=method, uniforms=uniforms[s])
        assert torch.equal(single.indices, ours.indices[s]) and torch.equal(single.ess, ours.ess[s])
    # given uniforms replace the generator's draw: the same draw through a generator gives the same result
    generated = inspo_ext.resample(log_rho[0], method=method, generator=torch.Generator().manual_seed(44))
    drawn = torch.rand(draws, generator=torch.Generator().manual_seed(44), dtype=torch.float64)
    assert torch.equal(generated.indices, inspo_ext.resample(log_rho[0], method=method, uniforms=drawn).indices)


def test_uniforms_are_validated():
    log_rho = _log_rho(6, 3, seed=45)
    good = torch.rand(6, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^uniforms must have dtype torch.float64, got torch.float32$"):
        inspo_ext.resample(log_rho, uniforms=good.float())
    with pytest.raises(ValueError, match=r"^uniforms must have shape \[1, N\] = \[1, 3\], got \[6, 3\]$"):
        inspo_ext.resample(log_rho, method="systematic", uniforms=good)
    # S on log_rho and not on the uniforms: both named (which one is wrong, the shapes cannot tell)
    with pytest.raises(
        ValueError,
        match=r"^log_rho has shape \[2, 6, 3\], one dimension more than uniforms \(\[6, 3\]\): a leading problem "
        r"dimension S = 2 must be on every tensor of the call or on none$",
    ):
        inspo_ext.resample(torch.stack([log_rho, log_rho]), uniforms=good)
    with pytest.raises(ValueError, match="generator or uniforms, not both"):
        inspo_ext.resample(log_rho, uniforms=good, generator=torch.Generator())
    for bad in (1.0, -0.25, math.nan):
        u = good.clone()
        u[4, 1] = bad
        with pytest.raises(ValueError, match=rf"^uniforms\[4, 1\] = {bad} must be in \[0, 1\)$"):
            inspo_ext.resample(log_rho, uniforms=u)
    u = torch.rand(2, 1, 3, dtype=torch.float64)
    u[1, 0, 2] = 1.0
    with pytest.raises(ValueError, match=r"^uniforms\[1, 0, 2\] = 1.0 must be in \[0, 1\)$"):
        inspo_ext.resample(torch.stack([log_rho, log_rho]), method="systematic", uniforms=u)
    stacked = torch.stack([log_rho, log_rho])
    stacked[1, :, 0] = -math.inf
    with pytest.raises(ValueError, match=r"^log_rho\[1, :, 0\] has no positive weight"):
        inspo_ext.resample(stacked)


def test_resample_opcheck_and_compile_with_problems():
    log_rho = torch.stack([_log_rho(20, 3, seed=46 + s) for s in range(2)])
    for method, draws in ((0, (2, 20, 3)), (1, (2, 1, 3))):
        uniforms = torch.rand(draws, dtype=torch.float64)
        torch.library.opcheck(torch.ops.inspo_ext.resample.default, (log_rho, uniforms, method))
    uniforms = torch.rand(2, 20, 3, dtype=torch.float64)
    compiled = torch.compile(lambda x, u: inspo_ext.resample(x, uniforms=u), fullgraph=True)
    assert torch.equal(compiled(log_rho, uniforms).indices, inspo_ext.resample(log_rho, uniforms=uniforms).indices)


# ---- exact draws against the reference on every backend -------------------------------------------------
# B = 3000 spans three scan tiles of 1024 samples (csrc/cuda/resample.cu).
@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (7, 1), (64, 5), (1000, 27), (3000, 3)])
@pytest.mark.parametrize("method", RESAMPLE_METHODS)
def test_resample_matches_reference_exactly(shape, method, backend):
    log_rho = random_log_rho(*shape)
    uniforms = uniforms_for(*shape, method)
    indices, ess = run_resample(log_rho.to(backend), uniforms.to(backend), method)
    expected = reference.resample(log_rho, uniforms, method)
    assert torch.equal(indices.cpu(), expected.indices)  # same uniforms, same draws
    close(ess.cpu(), expected.ess)
    zero_weight = torch.isinf(log_rho).gather(0, indices.cpu())
    assert not zero_weight.any()  # a zero-weight sample is never drawn


@pytest.mark.parametrize("method", RESAMPLE_METHODS)
def test_resample_ties_and_float32(method, backend):
    # Equal weights (exp(0) = 1): an integer cdf, exact whatever the summation order and the exp.
    log_rho = torch.full((200, 4), 0.5, dtype=torch.float64)
    uniforms = uniforms_for(200, 4, method, seed=6)
    indices, ess = run_resample(log_rho.to(backend), uniforms.to(backend), method)
    assert torch.equal(indices.cpu(), reference.resample(log_rho, uniforms, method).indices)
    close(ess.cpu(), torch.full((4,), 200.0, dtype=torch.float64))
    # float32 weights of 1 or 0 (log_rho 0 or -inf): exact draws too.
    log_rho32 = torch.where(random_log_rho(500, 6, seed=8) > 0, 0.0, -math.inf).float()
    log_rho32[0] = 0.0
    uniforms = uniforms_for(500, 6, method, seed=9)
    indices, ess = run_resample(log_rho32.to(backend), uniforms.to(backend), method)
    expected = reference.resample(log_rho32, uniforms, method)
    assert torch.equal(indices.cpu(), expected.indices)
    close(ess.cpu(), expected.ess)
    # Random float32 weights.
    log_rho32 = random_log_rho(500, 6, seed=10).float()
    indices, ess = run_resample(log_rho32.to(backend), uniforms.to(backend), method)
    expected = reference.resample(log_rho32, uniforms, method)
    assert_nearly_equal_draws(indices.cpu(), expected.indices, log_rho32)
    close(ess.cpu(), expected.ess)


@pytest.mark.parametrize("method", RESAMPLE_METHODS)
def test_resample_public_op_uses_the_generator(method, backend):
    log_rho = random_log_rho(300, 4, seed=11)
    generator = torch.Generator(device=backend).manual_seed(123)
    out = inspo_ext.resample(log_rho.to(backend), method=method, generator=generator)
    shape = (300, 4) if method == "multinomial" else (1, 4)
    replay = torch.rand(
        shape, generator=torch.Generator(device=backend).manual_seed(123), dtype=torch.float64, device=backend
    )
    expected = reference.resample(log_rho, replay.cpu(), method)
    assert torch.equal(out.indices.cpu(), expected.indices)
    close(out.ess.cpu(), expected.ess)
