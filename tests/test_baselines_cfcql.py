"""CFCQL baseline: losses against a hand-written float64 computation, learning, batched seeds, resume."""

import json

import pytest
import torch

import train_testing
from inspo.config import make_config
from inspo.data import TransitionBatch
from inspo.learners.cfcql import KL_SMOOTHING, CfcqlLearner, cfcql_losses
from inspo.learners.learner import Dims
from inspo.loop import train, train_seeds
from inspo.nets import AgentMLP, masked_log_softmax
from inspo.task import prepare_task
from train_testing import assert_same_run, final_state, mlp_by_hand, rows, tiny

N, O, S, A, B = 3, 4, 5, 4, 12


def random_batch(generator: torch.Generator) -> TransitionBatch:
    return train_testing.random_batch(generator, (N, O, S, A), B, p_avail=0.6, single_action_agent=True)


def float64_nets(seed: int, share: bool):
    torch.manual_seed(seed)
    config = make_config(
        "xor",
        algo="cfcql",
        hidden=(8, 8),
        share_parameters=share,
        **{"cfcql.mixer_embed": 5, "cfcql.hypernet_hidden": 6},
    )
    nets = CfcqlLearner(config, 1, Dims(N, O, S, A))
    nets.initialize_seed(0)
    nets.double()
    with torch.no_grad():  # online and target networks differ, so that mixing them up shows
        for module in (nets.q_net, nets.mixer, nets.mu):
            for p in module.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return nets


def q_tot_by_hand(mixer, q, state):
    """QMIX on one joint action: q [N], state [D] -> scalar."""

    def layers(net):
        h = state
        for layer, (w, b) in enumerate(net.layers):
            h = h @ w[0, 0] + b[0, 0]
            if layer < len(net.layers) - 1:
                h = h.clamp(min=0)
        return h

    w1 = layers(mixer.hyper_w1).abs().reshape(N, -1)
    hidden = torch.nn.functional.elu(q @ w1 + layers(mixer.hyper_b1))
    return hidden @ layers(mixer.hyper_w2).abs() + layers(mixer.hyper_b2)[0]


def losses_by_hand(nets, batch, alpha, gamma, weighting, temperature):
    batch = batch.index(0)  # the one seed: [B, ...]
    q = mlp_by_hand(nets.q_net, batch.obs)
    q_next_online = mlp_by_hand(nets.q_net, batch.next_obs).detach()
    q_next_target = mlp_by_hand(nets.q_target, batch.next_obs)
    log_mu = mlp_by_hand(nets.mu, batch.obs)
    td, penalty, weights = [], [], torch.zeros(B, N, dtype=torch.float64)
    for k in range(B):
        greedy = [
            max((a for a in range(A) if batch.next_avail[k, i, a]), key=lambda a: q_next_online[k, i, a])
            for i in range(N)
        ]
        q_next = torch.stack([q_next_target[k, i, greedy[i]] for i in range(N)])
        y = batch.reward[k] + gamma * (1 - batch.done[k]) * q_tot_by_hand(
            nets.mixer_target, q_next, batch.next_state[k]
        )
        q_data = torch.stack([q[k, i, batch.actions[k, i]] for i in range(N)])
        q_tot = q_tot_by_hand(nets.mixer, q_data, batch.state[k])
        td.append(0.5 * (q_tot - y.detach()) ** 2)
        lse, kl = [], []
        for i in range(N):
            allowed = [j for j in range(A) if batch.avail[k, i, j]]
            cf = []
            for j in allowed:  # agent i plays j, the others their data actions
                joint = torch.stack([q[k, m, j] if m == i else q[k, m, batch.actions[k, m]] for m in range(N)])
                cf.append(q_tot_by_hand(nets.mixer, joint, batch.state[k]))
            cf = torch.stack(cf)
            lse.append(torch.logsumexp(cf, 0))
            p = torch.softmax(cf.detach(), 0) + KL_SMOOTHING
            mu = torch.softmax(log_mu[k, i, allowed].detach(), 0) + KL_SMOOTHING
            kl.append((p * (p.log() - mu.log())).sum())
        kl = torch.stack(kl)
        if weighting == "uniform":
            lam = torch.full((N,), 1.0 / N, dtype=torch.float64)
        elif weighting == "kl_argmax":
            lam = torch.nn.functional.one_hot(kl.argmax(), N).double()
        else:
            lam = torch.softmax(temperature * kl, 0)
        weights[k] = lam
        penalty.append(alpha * ((lam * torch.stack(lse)).sum() - q_tot))
    td, penalty = torch.stack(td).mean(), torch.stack(penalty).mean()
    return dict(td_loss=td, penalty=penalty, loss=td + penalty, agent_weights=weights)


