"""Bad inputs raise the named exception, naming the argument and the index; the reference fallback raises
the same errors as the kernels."""

import math

import pytest
import torch

import inspo_ext
from inspo_ext import _backend
from ops_testing import (
    HYPER,
    bellman_pair,
    compare,
    joint_batch,
    next_step,
    problem_batches,
    random_log_rho,
    ratios_pair,
    ref_loss,
    ref_weights,
    run_loss,
    run_ratios,
    run_resample,
    run_soft_bellman,
    run_weights,
    stack_problems,
    to,
    uniforms_for,
    weights_pair,
)

LOSS_HYPER = dict(HYPER)


def _loss(d, **kw):
    return inspo_ext.sequential_policy_loss(
        d["logits"], d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"], **{**LOSS_HYPER, **kw}
    )


def _ratios(d, **kw):
    kw = {"q_local": d["q_local"], "alpha": 0.1, "beta": 0.1, **kw}
    return inspo_ext.teammate_log_ratios(d["logits"], d["log_mu"], d["avail"], d["actions"], d["order"], **kw)


def _weights(d):
    return inspo_ext.in_sample_weights(d["q_local"], d["log_mu"], d["avail"], d["actions"], alpha=0.1, beta=0.1)


def _bellman(n, **kw):
    return inspo_ext.soft_bellman_target(**n, **{"gamma": 0.99, "alpha": 0.1, "beta": 0.1, **kw})


@pytest.fixture
def d():
    return joint_batch(6, 3, 5, seed=60, mask="full")


# ---- dtype / shape / device / layout (checked in Python before the call) ----------------------------------
def test_float_dtype_is_a_type_error(d):
    with pytest.raises(TypeError, match="logits must be float32 or float64, got torch.float16"):
        _loss(dict(d, logits=d["logits"].half()))


def test_mixed_float_dtypes_are_a_type_error(d):
    with pytest.raises(TypeError, match=r"log_mu must have the dtype of logits \(torch.float64\), got torch.float32"):
        _loss(dict(d, log_mu=d["log_mu"].float()))


def test_avail_dtype_is_a_type_error(d):
    with pytest.raises(TypeError, match="avail must have dtype torch.bool, got torch.uint8"):
        _weights(dict(d, avail=d["avail"].to(torch.uint8)))


def test_actions_dtype_is_a_type_error(d):
    with pytest.raises(TypeError, match="actions must have dtype torch.int64, got torch.int32"):
        _ratios(dict(d, actions=d["actions"].int()))


def test_order_dtype_is_a_type_error(d):
    with pytest.raises(TypeError, match="order must have dtype torch.int64"):
        _loss(dict(d, order=d["order"].int()))


def test_not_a_tensor_is_a_type_error(d):
    with pytest.raises(TypeError, match="q_local must be a torch.Tensor, got list"):
        _weights(dict(d, q_local=d["q_local"].tolist()))


def test_shape_is_a_value_error(d):
    with pytest.raises(ValueError, match=r"log_mu must have shape \[B, N, A\] = \[6, 3, 5\], got \[6, 3, 4\]"):
        _loss(dict(d, log_mu=d["log_mu"][..., :4]))
    with pytest.raises(
        ValueError, match=r"logits must be 3-D \[B, N, A\] \(or 4-D \[S, B, N, A\]: S problems\), got shape \[6, 3\]"
    ):
        _loss(dict(d, logits=d["logits"][..., 0]))
    with pytest.raises(ValueError, match=r"reward must have shape \[B\] = \[6\], got \[5\]"):
        _bellman(dict(next_step(6, 3, 5), reward=torch.zeros(5, dtype=torch.float64)))


def test_empty_batch_is_a_value_error(d):
    with pytest.raises(ValueError, match="must be non-empty"):
        _weights({k: v[:0] if k != "order" else v for k, v in d.items()})


def test_device_mismatch_names_both_arguments(d):
    with pytest.raises(ValueError, match="q_local is on meta but logits is on cpu"):
        _loss(dict(d, q_local=d["q_local"].to("meta")))


def test_non_contiguous_is_a_value_error(d):
    with pytest.raises(ValueError, match="log_mu must be contiguous"):
        _loss(dict(d, log_mu=d["log_mu"].transpose(0, 1).contiguous().transpose(0, 1)))


