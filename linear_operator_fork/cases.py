"""The large-M cases: ``L K Lᵀ + D`` with a huge sparse ``L``, and the runner's command line.

``python -m linear_operator_fork.cases list`` prints the cases and their sizes; ``run`` runs them, each case in its
own subprocess under a memory cap (see :mod:`linear_operator_fork.measure`), and writes ``{"records": [...]}``;
``child`` is that subprocess's entry point.

The model of cases a, b and d is fully determined (seeded data, fixed initial raw parameters), so the stock, fork and
reference variants compute the same thing: ``n`` inducing locations ``Z``, ``K = ScaleKernel(RBFKernel)(Z) + 1e-4 I``
as a dense matrix, ``R = cholesky(K)`` inside ``forward`` (with autograd), ``L`` an ``N × n`` sparse matrix with 4
non-zeros per row, and the covariance ``LowRankRootLinearOperator(SparseLinearOperator(L) @ R)`` plus the noise.

The variant ``reference`` is a plain-torch Woodbury computation of the same loss (:func:`reference_steps`); any other
variant name is a label for the gpytorch model on whatever ``linear_operator`` the child imports.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linear_operator_fork import measure

ROOT = Path(__file__).resolve().parent.parent
SIZES = ("small", "cpu", "cuda")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
LAYOUTS = ("coo", "csr")
REFERENCE = "reference"
SEED = 20260114
STEPS = 2
LR = 0.1
JITTER = 1e-4
NNZ_PER_ROW = 4
NOISE_LOWER_BOUND = 9.999999747378752e-05  # gpytorch's GreaterThan(1e-4) on the noise: 1e-4 rounded to float32
# Initial raw (unconstrained) parameters, set identically in every variant.
RAW_INIT = {"raw_constant": 0.0, "raw_outputscale": -2.0, "raw_lengthscale": -1.0, "raw_noise": -1.5}
FORK_SPARSE_CLASS = "linear_operator.operators.SparseLinearOperator"
THREAD_SPARSE_CLASS = "linear_operator_fork.thread_script.SparseLinearOperator"


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    sizes: dict[str, dict[str, int]]  # size name -> parameters (N, n or m, ...)
    sweep: dict[str, list[int]] = field(default_factory=dict)  # size name -> values of N
    reference: bool = False  # the `reference` variant computes it
    selftest: bool = False  # not a benchmark: used by the tests of the runner, not run by default


# Sizes of the cases on a sparse N × n observation matrix (a, b and d).
SPARSE_SIZES: dict[str, dict[str, int]] = {
    "small": {"N": 2000, "n": 40},
    "cpu": {"N": 1_000_000, "n": 500},
    "cuda": {"N": 20_000_000, "n": 2000},
}

CASES: dict[str, Case] = {
    "a": Case(
        name="a",
        title="sparse observations, constant noise: L K Lᵀ + σ² I, GaussianLikelihood (σ learned)",
        sizes=SPARSE_SIZES,
        sweep={
            "small": [500, 1000],
            "cpu": [10_000, 100_000, 300_000, 1_000_000],
            "cuda": [100_000, 1_000_000, 5_000_000, 20_000_000],
        },
        reference=True,
    ),
    "b": Case(
        name="b",
        title="sparse observations, fixed heteroscedastic noise: L K Lᵀ + diag(d), FixedNoiseGaussianLikelihood",
        sizes=SPARSE_SIZES,
        reference=True,
    ),
    "c": Case(
        name="c",
        title="the PR #120 thread's script: GridKernel on an m³ grid, Lanczos root, sparse identity L (M = m³)",
        # m ≤ 9 (M ≤ max_cholesky_size = 800): dense Cholesky root, M × M. m ≥ 10: Lanczos root, M × 100
        # (max_root_decomposition_size). 0.6.0 densifies the noise's inverse, torch.diag_embed: M² floats (forward,
        # and again in backward): at m = 40, 16.4 GB, over the 8 GiB cap; 0.6.1 and the fork stay under 1.5 GiB.
        sizes={"small": {"m": 12}, "cpu": {"m": 40}, "cuda": {"m": 50}},
    ),
    "d": Case(
        name="d",
        title="MatmulLinearOperator(Uᵀ, U).to_dense() for U = SparseLinearOperator(L) @ R; loss tr(UᵀU)/N",
        sizes=SPARSE_SIZES,
    ),
    "e": Case(
        name="e",
        title="train (case a), then predict T new rows: gpytorch's default prediction (densifies T × N)",
        # gpytorch's DefaultPredictionStrategy forms the T × N cross-covariance and an N × T solve: the sizes keep
        # T × N within the memory cap
        sizes={
            "small": {"N": 2000, "n": 40, "T": 200},
            "cpu": {"N": 200_000, "n": 500, "T": 1000},
            "cuda": {"N": 2_000_000, "n": 2000, "T": 10_000},
        },
        reference=True,
    ),
    "f": Case(
        name="f",
        title="train (case a), then predict T new rows with gpytorch.settings.fast_pred_var()",
        sizes={
            "small": {"N": 2000, "n": 40, "T": 200},
            "cpu": {"N": 1_000_000, "n": 500, "T": 10_000},
            "cuda": {"N": 20_000_000, "n": 2000, "T": 100_000},
        },
        reference=True,
    ),
    "g": Case(
        name="g",
        title="learned extra noise: L K Lᵀ + diag(d) + σ² I, FixedNoiseGaussianLikelihood(learn_additional_noise=True)",
        sizes=SPARSE_SIZES,
        reference=True,
    ),
    "probe": Case(
        name="probe",
        title="self-test of the runner: allocate alloc_gib GiB, then sleep sleep_s seconds",
        sizes={"small": {"alloc_gib": 0, "sleep_s": 0}, "cpu": {"alloc_gib": 0, "sleep_s": 0}},
        selftest=True,
    ),
}
DEFAULT_CASES = [name for name, case in CASES.items() if not case.selftest]


# ---------------------------------------------------------------------------------------------------------------
# Data (seeded, generated on the CPU in float64, then cast and moved: identical for every variant and device)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class SparseData:
    N: int
    n: int
    Z: Any  # (n, 2) inducing locations
    cols: Any  # (N, k) column of each non-zero, sorted within the row
    vals: Any  # (N, k) values (positive weights summing to 1 per row)
    y: Any  # (N,) observations
    noise: Any  # (N,) fixed heteroscedastic noise variances (case b)


def make_data(N: int, n: int, dtype: Any, device: Any, seed: int = SEED) -> SparseData:
    """Observations of averages over ``NNZ_PER_ROW`` neighbouring inducing points (in index order)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    Z = torch.rand(n, 2, generator=generator, dtype=f64) * math.sqrt(n)  # about one point per unit area
    start = torch.randint(0, n, (N,), generator=generator)
    cols = (start.unsqueeze(-1) + torch.arange(NNZ_PER_ROW)) % n
    vals = torch.rand(N, NNZ_PER_ROW, generator=generator, dtype=f64) + 0.1
    vals = vals / vals.sum(-1, keepdim=True)
    cols, order = cols.sort(dim=-1)
    vals = vals.gather(-1, order)
    latent = 1 + 2 * torch.sin(Z[:, 0]) + 2 * torch.cos(0.7 * Z[:, 1])
    y = (vals * latent[cols]).sum(-1) + 0.3 * torch.randn(N, generator=generator, dtype=f64)
    noise = 0.1 + 0.2 * torch.rand(N, generator=generator, dtype=f64)

    def cast(t: Any) -> Any:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    return SparseData(N, n, cast(Z), cast(cols), cast(vals), cast(y), cast(noise))