@pytest.mark.parametrize(
    "weighting, temperature, share",
    [("kl_softmax", 5.0, False), ("kl_softmax", 0.5, True), ("kl_argmax", 1.0, False), ("uniform", 1.0, False)],
)
def test_losses_match_a_float64_hand_computation(weighting, temperature, share):
    nets = float64_nets(seed=3, share=share)
    batch = random_batch(torch.Generator().manual_seed(7))
    alpha, gamma = 2.5, 0.9
    log_mu = masked_log_softmax(nets.mu(batch.obs), batch.avail)

    def ours():
        return cfcql_losses(nets, batch, log_mu, alpha=alpha, gamma=gamma, weighting=weighting, temperature=temperature)

    def hand():
        return losses_by_hand(nets, batch, alpha, gamma, weighting, temperature)

    mine, theirs = ours(), hand()
    for name in ("td_loss", "penalty", "loss"):
        assert mine[name].item() == pytest.approx(theirs[name].item(), rel=1e-10, abs=1e-12), name
    torch.testing.assert_close(mine["agent_weights"][0], theirs["agent_weights"], rtol=1e-10, atol=1e-12)
    if weighting == "kl_softmax":  # the weights are not trivially uniform
        assert theirs["agent_weights"].max() > 1.0 / N + 0.03 and theirs["agent_weights"].min() < 1.0 / N - 0.01
    for name in ("td_loss", "penalty"):  # gradients into the Q networks and the mixer
        params = [*nets.q_net.parameters(), *nets.mixer.parameters()]
        for g_ours, g_hand in zip(torch.autograd.grad(ours()[name], params), torch.autograd.grad(hand()[name], params)):
            torch.testing.assert_close(g_ours, g_hand, rtol=1e-9, atol=1e-10)


def test_only_the_online_q_networks_and_the_mixer_train():
    nets = float64_nets(seed=4, share=False)
    assert not any(p.requires_grad for m in (nets.q_target, nets.mixer_target, nets.mu) for p in m.parameters())
    assert nets.actor is nets.q_net


def test_cfcql_finds_the_best_equilibrium_of_balanced_mne(tmp_path):
    # uniform data over the 9 joint actions of diag(10, 5, 8): the counterfactual penalty pushes every
    # action alike, so the Q values take the data's ranking A > C > B for each agent (the mean payoff of
    # an agent's action against a uniform partner: 10/3, 8/3, 5/3) and greedy play reaches AA = 10.
    # A random start has that ranking for both agents 1 time in 36 (after 1 step here: greedy payoff 0)
    config = make_config(
        "mne",
        dataset="balanced",
        algo="cfcql",
        steps=300,
        lr=3e-3,
        critic_lr=3e-3,
        hidden=(32, 32),
        batch_size=128,
        log_every=100,
        checkpoint_every=0,
        seed=1,
    )
    assert train(config, out_dir=tmp_path, progress=False)["scores"]["greedy_payoff"] == 10.0
    store = prepare_task(config).store
    q_net = AgentMLP(1, 2, store.obs_dim, 3, (32, 32))
    q_net.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=False)["actor"])
    with torch.no_grad():
        q = q_net.forward_seed(0, store.obs[:1])[0]  # [N, A] at the game's one observation
    assert (q[:, 0] > q[:, 2]).all() and (q[:, 2] > q[:, 1]).all(), q


def test_a_batched_seed_reaches_what_its_single_run_reaches(tmp_path, float64):
    configs = [
        tiny("cfcql", seed, env="mne", dataset="imbalanced", steps=60, **{"cfcql.alpha": 1.0}) for seed in (3, 4)
    ]
    batched = train_seeds(configs, [tmp_path / "batched3", tmp_path / "batched4"], progress=False)
    states = []
    for config, together in zip(configs, batched):
        alone = train_seeds([config], [tmp_path / f"single{config.seed}"], progress=False)[0]
        assert together["scores"] == pytest.approx(alone["scores"], rel=1e-9, abs=1e-9)
        assert_same_run(tmp_path / f"batched{config.seed}", tmp_path / f"single{config.seed}")
        states.append(final_state(tmp_path / f"batched{config.seed}"))
    key = next(key for key in states[0] if key.startswith("q_net."))
    assert not torch.allclose(states[0][key], states[1][key])


def test_an_interrupted_run_resumes_bit_identically(tmp_path):
    config = make_config(
        "bridge",
        algo="cfcql",
        steps=30,
        bc_steps=20,
        batch_size=32,
        hidden=(8, 8),
        **{"cfcql.mixer_embed": 4, "cfcql.hypernet_hidden": 8},
        checkpoint_every=10,
        log_every=5,
        eval_episodes=2,
        seed=2,
    )
    whole = train(config, out_dir=tmp_path / "whole", progress=False)

    train_testing.train_until(train, config, tmp_path / "cut", 13)
    resumed = train(config, out_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed["scores"] == whole["scores"]
    final = final_state(tmp_path / "whole"), final_state(tmp_path / "cut")
    for key, value in final[0].items():
        assert torch.equal(value, final[1][key]), key
    strip = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
    assert [strip(r) for r in rows(tmp_path / "cut")] == [strip(r) for r in rows(tmp_path / "whole")]
    assert (
        json.loads((tmp_path / "whole" / "results.json").read_text())["config"]["algo_options"]["cfcql"]["alpha"]
        == 50.0
    )
