"""Networks and their optimizer, batched over S seeds: every parameter is one tensor [S, G, ...].

S independent runs (seeds) train in one process as a leading tensor dimension; G is the number of
independent networks of a module per seed (N per-agent MLPs, or 1: a shared-parameter actor, the
centralized critic, a mixer). A layer of all S x G networks is one batched matmul. Seed s of a module
is initialized by `reset_seed(s)` from the global torch RNG with exactly the draws (and in the order)
of a single run's `torch.nn` modules, so a batched run starts where its single runs start.

`StackedAdam` steps every (seed, network) slice as its own Adam (its own step count) on its own
clipped gradient, optionally only the slices a mask selects (the exact mode updates one agent per
seed at a time; the others stay bitwise unchanged, moments included). Gradients are taken with
torch.autograd.grad, never stored in .grad: the whole step is one function of tensors, which
torch.compile traces as one graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from inspo.config import PRECISIONS, TrainConfig
from inspo.envs.base import PolicyFn


def masked_log_softmax(logits: Tensor, avail: Tensor) -> Tensor:
    return torch.log_softmax(logits.masked_fill(~avail, float("-inf")), dim=-1)


class StackedMLP(nn.Module):
    """S x G independent MLPs: x [S, G, M, in] -> [S, G, M, out], one baddbmm per layer."""

    def __init__(self, n_seeds: int, n_nets: int, dims: Sequence[int]):
        super().__init__()
        self.dims = tuple(dims)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_seeds, n_nets, i, o)) for i, o in zip(dims, dims[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(n_seeds, n_nets, o)) for o in dims[1:])
        # plain list of the same Parameter objects: indexing a ParameterList costs more than the math
        self.layers = list(zip(self.weights, self.biases))
        # the matmuls' dtype under torch.autocast (set_precision); None: the parameters' dtype throughout
        self.autocast_dtype: Optional[torch.dtype] = None

    def forward(self, x: Tensor, seeds: slice = slice(None)) -> Tensor:
        if self.autocast_dtype is None:
            return self._forward(x, seeds)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            return self._forward(x, seeds).float()

    def forward_nets(self, nets: Tensor, x: Tensor) -> Tensor:
        """x [S, M, in] -> [S, M, out] through network nets[s] of each seed only (gradients reach only it)."""
        if self.autocast_dtype is None:
            return self._forward_nets(nets, x)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            return self._forward_nets(nets, x).float()

    def _forward(self, x: Tensor, seeds: slice) -> Tensor:
        n_seeds, n_nets, rows, _ = x.shape
        h = x.reshape(n_seeds * n_nets, rows, -1)
        every_seed = seeds == slice(None)  # no slicing then: its backward would zero-fill and copy every weight
        for layer, (weight, bias) in enumerate(self.layers):
            if not every_seed:
                weight, bias = weight[seeds], bias[seeds]
            h = torch.baddbmm(
                bias.reshape(n_seeds * n_nets, 1, -1), h, weight.reshape(n_seeds * n_nets, *weight.shape[2:])
            )
            if layer < len(self.layers) - 1:
                h = torch.relu(h)
        return h.reshape(n_seeds, n_nets, rows, -1)

    def _forward_nets(self, nets: Tensor, x: Tensor) -> Tensor:
        seeds = torch.arange(x.shape[0], device=x.device)
        h = x
        for layer, (weight, bias) in enumerate(self.layers):
            h = torch.baddbmm(bias[seeds, nets].unsqueeze(1), h, weight[seeds, nets])
            if layer < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    @torch.no_grad()
    def init_like_agent_mlp(self, seed: int) -> None:
        """The draws of the per-network MLPs of a single run: layer by layer, every network's weight
        [in, out] then every network's bias, each U(-1/sqrt(in), 1/sqrt(in))."""
        for weight, bias in self.layers:
            bound = 1.0 / math.sqrt(weight.shape[2])
            for net in range(weight.shape[1]):
                weight[seed, net] = torch.empty(weight.shape[2:]).uniform_(-bound, bound)
            for net in range(weight.shape[1]):
                bias[seed, net] = torch.empty(bias.shape[2:]).uniform_(-bound, bound)

    @torch.no_grad()
    def init_like_linear(self, seed: int) -> None:
        """The draws of an nn.Sequential of nn.Linear: per layer the weight [out, in], then the bias."""
        for weight, bias in self.layers:
            linear = torch.empty(weight.shape[3], weight.shape[2])
            nn.init.kaiming_uniform_(linear, a=math.sqrt(5))
            weight[seed, 0] = linear.T
            bound = 1.0 / math.sqrt(weight.shape[2])
            bias[seed, 0] = torch.empty(bias.shape[2:]).uniform_(-bound, bound)


