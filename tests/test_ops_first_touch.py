"""Large CPU outputs are advised into huge pages before the kernels first write them (_backend.prepare_output):
the values must not change, and small outputs are left alone."""

from __future__ import annotations

import pytest
import torch

from inspo_ext import _backend
from ops_testing import joint_batch, loss_and_grad, ref_loss, run_loss

pytestmark = pytest.mark.skipif(_backend._C is None, reason="needs the compiled module inspo_ext._C")


def test_only_buffers_holding_a_whole_huge_page_are_advised():
    assert not _backend._C.advise_huge_pages(torch.empty(1000))
    big = torch.empty(_backend.HUGE_PAGE_OUTPUT_BYTES // 4 + 1)
    assert _backend._C.advise_huge_pages(big) in (True, False)  # False only without THP in this kernel
    with pytest.raises(TypeError):
        _backend._C.advise_huge_pages(torch.empty(10)[::2])  # a view with strides is no buffer


@pytest.mark.parametrize("ratio", ["importance", "self_normalized"])
@pytest.mark.parametrize("summed", [True, False])
def test_advised_outputs_hold_the_same_loss_and_gradient(ratio, summed, monkeypatch):
    """B * N * A float64 entries past the advice threshold: the forward's gradient buffer (the summed loss's
    gradient itself) and the backward's product (other coefficients) are advised; both equal the reference in
    float64 and the unadvised call bit for bit."""
    data = joint_batch(8200, 4, 16, seed=91, mask="random")
    assert data["logits"].numel() * 8 >= _backend.HUGE_PAGE_OUTPUT_BYTES
    coefficients = torch.ones(4, dtype=torch.float64) if summed else torch.linspace(0.5, 1.5, 4, dtype=torch.float64)
    advised, advised_grad = loss_and_grad(run_loss, data, coefficients, ratio=ratio)
    expected, expected_grad = loss_and_grad(ref_loss, data, coefficients, ratio=ratio)
    for a, e in zip(advised + [advised_grad], expected + [expected_grad]):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)
    monkeypatch.setattr(_backend, "advise_huge_pages_enabled", False)
    plain, plain_grad = loss_and_grad(run_loss, data, coefficients, ratio=ratio)
    for a, p in zip(advised + [advised_grad], plain + [plain_grad]):
        assert torch.equal(a, p)
