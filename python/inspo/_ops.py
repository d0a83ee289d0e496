"""Temporary shim: the public `inspo_ext` op API over `inspo_ext.reference` until the package lands.

Delete this file once `inspo_ext` exports the ops (the trainer then imports `inspo_ext` directly).
"""
from __future__ import annotations

try:
    from inspo_ext import (  # noqa: F401
        in_sample_weights, resample, sequential_policy_loss, soft_bellman_target, teammate_log_ratios,
    )
except ImportError:
    import torch

    from inspo_ext import reference as _ref

    def soft_bellman_target(reward, done, q_next, next_logits, next_log_mu, next_avail, next_actions, *,
                            gamma, alpha, beta, log_rho_max):
        return _ref.soft_bellman_target(reward, done, q_next, next_logits, next_log_mu, next_avail, next_actions,
                                        gamma, alpha, beta, log_rho_max)

    def in_sample_weights(q_local, log_mu, avail, actions, *, alpha, beta, log_w_max):
        return _ref.in_sample_weights(q_local, log_mu, avail, actions, alpha, beta, log_w_max)

    def teammate_log_ratios(logits, log_mu, avail, actions, order, *, predecessors="target", q_local=None,
                            updated_log_probs=None, alpha, beta, eta, log_rho_max):
        return _ref.teammate_log_ratios(logits, log_mu, avail, actions, order, predecessors, q_local,
                                        updated_log_probs, alpha, beta, eta, log_rho_max)

    def resample(log_rho, *, method="multinomial", generator=None):
        shape = log_rho.shape if method == "multinomial" else (1, log_rho.shape[1])
        uniforms = torch.rand(shape, generator=generator, dtype=torch.float64, device=log_rho.device)
        return _ref.resample(log_rho, uniforms, method)

    def sequential_policy_loss(logits, log_mu, avail, actions, q_local, order, *, predecessors="target",
                               updated_log_probs=None, alpha, beta, eta, log_rho_max, log_w_max, ratio="none"):
        return _ref.sequential_policy_loss(logits, log_mu, avail, actions, q_local, order, predecessors,
                                           updated_log_probs, alpha, beta, eta, log_rho_max, log_w_max, ratio)