# ---- hyperparameters and modes --------------------------------------------------------------------------------
def test_mode_strings_list_the_allowed_values(d):
    with pytest.raises(ValueError, match=r"ratio must be one of \('importance', 'self_normalized', 'none'\)"):
        _loss(d, ratio="weighted")
    with pytest.raises(ValueError, match=r"predecessors must be one of \('target', 'policy'\)"):
        _ratios(d, predecessors="exact")
    with pytest.raises(ValueError, match=r"method must be one of \('multinomial', 'systematic'\)"):
        inspo_ext.resample(torch.zeros(3, 2), method="residual")


def test_hyperparameter_ranges(d):
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        _weights_h(d, alpha=-0.1)
    with pytest.raises(ValueError, match=r"alpha \+ beta must be > 0"):
        _weights_h(d, alpha=0.0, beta=0.0)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        _loss(d, eta=1.5)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        _bellman(next_step(4, 2, 3), gamma=1.01)
    with pytest.raises(ValueError, match="log_w_max must be a number"):
        _loss(d, log_w_max=math.nan)


def _weights_h(d, alpha=0.1, beta=0.1):
    return inspo_ext.in_sample_weights(d["q_local"], d["log_mu"], d["avail"], d["actions"], alpha=alpha, beta=beta)


def test_missing_mode_inputs(d):
    with pytest.raises(ValueError, match="predecessors='policy' needs updated_log_probs"):
        _loss(d, predecessors="policy")
    with pytest.raises(ValueError, match="q_local is required"):
        _ratios(d, q_local=None)
    _loss(d, predecessors="policy", ratio="none")  # no ratio: updated_log_probs is not needed


# ---- value errors found by the kernels (same pass as the math) --------------------------------------------------
def test_action_out_of_range(d):
    d["actions"][3, 1] = 7
    with pytest.raises(ValueError, match=r"^actions\[3, 1\] = 7 is out of range \[0, 5\)$"):
        _loss(d)


def test_negative_action(d):
    d["actions"][2, 0] = -1
    with pytest.raises(ValueError, match=r"^actions\[2, 0\] = -1 is out of range \[0, 5\)$"):
        _weights(d)


def test_action_unavailable(d):
    d["actions"][3, 1] = 2
    d["avail"][3, 1, 2] = False
    with pytest.raises(ValueError, match=r"^actions\[3, 1\] = 2 is not available \(avail\[3, 1, 2\] is False\)$"):
        _ratios(d)


def test_no_available_action():
    d = joint_batch(6, 3, 5, seed=61)
    d["avail"][4, 0] = False
    with pytest.raises(ValueError, match=r"^avail\[4, 0\] has no available action$"):
        _loss(d)


def test_non_finite_logits_at_an_available_action(d):
    d["logits"][2, 1, 3] = math.inf
    with pytest.raises(ValueError, match=r"^logits\[2, 1\] has a non-finite value at an available action$"):
        _loss(d)


def test_non_finite_log_mu(d):
    d["log_mu"][1, 2, 0] = -math.inf
    with pytest.raises(ValueError, match=r"^log_mu\[1, 2\] has a non-finite value at an available action$"):
        _weights(d)


def test_non_finite_q(d):
    d["q_local"][0, 0, 4] = math.nan
    with pytest.raises(ValueError, match=r"^q_local\[0, 0\] has a non-finite value at an available action$"):
        _ratios(d)


def test_non_finite_updated_log_probs(d):
    d["updated_log_probs"][5, 2] = math.nan
    with pytest.raises(
        ValueError, match=r"^updated_log_probs\[5, 2\] = nan is not a log-probability \(finite and <= 0\)$"
    ):
        _loss(d, predecessors="policy", updated_log_probs=d["updated_log_probs"])


def test_order_not_a_permutation(d):
    with pytest.raises(ValueError, match=r"^order must be a permutation of 0..2, got \[0, 2, 2\]$"):
        _loss(dict(d, order=torch.tensor([0, 2, 2])))


def test_done_not_binary():
    n = next_step(8, 2, 3, seed=62)
    n["done"][5] = 0.5
    with pytest.raises(ValueError, match=r"^done\[5\] = 0.5 must be 0 or 1$"):
        _bellman(n)


def test_non_finite_reward_and_q_next():
    n = next_step(8, 2, 3, seed=63, terminal_fraction=0.0)
    n["reward"][6] = math.inf
    with pytest.raises(ValueError, match=r"^reward\[6\] = inf is not finite$"):
        _bellman(n)
    n = next_step(8, 2, 3, seed=63, terminal_fraction=0.0)
    n["q_next"][2] = math.nan
    with pytest.raises(ValueError, match=r"^q_next\[2\] = nan is not finite \(done\[2\] is 0\)$"):
        _bellman(n)


