"""The plain-torch reference of cases a, b, e, f, g, h and i: a Woodbury / matrix-determinant-lemma computation of the
same loss (and predictions) from the non-zeros of ``L``, without linear_operator."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from linear_operator_fork.verify.catalogue import JITTER, NOISE_LOWER_BOUND, RAW_INIT
from linear_operator_fork.verify.data import SparseData, data_rows
from linear_operator_fork.verify.protocol import (
    adam_steps,
    max_relative_error,
    normwise_relative_error,
    self_peak_rss,
)


def sparse_t_matvec(data: SparseData, x: Any) -> Any:
    """``Lᵀ x`` (n) from the non-zeros (differentiable in ``x``)."""
    import torch

    short = data.cols.size(0)
    contributions = (data.vals * x[:short].unsqueeze(-1)).reshape(-1)
    res = torch.zeros(data.n, dtype=x.dtype, device=x.device).index_add(0, data.cols.reshape(-1), contributions)
    if data.long_vals is not None:
        res = res + data.long_vals.mT @ x[short:]
    return res


def weighted_gram(data: SparseData, weights: Any, chunk: int = 1 << 20) -> Any:
    """``Lᵀ diag(weights) L`` (n × n, dense), accumulated over blocks of rows: the sparse side of the grouping
    (the long rows of case i: a dense product)."""
    import torch

    n, short = data.n, data.cols.size(0)
    gram = torch.zeros(n * n, dtype=data.vals.dtype, device=data.vals.device)
    for start in range(0, short, chunk):
        rows = slice(start, min(start + chunk, short))
        cols, vals, w = data.cols[rows], data.vals[rows], weights[rows]
        index = (cols.unsqueeze(-1) * n + cols.unsqueeze(-2)).reshape(-1)
        products = (w[:, None, None] * vals.unsqueeze(-1) * vals.unsqueeze(-2)).reshape(-1)
        gram.index_add_(0, index, products)
    gram = gram.reshape(n, n)
    if data.long_vals is not None:
        gram = gram + data.long_vals.mT @ (weights[short:].unsqueeze(-1) * data.long_vals)
    return gram


def rbf_root(Z: Any, raw_outputscale: Any, raw_lengthscale: Any) -> Any:
    """``R = cholesky(outputscale · exp(-|z - z'|² / 2ℓ²) + JITTER I)``: gpytorch's ScaleKernel(RBFKernel)."""
    import torch
    import torch.nn.functional as F

    scaled = Z / F.softplus(raw_lengthscale)
    sq_dist = (scaled.unsqueeze(-2) - scaled.unsqueeze(-3)).pow(2).sum(-1)
    K = F.softplus(raw_outputscale) * torch.exp(-0.5 * sq_dist)
    return torch.linalg.cholesky(K + JITTER * torch.eye(Z.size(0), dtype=Z.dtype, device=Z.device))


def woodbury_loss(
    data: SparseData, R: Any, constant: Any, noise_scale: Any, gram: Any, weights: Any, logdet_noise: Any
) -> Any:
    """``-log N(y; c, L R Rᵀ Lᵀ + D) / N`` with ``D = noise_scale · diag(1 / weights)``.

    ``gram = Lᵀ diag(weights) L`` is fixed; the (learned) scalar ``noise_scale`` stays outside the sparse product.
    Capacitance ``C = I + Rᵀ Lᵀ D⁻¹ L R = I + Rᵀ gram R / noise_scale`` (n × n), matrix-determinant lemma
    ``log|L K Lᵀ + D| = log|C| + log|D|`` and Woodbury ``yᵀ(...)⁻¹y = yᵀD⁻¹y - bᵀC⁻¹b`` with ``b = Rᵀ Lᵀ D⁻¹ y``.
    """
    import torch

    diff = data.y - constant
    weighted = weights * diff
    b = R.mT @ sparse_t_matvec(data, weighted) / noise_scale
    capacitance = torch.eye(data.n, dtype=R.dtype, device=R.device) + R.mT @ (gram @ R) / noise_scale
    chol = torch.linalg.cholesky(capacitance)
    c = torch.linalg.solve_triangular(chol, b.unsqueeze(-1), upper=False).squeeze(-1)
    inv_quad = (weighted * diff).sum() / noise_scale - c.square().sum()
    logdet = 2 * chol.diagonal().log().sum() + logdet_noise
    log_prob = -0.5 * (inv_quad + logdet + data.N * math.log(2 * math.pi))
    return -log_prob / data.N


def reference_steps(case: str, data: SparseData) -> dict[str, Any]:
    """Cases a, b, g, h and i in plain torch: the same parameters, initialisation, loss and Adam steps as the
    gpytorch model.

    The returned ``raw`` holds the trained raw parameters (for the Woodbury predictions of cases e and f).
    """
    import torch
    import torch.nn.functional as F

    dtype, device = data.y.dtype, data.y.device

    def raw(name: str, shape: tuple[int, ...]) -> Any:
        return torch.full(shape, RAW_INIT[name], dtype=dtype, device=device, requires_grad=True)

    # Same shapes as gpytorch's parameters: ConstantMean (), ScaleKernel (), RBFKernel (1, 1), noise (1,)
    named = [("raw_constant", raw("raw_constant", ())), ("raw_outputscale", raw("raw_outputscale", ()))]
    named.append(("raw_lengthscale", raw("raw_lengthscale", (1, 1))))
    if case in ("a", "g", "h", "i"):
        named.append(("raw_noise", raw("raw_noise", (1,))))
    if case == "h":
        # softplus(raw_weights) = L's values at the start, as the gpytorch model's (models.learned_weights)
        named.append(("raw_weights", data.vals.reshape(-1).expm1().log().requires_grad_()))
    params = dict(named)
    weights = torch.ones_like(data.y) if case in ("a", "h") else 1 / data.noise
    with torch.no_grad():
        gram = weighted_gram(data, weights) if case != "h" else None
        logdet_fixed = data.noise.log().sum()

    def loss_fn() -> Any:
        R = rbf_root(data.Z, params["raw_outputscale"], params["raw_lengthscale"])
        if case == "a":
            sigma2 = (F.softplus(params["raw_noise"]) + NOISE_LOWER_BOUND).squeeze(-1)
            return woodbury_loss(data, R, params["raw_constant"], sigma2, gram, weights, data.N * sigma2.log())
        if case == "h":
            # L's values change in every step: so does its Gram matrix (with autograd, to the weights)
            sigma2 = (F.softplus(params["raw_noise"]) + NOISE_LOWER_BOUND).squeeze(-1)
            learned = replace(data, vals=F.softplus(params["raw_weights"]).view_as(data.vals))
            gram_h = weighted_gram(learned, weights)
            return woodbury_loss(learned, R, params["raw_constant"], sigma2, gram_h, weights, data.N * sigma2.log())
        if case in ("g", "i"):
            # D = diag(d) + sigma^2 I: the weights 1 / (d + sigma^2) of L^T D^-1 L change with sigma in every step
            noise = data.noise + (F.softplus(params["raw_noise"]) + NOISE_LOWER_BOUND).squeeze(-1)
            learned = 1 / noise
            learned_gram = weighted_gram(data, learned)
            return woodbury_loss(data, R, params["raw_constant"], 1.0, learned_gram, learned, noise.log().sum())
        return woodbury_loss(data, R, params["raw_constant"], 1.0, gram, weights, logdet_fixed)

    result = adam_steps([p for _, p in named], named, loss_fn)
    return {**result, "raw": {name: param.detach() for name, param in named}, "info": {"sparse_class": None}}


def sparse_rows_times(data: SparseData, start: int, stop: int, dense: Any) -> Any:
    """``L[start:stop] @ dense`` from the non-zeros (``dense``: n × r)."""
    cols, vals = data.cols[start:stop], data.vals[start:stop]
    return (vals.unsqueeze(-1) * dense[cols]).sum(-2)


def woodbury_prediction(
    data: SparseData, num_train: int, raw: dict[str, Any], dtype: Any, root: Any = None
) -> tuple[Any, Any]:
    """Posterior mean and (latent) variance of the last rows of case e/f in plain torch, in ``dtype``.

    With U = L_train R, U* = L_test R, C = I + Uᵀ U / σ² = Lc Lcᵀ: mean = c + U* C⁻¹ Uᵀ (y - c) / σ² and
    variance = |Lc⁻¹ u*|² (the Woodbury form of K** - K*X (KXX + σ² I)⁻¹ KX*, with no cancellation). ``root``: the
    kernel's root R to use (cast to ``dtype``), instead of computing it from the raw parameters.
    """
    import torch
    import torch.nn.functional as F

    cast = {name: value.detach().to(dtype) for name, value in raw.items()}
    data64 = SparseData(
        data.N, data.n, data.Z.to(dtype), data.cols, data.vals.to(dtype), data.y.to(dtype), data.noise.to(dtype)
    )
    train = data_rows(data64, num_train)
    R = rbf_root(data64.Z, cast["raw_outputscale"], cast["raw_lengthscale"]) if root is None else root.to(dtype)
    sigma2 = (F.softplus(cast["raw_noise"]) + NOISE_LOWER_BOUND).squeeze(-1)
    constant = cast["raw_constant"]
    gram = weighted_gram(train, torch.ones_like(train.y))
    capacitance = torch.eye(R.size(-1), dtype=dtype, device=R.device) + R.mT @ (gram @ R) / sigma2
    chol = torch.linalg.cholesky(capacitance)
    b = R.mT @ sparse_t_matvec(train, train.y - constant)
    test_root = sparse_rows_times(data64, num_train, data.N, R)  # T × r
    mean = constant + test_root @ torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1) / sigma2
    variance = torch.linalg.solve_triangular(chol, test_root.mT, upper=False).pow(2).sum(-2)
    return mean, variance


def reference_predict(case: str, data: SparseData, num_test: int) -> dict[str, Any]:
    """Cases e and f in plain torch: the training steps of case a on the training rows, then the Woodbury
    prediction in the data's dtype (timed), with its errors against float64."""
    import torch

    num_train = data.N - num_test
    result = reference_steps("a", data_rows(data, num_train))
    train_peak = self_peak_rss()
    with torch.no_grad():
        started = time.perf_counter()
        mean, variance = woodbury_prediction(data, num_train, result["raw"], data.y.dtype)
        predict_seconds = time.perf_counter() - started
        expected_mean, expected_variance = woodbury_prediction(data, num_train, result["raw"], torch.float64)
    info = {
        "sparse_class": None,
        "T": num_test,
        "train_peak_bytes": train_peak,
        "predict_seconds": predict_seconds,
        "mean_error": normwise_relative_error(mean, expected_mean),
        "variance_error": max_relative_error(variance, expected_variance),
    }
    return {"losses": result["losses"], "grads": result["grads"], "info": info}
