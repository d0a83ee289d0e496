"""Seeded random cases for every op, run in child processes (a crash is a failure that names its seed).

Valid cases (random shapes, masks, scales, hyperparameters, float64 and float32, a third of them with a
leading problem dimension S, one in six with extreme finite values: critic values and rewards up to 1e30,
1e100 in float64) are compared with `inspo_ext.reference` in float64, gradients of the policy loss
included, and a batched call with the calls on its slices (bit for bit); invalid cases (one corrupted
entry or argument) must raise the named exception whose message names the argument and the index. An
extra leading dimension on an op's first tensor alone is named as that tensor's.

INSPO_FUZZ_CASES (default 200) cases per op; INSPO_FUZZ_SEED (default 0) picks another set. Reproduce one
case: `python tests/test_fuzz_ops.py OP CASE_SEED 1` (prints its failure, if any).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # over a few seconds a module: `pytest -m "not slow"` skips it

OPS = ("in_sample_weights", "teammate_log_ratios", "soft_bellman_target", "resample", "sequential_policy_loss")
CASES = int(os.environ.get("INSPO_FUZZ_CASES", "200"))
BASE_SEED = int(os.environ.get("INSPO_FUZZ_SEED", "0"))
CHUNK = 2000  # cases per child process


# ---- the parent: one child per op (and per CHUNK cases) ---------------------------------------------------
def _run_child(op: str, first_seed: int, count: int) -> list[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, __file__, op, str(first_seed), str(count)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent,
        timeout=600,
    )
    lines = proc.stdout.splitlines()
    failures = [json.loads(line[5:]) for line in lines if line.startswith("FAIL ")]
    if proc.returncode != 0 or not any(line == "DONE" for line in lines):
        started = [line for line in lines if line.startswith("CASE ")]
        seed = started[-1].split()[1] if started else "?"
        failures.append(
            f"{op}: child exited with {proc.returncode} during case {seed} "
            f"(reproduce: python tests/test_fuzz_ops.py {op} {seed} 1)\n{proc.stderr[-3000:]}"
        )
    return failures


@pytest.mark.parametrize("op", OPS)
def test_fuzz(op):
    first = (BASE_SEED * len(OPS) + OPS.index(op)) * 10**7
    failures = []
    for start in range(0, CASES, CHUNK):
        failures += _run_child(op, first + start, min(CHUNK, CASES - start))
    assert not failures, f"{len(failures)} failing case(s):\n" + "\n\n".join(failures[:10])


def _first_tensor_calls():
    """(op, its first tensor's name, a call of the op on a valid unbatched batch whose first tensor
    gets `first` instead)."""
    import torch

    import inspo_ext
    from ops_testing import joint_batch, next_step

    d = joint_batch(6, 3, 4, dtype=torch.float64, seed=5)
    n = next_step(6, 3, 4, dtype=torch.float64, seed=5)
    temps = dict(alpha=0.1, beta=0.1)
    uniforms = torch.rand(6, 3, dtype=torch.float64)
    return {
        "in_sample_weights": (
            "q_local",
            d["q_local"],
            lambda first: inspo_ext.in_sample_weights(first, d["log_mu"], d["avail"], d["actions"], **temps),
        ),
        "teammate_log_ratios": (
            "logits",
            d["logits"],
            lambda first: inspo_ext.teammate_log_ratios(
                first, d["log_mu"], d["avail"], d["actions"], d["order"], **temps
            ),
        ),
        "soft_bellman_target": (
            "reward",
            n["reward"],
            lambda first: inspo_ext.soft_bellman_target(**{**n, "reward": first}, gamma=0.99, **temps),
        ),
        "resample": ("log_rho", d["log_mu"][..., 0], lambda first: inspo_ext.resample(first, uniforms=uniforms)),
        "sequential_policy_loss": (
            "logits",
            d["logits"],
            lambda first: inspo_ext.sequential_policy_loss(
                first, d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"], **temps
            ),
        ),
    }


@pytest.mark.parametrize("op", OPS)
def test_an_extra_leading_dimension_on_the_first_tensor_is_named_as_its(op):
    name, first, call = _first_tensor_calls()[op]
    extra = first.unsqueeze(0).expand(2, *first.shape).contiguous()
    with pytest.raises(ValueError) as error:
        call(extra)
    assert str(error.value).startswith(f"{name} "), str(error.value)  # the tensor with the extra dimension
    assert f"[2, {', '.join(map(str, first.shape))}]" in str(error.value)


# ---- the child: cases -------------------------------------------------------------------------------------
def _cases(op: str, first_seed: int, count: int) -> None:
    import torch

    torch.set_num_threads(1)
    for seed in range(first_seed, first_seed + count):
        print(f"CASE {seed}", flush=True)
        try:
            error = CHECKS[op](torch.Generator().manual_seed(seed), seed)
        except Exception:  # noqa: BLE001  (an unexpected exception is a failure of this case)
            error = traceback.format_exc(limit=4)
        if error:
            print(
                "FAIL "
                + json.dumps(f"{op} case {seed} (reproduce: python tests/test_fuzz_ops.py {op} {seed} 1): {error}"),
                flush=True,
            )
    print("DONE", flush=True)


def _randint(g, low: int, high: int) -> int:
    import torch

    return int(torch.randint(low, high + 1, (1,), generator=g))


def _choice(g, options):
    return options[_randint(g, 0, len(options) - 1)]


def _hyper(g) -> dict:
    import torch

    alpha = _choice(g, [0.0, 0.01, 0.1, 1.0, float(torch.rand(1, generator=g)) * 2])
    beta = _choice(g, [0.01, 0.1, 1.0, float(torch.rand(1, generator=g)) * 2 + 1e-3])
    return dict(
        alpha=alpha,
        beta=beta,
        eta=_choice(g, [0.0, 0.3, 1.0, float(torch.rand(1, generator=g))]),
        log_rho_max=_choice(g, [math.log(100.0), 0.5, math.inf]),
        log_w_max=_choice(g, [10.0, 0.0, math.inf]),
    )


def _batch(g, seed: int, problems: int = 0) -> tuple[dict, dict]:
    """A random valid joint batch (float64 or float32) and its description; `problems` > 0: that many
    problems stacked on a leading S (with an [S, N] or a shared [N] order)."""
    import torch

    from ops_testing import joint_batch, stack_problems

    shape = (_randint(g, 1, 40), _randint(g, 1, 6), _randint(g, 1, 9))
    dtype = _choice(g, [torch.float64, torch.float64, torch.float32])
    scale = _choice(g, [1.0, 3.0]) if dtype == torch.float32 else _choice(g, [1.0, 3.0, 30.0, 300.0])
    mask = _choice(g, ["random", "padding", "single", "full"])
    logit_scale = scale
    if _randint(g, 0, 5) == 0:  # extreme finite critic values (the logits stay ordinary)
        scale, logit_scale = _choice(g, [1e15, 1e30] + ([1e100] if dtype == torch.float64 else [])), 1.0

    def make(s):
        return joint_batch(
            *shape,
            dtype=dtype,
            seed=seed + 7919 * s,
            mask=mask,
            logit_scale=logit_scale,
            q_scale=scale,
        )

    d = stack_problems([make(s) for s in range(problems)], shared_order=_randint(g, 0, 1) == 1) if problems else make(0)
    return d, dict(shape=shape, dtype=dtype, scale=scale, mask=mask, problems=problems)


def _problems(g) -> int:
    """0 (no problem dimension) for two cases in three, else S in 1..3."""
    return 0 if _randint(g, 0, 2) else _randint(g, 1, 3)


def _same_as_slices(batched, call_slice, problems: int, what: str):
    """None when output s of a batched call equals the call on slice s, bit for bit."""
    import torch

    for s in range(problems):
        single = call_slice(s)
        for k, (a, b) in enumerate(zip(single, batched)):
            if not torch.equal(a.detach(), b[s].detach()):
                return f"{what}: output {k} of problem {s} differs from the call on its slice"
    return None


def _close(actual, expected, info: dict, what: str):
    import torch

    if info["dtype"] == torch.float64:
        tol = dict(rtol=1e-8, atol=1e-8 * info["scale"])
    else:
        tol = dict(rtol=2e-3, atol=2e-3 * info["scale"])
    try:
        torch.testing.assert_close(actual.detach().double(), expected.detach().double(), equal_nan=False, **tol)
    except AssertionError as error:
        return f"{what} differs from the reference ({info}): {str(error)[:600]}"
    return None


def _double(d: dict) -> dict:
    return {k: (v.double() if v is not None and v.is_floating_point() else v) for k, v in d.items()}


def _expect(fn, exc: type, pattern: str, what: str):
    """None when fn() raises exc with a message matching pattern; else the failure."""
    try:
        fn()
    except exc as error:
        if re.match(pattern, str(error)):
            return None
        return f"{what}: {exc.__name__} message {str(error)!r} does not match {pattern!r}"
    except Exception as error:  # noqa: BLE001
        return f"{what}: expected {exc.__name__} matching {pattern!r}, got {type(error).__name__}: {error}"
    return f"{what}: expected {exc.__name__} matching {pattern!r}, nothing was raised"


def _corrupt_row(g, d: dict, names: dict, kinds: list[str], samples=None):
    """Corrupt one row of d in place by one of `kinds` (in one of `samples`, default any); returns
    (exception, message pattern) or None."""
    import torch

    batch, agents, actions = d[names["avail"]].shape
    b = _choice(g, samples) if samples else _randint(g, 0, batch - 1)
    i = _randint(g, 0, agents - 1)
    available = torch.nonzero(d[names["avail"]][b, i]).flatten().tolist()
    kind = _choice(g, kinds)
    act, avail = names["actions"], names["avail"]
    # Rows before (b, i) stay valid, so this is the first error; the argument and index are named.
    if kind == "action_out_of_range":
        d[act][b, i] = _choice(g, [-1, actions, actions + 5])
        return ValueError, rf"^{act}\[{b}, {i}\] = -?\d+ is out of range \[0, {actions}\)$"
    if kind == "action_unavailable":
        if len(available) == actions:
            return None
        d[act][b, i] = _choice(g, [j for j in range(actions) if j not in available])
        return ValueError, rf"^{act}\[{b}, {i}\] = \d+ is not available \({avail}\[{b}, {i}, \d+\] is False\)$"
    if kind == "no_available_action":
        d[avail][b, i] = False
        return ValueError, rf"^{avail}\[{b}, {i}\] has no available action$"
    name = names[kind]
    d[name][b, i, _choice(g, available)] = _choice(g, [math.nan, math.inf, -math.inf])
    return ValueError, rf"^{name}\[{b}, {i}\] has a non-finite value at an available action$"


NAMES = dict(logits="logits", log_mu="log_mu", q_local="q_local", avail="avail", actions="actions")


# ---- one check per op: (generator, seed) -> None or the failure --------------------------------------------
def check_in_sample_weights(g, seed: int):
    import inspo_ext
    from inspo_ext import reference
    from ops_testing import problem_slice

    problems = _problems(g)
    d, info = _batch(g, seed, problems)
    h = _hyper(g)

    def call(x):
        return inspo_ext.in_sample_weights(
            x["q_local"],
            x["log_mu"],
            x["avail"],
            x["actions"],
            alpha=h["alpha"],
            beta=h["beta"],
            log_w_max=h["log_w_max"],
        )

    if problems:
        ours = call(d)
        problem = _same_as_slices(ours, lambda s: call(problem_slice(d, s)), problems, "in_sample_weights")
        if problem:
            return problem
    elif _randint(g, 0, 3) == 0:
        spec = _corrupt_row(
            g, d, NAMES, ["action_out_of_range", "action_unavailable", "no_available_action", "log_mu", "q_local"]
        )
        return spec and _expect(lambda: call(d), *spec, "invalid in_sample_weights")
    ours = call(d)
    x = _double(d)
    ref = reference.in_sample_weights(
        x["q_local"], x["log_mu"], x["avail"], x["actions"], h["alpha"], h["beta"], h["log_w_max"]
    )
    for field, a, b in zip(ref._fields, ours, ref):
        # the weight is exp(log w): its relative error is log w's absolute error
        problem = _close(a, b, info | dict(scale=info["scale"] * max(1.0, float(b.abs().max()))), field)
        if problem:
            return problem
    return None


def check_teammate_log_ratios(g, seed: int):
    import inspo_ext
    from inspo_ext import reference
    from ops_testing import problem_slice

    problems = _problems(g)
    d, info = _batch(g, seed, problems)
    h = _hyper(g)
    predecessors = _choice(g, ["target", "policy"])

    def call(x):
        return inspo_ext.teammate_log_ratios(
            x["logits"],
            x["log_mu"],
            x["avail"],
            x["actions"],
            x["order"],
            predecessors=predecessors,
            q_local=x["q_local"] if predecessors == "target" else None,
            updated_log_probs=x["updated_log_probs"] if predecessors == "policy" else None,
            alpha=h["alpha"],
            beta=h["beta"],
            eta=h["eta"],
            log_rho_max=h["log_rho_max"],
        )

    if problems:
        problem = _same_as_slices([call(d)], lambda s: [call(problem_slice(d, s))], problems, "teammate_log_ratios")
        if problem:
            return problem
    elif _randint(g, 0, 3) == 0:
        kind = _randint(g, 0, 4)
        agents = d["order"].numel()
        if kind == 0 and agents > 1:
            d["order"] = d["order"].clone()
            d["order"][0] = d["order"][1]
            return _expect(lambda: call(d), ValueError, r"^order must be a permutation of 0\.\.", "bad order")
        if kind == 1 and predecessors == "policy":
            b, i = _randint(g, 0, d["actions"].shape[0] - 1), _randint(g, 0, agents - 1)
            d["updated_log_probs"][b, i] = _choice(g, [0.5, math.nan, math.inf])
            return _expect(
                lambda: call(d),
                ValueError,
                rf"^updated_log_probs\[{b}, {i}\] = \S+ is not a log-prob",
                "bad updated_log_probs",
            )
        kinds = ["action_out_of_range", "action_unavailable", "no_available_action", "logits", "log_mu"]
        spec = _corrupt_row(g, d, NAMES, kinds + (["q_local"] if predecessors == "target" else []))
        return spec and _expect(lambda: call(d), *spec, "invalid teammate_log_ratios")
    ours = call(d)
    x = _double(d)
    ref = reference.teammate_log_ratios(
        x["logits"],
        x["log_mu"],
        x["avail"],
        x["actions"],
        x["order"],
        predecessors,
        x["q_local"],
        x["updated_log_probs"],
        h["alpha"],
        h["beta"],
        h["eta"],
        h["log_rho_max"],
    )
    return _close(ours, ref, info | dict(scale=info["scale"] * d["order"].shape[-1]), "log_rho")


def check_soft_bellman_target(g, seed: int):
    import torch

    import inspo_ext
    from inspo_ext import reference
    from ops_testing import next_step

    shape = (_randint(g, 1, 40), _randint(g, 1, 6), _randint(g, 1, 9))
    dtype = _choice(g, [torch.float64, torch.float32])
    info = dict(shape=shape, dtype=dtype, scale=1.0 if dtype == torch.float32 else _choice(g, [1.0, 30.0]))
    n = next_step(
        *shape,
        dtype=dtype,
        seed=seed,
        mask=_choice(g, ["random", "padding", "single", "full"]),
        terminal_fraction=_choice(g, [0.0, 0.3, 1.0]),
        logit_scale=info["scale"],
    )
    h = _hyper(g)
    gamma = _choice(g, [0.0, 0.99, 1.0])
    if _randint(g, 0, 5) == 0:  # extreme finite rewards and next-step values
        extreme = _choice(g, [1e15, 1e30] + ([1e100] if dtype == torch.float64 else []))
        n["reward"], n["q_next"] = n["reward"] * extreme, n["q_next"] * extreme
        info["scale"] = extreme

    def call(x):
        return inspo_ext.soft_bellman_target(
            **x,
            gamma=gamma,
            alpha=h["alpha"],
            beta=h["beta"],
            log_rho_max=h["log_rho_max"],
        )

    if _randint(g, 0, 3) == 0:
        live = torch.nonzero(n["done"] == 0).flatten().tolist()
        kind = _randint(g, 0, 3)
        b = _randint(g, 0, shape[0] - 1)
        if kind == 0:
            n["done"][b] = _choice(g, [0.5, -1.0, math.nan])
            return _expect(lambda: call(n), ValueError, rf"^done\[{b}\] = \S+ must be 0 or 1$", "bad done")
        if kind == 1:
            n["reward"][b] = _choice(g, [math.nan, math.inf])
            return _expect(lambda: call(n), ValueError, rf"^reward\[{b}\] = \S+ is not finite$", "bad reward")
        if not live:
            return None
        b = live[0]
        if kind == 2:
            n["q_next"][b] = math.nan
            return _expect(lambda: call(n), ValueError, rf"^q_next\[{b}\] = nan is not finite", "bad q_next")
        names = dict(logits="next_logits", log_mu="next_log_mu", avail="next_avail", actions="next_actions")
        spec = _corrupt_row(
            g, n, names, ["action_out_of_range", "no_available_action", "logits", "log_mu"], samples=[b]
        )  # the first live sample: terminal samples are not read
        return spec and _expect(lambda: call(n), *spec, "bad next row")
    ours = call(n)
    x = _double(n)
    ref = reference.soft_bellman_target(
        x["reward"],
        x["done"],
        x["q_next"],
        x["next_logits"],
        x["next_log_mu"],
        x["next_avail"],
        x["next_actions"],
        gamma,
        h["alpha"],
        h["beta"],
        h["log_rho_max"],
    )
    for field, a, b in zip(ref._fields, ours, ref):
        problem = _close(a, b, info | dict(scale=info["scale"] * shape[1] * (1 + h["alpha"] + h["beta"])), field)
        if problem:
            return problem
    return None


def check_resample(g, seed: int):
    import torch

    import inspo_ext
    from inspo_ext import reference

    batch, agents = _randint(g, 1, 60), _randint(g, 1, 5)
    problems = _problems(g)
    lead = (problems,) if problems else ()
    dtype = _choice(g, [torch.float64, torch.float32])
    scale = _choice(g, [1.0, 10.0, 300.0]) if dtype == torch.float64 else _choice(g, [1.0, 10.0])
    log_rho = (torch.randn(lead + (batch, agents), generator=g, dtype=torch.float64) * scale).to(dtype)
    zero = torch.rand(lead + (batch, agents), generator=g) < _choice(g, [0.0, 0.5])
    log_rho = log_rho.masked_fill(zero, -math.inf)
    first = log_rho[..., 0, :]
    first.copy_(torch.where(torch.isinf(log_rho).all(-2), torch.zeros_like(first), first))
    method = _choice(g, ["multinomial", "systematic"])
    if problems:
        draws = lead + ((batch, agents) if method == "multinomial" else (1, agents))
        uniforms = torch.rand(draws, generator=g, dtype=torch.float64)
        ours = inspo_ext.resample(log_rho, method=method, uniforms=uniforms)
        ref = reference.resample(log_rho, uniforms, method)
        if not torch.equal(ours.indices, ref.indices):
            return f"indices differ from the reference ({method}, {dtype}, S={problems}, B={batch}, N={agents})"
        problem = _same_as_slices(
            ours, lambda s: inspo_ext.resample(log_rho[s], method=method, uniforms=uniforms[s]), problems, "resample"
        )
        return problem or _close(ours.ess, ref.ess, dict(dtype=dtype, scale=float(batch)), "ess")
    if _randint(g, 0, 3) == 0:
        kind = _randint(g, 0, 2)
        b, i = _randint(g, 0, batch - 1), _randint(g, 0, agents - 1)
        if kind == 0:
            log_rho[b, i] = _choice(g, [math.nan, math.inf])
            return _expect(
                lambda: inspo_ext.resample(log_rho, method=method),
                ValueError,
                rf"^log_rho\[{b}, {i}\] = \S+ must be finite or -inf$",
                "bad log_rho",
            )
        if kind == 1:
            log_rho[:, i] = -math.inf
            return _expect(
                lambda: inspo_ext.resample(log_rho, method=method),
                ValueError,
                rf"^log_rho\[:, {i}\] has no positive weight",
                "empty column",
            )
        uniforms = torch.rand((batch if method == "multinomial" else 1, agents), generator=g, dtype=torch.float64)
        k = b if method == "multinomial" else 0
        uniforms[k, i] = _choice(g, [1.0, -1e-300, math.nan, math.inf])
        return _expect(
            lambda: inspo_ext.resample(log_rho, method=method, uniforms=uniforms),
            ValueError,
            rf"^uniforms\[{k}, {i}\] = \S+ must be in \[0, 1\)$",
            "bad uniforms",
        )
    state = g.get_state()
    ours = inspo_ext.resample(log_rho, method=method, generator=g)
    g.set_state(state)
    uniforms = torch.rand((batch, agents) if method == "multinomial" else (1, agents), generator=g, dtype=torch.float64)
    ref = reference.resample(log_rho, uniforms, method)
    if not torch.equal(ours.indices, ref.indices):
        return f"indices differ from the reference ({method}, {dtype}, B={batch}, N={agents})"
    weights = torch.exp(log_rho.double()).gather(0, ours.indices)
    if not (weights > 0).all():
        return "a zero-weight sample was drawn"
    return _close(ours.ess, ref.ess, dict(dtype=dtype, scale=float(batch)), "ess")


def check_sequential_policy_loss(g, seed: int):
    import torch

    import inspo_ext
    from inspo_ext import reference
    from ops_testing import problem_slice

    problems = _problems(g)
    d, info = _batch(g, seed, problems)
    h = _hyper(g)
    ratio = _choice(g, ["importance", "self_normalized", "none"])
    predecessors = _choice(g, ["target", "policy"])
    uses_updated = predecessors == "policy" and ratio != "none"

    def call(x, logits):
        return inspo_ext.sequential_policy_loss(
            logits,
            x["log_mu"],
            x["avail"],
            x["actions"],
            x["q_local"],
            x["order"],
            predecessors=predecessors,
            updated_log_probs=x["updated_log_probs"] if uses_updated else None,
            ratio=ratio,
            **h,
        )

    if not problems and _randint(g, 0, 3) == 0:
        kind = _randint(g, 0, 3)
        if kind == 0:
            name, value = _choice(
                g,
                [
                    ("alpha", -1.0),
                    ("beta", math.nan),
                    ("eta", 1.5),
                    ("log_w_max", -math.inf),
                    ("log_rho_max", math.nan),
                    ("alpha", True),
                ],
            )
            h = dict(h, **{name: value})
            return _expect(lambda: call(d, d["logits"]), ValueError, rf"^{name} must", f"bad {name}")
        if kind == 1:
            name = _choice(g, ["log_mu", "q_local", "avail", "actions"])
            bad = dict(d, **{name: d[name][..., :-1] if name != "actions" else d[name].int()})
            exc = TypeError if name == "actions" else ValueError
            return _expect(lambda: call(bad, d["logits"]), exc, rf"^{name} must", f"bad {name} shape or dtype")
        spec = _corrupt_row(
            g,
            d,
            NAMES,
            ["action_out_of_range", "action_unavailable", "no_available_action", "logits", "log_mu", "q_local"],
        )
        return spec and _expect(lambda: call(d, d["logits"]), *spec, "invalid sequential_policy_loss")
    weights = torch.rand(d["logits"].shape[:-3] + d["logits"].shape[-2:-1], generator=g, dtype=torch.float64) + 0.5
    logits = d["logits"].clone().requires_grad_()
    ours = call(d, logits)
    (ours.loss * weights.to(logits.dtype)).sum().backward()
    if problems:

        def call_slice(s):
            x = problem_slice(d, s)
            single_logits = x["logits"].clone().requires_grad_()
            out = call(x, single_logits)
            (out.loss * weights[s].to(logits.dtype)).sum().backward()
            return list(out) + [single_logits.grad]

        problem = _same_as_slices(list(ours) + [logits.grad], call_slice, problems, f"sequential_policy_loss {ratio}")
        if problem:
            return problem
    x = _double(d)
    ref_logits = x["logits"].clone().requires_grad_()
    ref = reference.sequential_policy_loss(
        ref_logits,
        x["log_mu"],
        x["avail"],
        x["actions"],
        x["q_local"],
        x["order"],
        predecessors,
        x["updated_log_probs"],
        h["alpha"],
        h["beta"],
        h["eta"],
        h["log_rho_max"],
        h["log_w_max"],
        ratio,
    )
    (ref.loss * weights).sum().backward()
    # the loss is a sum of c w log pi: scale by the largest term
    with torch.no_grad():
        magnitude = float(ref.loss.abs().max()) + float(ref_logits.grad.abs().max()) + 1.0
    tolerance = info | dict(scale=info["scale"] * magnitude)
    for field, a, b in zip(ref._fields, ours, ref):
        problem = _close(a, b, tolerance, field)
        if problem:
            return f"ratio={ratio}, predecessors={predecessors}: {problem}"
    return _close(logits.grad, ref_logits.grad, tolerance, f"d logits (ratio={ratio}, predecessors={predecessors})")


CHECKS = {op: globals()[f"check_{op}"] for op in OPS}

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    _cases(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
