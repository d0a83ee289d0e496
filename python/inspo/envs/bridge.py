"""Bridge: two agents meet face to face on a one-lane bridge (docs/ALGORITHM.md#bridge).

    row 0:  g2 .  #  #  .  .
    row 1:  .  .  .  .  .  .        row 1, columns 2-3 is the bridge
    row 2:  .  .  #  #  .  g1

Agent 1 starts at (1,2) with goal (2,5), agent 2 at (1,3) with goal (0,0). Actions: 0 stay, 1 up,
2 down, 3 right, 4 left. Rules, as implemented:
* a move off the grid or into a blocked cell leaves the agent in place;
* two agents may not enter the same cell (both movers stay) nor swap cells (both stay), and a move
  into a cell whose occupant stays is blocked; blocked moves are resolved in rounds until stable;
* an agent on its goal is done: it stays there (and keeps occupying the cell), its only available
  action is "stay";
* shared reward of a step: the sum over the agents not done before the step of -0.1 x (Euclidean
  distance to the goal after the step), divided by the number of agents (a done agent counts 0).
  Read literally, "the mean over agents not yet done" would divide by the number of agents not done;
  dividing by N is the reading under which the optimal dataset returns the spec's -1.26 (and it is
  how the original AlberDICE Bridge computes it), so it is the one used here;
* the episode terminates when both agents are done; evaluation episodes are cut at 20 steps, data
  episodes at 50 (a cut is a time limit, not a termination).
Observation of each agent = state = [r1, c1, g1r, g1c, r2, c2, g2r, g2c].
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from inspo.envs.base import Env, PolicyFn, greedy_actions, sample_actions

ROWS, COLS = 3, 6
BLOCKED = frozenset({(0, 2), (0, 3), (2, 2), (2, 3)})
STARTS = ((1, 2), (1, 3))
GOALS = ((2, 5), (0, 0))
MOVES = ((0, 0), (-1, 0), (1, 0), (0, 1), (0, -1))  # stay, up, down, right, left
STAY, UP, DOWN, RIGHT, LEFT = range(5)
N_AGENTS, N_ACTIONS, STATE_DIM = 2, 5, 8
EVAL_LIMIT, DATA_LIMIT = 20, 50
OPTIMAL_RETURN = -1.27  # an evaluation episode counts as optimal at or above this return
SUCCESS_RETURN = -1.3  # the done-when bar: goals reached with at least this return
OPTIMAL_EPISODES = 500

Position = tuple[int, int]


def free(cell: Position) -> bool:
    r, c = cell
    return 0 <= r < ROWS and 0 <= c < COLS and cell not in BLOCKED


def resolve_moves(positions: Sequence[Position], done: Sequence[bool], actions: Sequence[int]) -> list[Position]:
    """Next cells of all agents under the blocking rules of the module docstring."""
    targets = []
    for position, is_done, action in zip(positions, done, actions):
        dr, dc = MOVES[STAY if is_done else int(action)]
        cell = (position[0] + dr, position[1] + dc)
        targets.append(cell if free(cell) else position)
    while True:  # one round blocks every mover in conflict with the current targets, all at once
        blocked = set()
        for i, target in enumerate(targets):
            if target == positions[i]:
                continue
            for j in range(len(targets)):
                if j == i:
                    continue
                same_cell = target == targets[j]  # also covers moving into a staying agent
                swap = target == positions[j] and targets[j] == positions[i]
                if same_cell or swap:
                    blocked.add(i)
                    break
        if not blocked:
            return targets
        for i in blocked:
            targets[i] = positions[i]


def step(
    positions: Sequence[Position], done: Sequence[bool], actions: Sequence[int]
) -> tuple[list[Position], float, list[bool]]:
    """(next positions, shared reward, next done flags) of one step."""
    nxt = resolve_moves(positions, done, actions)
    penalty = sum(
        -0.1 * math.hypot(cell[0] - goal[0], cell[1] - goal[1])
        for cell, goal, was_done in zip(nxt, GOALS, done)
        if not was_done
    )
    new_done = [was_done or cell == goal for cell, goal, was_done in zip(nxt, GOALS, done)]
    return nxt, penalty / len(positions), new_done


def state_vector(positions: Sequence[Position]) -> np.ndarray:
    return np.array([v for cell, goal in zip(positions, GOALS) for v in (*cell, *goal)], dtype=np.float32)


def avail_vector(done: Sequence[bool]) -> np.ndarray:
    avail = np.ones((len(done), N_ACTIONS), dtype=np.int32)
    for i, is_done in enumerate(done):
        if is_done:
            avail[i] = 0
            avail[i, STAY] = 1
    return avail


def _actions_along(path: Sequence[Position]) -> list[int]:
    actions = []
    for a, b in zip(path, path[1:]):
        actions.append(MOVES.index((b[0] - a[0], b[1] - a[1])))
    return actions


def optimal_plan(first: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Joint actions of one shortest-path plan in which agent `first` (0 or 1) crosses first.

    The other agent backs off the bridge and steps aside into one of the three cells next to the
    bridge exit (up, down or straight on, drawn uniformly), then follows; the remaining free choices
    of the paths are drawn uniformly too. 4 steps for the crossing agent, 8 for the other; the
    return is -1.235, -1.259 or -1.290 by where the other one waited (-1.26 on average).
    """
    if first == 0:  # agent 1 crosses eastward, agent 2 backs off east and waits
        wait = [(0, 4), (2, 4), (1, 5)][rng.integers(3)]
        turn = (1, 5) if wait == (2, 4) else (2, 4) if wait == (1, 5) else [(2, 4), (1, 5)][rng.integers(2)]
        crossing = [(1, 2), (1, 3), (1, 4), turn, (2, 5)]
        waiting = [(1, 3), (1, 4), wait, (1, 4), (1, 3), (1, 2), (1, 1), [(1, 0), (0, 1)][rng.integers(2)], (0, 0)]
        paths = [crossing, waiting]
    else:  # agent 2 crosses westward, agent 1 backs off west and waits
        wait = [(0, 1), (2, 1), (1, 0)][rng.integers(3)]
        turn = (1, 0) if wait == (0, 1) else (0, 1) if wait == (1, 0) else [(1, 0), (0, 1)][rng.integers(2)]
        crossing = [(1, 3), (1, 2), (1, 1), turn, (0, 0)]
        waiting = [(1, 2), (1, 1), wait, (1, 1), (1, 2), (1, 3), (1, 4), [(2, 4), (1, 5)][rng.integers(2)], (2, 5)]
        paths = [waiting, crossing]
    per_agent = [_actions_along(path) for path in paths]
    length = max(len(a) for a in per_agent)
    per_agent = [a + [STAY] * (length - len(a)) for a in per_agent]
    return list(zip(*per_agent))