def sparse_matrix(data: SparseData, layout: str) -> Any:
    """``L`` (N × n) as a torch sparse tensor in ``layout`` (coo: coalesced; csr: sorted columns)."""
    import torch

    N, k = data.cols.shape
    if layout == "coo":
        rows = torch.arange(N, device=data.cols.device).repeat_interleave(k)
        indices = torch.stack([rows, data.cols.reshape(-1)])
        tensor = torch.sparse_coo_tensor(indices, data.vals.reshape(-1), (N, data.n), check_invariants=False)
        return tensor.coalesce()
    if layout == "csr":
        crow = torch.arange(0, N * k + 1, k, device=data.cols.device)
        return torch.sparse_csr_tensor(
            crow, data.cols.reshape(-1), data.vals.reshape(-1), (N, data.n), check_invariants=False
        )
    raise ValueError(f"unknown layout {layout!r}: expected one of {LAYOUTS}")


def sparse_class() -> tuple[type, str]:
    """The linear_operator's own SparseLinearOperator (the fork) if it has one, else the thread's class (stock)."""
    try:
        from linear_operator.operators import SparseLinearOperator
    except ImportError:
        from linear_operator_fork.thread_script import SparseLinearOperator

        return SparseLinearOperator, THREAD_SPARSE_CLASS
    return SparseLinearOperator, FORK_SPARSE_CLASS


