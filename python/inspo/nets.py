"""Networks: per-agent MLPs run as one batched module, and the centralized critic Q(s, a).

`AgentMLP` holds N independent MLPs (actors, the behaviour policy mu, the local critics) and runs
them with one batched matmul per layer. Each agent's weights are their own Parameters (stacked in
forward), so an optimizer step after a backward pass that reached only agent i's parameters leaves
every other agent exactly as it was, Adam moments included: the exact mode relies on this. With
`share_parameters` one MLP serves all agents, with a one-hot agent id appended to its input.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn


def _init_linear(n_nets: int, fan_in: int, fan_out: int) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """nn.Linear's default initialization, once per network."""
    bound = 1.0 / math.sqrt(fan_in)
    weights = [nn.Parameter(torch.empty(fan_in, fan_out).uniform_(-bound, bound)) for _ in range(n_nets)]
    biases = [nn.Parameter(torch.empty(fan_out).uniform_(-bound, bound)) for _ in range(n_nets)]
    return weights, biases


class AgentMLP(nn.Module):
    """x [B, N, in] -> [B, N, out]: agent i's MLP applied to x[:, i]."""

    def __init__(self, n_agents: int, in_dim: int, out_dim: int, hidden: Sequence[int], share_parameters: bool = False):
        super().__init__()
        self.n_agents = n_agents
        self.share_parameters = share_parameters
        n_nets = 1 if share_parameters else n_agents
        dims = [in_dim + (n_agents if share_parameters else 0), *hidden, out_dim]
        self.weights = nn.ModuleList()  # layer l: ParameterList of one weight [in, out] per network
        self.biases = nn.ModuleList()
        for fan_in, fan_out in zip(dims, dims[1:]):
            weights, biases = _init_linear(n_nets, fan_in, fan_out)
            self.weights.append(nn.ParameterList(weights))
            self.biases.append(nn.ParameterList(biases))
        # plain lists of the same Parameter objects: indexing a ParameterList costs more than the math
        self.layers = [(list(w), list(b)) for w, b in zip(self.weights, self.biases)]

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        if self.share_parameters:
            agent_id = torch.eye(self.n_agents, dtype=x.dtype, device=x.device).expand(batch, -1, -1)
            h = torch.cat([x, agent_id], dim=-1).reshape(batch * self.n_agents, -1)
            for layer, (weights, biases) in enumerate(self.layers):
                h = torch.addmm(biases[0], h, weights[0])
                if layer < len(self.layers) - 1:
                    h = torch.relu(h)
            return h.reshape(batch, self.n_agents, -1)
        h = x.transpose(0, 1)  # [N, B, in]
        for layer, (weights, biases) in enumerate(self.layers):
            h = torch.baddbmm(torch.stack(biases).unsqueeze(1), h, torch.stack(weights))
            if layer < len(self.layers) - 1:
                h = torch.relu(h)
        return h.transpose(0, 1).contiguous()  # the fused ops take contiguous [B, N, A] inputs

    def forward_agent(self, agent: int, x: Tensor) -> Tensor:
        """x [B, in] -> [B, out] through agent `agent`'s network only (gradients reach only it)."""
        net = 0 if self.share_parameters else agent
        h = x
        if self.share_parameters:
            agent_id = torch.zeros(x.shape[0], self.n_agents, dtype=x.dtype, device=x.device)
            agent_id[:, agent] = 1.0
            h = torch.cat([x, agent_id], dim=-1)
        for layer, (weights, biases) in enumerate(self.layers):
            h = torch.addmm(biases[net], h, weights[net])
            if layer < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    def agent_parameters(self, agent: int) -> list[nn.Parameter]:
        """The parameters agent `agent`'s output depends on (all of them when shared)."""
        net = 0 if self.share_parameters else agent
        return [p for weights, biases in self.layers for p in (weights[net], biases[net])]

    def parameter_groups(self) -> Iterator[list[nn.Parameter]]:
        """One list of parameters per independent network (one group when shared)."""
        for net in range(1 if self.share_parameters else self.n_agents):
            yield self.agent_parameters(net)


class CentralCritic(nn.Module):
    """Q(s, a) on the state and the concatenated one-hot actions of all agents (N*A inputs)."""

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, hidden: Sequence[int]):
        super().__init__()
        self.n_actions = n_actions
        dims = [state_dim + n_agents * n_actions, *hidden, 1]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(dims, dims[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, state: Tensor, actions: Tensor) -> Tensor:
        """state [..., S], actions [..., N] int64 -> Q [...]."""
        one_hot = nn.functional.one_hot(actions, self.n_actions).to(state.dtype).flatten(-2)
        return self.net(torch.cat([state, one_hot], dim=-1)).squeeze(-1)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, rate: float) -> None:
    target_params = list(target.parameters())
    torch._foreach_lerp_(target_params, list(online.parameters()), rate)


def clip_grad_norm_per_group(groups: Sequence[list[nn.Parameter]], max_norm: float) -> Tensor:
    """Clip each parameter group to `max_norm` on its own; returns the norms before clipping."""
    norms = []
    for params in groups:
        grads = [p for p in params if p.grad is not None]
        norms.append(nn.utils.clip_grad_norm_(grads, max_norm) if grads else torch.zeros(()))
    return torch.stack(norms)