class Bridge(Env):
    name = "bridge"
    n_agents = N_AGENTS
    n_actions = N_ACTIONS
    obs_dim = STATE_DIM
    state_dim = STATE_DIM
    dataset_names = ("optimal", "mixed")
    score_columns = (
        ("greedy_return", "greedy return"),
        ("greedy_optimal", "greedy optimal"),
        ("stochastic_return", "stoch. return"),
        ("stochastic_optimal", "stoch. optimal"),
    )

    def generate_dataset(self, name: str, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.check_dataset_name(name)
        rng = np.random.default_rng(seed)
        firsts = rng.permutation(np.arange(OPTIMAL_EPISODES) % 2)  # exactly half each way, seeded order
        episodes = [self._record(plan=optimal_plan(int(first), rng)) for first in firsts]
        if name == "mixed":
            episodes += [self._record(rng=rng) for _ in range(OPTIMAL_EPISODES)]
        arrays = _stack_episodes(episodes, DATA_LIMIT)
        meta = dict(
            env=self.name, dataset=name, seed=seed, n_agents=N_AGENTS, n_actions=N_ACTIONS, episode_limit=DATA_LIMIT
        )
        return arrays, meta

    def _record(self, plan: list[tuple[int, int]] | None = None, rng: np.random.Generator | None = None) -> dict:
        """One data episode: a scripted plan, or uniformly random available actions (rng)."""
        positions, done = list(STARTS), [False] * N_AGENTS
        steps = []
        for t in range(DATA_LIMIT):
            avail = avail_vector(done)
            if plan is not None:
                actions = plan[t]
            else:
                # uniform over the available actions: all five, or only "stay" once done
                actions = tuple(STAY if done[i] else int(rng.integers(N_ACTIONS)) for i in range(N_AGENTS))
            state = state_vector(positions)
            positions, reward, done = step(positions, done, actions)
            steps.append((state, avail, actions, reward, all(done)))
            if all(done):
                break
        if plan is not None and not all(done):
            raise AssertionError(f"scripted Bridge plan {plan} does not reach the goals")
        return dict(steps=steps, final_state=state_vector(positions), final_avail=avail_vector(done))

    def evaluate(self, policy: PolicyFn, *, episodes: int = 100, generator: torch.Generator) -> dict[str, float]:
        scores = {}
        for kind in ("stochastic", "greedy"):
            returns, reached = self.rollouts(policy, episodes, greedy=kind == "greedy", generator=generator)
            scores[f"{kind}_return"] = float(returns.mean())
            scores[f"{kind}_return_std"] = float(returns.std())
            scores[f"{kind}_optimal"] = float((returns >= OPTIMAL_RETURN).mean())
            scores[f"{kind}_success"] = float((reached & (returns >= SUCCESS_RETURN)).mean())
        return scores

    @torch.no_grad()
    def rollouts(
        self, policy: PolicyFn, episodes: int, *, greedy: bool, generator: torch.Generator, limit: int = EVAL_LIMIT
    ) -> tuple[np.ndarray, np.ndarray]:
        """(returns [E], both goals reached [E]) of `episodes` parallel evaluation episodes."""
        positions = [list(STARTS) for _ in range(episodes)]
        done = [[False] * N_AGENTS for _ in range(episodes)]
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        for _ in range(limit):
            live = np.flatnonzero(running)
            if live.size == 0:
                break
            state = torch.from_numpy(np.stack([state_vector(positions[e]) for e in live]))
            obs = state.unsqueeze(1).expand(-1, N_AGENTS, -1)
            avail = torch.from_numpy(np.stack([avail_vector(done[e]) for e in live])) != 0
            logits = policy(obs, avail)
            actions = greedy_actions(logits, avail) if greedy else sample_actions(logits, avail, generator)
            for k, e in enumerate(live):
                positions[e], reward, done[e] = step(positions[e], done[e], actions[k].tolist())
                returns[e] += reward
                running[e] = not all(done[e])
        reached = np.array([all(d) for d in done])
        return returns, reached


def _stack_episodes(episodes: list[dict], limit: int) -> dict[str, np.ndarray]:
    """Pad recorded episodes to T+1 = limit+1 steps; index len(steps) holds the final state (not filled)."""
    count, length = len(episodes), limit + 1
    arrays = {
        "obs": np.zeros((count, length, N_AGENTS, STATE_DIM), np.float32),
        "state": np.zeros((count, length, STATE_DIM), np.float32),
        "actions": np.zeros((count, length, N_AGENTS, 1), np.int64),
        "reward": np.zeros((count, length, 1), np.float32),
        "terminated": np.zeros((count, length, 1), np.uint8),
        "filled": np.zeros((count, length, 1), np.int64),
        "avail_actions": np.zeros((count, length, N_AGENTS, N_ACTIONS), np.int32),
    }
    for e, episode in enumerate(episodes):
        for t, (state, avail, actions, reward, terminated) in enumerate(episode["steps"]):
            arrays["state"][e, t] = state
            arrays["obs"][e, t] = state  # each agent observes the full state
            arrays["avail_actions"][e, t] = avail
            arrays["actions"][e, t, :, 0] = actions
            arrays["reward"][e, t, 0] = reward
            arrays["terminated"][e, t, 0] = terminated
            arrays["filled"][e, t, 0] = 1
        end = len(episode["steps"])
        arrays["state"][e, end] = episode["final_state"]
        arrays["obs"][e, end] = episode["final_state"]
        arrays["avail_actions"][e, end] = episode["final_avail"]
    return arrays
