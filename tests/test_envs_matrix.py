"""XOR and M-NE: payoffs, datasets, exact scoring."""

import numpy as np
import pytest
import torch

from inspo.envs.matrix import MneGame, XorGame, expected_payoff


def constant_policy(logits):
    logits = torch.as_tensor(logits, dtype=torch.float32)
    return lambda obs, avail: logits.expand(obs.shape[0], -1, -1)


def test_xor_payoffs():
    assert XorGame("penalty").payoff.tolist() == [[0, 1], [1, -2]]
    assert XorGame("plain").payoff.tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match="variant"):
        XorGame("other")


@pytest.mark.parametrize(
    "name, support",
    [
        ("a", {(0, 1)}),
        ("b", {(0, 1), (1, 0)}),
        ("c", {(0, 0), (0, 1), (1, 0)}),
        ("d", {(0, 0), (0, 1), (1, 0), (1, 1)}),
    ],
)
def test_xor_datasets_hold_equal_numbers_of_their_joint_actions(name, support):
    arrays, meta = XorGame("penalty").generate_dataset(name, seed=1)
    joint = arrays["actions"][:, 0, :, 0]
    pairs, counts = np.unique(joint, axis=0, return_counts=True)
    assert {tuple(p) for p in pairs} == support
    assert counts.max() - counts.min() <= 1 and counts.sum() == 5000
    payoff = np.array([[0, 1], [1, -2]])
    assert np.array_equal(arrays["reward"][:, 0, 0], payoff[joint[:, 0], joint[:, 1]])
    assert (arrays["terminated"][:, 0] == 1).all() and (arrays["filled"][:, 1] == 0).all()
    assert meta["dataset"] == name


def test_mne_marginals_and_payoff():
    game = MneGame()
    assert np.array_equal(game.payoff, np.diag([10.0, 5.0, 8.0]))
    arrays, _ = game.generate_dataset("imbalanced", seed=0)
    for agent in range(2):
        freq = np.bincount(arrays["actions"][:, 0, agent, 0], minlength=3) / 5000
        assert freq == pytest.approx([0.1, 0.3, 0.6], abs=0.02)
    joint = arrays["actions"][:, 0, :, 0]
    assert np.array_equal(arrays["reward"][:, 0, 0], np.diag([10, 5, 8])[joint[:, 0], joint[:, 1]])
    with pytest.raises(ValueError, match="datasets"):
        game.generate_dataset("uniform", seed=0)


def test_expected_payoff_by_hand():
    penalty = np.array([[0.0, 1.0], [1.0, -2.0]])
    assert expected_payoff(penalty, np.full((2, 2), 0.5)) == pytest.approx(0.0)
    assert expected_payoff(np.array([[0.0, 1.0], [1.0, 0.0]]), np.full((2, 2), 0.5)) == pytest.approx(0.5)
    # pi1 = (0.8, 0.2), pi2 = (0.3, 0.7): 0.8*0.7*1 + 0.2*0.3*1 + 0.2*0.7*(-2)
    assert expected_payoff(penalty, np.array([[0.8, 0.2], [0.3, 0.7]])) == pytest.approx(0.56 + 0.06 - 0.28)
    three = np.arange(8.0).reshape(2, 2, 2)  # three agents: R[a1, a2, a3]
    probs = np.array([[0.1, 0.9], [0.6, 0.4], [0.25, 0.75]])
    brute = sum(
        three[a, b, c] * probs[0, a] * probs[1, b] * probs[2, c] for a in range(2) for b in range(2) for c in range(2)
    )
    assert expected_payoff(three, probs) == pytest.approx(brute)


def test_evaluate_scores_the_product_policy_and_the_greedy_joint_action():
    scores = XorGame("penalty").evaluate(constant_policy([[[2.0, 0.0], [0.0, 1.0]]]))
    p1, p2 = np.exp([2, 0]) / np.exp([2, 0]).sum(), np.exp([0, 1]) / np.exp([0, 1]).sum()
    assert scores["expected_payoff"] == pytest.approx(expected_payoff(np.array([[0, 1], [1, -2]]), np.stack([p1, p2])))
    assert scores["greedy_payoff"] == 1.0  # AB
    assert scores["p1_A"] == pytest.approx(p1[0], abs=1e-6)
    mne = MneGame().evaluate(constant_policy([[[0.0, 0.0, 5.0], [0.0, 0.0, 5.0]]]))
    assert mne["greedy_payoff"] == 8.0 and mne["expected_payoff"] > 7.5
