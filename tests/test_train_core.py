"""Trainer pieces: config, BC, per-agent independence, every mode and weighting, determinism, resume."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from inspo.algorithms import CfcqlOptions, InspoOptions
from inspo.config import REGIMES, RENAMED_FIELDS, TrainConfig, make_config, parse_overrides
from inspo.data import stack_batches
from inspo.envs.matrix import MneOptions, XorOptions
from inspo.learners.bc import fit_behaviour
from inspo.learners.inspo import InspoLearner
from inspo.learners.learner import Dims
from inspo.loop import train
from inspo.nets import AgentMLP, make_policy_net
from inspo.options import NoOptions
from inspo.task import prepare_task
from train_testing import train_until


def small(env="xor", **overrides):
    values = dict(
        steps=40,
        batch_size=64,
        bc_steps=30,
        log_every=10,
        checkpoint_every=0,
        eval_episodes=4,
        hidden=(16, 16),
        critic_hidden=(32, 32),
    )
    values.update(overrides)
    return make_config(env, **values)


# ---- config ----


def test_overrides_are_typed():
    parsed = parse_overrides(
        [
            "inspo.eta=0.5",
            "inspo.policy_steps=3",
            "hidden=32,32",
            "inspo.beta_end=none",
            "share_parameters=true",
            "inspo.mode=exact",
        ]
    )
    assert parsed == {
        "inspo.eta": 0.5,
        "inspo.policy_steps": 3,
        "hidden": (32, 32),
        "inspo.beta_end": None,
        "share_parameters": True,
        "inspo.mode": "exact",
    }
    with pytest.raises(ValueError, match="unknown config field 'etta'"):
        parse_overrides(["etta=1"])
    with pytest.raises(ValueError, match="policy_steps"):
        parse_overrides(["inspo.policy_steps=many"])


def test_presets_and_validation():
    config = make_config("mne")
    assert config.dataset == "imbalanced" and config.inspo.beta_end == 0.0
    assert make_config("mne", **{"inspo.beta_end": None}).inspo.beta_end is None
    with pytest.raises(ValueError, match="mode"):
        make_config("xor", **{"inspo.mode": "sequential"})
    with pytest.raises(ValueError, match="eta"):
        make_config("xor", **{"inspo.eta": 1.5})
    with pytest.raises(ValueError, match="unknown config fields"):
        TrainConfig.from_dict({"learning_rate": 1.0})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("env", "nosuch", "config.env: unknown environment 'nosuch'"),
        ("steps", "10", "config.steps must be int"),
        ("steps", 0, "config.steps must be >= 1"),
        ("bc_steps", 0, "config.bc_steps must be >= 1"),
        ("lr", 0.0, "config.lr must be > 0"),
        ("grad_clip", -1.0, "config.grad_clip must be > 0"),
        ("gamma", 1.5, "config.gamma must be in [0, 1]"),
        ("hidden", (64, 0), "config.hidden must hold layer sizes >= 1"),
        ("share_parameters", 1, "config.share_parameters must be bool"),
        ("seed", -1, "config.seed must be >= 0"),
        ("regime", "half-update", "config.regime must be one of"),
    ],
)
def test_bad_values_name_the_field(field, value, message):
    good = make_config("xor")
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig.from_dict({**good.to_dict(), field: value})


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("alpha", float("nan"), "config.inspo.alpha must be a finite float"),
        ("beta", -0.1, "config.inspo.beta must be >= 0"),
        ("local_critic_steps", 0, "config.inspo.local_critic_steps must be >= 1"),
        ("critic_warmup_steps", 1500, "config.inspo.critic_warmup_steps must be in [0, steps = 1500)"),
        ("weighting", "weighted", "config.inspo.weighting must be one of"),
        ("mode", "sequential", "config.inspo.mode must be one of ('fused', 'exact', 'simultaneous')"),
    ],
)
def test_bad_inspo_options_name_the_option(option, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config("xor", **{f"inspo.{option}": value})
    good = make_config("xor").to_dict()
    with pytest.raises(ValueError, match=re.escape(message)):  # as a stored config.json holds it
        TrainConfig.from_dict({**good, "algo_options": {"inspo": {**good["algo_options"]["inspo"], option: value}}})


@pytest.mark.parametrize("name", ["mode", "eta", "alpha", "critic_warmup_steps", "cfcql_alpha", "xor_variant"])
def test_a_field_that_became_an_option_is_refused_with_its_new_name(name, tmp_path):
    new = RENAMED_FIELDS[name]
    with pytest.raises(ValueError, match=re.escape(f"config field {name!r} is now the option {new!r}")):
        make_config("xor", **{name: 1})
    with pytest.raises(ValueError, match=re.escape(f"is now the option {new!r}")):
        TrainConfig.from_dict({**make_config("xor").to_dict(), name: 1})
    with pytest.raises(ValueError, match=re.escape(f"is now the option {new!r}")):
        parse_overrides([f"{name}=1"])


@pytest.mark.parametrize(
    "env,algo,option,value,message",
    [
        ("mne", "inspo", "mne.diagonal", (10.0,), "config.mne.diagonal needs >= 2 actions"),
        ("mne", "inspo", "mne.sampling", "random", "config.mne.sampling must be one of ('stratified', 'iid')"),
        ("xor", "inspo", "xor.variant", "harsh", "config.xor.variant must be one of ('penalty', 'plain')"),
        ("xor", "inspo", "xor.variant", 1, "config.xor.variant must be str"),
        ("xor", "omiga", "omiga.alpha", 0.0, "config.omiga.alpha must be > 0"),
        ("xor", "omiga", "omiga.mixer_hidden", 0, "config.omiga.mixer_hidden must be >= 1"),
        ("xor", "cfcql", "cfcql.alpha", -1.0, "config.cfcql.alpha must be >= 0"),
        ("xor", "cfcql", "cfcql.weighting", "max", "config.cfcql.weighting must be one of"),
        ("xor", "cfcql", "cfcql.temperature", 0.0, "config.cfcql.temperature must be > 0"),
        ("xor", "cfcql", "cfcql.mixer_embed", 0, "config.cfcql.mixer_embed must be >= 1"),
        (
            "xor",
            "cfcql",
            "cfcql.alphaa",
            1.0,
            "unknown option config.cfcql.alphaa; the options are: config.cfcql.alpha",
        ),
        (
            "xor",
            "inspo",
            "cfcql.alpha",
            1.0,
            "config.cfcql.alpha: options of 'cfcql', but this run's env is 'xor' and its algo 'inspo'",
        ),
        ("bridge", "inspo", "xor.variant", "plain", "options of 'xor', but this run's env is 'bridge'"),
    ],
)
def test_bad_options_name_the_option(env, algo, option, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config(env, algo=algo, **{option: value})


def test_options_belong_to_their_env_and_algorithm():
    """env_options / algo_options hold the run's env family's and algorithm's option dataclasses;
    --set, config.json and make_config all name them SECTION.FIELD."""
    config = make_config("mne", algo="cfcql", **{"mne.sampling": "iid", "cfcql.alpha": 2.0})
    assert config.env_options == MneOptions(sampling="iid") and config.algo_options == CfcqlOptions(alpha=2.0)
    assert make_config("bridge").env_options == NoOptions() and make_config("xor").algo_options == InspoOptions()
    stored = json.loads(json.dumps(config.to_dict()))  # as config.json holds it
    assert stored["env_options"] == {"mne": {"diagonal": [10.0, 5.0, 8.0], "sampling": "iid"}}
    assert stored["algo_options"] == {"cfcql": dataclasses.asdict(CfcqlOptions(alpha=2.0))}
    # options stored for another algorithm are those of the run the dict was made from
    assert TrainConfig.from_dict({**stored, "algo": "bc"}).algo_options == NoOptions()
    assert TrainConfig.from_dict(stored) == config
    assert parse_overrides(["mne.diagonal=1,2", "cfcql.weighting=uniform"]) == {
        "mne.diagonal": (1.0, 2.0),
        "cfcql.weighting": "uniform",
    }
    with pytest.raises(ValueError, match="unknown option section 'foo'"):
        parse_overrides(["foo.bar=1"])
    with pytest.raises(ValueError, match=re.escape("config.env_options must be MneOptions")):
        dataclasses.replace(config, env_options=XorOptions()).validate()
    # the SMAX preset's OMIGA and CFCQL temperatures apply to those algorithms' runs only
    assert make_config("smax:3m", algo="omiga").algo_options.alpha == 1.0
    assert make_config("smax:3m", algo="cfcql").algo_options == CfcqlOptions(alpha=15.0, temperature=0.5)
    assert make_config("smax:3m").algo_options == InspoOptions(alpha=0.1, beta=0.01)
    assert make_config("smax:3m", algo="bc").algo_options == NoOptions()


def test_regimes_apply_between_the_env_preset_and_the_overrides():
    assert REGIMES["one-step"] == {} and make_config("xor").regime == "one-step"
    full = make_config("xor", regime="full-update")
    assert full.regime == "full-update" and full.inspo.policy_steps == REGIMES["full-update"]["inspo.policy_steps"] > 1
    assert full.dataset == "c" and full.bc_steps == 300  # the xor preset still applies
    assert {
        k: getattr(full.inspo, k.split(".")[1]) if "." in k else getattr(full, k) for k in REGIMES["full-update"]
    } == REGIMES["full-update"]
    assert make_config("xor", algo="bc", regime="full-update").lr == REGIMES["full-update"]["lr"]  # no inspo.* for BC
    assert (
        make_config("xor", regime="full-update", **{"inspo.policy_steps": 3}).inspo.policy_steps == 3
    )  # an override wins
    with pytest.raises(ValueError, match="unknown regime 'half'"):
        make_config("xor", regime="half")


def test_beta_schedule_is_linear_then_constant():
    config = make_config(
        "xor", steps=100, **{"inspo.beta": 10.0, "inspo.beta_end": 0.0, "inspo.beta_anneal_fraction": 0.5}
    )
    assert [config.inspo.beta_at(s, config.steps) for s in (0, 25, 50, 99)] == [10.0, 5.0, 0.0, 0.0]
    assert make_config("xor", **{"inspo.beta": 0.3}).inspo.beta_at(70, 100) == 0.3


# ---- behaviour cloning ----


@pytest.mark.parametrize("env, dataset", [("xor", "c"), ("mne", "imbalanced"), ("xor", "b")])
def test_bc_recovers_the_dataset_action_frequencies(env, dataset):
    config = make_config(env, dataset=dataset, bc_steps=400, seed=2)
    run = prepare_task(config)
    mu = make_policy_net(config, run.env.n_agents, run.env.obs_dim, run.env.n_actions)
    mu.reset_seed(0)
    fit_behaviour(mu, [run.store], config, [run.generator])
    probs = run.store.log_mu[0].exp()  # the single state: every row is the same
    for agent in range(run.env.n_agents):
        counts = torch.bincount(run.store.actions[:, agent], minlength=run.env.n_actions).double()
        assert probs[agent].double() == pytest.approx((counts / counts.sum()).tolist(), abs=0.01)


# ---- per-agent independence ----


def prepared_learner(config, n_seeds=1):
    """An InSPO learner of seeds config.seed, config.seed + 1, ... after BC, and its runs."""
    runs, learner = [], None
    for s in range(n_seeds):
        run = prepare_task(TrainConfig.from_dict({**config.to_dict(), "seed": config.seed + s}))
        store = run.store
        learner = learner or InspoLearner(
            config, n_seeds, Dims(store.n_agents, store.obs_dim, store.state_dim, store.n_actions)
        )
        learner.initialize_seed(s)
        runs.append(run)
    learner.prepare([run.store for run in runs], [run.generator for run in runs], resumed=False)
    return learner, runs


def iterate(learner, runs, step, rows=None):
    rows = torch.arange(64) if rows is None else rows
    batch = stack_batches([run.store.index(rows) for run in runs])
    return learner.update(batch, learner.draw([run.generator for run in runs], step), step)


def agent_slices(module: AgentMLP, seed: int, agent: int):
    return [p[seed, agent].detach().clone() for p in module.parameters()]


def test_an_agent_step_leaves_every_other_agent_of_every_seed_untouched():
    config = small(**{"inspo.mode": "fused"})
    learner, runs = prepared_learner(config, n_seeds=2)
    for k in range(5):  # Adam moments of every agent become non-zero
        iterate(learner, runs, k, torch.arange(64) + 64 * k)
    moved = torch.tensor([1, 0])  # seed 0 steps agent 1, seed 1 steps agent 0
    before = {(s, a): agent_slices(learner.actor, s, a) for s in range(2) for a in range(2)}
    opt = learner.actor_opt
    moments_before = [getattr(opt, f"exp_avg0_{k}").clone() for k in range(len(opt.families[0]))]
    obs = stack_batches([run.store.index(torch.arange(64)) for run in runs]).obs
    loss = learner.actor.forward_agent(moved, obs[:, :, 0]).logsumexp(-1).mean()
    learner.step_actor(loss, learner.actor.network_mask(moved))
    for s in range(2):
        for a in range(2):
            after = agent_slices(learner.actor, s, a)
            same = all(torch.equal(x, y) for x, y in zip(before[s, a], after))
            assert same == (a != moved[s]), (s, a)  # the others: bitwise unchanged
            for k, moment in enumerate(moments_before):
                assert torch.equal(moment[s, a], getattr(opt, f"exp_avg0_{k}")[s, a]) == (a != moved[s])


def test_exact_iteration_updates_each_agent_once_in_sigma_order():
    config = small(**{"inspo.mode": "exact"})
    learner, runs = prepared_learner(config, n_seeds=2)
    seen = []
    original = learner.step_actor
    learner.step_actor = lambda loss, mask=None: (seen.append(mask.clone()), original(loss, mask))
    draws = learner.draw([run.generator for run in runs], 0)
    learner.update(stack_batches([run.store.index(torch.arange(64)) for run in runs]), draws, 0)
    # N dependent single-agent steps per seed, never a joint one, in each seed's own order sigma
    assert [mask.int().argmax(1).tolist() for mask in seen] == draws["order"].T.tolist()
    assert all(mask.sum(1).tolist() == [1, 1] for mask in seen)


@pytest.mark.parametrize("mode, per_iteration", [("exact", 2 * 3), ("fused", 3), ("simultaneous", 3)])
def test_policy_steps_per_iteration_and_none_in_the_critic_warm_up(mode, per_iteration):
    config = small(**{"inspo.mode": mode, "inspo.policy_steps": 3, "inspo.critic_warmup_steps": 2})
    learner, runs = prepared_learner(config)
    actor_steps = []
    local_before = [p.detach().clone() for p in learner.local_critic.parameters()]
    original = learner.step_actor
    learner.step_actor = lambda loss, mask=None: (actor_steps.append(mask), original(loss, mask))
    for k in range(2):  # warm-up: the local critics train, the policy does not
        iterate(learner, runs, k)
    assert actor_steps == []
    assert not any(torch.equal(b, a) for b, a in zip(local_before, learner.local_critic.parameters()))
    iterate(learner, runs, 2)
    assert len(actor_steps) == per_iteration


@pytest.mark.parametrize("share", [False, True])
def test_agent_mlp_is_one_batched_module_equal_to_per_agent_networks(share):
    torch.manual_seed(0)
    net = AgentMLP(2, 3, 4, 5, (8,), share_parameters=share)
    for seed in range(2):
        net.reset_seed(seed)
    x = torch.randn(2, 7, 3, 4)
    joint = net(x)
    assert joint.shape == (2, 7, 3, 5) and net.n_nets == (1 if share else 3)
    for seed in range(2):
        torch.testing.assert_close(net.forward_seed(seed, x[seed]), joint[seed])
    for agent in range(3):
        agents = torch.tensor([agent, 2 - agent])
        by_agent = net.forward_agent(agents, x[torch.arange(2), :, agents])
        for seed in range(2):
            torch.testing.assert_close(by_agent[seed], joint[seed, :, agents[seed]], atol=1e-6, rtol=1e-5)


# ---- every mode and weighting runs ----


@pytest.mark.parametrize("mode", ["fused", "exact", "simultaneous"])
@pytest.mark.parametrize("weighting", ["resample", "importance", "self_normalized"])
def test_modes_and_weightings_train(mode, weighting, tmp_path):
    config = small(steps=20, **{"inspo.mode": mode, "inspo.weighting": weighting, "inspo.policy_steps": 2})
    results = train(config, out_dir=tmp_path, progress=False)
    assert np.isfinite(results["scores"]["expected_payoff"])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20]
    assert all(np.isfinite(v) for r in rows for v in r.values())
    assert 0 < rows[-1]["ess"] <= config.batch_size + 1e-3


def test_bridge_and_systematic_resampling_and_sharing_train():
    config = small(
        "bridge", steps=10, eval_episodes=3, share_parameters=True, **{"inspo.resample_method": "systematic"}
    )
    scores = train(config, progress=False)["scores"]
    assert {"greedy_return", "stochastic_optimal", "greedy_success"} <= set(scores)


# ---- determinism and resume ----


def test_same_seed_same_result_and_another_seed_differs():
    config = small(steps=30, **{"inspo.beta": 1.0, "inspo.beta_end": 0.0})
    first, second = train(config, progress=False), train(config, progress=False)
    assert first["scores"] == second["scores"]
    other = train(small(steps=30, seed=1, **{"inspo.beta": 1.0, "inspo.beta_end": 0.0}), progress=False)
    assert other["scores"] != first["scores"]


def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(tmp_path):
    config = small(
        "bridge",
        steps=30,
        checkpoint_every=10,
        eval_every=10,
        log_every=5,
        eval_episodes=3,
        **{"inspo.beta": 0.5, "inspo.beta_end": 0.0},
    )
    whole = train(config, out_dir=tmp_path / "whole", progress=False)

    train_until(train, config, tmp_path / "cut", 25)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 20
    resumed = train(config, out_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed["scores"] == whole["scores"]
    final = [torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["learner"] for d in ("whole", "cut")]
    assert {key.split(".")[0] for key in final[0]} >= {
        "actor",
        "local_critic",
        "critic",
        "critic_target",
        "actor_opt",
        "mu",
    }
    for key, value in final[0].items():  # networks and optimizer moments, bit for bit
        assert torch.equal(value, final[1][key]), key
    for kind in ("metrics", "eval"):  # the logs read as one run: no step twice, same rows
        for suffix in ("jsonl", "csv"):
            assert (tmp_path / "whole" / f"{kind}.{suffix}").read_text().count("\n") == (
                tmp_path / "cut" / f"{kind}.{suffix}"
            ).read_text().count("\n")
        steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / f"{kind}.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps))


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(small(), out_dir=tmp_path, resume=True, progress=False)