# ---------------------------------------------------------------------------------------------------------------
# Recording helpers
# ---------------------------------------------------------------------------------------------------------------


def collect_grads(named: list[tuple[str, Any]]) -> dict[str, list[float]]:
    """Gradients by short parameter name (``raw_noise``...); a parameter of more than 16 entries by its norm."""
    short = [name.rsplit(".", 1)[-1] for name, _ in named]
    grads = {}
    for (name, param), key in zip(named, short, strict=True):
        key = key if short.count(key) == 1 else name
        if param.grad is None:
            continue
        grad = param.grad.detach().double().reshape(-1)
        if grad.numel() <= 16:
            grads[key] = grad.tolist()
        else:
            grads[f"{key}.norm"] = [grad.norm().item()]
    return grads


def adam_steps(parameters: list[Any], named: list[tuple[str, Any]], loss_fn: Callable[[], Any]) -> dict[str, Any]:
    """``STEPS`` Adam steps on ``loss_fn()``: the loss of each step and the gradients after the first backward."""
    import torch

    optimizer = torch.optim.Adam(parameters, lr=LR)
    losses, grads = [], {}
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = collect_grads(named)
        optimizer.step()
    return {"losses": losses, "grads": grads}


def set_raw(module: Any, name: str) -> None:
    """Set the raw parameter ``name`` of ``module`` to its ``RAW_INIT`` value (identical in every variant)."""
    import torch

    with torch.no_grad():
        getattr(module, name).fill_(RAW_INIT[name])


# ---------------------------------------------------------------------------------------------------------------
# Cases a, b, d with gpytorch on the imported linear_operator
# ---------------------------------------------------------------------------------------------------------------


def gpytorch_kernel(dtype: Any, device: Any) -> Any:
    import gpytorch

    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
    set_raw(kernel, "raw_outputscale")
    set_raw(kernel.base_kernel, "raw_lengthscale")
    return kernel.to(device=device, dtype=dtype)


def kernel_root(kernel: Any, Z: Any) -> Any:
    """``R = cholesky(K(Z, Z) + JITTER I)`` with ``K`` evaluated densely (the same R in every variant)."""
    import torch

    K = kernel(Z).to_dense() + JITTER * torch.eye(Z.size(0), dtype=Z.dtype, device=Z.device)
    return torch.linalg.cholesky(K)


def make_likelihood(case: str, data: SparseData) -> Any:
    """The likelihood of a GP case: learned constant noise (a, e, f), fixed noise (b), fixed plus learned (g)."""
    import gpytorch

    if case == "b":
        return gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=data.noise, learn_additional_noise=False)
    if case == "g":
        likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=data.noise, learn_additional_noise=True)
        set_raw(likelihood.second_noise_covar, "raw_noise")
        return likelihood
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    set_raw(likelihood.noise_covar, "raw_noise")
    return likelihood


def sparse_observation_gp(
    data: SparseData, train_x: Any, train_y: Any, likelihood: Any, rows_operator: Callable[[Any], Any]
) -> Any:
    """The ExactGP of the sparse cases: ``forward(x)`` is ``LowRankRootLinearOperator(rows_operator(x) @ R)``."""
    import gpytorch
    from linear_operator.operators import DenseLinearOperator, LowRankRootLinearOperator

    dtype, device = data.y.dtype, data.y.device

    class SparseObservationGP(gpytorch.models.ExactGP):
        def __init__(self) -> None:
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch_kernel(dtype, device)
            self.register_buffer("inducing", data.Z)

        def forward(self, x: Any) -> Any:
            R = kernel_root(self.covar_module, self.inducing)
            covar = LowRankRootLinearOperator(rows_operator(x) @ DenseLinearOperator(R))
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), covar)

    model = SparseObservationGP().to(device=device, dtype=dtype)
    set_raw(model.mean_module, "raw_constant")
    return model


