"""Bridge dynamics, rewards, datasets and scoring against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from inspo.envs.bridge import (
    DOWN,
    GOALS,
    LEFT,
    RIGHT,
    STARTS,
    STAY,
    UP,
    Bridge,
    avail_vector,
    optimal_plan,
    resolve_moves,
    state_vector,
    step,
)


@pytest.mark.parametrize(
    "positions, done, actions, expected",
    [
        ([(0, 0), (2, 5)], [False, False], [UP, RIGHT], [(0, 0), (2, 5)]),  # off the grid: stay
        ([(1, 2), (1, 3)], [False, False], [UP, DOWN], [(1, 2), (1, 3)]),  # into blocked cells: stay
        ([(1, 2), (1, 3)], [False, False], [RIGHT, LEFT], [(1, 2), (1, 3)]),  # swap: both stay
        ([(1, 1), (1, 3)], [False, False], [RIGHT, LEFT], [(1, 1), (1, 3)]),  # same target cell: both stay
        ([(1, 2), (1, 3)], [False, False], [RIGHT, RIGHT], [(1, 3), (1, 4)]),  # into a cell being vacated: ok
        ([(1, 2), (1, 3)], [False, False], [RIGHT, UP], [(1, 2), (1, 3)]),  # the leader is blocked: chain
        ([(1, 2), (1, 3)], [False, False], [RIGHT, STAY], [(1, 2), (1, 3)]),  # into a staying agent
        ([(1, 4), (1, 3)], [False, False], [DOWN, RIGHT], [(2, 4), (1, 4)]),  # a follower takes the vacated cell
        ([(0, 1), (0, 0)], [False, True], [LEFT, RIGHT], [(0, 1), (0, 0)]),  # a done agent stays and blocks
    ],
)
def test_moves(positions, done, actions, expected):
    assert resolve_moves(positions, done, actions) == expected


def test_reward_is_the_sum_of_distances_over_n_of_the_agents_not_done():
    positions, reward, done = step(list(STARTS), [False, False], [RIGHT, RIGHT])
    assert positions == [(1, 3), (1, 4)]
    assert reward == pytest.approx(-0.1 * (math.sqrt(5) + math.sqrt(17)) / 2)
    assert done == [False, False]
    # agent 1 already done at its goal: only agent 2's distance counts, still divided by 2
    positions, reward, done = step([GOALS[0], (1, 3)], [True, False], [UP, LEFT])
    assert positions == [GOALS[0], (1, 2)]
    assert reward == pytest.approx(-0.1 * math.sqrt(5) / 2)


def test_goal_reached_makes_the_agent_done_with_only_stay_available():
    positions, reward, done = step([(2, 4), (1, 1)], [False, False], [RIGHT, LEFT])
    assert positions == [(2, 5), (1, 0)] and done == [True, False]
    assert reward == pytest.approx(-0.1 * (0 + 1) / 2)  # the arriving agent counts with distance 0
    assert avail_vector(done).tolist() == [[1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    positions, reward, done = step([(2, 5), (0, 1)], [True, False], [LEFT, LEFT])
    assert positions == [(2, 5), (0, 0)] and done == [True, True] and reward == 0.0


def test_state_vector_layout():
    assert state_vector(list(STARTS)).tolist() == [1, 2, 2, 5, 1, 3, 0, 0]


@pytest.mark.parametrize("first", [0, 1])
def test_every_optimal_plan_reaches_the_goals_in_8_steps(first):
    rng = np.random.default_rng(0)
    returns = set()
    for _ in range(40):
        plan = optimal_plan(first, rng)
        positions, done, total = list(STARTS), [False, False], 0.0
        for actions in plan:
            positions, reward, done = step(positions, done, actions)
            total += reward
        assert len(plan) == 8 and all(done)
        assert plan[0] == ((RIGHT, RIGHT) if first == 0 else (LEFT, LEFT))
        returns.add(round(total, 3))
    assert returns == {-1.235, -1.259, -1.29}


@pytest.fixture(scope="module")
def optimal_dataset():
    return Bridge().generate_dataset("optimal", seed=3)


def test_optimal_dataset(optimal_dataset):
    arrays, meta = optimal_dataset
    assert arrays["obs"].shape == (500, 51, 2, 8) and arrays["avail_actions"].shape == (500, 51, 2, 5)
    assert (arrays["filled"][:, :8, 0] == 1).all() and (arrays["filled"][:, 8:, 0] == 0).all()
    assert (arrays["terminated"][:, 7, 0] == 1).all() and arrays["terminated"].sum() == 500
    first_moves = arrays["actions"][:, 0, 0, 0]
    assert (first_moves == RIGHT).sum() == 250 and (first_moves == LEFT).sum() == 250  # half each way
    returns = arrays["reward"][..., 0].sum(1)
    assert returns.mean() == pytest.approx(-1.26, abs=0.01)
    assert (arrays["obs"][:, :, 0] == arrays["state"]).all() and (arrays["obs"][:, :, 1] == arrays["state"]).all()
    assert meta["episode_limit"] == 50


def test_datasets_are_seeded(optimal_dataset):
    again, _ = Bridge().generate_dataset("optimal", seed=3)
    other, _ = Bridge().generate_dataset("optimal", seed=4)
    assert all(np.array_equal(optimal_dataset[0][k], again[k]) for k in again)
    assert not np.array_equal(optimal_dataset[0]["actions"], other["actions"])


def test_mixed_dataset_adds_random_episodes():
    arrays, _ = Bridge().generate_dataset("mixed", seed=0)
    assert arrays["obs"].shape[0] == 1000
    lengths = arrays["filled"][500:, :, 0].sum(1)
    assert lengths.max() == 50 and arrays["reward"][500:, :, 0].sum(1).mean() < -5
    # a random episode cut at 50 steps is not terminal; its final state is stored unfilled
    cut = 500 + int(np.argmax(lengths == 50))
    assert arrays["terminated"][cut].sum() == 0 and arrays["state"][cut, 50].any()


def _lookup_policy(table):
    """A deterministic policy from a state -> joint action table (unknown states: stay)."""

    def policy(obs, avail):
        logits = torch.zeros(avail.shape)
        for e, state in enumerate(obs[:, 0]):
            joint = table.get(tuple(state.tolist()), (STAY, STAY))
            for agent, action in enumerate(joint):
                logits[e, agent, action] = 10.0
        return logits

    return policy


def test_evaluate_scripted_and_stuck_policies(optimal_dataset):
    arrays, _ = optimal_dataset
    episode = int(np.argmax(arrays["reward"][..., 0].sum(1)))  # a -1.235 plan
    table = {
        tuple(arrays["state"][episode, t].tolist()): tuple(arrays["actions"][episode, t, :, 0].tolist())
        for t in range(8)
    }
    generator = torch.Generator().manual_seed(0)
    scores = Bridge().evaluate(_lookup_policy(table), episodes=10, generator=generator)
    assert scores["greedy_return"] == pytest.approx(-1.235, abs=1e-3)
    assert scores["greedy_optimal"] == 1.0 and scores["greedy_success"] == 1.0
    assert scores["stochastic_optimal"] == 1.0  # logits 10 apart: sampling follows the plan here
    stuck = Bridge().evaluate(_lookup_policy({}), episodes=5, generator=generator)
    assert stuck["greedy_return"] == pytest.approx(20 * -0.1 * math.sqrt(10), abs=1e-4)
    assert stuck["greedy_success"] == 0.0 and stuck["stochastic_optimal"] == 0.0