def test_next_step_names():
    n = next_step(8, 2, 3, seed=64, terminal_fraction=0.0)
    n["next_actions"][4, 1] = 3
    with pytest.raises(ValueError, match=r"^next_actions\[4, 1\] = 3 is out of range \[0, 3\)$"):
        _bellman(n)


def test_terminal_samples_are_not_validated():
    n = next_step(8, 2, 3, seed=65, terminal_fraction=0.5)
    assert n["done"].sum() > 0 and (n["next_actions"][n["done"].bool()] == -1).all()
    _bellman(n)  # padding (action -1, NaN logits and q_next) at terminal samples is fine


def test_bad_log_rho():
    log_rho = torch.zeros(4, 3, dtype=torch.float64)
    log_rho[2, 1] = math.nan
    with pytest.raises(ValueError, match=r"^log_rho\[2, 1\] = nan must be finite or -inf$"):
        inspo_ext.resample(log_rho)
    log_rho = torch.zeros(4, 3, dtype=torch.float64)
    log_rho[:, 2] = -math.inf
    with pytest.raises(ValueError, match=r"^log_rho\[:, 2\] has no positive weight \(every entry is -inf\)$"):
        inspo_ext.resample(log_rho, method="systematic")


def test_first_error_wins(d):
    """Several errors: the smallest (sample, agent) index is reported; within a row, the first check."""
    d["actions"][4, 2] = 9
    d["logits"][1, 1, 0] = math.nan
    d["q_local"][1, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r"^q_local\[1, 0\]"):
        _loss(d)
    d["avail"][1, 0] = False  # row (1, 0): no available action is checked before the values
    with pytest.raises(ValueError, match=r"^avail\[1, 0\] has no available action$"):
        _loss(d)


# ---- the reference fallback raises the same errors ----------------------------------------------------------------
def _corrupt_everything():
    d = joint_batch(6, 3, 5, seed=66)
    n = next_step(6, 3, 5, seed=67, terminal_fraction=0.0)
    cases = []
    bad = dict(d, actions=d["actions"].clone())
    bad["actions"][4, 1] = 5
    cases.append(lambda: _loss(bad))
    bad2 = dict(d, q_local=d["q_local"].clone())
    bad2["q_local"][2, 2] = math.nan
    cases.append(lambda: _weights(bad2))
    bad3 = dict(d, logits=d["logits"].clone())
    bad3["logits"][3, 0] = -math.inf
    cases.append(lambda: _ratios(bad3))
    bad4 = dict(n, done=n["done"].clone())
    bad4["done"][1] = 2.0
    cases.append(lambda: _bellman(bad4))
    log_rho = torch.zeros(5, 2, dtype=torch.float64)
    log_rho[3, 1] = math.inf
    cases.append(lambda: inspo_ext.resample(log_rho))
    cases.append(lambda: _loss(dict(d, order=torch.tensor([1, 1, 0]))))
    return cases


def test_fallback_raises_the_same_errors(monkeypatch):
    messages = []
    for case in _corrupt_everything():
        with pytest.raises(ValueError) as error:
            case()
        messages.append(str(error.value))
    monkeypatch.setattr(_backend, "has_kernels", lambda device: False)
    _backend.warn_fallback.cache_clear()
    with pytest.warns(RuntimeWarning, match="using the pure-PyTorch reference ops"):
        for case, message in zip(_corrupt_everything(), messages):
            with pytest.raises(ValueError) as error:
                case()
            assert str(error.value) == message


# ---- hyperparameters as any real scalar, no silent overflow, unread arguments checked -------------
def test_hyperparameters_accept_numpy_scalars_and_0d_tensors(d):
    """np.float32(0.1) and 0-d tensors are numbers like 0.1 (not 'must be a finite number >= 0')."""
    np = pytest.importorskip("numpy")
    expected = _loss(d)
    for kind in (np.float32, np.float64, lambda x: torch.tensor(x, dtype=torch.float64)):
        out = _loss(
            d,
            alpha=kind(HYPER["alpha"]),
            beta=kind(HYPER["beta"]),
            eta=kind(HYPER["eta"]),
            log_rho_max=kind(HYPER["log_rho_max"]),
            log_w_max=kind(HYPER["log_w_max"]),
        )
        for a, b in zip(out, expected):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # np.float32(0.1) is not 0.1
    _bellman(next_step(4, 2, 3), gamma=np.float64(0.9), alpha=np.int64(1))
    for bad in (True, "0.1", torch.tensor([0.1]), 1j):
        with pytest.raises(ValueError, match=r"^alpha must be a finite number >= 0, got "):
            _weights_h(d, alpha=bad)