def train_gp(model: Any, likelihood: Any, train_x: Any, train_y: Any) -> dict[str, Any]:
    """``STEPS`` Adam steps of ``ExactMarginalLogLikelihood``."""
    import gpytorch

    model.train()
    likelihood.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)

    def loss_fn() -> Any:
        return -mll(model(train_x), train_y)

    return adam_steps(list(model.parameters()), list(model.named_parameters()), loss_fn)


def run_gp(case: str, data: SparseData, layout: str) -> dict[str, Any]:
    """Cases a, b and g: ExactGP + ExactMarginalLogLikelihood, two Adam steps; the operator is built once."""
    import torch

    cls, cls_name = sparse_class()
    sparse_op = cls(sparse_matrix(data, layout))
    train_x = torch.arange(data.N, dtype=data.y.dtype, device=data.y.device).unsqueeze(-1)  # only its length matters
    likelihood = make_likelihood(case, data)
    model = sparse_observation_gp(data, train_x, data.y, likelihood, lambda x: sparse_op)
    result = train_gp(model, likelihood, train_x, data.y)
    return {**result, "info": {"sparse_class": cls_name}}


def run_predict(case: str, data: SparseData, layout: str, num_test: int) -> dict[str, Any]:
    """Cases e and f: train as case a on the first N - T rows, then predict the last T rows (mean and variance).

    The inputs are row indices into ``L``: ``forward`` selects those rows of the sparse operator (the training rows
    once, when the model is built; the fork's operator is indexed, the thread's class has no indexing and gets the
    rows of the tensor). Prediction: ``model(test_x)`` in eval mode, under ``torch.no_grad()``, with gpytorch's
    default strategy (e) or ``fast_pred_var`` (f). The record's ``info`` has the prediction's time, the peak before
    it, and the errors of the mean and the variance against the float64 Woodbury of :func:`woodbury_prediction`.
    """
    import gpytorch
    import torch

    cls, cls_name = sparse_class()
    all_rows = sparse_matrix(data, layout)
    num_train = data.N - num_test
    dtype, device = data.y.dtype, data.y.device

    if cls_name == FORK_SPARSE_CLASS:
        all_rows_op = cls(all_rows)

        def select(rows: Any) -> Any:
            return all_rows_op[rows]

    else:
        coo = all_rows if layout == "coo" else all_rows.to_sparse_coo()

        def select(rows: Any) -> Any:
            return cls(coo.index_select(0, rows).coalesce())

    train_x = torch.arange(num_train, dtype=dtype, device=device).unsqueeze(-1)
    test_x = torch.arange(num_train, data.N, dtype=dtype, device=device).unsqueeze(-1)
    train_y = data.y[:num_train]
    train_rows_op = select(torch.arange(num_train, device=device))

    def rows_operator(x: Any) -> Any:
        return train_rows_op if x is train_x else select(x.squeeze(-1).long())

    likelihood = make_likelihood("a", data)
    model = sparse_observation_gp(data, train_x, train_y, likelihood, rows_operator)
    result = train_gp(model, likelihood, train_x, train_y)

    train_peak = measure.self_peak_rss()
    model.eval()
    likelihood.eval()
    started = time.perf_counter()
    with torch.no_grad(), gpytorch.settings.fast_pred_var(case == "f"):
        prediction = model(test_x)
        mean, variance = prediction.mean, prediction.variance
    predict_seconds = time.perf_counter() - started
    raw = gpytorch_raw_parameters(model, likelihood)
    with torch.no_grad():
        expected_mean, expected_variance = woodbury_prediction(data, num_train, raw, torch.float64)
        mean32, variance32 = woodbury_prediction(data, num_train, raw, dtype)
    info = {
        "sparse_class": cls_name,
        "T": num_test,
        "train_peak_bytes": train_peak,
        "predict_seconds": predict_seconds,
        "mean_error": normwise_relative_error(mean, expected_mean),
        "variance_error": max_relative_error(variance, expected_variance),
        "reference_mean_error": normwise_relative_error(mean32, expected_mean),
        "reference_variance_error": max_relative_error(variance32, expected_variance),
    }
    return {**result, "info": info}


