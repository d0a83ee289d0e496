"""OMIGA baseline: losses against a hand-written float64 computation, learning, CLI, resume."""

import json
import math

import pytest
import torch

import train_testing
from inspo.cli import main
from inspo.config import make_config
from inspo.data import TransitionBatch
from inspo.learners.learner import Dims
from inspo.learners.omiga import M_FLOOR, Z_CLAMP, OmigaLearner, omiga_losses
from inspo.loop import train
from train_testing import mlp_by_hand

N, O, S, A, B = 3, 4, 5, 4, 32


def random_batch(generator: torch.Generator) -> TransitionBatch:
    return train_testing.random_batch(generator, (N, O, S, A), B, p_avail=0.7)


def float64_nets(seed: int, share: bool):
    torch.manual_seed(seed)
    config = make_config("xor", algo="omiga", hidden=(8, 8), share_parameters=share, **{"omiga.mixer_hidden": 6})
    nets = OmigaLearner(config, 1, Dims(N, O, S, A))
    nets.initialize_seed(0)
    nets.double()
    with torch.no_grad():  # online and target networks differ, so that mixing them up shows
        for module in (nets.q_net, nets.v_net, nets.mixer):
            for p in module.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return nets


def mixer_by_hand(mixer, state):
    def two_layers(mlp):
        (w1, b1), (w2, b2) = mlp.layers
        return (state @ w1[0, 0] + b1[0, 0]).clamp(min=0) @ w2[0, 0] + b2[0, 0]

    return two_layers(mixer.weight_net).abs(), two_layers(mixer.bias_net)[:, 0]


def losses_by_hand(nets, batch, alpha, gamma):
    batch = batch.index(0)  # the one seed: [B, ...]
    w_next, b_next = mixer_by_hand(nets.mixer_target, batch.next_state)
    v_next = mlp_by_hand(nets.v_target, batch.next_obs)[..., 0]
    y = batch.reward + gamma * (1 - batch.done) * ((w_next * v_next).sum(1) + b_next)
    w, b = mixer_by_hand(nets.mixer, batch.state)
    q = mlp_by_hand(nets.q_net, batch.obs)
    q_taken = torch.stack([q[k, i, batch.actions[k, i]] for k in range(B) for i in range(N)]).reshape(B, N)
    q_loss = (((w * q_taken).sum(1) + b - y) ** 2).mean()

    w_bar, _ = mixer_by_hand(nets.mixer_target, batch.state)
    q_bar_all = mlp_by_hand(nets.q_target, batch.obs)
    q_bar = torch.stack([q_bar_all[k, i, batch.actions[k, i]] for k in range(B) for i in range(N)]).reshape(B, N)
    v = mlp_by_hand(nets.v_net, batch.obs)[..., 0]
    z = torch.clamp((w_bar.detach() * q_bar.detach() - w_bar.detach() * v) / alpha, -10.0, 10.0)
    m = max(float(z.detach().max()), -1.0)
    v_loss = sum((torch.exp(z[:, i] - m) + math.exp(-m) * w_bar[:, i] * v[:, i] / alpha).mean() for i in range(N))

    logits = mlp_by_hand(nets.actor, batch.obs)
    policy_loss = 0.0
    for i in range(N):
        terms = []
        for k in range(B):
            allowed = batch.avail[k, i]
            log_p = logits[k, i, batch.actions[k, i]] - torch.logsumexp(logits[k, i][allowed], 0)
            terms.append(torch.exp(z[k, i].detach()) * log_p)
        policy_loss = policy_loss - torch.stack(terms).mean()
    return dict(q_loss=q_loss, v_loss=v_loss, policy_loss=policy_loss, z=z, m=m, w=w)