def test_overflowing_temperature_and_minus_infinite_clips_are_rejected(d):
    """alpha = beta = 1e308 (tau = inf) would give NaN; log_rho_max = -inf / log_w_max = -inf would give every
    weight 0 (loss 0 or NaN)."""
    with pytest.raises(ValueError, match=r"^alpha \+ beta must be finite"):
        _weights_h(d, alpha=1e308, beta=1e308)
    with pytest.raises(ValueError, match=r"^alpha \+ beta must be finite"):
        _weights_h(d, alpha=1e-320, beta=0.0)  # 1 / tau overflows
    with pytest.raises(ValueError, match=r"^log_rho_max must be a number > -inf"):
        _loss(d, log_rho_max=-math.inf)
    with pytest.raises(ValueError, match=r"^log_w_max must be a number > -inf"):
        _loss(d, log_w_max=-math.inf)
    with pytest.raises(ValueError, match=r"^log_rho_max must be a number > -inf"):
        inspo_ext.InSPOPolicyLoss(alpha=0.1, beta=0.1, log_rho_max=-math.inf)
    _loss(d, log_rho_max=math.inf, log_w_max=math.inf)  # +inf disables a clip


def test_arguments_a_mode_does_not_read_are_still_checked(d):
    """q_local of shape [3, 3, 3, 3] with predecessors="policy", or an int32 updated_log_probs with
    ratio="none", is refused although that mode does not read it."""
    with pytest.raises(ValueError, match=r"^q_local must have shape \[B, N, A\] = \[6, 3, 5\], got \[3, 3, 3, 3\]$"):
        _ratios(
            d,
            predecessors="policy",
            q_local=torch.zeros(3, 3, 3, 3, dtype=torch.float64),
            updated_log_probs=d["updated_log_probs"],
        )
    with pytest.raises(TypeError, match=r"^updated_log_probs must have the dtype of logits"):
        _loss(d, ratio="none", updated_log_probs=d["updated_log_probs"].int())
    with pytest.raises(TypeError, match=r"^updated_log_probs must have the dtype of logits"):
        _ratios(d, updated_log_probs=d["updated_log_probs"].float())  # predecessors="target" ignores it
    # values of an unread argument are not read: NaN there is fine
    _loss(d, ratio="none", predecessors="policy", updated_log_probs=torch.full_like(d["updated_log_probs"], math.nan))


def test_positive_updated_log_probs_are_not_log_probabilities(d):
    """updated_log_probs > 0 is not a log-probability."""
    d["updated_log_probs"][2, 1] = 0.5
    message = r"^updated_log_probs\[2, 1\] = 0.5 is not a log-probability \(finite and <= 0\)$"
    with pytest.raises(ValueError, match=message):
        _loss(d, predecessors="policy", updated_log_probs=d["updated_log_probs"])
    with pytest.raises(ValueError, match=message):
        _ratios(d, predecessors="policy", q_local=None, updated_log_probs=d["updated_log_probs"])
    d["updated_log_probs"][2, 1] = 0.0  # log 1
    _ratios(d, predecessors="policy", q_local=None, updated_log_probs=d["updated_log_probs"])


# ---- bad values: every backend raises the CPU kernels' message -----------------------------------------
def _set(key, index, value):
    def mutate(d):
        d[key][index] = value

    return mutate


def _repeat_order(d):
    d["order"][1] = d["order"][0]


def _no_avail(key, b, i):
    def mutate(d):
        d[key][b, i] = False

    return mutate


def _take_away_action(avail_key, actions_key, b, i):
    def mutate(d):
        d[avail_key][b, i, int(d[actions_key][b, i])] = False

    return mutate


def _two_errors(first, second):
    def mutate(d):
        first(d)
        second(d)

    return mutate


def _next_step_valid():
    return next_step(8, 4, 5, seed=61, mask="full", terminal_fraction=0.0)  # all live: every row is read


def _joint_valid():
    return joint_batch(8, 4, 5, seed=62, mask="full")