def max_relative_error(got: Any, expected: Any) -> float:
    """The largest entrywise relative error (variances are positive)."""
    return float(((got.double() - expected).abs() / expected.abs().clamp_min(1e-300)).max())


def normwise_relative_error(got: Any, expected: Any) -> float:
    """``|got - expected| / |expected|`` (means can be near zero entrywise)."""
    return float((got.double() - expected).norm() / expected.norm().clamp_min(1e-300))


def run_cross(data: SparseData, layout: str) -> dict[str, Any]:
    """Case d: ``MatmulLinearOperator(Uᵀ, U).to_dense()`` (r × r) for ``U = SparseLinearOperator(L) @ R``."""
    from linear_operator.operators import DenseLinearOperator, MatmulLinearOperator

    cls, cls_name = sparse_class()
    sparse_op = cls(sparse_matrix(data, layout))
    kernel = gpytorch_kernel(data.y.dtype, data.y.device)

    def loss_fn() -> Any:
        U = sparse_op @ DenseLinearOperator(kernel_root(kernel, data.Z))
        gram = MatmulLinearOperator(U.mT, U).to_dense()
        return gram.diagonal().sum() / data.N

    result = adam_steps(list(kernel.parameters()), list(kernel.named_parameters()), loss_fn)
    return {**result, "info": {"sparse_class": cls_name}}


# ---------------------------------------------------------------------------------------------------------------
# The plain-torch Woodbury reference (cases a and b)
# ---------------------------------------------------------------------------------------------------------------


def sparse_t_matvec(data: SparseData, x: Any) -> Any:
    """``Lᵀ x`` (n) from the non-zeros (differentiable in ``x``)."""
    import torch

    contributions = (data.vals * x.unsqueeze(-1)).reshape(-1)
    return torch.zeros(data.n, dtype=x.dtype, device=x.device).index_add(0, data.cols.reshape(-1), contributions)


def weighted_gram(data: SparseData, weights: Any, chunk: int = 1 << 20) -> Any:
    """``Lᵀ diag(weights) L`` (n × n, dense), accumulated over blocks of rows: the sparse side of the grouping."""
    import torch

    n = data.n
    gram = torch.zeros(n * n, dtype=data.vals.dtype, device=data.vals.device)
    for start in range(0, data.N, chunk):
        rows = slice(start, start + chunk)
        cols, vals, w = data.cols[rows], data.vals[rows], weights[rows]
        index = (cols.unsqueeze(-1) * n + cols.unsqueeze(-2)).reshape(-1)
        products = (w[:, None, None] * vals.unsqueeze(-1) * vals.unsqueeze(-2)).reshape(-1)
        gram.index_add_(0, index, products)
    return gram.reshape(n, n)


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


def data_rows(data: SparseData, stop: int) -> SparseData:
    """The first ``stop`` rows of the data (the training rows of the prediction cases)."""
    return SparseData(stop, data.n, data.Z, data.cols[:stop], data.vals[:stop], data.y[:stop], data.noise[:stop])


