"""The gpytorch models of the cases, on whatever ``linear_operator`` the process imports (stock or fork)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from linear_operator_fork.verify.catalogue import FORK_SPARSE_CLASS, JITTER, THREAD_SPARSE_CLASS
from linear_operator_fork.verify.data import SparseData, sparse_class
from linear_operator_fork.verify.protocol import (
    adam_steps,
    collect_grads,
    max_relative_error,
    normwise_relative_error,
    self_peak_rss,
    set_raw,
)
from linear_operator_fork.verify.reference import woodbury_prediction


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
    """The likelihood of a GP case: learned constant noise (a, e, f, h), fixed noise (b), fixed plus learned (g, i)."""
    import gpytorch

    if case == "b":
        return gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=data.noise, learn_additional_noise=False)
    if case in ("g", "i"):
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
    # (.to casts the training inputs too; those of the prediction cases are float64 row numbers, kept exact)
    model.set_train_data(inputs=train_x, strict=False)
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


def learned_weights(L: Any) -> Any:
    """Case h's parameter: raw weights whose softplus is ``L``'s values (in ``L``'s order: by row, then column)."""
    import torch

    return torch.nn.Parameter(L.values().detach().expm1().log())


def weighted_rows(cls: type, L: Any, raw_weights: Any) -> Any:
    """Case h's operator: ``L``'s non-zeros (same layout) with the values ``softplus(raw_weights)``."""
    import torch
    import torch.nn.functional as F

    values = F.softplus(raw_weights)
    if L.layout == torch.sparse_csr:
        tensor = torch.sparse_csr_tensor(L.crow_indices(), L.col_indices(), values, L.shape, check_invariants=False)
    else:
        tensor = torch.sparse_coo_tensor(L.indices(), values, L.shape, is_coalesced=True, check_invariants=False)
    return cls(tensor)


def run_gp(case: str, data: SparseData, L: Any) -> dict[str, Any]:
    """Cases a, b, g, h and i: ExactGP + ExactMarginalLogLikelihood, two Adam steps.

    ``L`` is the torch sparse tensor of ``data`` (:func:`~linear_operator_fork.verify.data.sparse_matrix`). The
    operator is built once (a, b, g, i), or in every ``forward`` from the learned weights (h: the model's parameter
    ``raw_weights``, see :func:`weighted_rows`).
    """
    import torch

    cls, cls_name = sparse_class()
    train_x = torch.arange(data.N, dtype=data.y.dtype, device=data.y.device).unsqueeze(-1)  # only its length matters
    likelihood = make_likelihood(case, data)
    if case == "h":
        raw_weights = learned_weights(L)
        model = sparse_observation_gp(data, train_x, data.y, likelihood, lambda x: weighted_rows(cls, L, raw_weights))
        model.register_parameter("raw_weights", raw_weights)
    else:
        sparse_op = cls(L)
        model = sparse_observation_gp(data, train_x, data.y, likelihood, lambda x: sparse_op)
    result = train_gp(model, likelihood, train_x, data.y)
    return {**result, "info": {"sparse_class": cls_name}}


def row_inputs(start: int, stop: int, device: Any) -> Any:
    """The inputs of the prediction cases: row numbers ``start .. stop - 1`` as a ``(stop - start) x 1`` float64
    tensor, exact up to 2**53 (float32 holds integers exactly only up to 2**24, fewer than the rows at CUDA sizes)."""
    import torch

    return torch.arange(start, stop, dtype=torch.float64, device=device).unsqueeze(-1)


def run_predict(case: str, data: SparseData, L: Any, num_test: int) -> dict[str, Any]:
    """Cases e and f: train as case a on the first N - T rows, then predict the last T rows (mean and variance).

    The inputs are row indices into ``L``: ``forward`` selects those rows of the sparse operator (the training rows
    once, when the model is built; the fork's operator is indexed, the thread's class has no indexing and gets the
    rows of the tensor). Prediction: ``model(test_x)`` in eval mode, under ``torch.no_grad()``, with gpytorch's
    default strategy (e) or ``fast_pred_var`` (f). The record's ``info`` has the prediction's time, the peak before
    it, and the errors of the mean and the variance (before gpytorch's clamp) against the float64 Woodbury of
    :func:`woodbury_prediction`.
    """
    import gpytorch
    import torch

    cls, cls_name = sparse_class()
    num_train = data.N - num_test
    dtype, device = data.y.dtype, data.y.device

    if cls_name == FORK_SPARSE_CLASS:
        all_rows_op = cls(L)

        def select(rows: Any) -> Any:
            return all_rows_op[rows]

    else:
        coo = L if L.layout == torch.sparse_coo else L.to_sparse_coo()

        def select(rows: Any) -> Any:
            return cls(coo.index_select(0, rows).coalesce())

    train_x, test_x = row_inputs(0, num_train, device), row_inputs(num_train, data.N, device)
    train_y = data.y[:num_train]
    train_rows_op = select(torch.arange(num_train, device=device))

    def rows_operator(x: Any) -> Any:
        return train_rows_op if x is train_x else select(x.squeeze(-1).long())

    likelihood = make_likelihood("a", data)
    model = sparse_observation_gp(data, train_x, train_y, likelihood, rows_operator)
    result = train_gp(model, likelihood, train_x, train_y)

    train_peak = self_peak_rss()
    model.eval()
    likelihood.eval()
    started = time.perf_counter()
    with torch.no_grad(), gpytorch.settings.fast_pred_var(case == "f"):
        prediction = model(test_x)
        # the covariance's diagonal, before MultivariateNormal.variance clamps it at gpytorch's min_variance (1e-6 in
        # float32): the clamp would count as an error of the computation (and hide how negative a variance came out)
        mean, variance = prediction.mean, prediction.lazy_covariance_matrix.diagonal()
    predict_seconds = time.perf_counter() - started
    raw = gpytorch_raw_parameters(model, likelihood)
    with torch.no_grad():
        # Both Woodbury predictions take the model's own root R (as gpytorch's kernel computed it, in the model's
        # dtype): the errors are those of the prediction, not of the kernel's evaluation (gpytorch's float32
        # distances alone move R by about eps cond(K), which a float64 R from the raw parameters would count)
        root = kernel_root(model.covar_module, model.inducing)
        expected_mean, expected_variance = woodbury_prediction(data, num_train, raw, torch.float64, root=root)
        mean32, variance32 = woodbury_prediction(data, num_train, raw, dtype, root=root)
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


def gpytorch_raw_parameters(model: Any, likelihood: Any) -> dict[str, Any]:
    """The raw parameters of the gpytorch model of cases a, e and f, by the reference's names."""
    return {
        "raw_constant": model.mean_module.raw_constant,
        "raw_outputscale": model.covar_module.raw_outputscale,
        "raw_lengthscale": model.covar_module.base_kernel.raw_lengthscale,
        "raw_noise": likelihood.noise_covar.raw_noise,
    }


def run_cross(data: SparseData, L: Any) -> dict[str, Any]:
    """Case d: ``MatmulLinearOperator(Uᵀ, U).to_dense()`` (r × r) for ``U = SparseLinearOperator(L) @ R``."""
    from linear_operator.operators import DenseLinearOperator, MatmulLinearOperator

    cls, cls_name = sparse_class()
    sparse_op = cls(L)
    kernel = gpytorch_kernel(data.y.dtype, data.y.device)

    def loss_fn() -> Any:
        U = sparse_op @ DenseLinearOperator(kernel_root(kernel, data.Z))
        gram = MatmulLinearOperator(U.mT, U).to_dense()
        return gram.diagonal().sum() / data.N

    result = adam_steps(list(kernel.parameters()), list(kernel.named_parameters()), loss_fn)
    return {**result, "info": {"sparse_class": cls_name}}


def run_thread(m: int, device: str) -> dict[str, Any]:
    from linear_operator_fork.verify import thread_script

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