# (case id, make valid inputs, corrupt them, call the op, pattern the message must match)
ERROR_CASES = [
    ("sbt-done", _next_step_valid, _set("done", 3, 0.5), run_soft_bellman, r"done\[3\] = 0\.5 must be 0 or 1"),
    ("sbt-reward", _next_step_valid, _set("reward", 2, math.inf), run_soft_bellman, r"reward\[2\]"),
    ("sbt-q-next", _next_step_valid, _set("q_next", 5, math.nan), run_soft_bellman, r"q_next\[5\]"),
    (
        "sbt-no-avail",
        _next_step_valid,
        _no_avail("next_avail", 1, 2),
        run_soft_bellman,
        r"next_avail\[1, 2\] has no available action",
    ),
    (
        "sbt-action-range",
        _next_step_valid,
        _set("next_actions", (4, 1), 5),
        run_soft_bellman,
        r"next_actions\[4, 1\] = 5 is out of range",
    ),
    (
        "sbt-action-negative",
        _next_step_valid,
        _set("next_actions", (4, 1), -1),
        run_soft_bellman,
        r"next_actions\[4, 1\] = -1 is out of range",
    ),
    (
        "sbt-action-unavailable",
        _next_step_valid,
        _take_away_action("next_avail", "next_actions", 6, 3),
        run_soft_bellman,
        r"next_actions\[6, 3\] = \d is not available",
    ),
    (
        "sbt-logits",
        _next_step_valid,
        _set("next_logits", (2, 0, 4), math.inf),
        run_soft_bellman,
        r"next_logits\[2, 0\] has a non-finite value",
    ),
    (
        "sbt-log-mu",
        _next_step_valid,
        _set("next_log_mu", (7, 3, 1), math.nan),
        run_soft_bellman,
        r"next_log_mu\[7, 3\] has a non-finite value",
    ),
    (
        "sbt-first-error",
        _next_step_valid,
        _two_errors(_set("next_logits", (5, 0, 0), math.nan), _set("next_actions", (3, 2), 9)),
        run_soft_bellman,
        r"next_actions\[3, 2\] = 9",
    ),
    (
        "sbt-sample-before-row",
        _next_step_valid,
        _two_errors(_set("next_log_mu", (3, 0, 0), math.nan), _set("reward", 3, math.nan)),
        run_soft_bellman,
        r"reward\[3\]",
    ),
    ("isw-q", _joint_valid, _set("q_local", (1, 1, 3), math.nan), run_weights, r"q_local\[1, 1\] has a non-finite"),
    ("isw-log-mu", _joint_valid, _set("log_mu", (6, 0, 2), -math.inf), run_weights, r"log_mu\[6, 0\]"),
    ("isw-no-avail", _joint_valid, _no_avail("avail", 0, 3), run_weights, r"avail\[0, 3\] has no available"),
    ("isw-action-range", _joint_valid, _set("actions", (2, 2), 17), run_weights, r"actions\[2, 2\] = 17"),
    (
        "isw-action-unavailable",
        _joint_valid,
        _take_away_action("avail", "actions", 3, 1),
        run_weights,
        r"actions\[3, 1\] = \d is not available",
    ),
    (
        "isw-first-error",
        _joint_valid,
        _two_errors(_set("q_local", (7, 3, 0), math.inf), _set("log_mu", (7, 2, 4), math.nan)),
        run_weights,
        r"log_mu\[7, 2\]",
    ),
    ("tlr-order-repeat", _joint_valid, _repeat_order, run_ratios, r"order must be a permutation"),
    ("tlr-order-range", _joint_valid, _set("order", 3, 4), run_ratios, r"order must be a permutation"),
    ("tlr-logits", _joint_valid, _set("logits", (5, 2, 1), -math.inf), run_ratios, r"logits\[5, 2\] has a non-finite"),
    ("tlr-q-target", _joint_valid, _set("q_local", (4, 0, 0), math.nan), run_ratios, r"q_local\[4, 0\]"),
    (
        "tlr-updated-policy",
        _joint_valid,
        _set("updated_log_probs", (6, 1), math.nan),
        lambda d: run_ratios(d, "policy"),
        r"updated_log_probs\[6, 1\] = nan is not a log-probability",
    ),
    (
        "tlr-order-first",
        _joint_valid,
        _two_errors(_set("logits", (0, 0, 0), math.nan), _set("order", 0, 4)),
        run_ratios,
        r"order must be",
    ),
    ("spl-order", _joint_valid, _set("order", 2, -1), run_loss, r"order must be a permutation"),
    (
        "spl-order-ratio-none",
        _joint_valid,
        _repeat_order,
        lambda d: run_loss(d, "none"),
        r"order must be a permutation",
    ),
    ("spl-logits", _joint_valid, _set("logits", (3, 3, 2), math.nan), run_loss, r"logits\[3, 3\]"),
    ("spl-log-mu", _joint_valid, _set("log_mu", (1, 0, 0), math.inf), run_loss, r"log_mu\[1, 0\]"),
    ("spl-q", _joint_valid, _set("q_local", (2, 1, 4), -math.inf), run_loss, r"q_local\[2, 1\]"),
    ("spl-action", _joint_valid, _set("actions", (0, 1), 5), run_loss, r"actions\[0, 1\] = 5 is out of range"),
    (
        "spl-updated-policy",
        _joint_valid,
        _set("updated_log_probs", (5, 3), math.inf),
        lambda d: run_loss(d, "importance", "policy"),
        r"updated_log_probs\[5, 3\] = inf",
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_values_raise_value_error_like_the_cpu_backend(case, backend):
    _, make, corrupt, run, pattern = case
    data = make()
    corrupt(data)
    with pytest.raises(ValueError, match=pattern) as on_backend:
        run(to(data, backend))
    with pytest.raises(ValueError) as on_cpu:
        run(data)
    assert str(on_backend.value) == str(on_cpu.value)


def test_updated_log_probs_not_read_without_ratio(backend):
    data = _joint_valid()
    data["updated_log_probs"][0, 0] = math.nan  # ratio="none" reads no teammate ratio: no error
    out = run_loss(to(data, backend), "none", "policy")
    compare(out, ref_loss(data, "none", "policy"))


@pytest.mark.parametrize("case", ["nan", "inf", "no-weight", "first"])
def test_resample_bad_values(case, backend):
    log_rho = random_log_rho(20, 3)
    if case == "nan":
        log_rho[4, 1] = math.nan
        pattern = r"log_rho\[4, 1\] = nan must be finite or -inf"
    elif case == "inf":
        log_rho[7, 2] = math.inf
        pattern = r"log_rho\[7, 2\] = inf"
    elif case == "no-weight":
        log_rho[:, 2] = -math.inf
        pattern = r"log_rho\[:, 2\] has no positive weight"
    else:  # an element error comes before a column without weight
        log_rho[:, 0] = -math.inf
        log_rho[19, 2] = math.nan
        pattern = r"log_rho\[19, 2\]"
    uniforms = uniforms_for(20, 3, "multinomial")
    with pytest.raises(ValueError, match=pattern) as on_backend:
        run_resample(log_rho.to(backend), uniforms.to(backend), "multinomial")
    with pytest.raises(ValueError) as on_cpu:
        run_resample(log_rho, uniforms, "multinomial")
    assert str(on_backend.value) == str(on_cpu.value)


def test_error_does_not_leak_into_the_next_call(backend):
    data = _joint_valid()
    bad = {k: v.clone() for k, v in data.items()}
    bad["q_local"][0, 0, 0] = math.nan
    with pytest.raises(ValueError):
        run_weights(to(bad, backend))
    compare(run_weights(to(data, backend)), ref_weights(data))  # a fresh status per call


def test_problem_dimension_errors_name_the_problem():
    d = problem_batches()
    d["actions"][1, 3, 2] = 9
    with pytest.raises(ValueError, match=r"^actions\[1, 3, 2\] = 9 is out of range \[0, 5\)$"):
        weights_pair(d)
    d = problem_batches()
    d["order"][2] = torch.tensor([0, 0, 1, 2])
    with pytest.raises(ValueError, match=r"^order\[2\] must be a permutation of 0..3, got \[0, 0, 1, 2\]$"):
        ratios_pair(d, "target")
    n = stack_problems([next_step(8, 2, 3, seed=91 + s, terminal_fraction=0.0) for s in range(2)])
    n["reward"][1, 5] = math.inf
    with pytest.raises(ValueError, match=r"^reward\[1, 5\] = inf is not finite$"):
        bellman_pair(n)
    d = problem_batches()
    with pytest.raises(
        ValueError,
        match=r"^q_local has shape \[3, 37, 4, 5\], one dimension more than log_mu \(\[37, 4, 5\]\): a leading "
        r"problem dimension S = 3 must be on every tensor of the call or on none$",
    ):
        weights_pair(dict(d, log_mu=d["log_mu"][0]))
    with pytest.raises(ValueError, match=r"^order must have shape \[S, N\] = \[3, 4\], got \[2, 4\]$"):
        ratios_pair(dict(d, order=d["order"][:2]), "target")