def reference_steps(case: str, data: SparseData) -> dict[str, Any]:
    """Cases a, b and g in plain torch: the same parameters, initialisation, loss and Adam steps as the gpytorch model.

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
    if case in ("a", "g"):
        named.append(("raw_noise", raw("raw_noise", (1,))))
    params = dict(named)
    weights = torch.ones_like(data.y) if case == "a" else 1 / data.noise
    with torch.no_grad():
        gram = weighted_gram(data, weights)
        logdet_fixed = data.noise.log().sum()

    def loss_fn() -> Any:
        R = rbf_root(data.Z, params["raw_outputscale"], params["raw_lengthscale"])
        if case == "a":
            sigma2 = (F.softplus(params["raw_noise"]) + NOISE_LOWER_BOUND).squeeze(-1)
            return woodbury_loss(data, R, params["raw_constant"], sigma2, gram, weights, data.N * sigma2.log())
        if case == "g":
            # D = diag(d) + sigma^2 I: the weights 1 / (d + sigma^2) of L^T D^-1 L change with sigma in every step
            noise = data.noise + (F.softplus(params["raw_noise"]) + NOISE_LOWER_BOUND).squeeze(-1)
            learned = 1 / noise
            learned_gram = weighted_gram(data, learned)
            return woodbury_loss(data, R, params["raw_constant"], 1.0, learned_gram, learned, noise.log().sum())
        return woodbury_loss(data, R, params["raw_constant"], 1.0, gram, weights, logdet_fixed)

    result = adam_steps([p for _, p in named], named, loss_fn)
    return {**result, "raw": {name: param.detach() for name, param in named}, "info": {"sparse_class": None}}


def gpytorch_raw_parameters(model: Any, likelihood: Any) -> dict[str, Any]:
    """The raw parameters of the gpytorch model of cases a, e and f, by the reference's names."""
    return {
        "raw_constant": model.mean_module.raw_constant,
        "raw_outputscale": model.covar_module.raw_outputscale,
        "raw_lengthscale": model.covar_module.base_kernel.raw_lengthscale,
        "raw_noise": likelihood.noise_covar.raw_noise,
    }


def sparse_rows_times(data: SparseData, start: int, stop: int, dense: Any) -> Any:
    """``L[start:stop] @ dense`` from the non-zeros (``dense``: n × r)."""
    cols, vals = data.cols[start:stop], data.vals[start:stop]
    return (vals.unsqueeze(-1) * dense[cols]).sum(-2)


def woodbury_prediction(data: SparseData, num_train: int, raw: dict[str, Any], dtype: Any) -> tuple[Any, Any]:
    """Posterior mean and (latent) variance of the last rows of case e/f in plain torch, in ``dtype``.

    With U = L_train R, U* = L_test R, C = I + Uᵀ U / σ² = Lc Lcᵀ: mean = c + U* C⁻¹ Uᵀ (y - c) / σ² and
    variance = |Lc⁻¹ u*|² (the Woodbury form of K** - K*X (KXX + σ² I)⁻¹ KX*, with no cancellation).
    """
    import torch
    import torch.nn.functional as F

    cast = {name: value.detach().to(dtype) for name, value in raw.items()}
    data64 = SparseData(
        data.N, data.n, data.Z.to(dtype), data.cols, data.vals.to(dtype), data.y.to(dtype), data.noise.to(dtype)
    )
    train = data_rows(data64, num_train)
    R = rbf_root(data64.Z, cast["raw_outputscale"], cast["raw_lengthscale"])
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
    train_peak = measure.self_peak_rss()
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


# ---------------------------------------------------------------------------------------------------------------
# Case c (the thread's script) and the self-test probe
# ---------------------------------------------------------------------------------------------------------------


def run_thread(m: int, device: str) -> dict[str, Any]:
    from linear_operator_fork import thread_script

    losses, grads, info = [], {}, {"sparse_class": THREAD_SPARSE_CLASS, "M": m**3}

    def observe(step: int, loss: Any, model: Any) -> None:
        losses.append(loss.item())
        if step == 0:
            grads.update(collect_grads(list(model.named_parameters())))
            info["root_shape"] = list(model.root_shape)

    thread_script.main(m=m, device=device, observe=observe)
    return {"losses": losses, "grads": grads, "info": info}


def run_probe(alloc_gib: float, sleep_s: float) -> dict[str, Any]:
    import torch

    block = torch.ones(int(alloc_gib * 2**30), dtype=torch.uint8) if alloc_gib else None
    time.sleep(sleep_s)
    return {"losses": [], "grads": {}, "info": {"allocated": 0 if block is None else block.numel()}}


# ---------------------------------------------------------------------------------------------------------------
# The child process: one case × variant, its record written to a JSON file
# ---------------------------------------------------------------------------------------------------------------


