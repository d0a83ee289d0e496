"""StackedAdam: the eager fused path (torch's fused Adam kernel on (seed, network) slices) against the
tensor-op reference the compiled step runs, and both against torch.optim.Adam + clip_grad_norm_ on each
network alone (float64, masks, clipping that bites and that does not)."""

import pytest
import torch
from torch import nn

from inspo.nets import StackedAdam, clip_grad_norm_per_network

S, G = 2, 3
SHAPES = [(S, G, 4, 5), (S, G, 5), (S, G, 5, 1)]  # one family: [S, G, ...] tensors
OTHER = [(S, 1, 3, 2), (S, 1, 2)]  # a second family with G = 1


def make_params(generator):
    return [
        [nn.Parameter(torch.randn(shape, generator=generator, dtype=torch.float64)) for shape in shapes]
        for shapes in (SHAPES, OTHER)
    ]


def random_grads(families, generator, scale):
    return [
        [scale * torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in family] for family in families
    ]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("grad_scale", [0.01, 10.0])  # clipping at max_norm 1 idle / active
def test_the_fused_step_is_the_reference_step(masked, grad_scale):
    generator = torch.Generator().manual_seed(5)
    fused_families = make_params(generator)
    reference_families = [[nn.Parameter(p.detach().clone()) for p in family] for family in fused_families]
    fused = StackedAdam(fused_families, lr=1e-2)
    reference = StackedAdam(reference_families, lr=1e-2)
    for step in range(6):
        grads = random_grads(fused_families, generator, grad_scale)
        masks = None
        if masked:  # a different selection every step, sometimes none of a family's networks
            masks = [torch.rand(S, G, generator=generator) < 0.5, torch.tensor([[step % 2 == 0], [True]])]
        lr = torch.tensor(3e-3, dtype=torch.float64) if step == 3 else None  # a tensor step size (BC's schedule)
        fused.fused_step(grads, 1.0, lr, masks)
        reference.step(clip_grad_norm_per_network(grads, 1.0), lr, masks)
        for mine, theirs in zip(fused.state_dict().values(), reference.state_dict().values()):
            torch.testing.assert_close(mine, theirs, rtol=1e-13, atol=1e-15)
        for family, other in zip(fused_families, reference_families):
            for p, q in zip(family, other):
                torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)
    if masked:  # the masks made the step counts differ between networks
        assert len(set(fused.steps0.flatten().tolist())) > 1


def test_each_network_steps_as_torch_adam_on_its_own_clipped_gradient():
    generator = torch.Generator().manual_seed(6)
    families = make_params(generator)
    alone = {(s, g): [nn.Parameter(p[s, g].detach().clone()) for p in families[0]] for s in range(S) for g in range(G)}
    optimizers = {key: torch.optim.Adam(params, lr=1e-2) for key, params in alone.items()}
    stacked = StackedAdam(families, lr=1e-2)
    for _ in range(5):
        grads = random_grads(families, generator, 1.0)
        stacked.minimize(sum((p * g).sum() for family, gs in zip(families, grads) for p, g in zip(family, gs)), 1.0)
        for (s, g), params in alone.items():
            for p, grad in zip(params, grads[0]):
                p.grad = grad[s, g].clone()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizers[s, g].step()
    for (s, g), params in alone.items():
        for p, q in zip(families[0], params):
            torch.testing.assert_close(p[s, g], q, rtol=1e-10, atol=1e-12)