class AgentMLP(nn.Module):
    """x [S, B, N, in] -> [S, B, N, out]: agent i's MLP of seed s applied to x[s, :, i].

    With `share_parameters` one MLP per seed serves all agents, with a one-hot agent id appended.
    """

    def __init__(
        self,
        n_seeds: int,
        n_agents: int,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int],
        share_parameters: bool = False,
    ):
        super().__init__()
        self.n_seeds, self.n_agents, self.share_parameters = n_seeds, n_agents, share_parameters
        self.n_nets = 1 if share_parameters else n_agents
        self.mlp = StackedMLP(n_seeds, self.n_nets, [in_dim + (n_agents if share_parameters else 0), *hidden, out_dim])

    def forward(self, x: Tensor, seeds: slice = slice(None)) -> Tensor:
        n_seeds, batch = x.shape[:2]
        if self.share_parameters:
            agent_id = torch.eye(self.n_agents, dtype=x.dtype, device=x.device).expand(n_seeds, batch, -1, -1)
            h = torch.cat([x, agent_id], dim=-1).reshape(n_seeds, 1, batch * self.n_agents, -1)
            return self.mlp(h, seeds).reshape(n_seeds, batch, self.n_agents, -1)
        out = self.mlp(x.transpose(1, 2), seeds)  # [S, N, B, out]
        return out.transpose(1, 2).contiguous()  # the fused ops take contiguous [.., B, N, A] inputs

    def forward_seed(self, seed: int, x: Tensor) -> Tensor:
        """x [B, N, in] -> [B, N, out] through seed `seed`'s networks (evaluation, the behaviour cache)."""
        return self.forward(x.unsqueeze(0), slice(seed, seed + 1))[0]

    def forward_agent(self, agents: Tensor, x: Tensor) -> Tensor:
        """x [S, B, in] -> [S, B, out] through agent agents[s]'s network of each seed only."""
        if self.share_parameters:
            agent_id = nn.functional.one_hot(agents, self.n_agents).to(x.dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
            return self.mlp(torch.cat([x, agent_id], dim=-1).unsqueeze(1))[:, 0]
        return self.mlp.forward_nets(agents, x)

    def network_mask(self, agents: Tensor) -> Tensor:
        """[S, G] bool: the networks agent agents[s]'s output depends on (all of them when shared)."""
        if self.share_parameters:
            return torch.ones(len(agents), 1, dtype=torch.bool, device=agents.device)
        return nn.functional.one_hot(agents, self.n_agents).bool()

    def reset_seed(self, seed: int) -> None:
        self.mlp.init_like_agent_mlp(seed)


class CentralCritic(nn.Module):
    """Q(s, a) on the state and the concatenated one-hot actions of all agents (N*A inputs), per seed."""

    def __init__(self, n_seeds: int, state_dim: int, n_agents: int, n_actions: int, hidden: Sequence[int]):
        super().__init__()
        self.n_actions = n_actions
        self.mlp = StackedMLP(n_seeds, 1, [state_dim + n_agents * n_actions, *hidden, 1])

    def forward(self, state: Tensor, actions: Tensor) -> Tensor:
        """state [S, ..., state dim], actions [S, ..., N] int64 -> Q [S, ...]."""
        one_hot = nn.functional.one_hot(actions, self.n_actions).to(state.dtype).flatten(-2)
        x = torch.cat([state, one_hot], dim=-1)
        return self.mlp(x.reshape(x.shape[0], 1, -1, x.shape[-1])).reshape(state.shape[:-1])

    def reset_seed(self, seed: int) -> None:
        self.mlp.init_like_linear(seed)


AUTOCAST_DTYPES = dict(zip(PRECISIONS, (None, torch.bfloat16)))  # config.precision -> the matmuls' autocast dtype


def set_precision(module: nn.Module, precision: str) -> None:
    """Run the matmuls of every StackedMLP in `module` at `precision` (config.precision): "fp32", or "bf16"
    under torch.autocast, their outputs cast back to float32. The parameters, their gradients and the
    optimizer state stay float32, and so does everything the networks' outputs feed (the ops, the targets)."""
    for sub in module.modules():
        if isinstance(sub, StackedMLP):
            sub.autocast_dtype = AUTOCAST_DTYPES[precision]


def make_policy_net(config: TrainConfig, n_agents: int, obs_dim: int, n_actions: int, n_seeds: int = 1) -> AgentMLP:
    """An actor (or mu): per-agent MLP from the observation to the action logits."""
    return AgentMLP(n_seeds, n_agents, obs_dim, n_actions, config.hidden, config.share_parameters).to(config.device)


def policy_fn(actor: AgentMLP, seed: int = 0) -> PolicyFn:
    """Seed `seed`'s actor as an environment's policy (its live weights)."""

    @torch.no_grad()
    def policy(obs: Tensor, avail: Tensor) -> Tensor:
        weight = actor.mlp.weights[0]
        return actor.forward_seed(seed, obs.to(device=weight.device, dtype=weight.dtype)).cpu()

    return policy


def network_families(*modules: nn.Module) -> list[list[nn.Parameter]]:
    """The parameters of each module as one family: all of its tensors are [S, G, ...] with one G."""
    return [list(module.parameters()) for module in modules]


def clip_grad_norm_per_network(grads: Sequence[Sequence[Tensor]], max_norm: float) -> list[list[Tensor]]:
    """The gradients of every (seed, network) slice clipped to `max_norm` on its own, as
    torch.nn.utils.clip_grad_norm_ would clip that network alone. grads: per family, its tensors [S, G, ...]."""
    clipped = []
    for family in grads:
        per_tensor = torch.stack([g.flatten(2).norm(dim=-1) for g in family], dim=-1)  # [S, G, tensors]
        scale = (max_norm / (per_tensor.norm(dim=-1) + 1e-6)).clamp(max=1.0)
        clipped.append([g * scale.view(*scale.shape, *([1] * (g.dim() - 2))) for g in family])
    return clipped


@dataclass(frozen=True)
class NetworkSlices:
    """One optimizer family's tensors cut per (seed, network) j: params[j] (its K parameter views), the
    moments alike, steps[j] its step count (0-d); `key` the data pointers they are views of."""

    key: tuple[int, ...]
    params: list[list[Tensor]]
    exp_avgs: list[list[Tensor]]
    exp_avg_sqs: list[list[Tensor]]
    steps: tuple[Tensor, ...]


class StackedAdam(nn.Module):
    """Adam (torch.optim.Adam's update, no weight decay) with one step count per (seed, network).

    families: lists of parameters [S, G, ...] sharing G (a module's networks). `minimize(loss, ...)`
    takes the gradient of `loss`, clips every (seed, network) slice on its own, and steps; with
    masks[f] [S, G] only the selected slices of family f move: the rest keep their values and
    moments, as torch's Adam leaves a parameter whose gradient is None.

    One update, two implementations: under torch.compile, `step` on `clip_grad_norm_per_network`
    (plain tensor ops, which the graph fuses; the reference); eagerly `fused_step`, a few kernel
    calls instead of ~15 ops per parameter tensor.
    """

    def __init__(
        self,
        families: Sequence[list[nn.Parameter]],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        super().__init__()
        self.families = [list(f) for f in families]
        self.params = [p for family in self.families for p in family]
        self.lr, self.betas, self.eps = lr, betas, eps
        for f, params in enumerate(self.families):
            self.register_buffer(
                f"steps{f}", torch.zeros(params[0].shape[:2], dtype=torch.float64, device=params[0].device)
            )
            for k, p in enumerate(params):
                self.register_buffer(f"exp_avg{f}_{k}", torch.zeros_like(p, memory_format=torch.contiguous_format))
                self.register_buffer(f"exp_avg_sq{f}_{k}", torch.zeros_like(p, memory_format=torch.contiguous_format))
        self._state_names = [
            [
                *(f"exp_avg{f}_{k}" for k in range(len(params))),
                *(f"exp_avg_sq{f}_{k}" for k in range(len(params))),
                f"steps{f}",
            ]
            for f, params in enumerate(self.families)
        ]
        self._slices: dict[int, NetworkSlices] = {}

    def minimize(
        self,
        loss: Tensor,
        max_norm: float,
        masks: Optional[Sequence[Tensor]] = None,
        lr: Optional[float | Tensor] = None,
    ) -> None:
        """One clipped Adam step on the gradient of `loss` (zero for a parameter `loss` does not reach)."""
        flat = torch.autograd.grad(loss, self.params, materialize_grads=True)
        grads, start = [], 0
        for family in self.families:
            grads.append(list(flat[start : start + len(family)]))
            start += len(family)
        if torch.compiler.is_compiling():
            self.step(clip_grad_norm_per_network(grads, max_norm), lr, masks)
        else:
            self.fused_step(grads, max_norm, lr, masks)

    @torch.no_grad()
    def fused_step(
        self,
        grads: Sequence[Sequence[Tensor]],
        max_norm: float,
        lr: Optional[float | Tensor] = None,
        masks: Optional[Sequence[Tensor]] = None,
    ) -> None:
        """`step(clip_grad_norm_per_network(grads, max_norm), lr, masks)` with every selected (seed, network)
        slice as a tensor of its own: per family one foreach norm and one foreach scale (the clipping),
        then one call of torch's fused Adam kernel (torch.optim.Adam(fused=True)'s) for all of them, each
        slice with its own step count (a view of `steps{f}`). A mask is read on the host."""
        params, clipped, exp_avgs, exp_avg_sqs, slice_steps = [], [], [], [], []
        for f, family in enumerate(self.families):
            steps = getattr(self, f"steps{f}")
            mask = None if masks is None else masks[f]
            steps.add_(1 if mask is None else mask.to(steps.dtype))
            nets = range(steps.numel()) if mask is None else mask.flatten().nonzero()[:, 0].tolist()
            if not nets:
                continue
            state = self.network_slices(f)
            grad_per_net = [grad.reshape(-1, *grad.shape[2:]).unbind(0) for grad in grads[f]]
            family_grads = []
            for net in nets:  # network-major: the family's K tensors of each selected network in turn
                params.extend(state.params[net])
                exp_avgs.extend(state.exp_avgs[net])
                exp_avg_sqs.extend(state.exp_avg_sqs[net])
                slice_steps.extend([state.steps[net]] * len(family))
                family_grads.extend(per_net[net] for per_net in grad_per_net)
            norms = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(family_grads)).view(len(nets), -1), dim=1)
            scales = (max_norm / (norms + 1e-6)).clamp(max=1.0).unbind(0)
            clipped.extend(torch._foreach_mul(family_grads, [scale for scale in scales for _ in family]))
        if params:
            torch._fused_adam_(
                params,
                clipped,
                exp_avgs,
                exp_avg_sqs,
                [],
                slice_steps,
                lr=self.lr if lr is None else float(lr),
                beta1=self.betas[0],
                beta2=self.betas[1],
                weight_decay=0.0,
                eps=self.eps,
                amsgrad=False,
                maximize=False,
            )

    def network_slices(self, family: int) -> "NetworkSlices":
        """Views of family `family`'s parameters, moments and step counts, per (seed, network): made once
        (making them costs more than the update) and again when a tensor was replaced (`.to`, `.double`)."""
        tensors = [*self.families[family], *(self._buffers[name] for name in self._state_names[family])]
        key = tuple(t.data_ptr() for t in tensors)
        cached = self._slices.get(family)
        if cached is None or cached.key != key:
            n_params = len(self.families[family])

            def per_net(group: Sequence[Tensor]) -> list[list[Tensor]]:
                # view, never reshape: a copy would take the update away from the stacked tensor
                return [list(views) for views in zip(*(t.view(-1, *t.shape[2:]).unbind(0) for t in group))]

            cached = NetworkSlices(
                key,
                per_net(tensors[:n_params]),
                per_net(tensors[n_params : 2 * n_params]),
                per_net(tensors[2 * n_params : 3 * n_params]),
                tensors[-1].view(-1).unbind(0),
            )
            self._slices[family] = cached
        return cached

    @torch.no_grad()
    def step(
        self,
        grads: Sequence[Sequence[Tensor]],
        lr: Optional[float | Tensor] = None,
        masks: Optional[Sequence[Tensor]] = None,
    ) -> None:
        """The update on already clipped gradients, as tensor ops over the stacked parameters."""
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        for f, params in enumerate(self.families):
            mask = None if masks is None else masks[f]
            steps = getattr(self, f"steps{f}")
            steps.add_(1 if mask is None else mask.to(steps.dtype))
            dtype = params[0].dtype
            step_size = (lr / (1 - beta1**steps)).to(dtype)
            bias_correction2_sqrt = (1 - beta2**steps).sqrt().to(dtype)
            for k, (p, grad) in enumerate(zip(params, grads[f])):
                shape = (*steps.shape, *([1] * (p.dim() - 2)))
                exp_avg, exp_avg_sq = getattr(self, f"exp_avg{f}_{k}"), getattr(self, f"exp_avg_sq{f}_{k}")
                if mask is None:  # in place, as torch's Adam
                    exp_avg.lerp_(grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt.view(shape)).add_(self.eps)
                    p.sub_(step_size.view(shape) * (exp_avg / denom))
                    continue
                new_avg = exp_avg.lerp(grad, 1 - beta1)
                new_avg_sq = exp_avg_sq.mul(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (new_avg_sq.sqrt() / bias_correction2_sqrt.view(shape)).add_(self.eps)
                keep = mask.view(shape)
                exp_avg.copy_(torch.where(keep, new_avg, exp_avg))
                exp_avg_sq.copy_(torch.where(keep, new_avg_sq, exp_avg_sq))
                p.copy_(torch.where(keep, p - step_size.view(shape) * (new_avg / denom), p))


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, rate: float) -> None:
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), rate)