def classify(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    if any(marker in text for marker in measure.OOM_MARKERS):
        return "oom"
    return "error"


def last_line(exc: BaseException, limit: int = 600) -> str:
    """The last line of the traceback, ``Type: message``, with a multi-line message joined (and shortened)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def trace_tail(exc: BaseException, frames: int = 6) -> list[str]:
    return [
        f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno} {frame.name}: {frame.line}"
        for frame in traceback.extract_tb(exc.__traceback__)[-frames:]
    ]


def execute(spec: dict[str, Any], record: dict[str, Any]) -> None:
    """Run the case described by ``spec``, filling ``record`` (status ok) or raising."""
    import torch

    case, params, device = spec["case"], spec["params"], spec["device"]
    dtype = getattr(torch, params.get("dtype", "float32"))
    torch.manual_seed(SEED)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    data = None
    if case in ("a", "b", "d", "e", "f", "g"):
        # (e, f: N training rows and T new rows)
        data = make_data(params["N"] + params.get("T", 0), params["n"], dtype, device)
    record["setup_seconds"] = time.perf_counter() - started
    record["baseline_rss_bytes"] = measure.self_peak_rss()

    started = time.perf_counter()
    if spec["variant"] == REFERENCE and case in ("e", "f"):
        result = reference_predict(case, data, params["T"])
    elif spec["variant"] == REFERENCE:
        result = reference_steps(case, data)
    elif case in ("a", "b", "g"):
        result = run_gp(case, data, params["layout"])
    elif case in ("e", "f"):
        result = run_predict(case, data, params["layout"], params["T"])
    elif case == "d":
        result = run_cross(data, params["layout"])
    elif case == "c":
        torch.set_default_dtype(dtype)
        result = run_thread(params["m"], device)
    else:
        result = run_probe(params["alloc_gib"], params["sleep_s"])
    if device == "cuda":
        torch.cuda.synchronize()
        record["peak_bytes"] = torch.cuda.max_memory_allocated()
    record["seconds"] = time.perf_counter() - started
    record["params"]["sparse_class"] = result["info"].pop("sparse_class", None)
    record.update(losses=result["losses"], grads=result["grads"], info=result["info"], status="ok")


def child(spec_path: Path, record_path: Path) -> int:
    """Entry point of the subprocess: always writes ``record_path`` unless the process itself dies."""
    spec = json.loads(spec_path.read_text())
    record = measure.new_record(spec)
    try:
        import torch

        record["torch"] = torch.__version__
        if spec["params"].get("threads"):
            torch.set_num_threads(spec["params"]["threads"])
        record["threads"] = torch.get_num_threads()
        if spec["device"] == "cuda":
            if not torch.cuda.is_available():
                record.update(status="skipped", message=measure.NO_CUDA)
                return measure.write_json(record_path, record)
            record["device_name"] = torch.cuda.get_device_name()
        if spec["variant"] != REFERENCE and spec["case"] != "probe":
            import gpytorch  # imported here, so that `seconds` leaves the imports out
            import linear_operator

            record["version"], record["file"] = linear_operator.__version__, linear_operator.__file__
            record["gpytorch"] = gpytorch.__version__
            source = Path(linear_operator.__file__).resolve()
            if source.is_relative_to(ROOT / "build") or source.parent.parent == ROOT:
                raise RuntimeError(f"linear_operator imported from a source tree of this repository: {source}")
        execute(spec, record)
    except BaseException as exc:  # noqa: B036 - a failure of the case is data, and so is an interrupt
        record.update(status=classify(exc), message=last_line(exc), trace=trace_tail(exc))
        if spec["device"] == "cuda" and "device_name" in record:  # CUDA in use: its peak up to the failure
            record["peak_bytes"] = sys.modules["torch"].cuda.max_memory_allocated()
    return measure.write_json(record_path, record)


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------


def size_label(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items())


def cmd_list(args: argparse.Namespace) -> int:
    for case in CASES.values():
        tag = " (self-test, not run by default)" if case.selftest else ""
        ref = "; variant reference computes it" if case.reference else ""
        print(f"{case.name}: {case.title}{tag}{ref}")
        for size, params in case.sizes.items():
            print(f"    {size:5}  {size_label(params)}")
        for size, values in case.sweep.items():
            print(f"    sweep {size}: N in {values}")
    print(f"defaults: cases {','.join(DEFAULT_CASES)}; dtype {DTYPES[0]}; layout {LAYOUTS[0]}; {STEPS} Adam steps")
    return 0


def plan(args: argparse.Namespace) -> list[measure.Run]:
    """Every (case, params) to run, in order: the selected cases, then case a at the sweep's other values of N."""
    common = {"dtype": args.dtype, "layout": args.layout, "size": args.size}
    if args.threads:
        common["threads"] = args.threads
    runs = []
    for name in args.cases:
        runs.append(measure.Run(name, args.variant, {**CASES[name].sizes[args.size], **common}, args.device))
    if args.sweep:
        done = {run.params.get("N") for run in runs if run.case == "a"}
        n = CASES["a"].sizes[args.size]["n"]
        for N in CASES["a"].sweep.get(args.size, []):
            if N not in done:
                runs.append(measure.Run("a", args.variant, {"N": N, "n": n, **common, "sweep": True}, args.device))
    return runs


def cmd_run(args: argparse.Namespace) -> int:
    runs = plan(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cap = None if args.device == "cuda" else int(args.cap_gib * 2**30)
    no_cuda = args.device == "cuda" and not measure.cuda_available()
    records = []
    for index, run in enumerate(runs, 1):
        label = f"[{index}/{len(runs)}] case {run.case} {size_label(measure.size_params(run.params))} {run.variant}"
        if no_cuda:
            record = measure.skipped(run, measure.NO_CUDA)
        elif run.variant == REFERENCE and not CASES[run.case].reference:
            record = measure.skipped(run, f"the reference does not compute case {run.case}")
        else:
            print(f"{label}: running", flush=True)
            record = measure.run_one(run, pythonpath=args.pythonpath, cap_bytes=cap, timeout=args.timeout)
        print(f"{label}: {measure.summary(record)}", flush=True)
        records.append(record)
    measure.write_json(Path(args.out), {"records": records})
    print(f"wrote {len(records)} record(s) to {args.out}")
    return 0


def case_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown case(s) {unknown or [text]}: expected some of {list(CASES)}")
    return names


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m linear_operator_fork.cases", description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the cases and their sizes")
    run = commands.add_parser("run", help="run the selected cases for one variant, each in its own subprocess")
    run.add_argument("--variant", required=True, help=f"label of the linear_operator under test, or {REFERENCE!r}")
    run.add_argument(
        "--pythonpath",
        help="directories (os.pathsep-separated) put first on the children's PYTHONPATH (pip --target sites)",
    )
    run.add_argument("--device", choices=DEVICES, default="cpu")
    run.add_argument("--cases", type=case_list, default=DEFAULT_CASES, help="comma-separated (default: a,b,c,d)")
    run.add_argument("--size", choices=SIZES, default="cpu")
    run.add_argument("--sweep", action="store_true", help="also case a at each N of the size's sweep")
    run.add_argument("--dtype", choices=DTYPES, default=DTYPES[0])
    run.add_argument("--layout", choices=LAYOUTS, default=LAYOUTS[0])
    run.add_argument("--threads", type=int, help="torch.set_num_threads in each child (default: torch's)")
    cap_help = "RLIMIT_AS of each child on the CPU, GiB (default %(default)s)"
    run.add_argument("--cap-gib", type=float, default=measure.DEFAULT_CAP_GIB, help=cap_help)
    timeout_help = "seconds per child (default %(default)s)"
    run.add_argument("--timeout", type=float, default=measure.DEFAULT_TIMEOUT_S, help=timeout_help)
    run.add_argument("--out", required=True, help="JSON file: {'records': [...]}")
    sub = commands.add_parser("child", help="(internal) run one case in this process")
    sub.add_argument("spec", type=Path)
    sub.add_argument("record", type=Path)
    return main


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.command == "list":
        return cmd_list(args)
    if args.command == "child":
        return child(args.spec, args.record)
    missing = [name for name in args.cases if args.size not in CASES[name].sizes]
    if missing:
        cli.error(f"size {args.size!r} is not defined for case(s) {missing}")
    if args.cap_gib <= 0 or args.timeout <= 0 or (args.threads is not None and args.threads <= 0):
        cli.error("--cap-gib, --timeout and --threads must be positive")
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