# alpha 0.02: many z clamped at +-10; alpha 50: no clamp, max z near 0; v_offset +1e4: every z < -1, m at its floor
@pytest.mark.parametrize("alpha, v_offset, share", [(0.02, 0.0, False), (50.0, 0.0, True), (1.0, 1e4, False)])
def test_losses_match_a_float64_hand_computation(alpha, v_offset, share):
    nets = float64_nets(seed=3, share=share)
    with torch.no_grad():  # V far above Q: every z very negative
        nets.v_net.mlp.layers[-1][1].add_(v_offset)
    batch = random_batch(torch.Generator().manual_seed(7))
    gamma = 0.9
    ours = omiga_losses(nets, batch, alpha=alpha, gamma=gamma)
    hand = losses_by_hand(nets, batch, alpha, gamma)
    z = hand["z"].detach()
    if alpha == 0.02:
        assert (z.abs() == Z_CLAMP).any() and (z.abs() < Z_CLAMP).any(), "the clamp case must clamp some z"
    if v_offset:
        assert z.max() < M_FLOOR and hand["m"] == M_FLOOR, "the floor case must put m at its floor"
    else:
        assert hand["m"] > M_FLOOR
    assert (hand["w"] >= 0).all()
    for name in ("q_loss", "v_loss", "policy_loss"):
        assert ours[name].item() == pytest.approx(hand[name].item(), rel=1e-10, abs=1e-12), name
    torch.testing.assert_close(ours["weight"][0], z.exp(), rtol=1e-12, atol=0)
    # gradients of every loss w.r.t. the online networks it trains
    for name, module in (
        ("q_loss", nets.q_net),
        ("q_loss", nets.mixer),
        ("v_loss", nets.v_net),
        ("policy_loss", nets.actor),
    ):
        params = list(module.parameters())
        ours_grad = torch.autograd.grad(omiga_losses(nets, batch, alpha=alpha, gamma=gamma)[name], params)
        hand_grad = torch.autograd.grad(losses_by_hand(nets, batch, alpha, gamma)[name], params)
        for g_ours, g_hand in zip(ours_grad, hand_grad):
            torch.testing.assert_close(g_ours, g_hand, rtol=1e-9, atol=1e-9)  # V: two terms ~1e2 cancel


def test_losses_reach_only_their_own_networks():
    nets = float64_nets(seed=4, share=False)
    batch = random_batch(torch.Generator().manual_seed(8))
    losses = omiga_losses(nets, batch, alpha=0.5, gamma=0.99)
    # the policy loss carries no gradient into V (z detached), the V loss none into Q or the mixer
    assert not any(p.requires_grad for m in (nets.q_target, nets.v_target, nets.mixer_target) for p in m.parameters())
    assert all(
        g is None for g in torch.autograd.grad(losses["policy_loss"], list(nets.v_net.parameters()), allow_unused=True)
    )
    assert all(
        g is None
        for g in torch.autograd.grad(
            losses["v_loss"], [*nets.q_net.parameters(), *nets.mixer.parameters()], allow_unused=True
        )
    )


def test_mixer_weights_are_non_negative_where_the_raw_output_is_negative():
    nets = float64_nets(seed=5, share=False)
    state = torch.randn(1, 256, S, dtype=torch.float64)
    raw = nets.mixer.weight_net(state.unsqueeze(1))[:, 0]
    w, b = nets.mixer(state)
    assert (raw < 0).any() and (w >= 0).all()
    torch.testing.assert_close(w, raw.abs())
    assert b.shape == (1, 256)


def test_omiga_learns_the_best_equilibrium_of_balanced_mne():
    # uniform data: the best additive fit of diag(10, 5, 8) ranks A > C > B for each agent, so the
    # in-sample weights exp(z) favour A; the behaviour (uniform) policy is worth 23/9 = 2.56 and
    # has p(A) = 1/3 (measured here: 3.4, p(A) 0.48 after 300 steps)
    config = make_config(
        "mne",
        algo="omiga",
        dataset="balanced",
        steps=300,
        **{"omiga.alpha": 1.0},
        lr=3e-3,
        critic_lr=3e-3,
        hidden=(32, 32),
        batch_size=128,
        log_every=100,
        checkpoint_every=0,
        seed=1,
    )
    scores = train(config, progress=False)["scores"]
    assert scores["expected_payoff"] > 3.0
    assert scores["p1_A"] > 0.4 and scores["p2_A"] > 0.4
    assert scores["greedy_payoff"] == 10.0


def test_train_omiga_from_the_cli_writes_a_run_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--env",
        "xor",
        "--dataset",
        "c",
        "--algo",
        "omiga",
        "--steps",
        "20",
        "--seed",
        "2",
        "--quiet",
        "--set",
        "hidden=8,8",
        "--set",
        "checkpoint_every=10",
        "--set",
        "log_every=5",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "omiga" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["algo"] == "omiga" and results["config"]["algo_options"]["omiga"]["alpha"] == 10.0
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [5, 10, 15, 20]
    assert main(["eval", str(out), "--json"]) == 0  # `inspo eval` finds the actor in the checkpoint
    assert json.loads(capsys.readouterr().out)["expected_payoff"] == pytest.approx(
        results["scores"]["expected_payoff"], abs=1e-6
    )

    # an interrupted run resumed from its step-10 checkpoint ends where the uninterrupted one did
    class Stop(Exception):
        pass

    def stop_at_13(step):
        if step == 13:
            raise Stop

    config = make_config(
        "xor", dataset="c", algo="omiga", steps=20, seed=2, hidden=(8, 8), checkpoint_every=10, log_every=5
    )
    with pytest.raises(Stop):
        train(config, out_dir=tmp_path / "cut", progress=False, on_step=stop_at_13)
    resumed = train(config, out_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed["scores"] == results["scores"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]
