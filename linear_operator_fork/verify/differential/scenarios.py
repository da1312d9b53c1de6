"""One case on the imported linear_operator and gpytorch: what a user who writes it gets (outputs, or an exception).

:func:`run` returns ``{name: tensor}``; :mod:`.reference` computes the same names densely in float64. The sparse class
is the installed linear_operator's ``SparseLinearOperator`` or, on stock, the PR #120 thread's class
(:func:`linear_operator_fork.verify.data.sparse_class`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from linear_operator_fork.verify.catalogue import THREAD_SPARSE_CLASS
from linear_operator_fork.verify.data import sparse_class
from linear_operator_fork.verify.differential.case import NOISE_STEPS, VALUE_STEPS, Case, predict_rows
from linear_operator_fork.verify.differential.data import Data, weights


def run(case: Case, data: Data) -> dict[str, Any]:
    """The case's outputs on the imported linear_operator (tensors of any dtype and layout); raises what it raises."""
    runners: dict[str, Callable[[Case, Data], dict[str, Any]]] = {
        "inv_quad_logdet": run_inv_quad_logdet,
        "solve": run_solve,
        "to_dense": run_to_dense,
        "index": run_index,
        "transpose": run_transpose,
        "inplace": run_inplace,
        "bad": run_bad,
        "reuse": run_reuse,
        "derived": run_derived,
        "predict": run_predict,
        "selftest": run_selftest,
    }
    return runners[case.op](case, data)


def dense_tensor(value: Any) -> Any:
    """A strided tensor from what an operation returned (a LinearOperator, a sparse tensor, a number)."""
    import torch
    from linear_operator import LinearOperator

    if isinstance(value, LinearOperator):
        value = value.to_dense()
    if not torch.is_tensor(value):
        return torch.as_tensor(value)
    return value.to_dense() if value.layout != torch.strided else value


def sparse_operator(tensor: Any) -> Any:
    cls, _ = sparse_class()
    return cls(tensor)


def gradients(loss: Any, leaves: dict[str, Any]) -> dict[str, Any]:
    """``grad_<name>`` of ``loss`` for each leaf (zeros where autograd finds no path: no dependence)."""
    import torch

    found = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {
        f"grad_{name}": torch.zeros_like(leaf) if grad is None else grad
        for (name, leaf), grad in zip(leaves.items(), found, strict=True)
    }


# -- the model's pieces, as users spell them -----------------------------------------------------------------------


def fill(parameter: Any, value: float) -> None:
    import torch

    with torch.no_grad():
        parameter.fill_(value)


def make_kernel(data: Data) -> Any:
    import gpytorch

    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()).to(data.dtype)
    fill(kernel.base_kernel.raw_lengthscale, data.raw_lengthscale)
    fill(kernel.raw_outputscale, data.raw_outputscale)
    return kernel


def root_inputs(case: Case, data: Data, grad: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """``(R, kernel, leaves)``: the root tensor (plain, dense, root_operator) or the kernel (kernel_root)."""
    if case.root == "kernel_root":
        kernel = make_kernel(data)
        leaves = {"raw_lengthscale": kernel.base_kernel.raw_lengthscale, "raw_outputscale": kernel.raw_outputscale}
        return None, kernel, leaves
    R = data.cast(data.R).requires_grad_(grad)
    return R, None, {"R": R}


def spelled_root(case: Case, data: Data, S: Any, R: Any, kernel: Any) -> tuple[Any, Any]:
    """``(U, covariance)`` with ``U = S @ root`` written as the case's root spelling says."""
    from linear_operator.operators import DenseLinearOperator, LowRankRootLinearOperator, RootLinearOperator

    if case.root == "kernel_root":
        root = kernel(data.cast(data.Z)).add_jitter(data.jitter).root_decomposition().root
        U = S @ root
    elif case.root == "plain":
        U = S @ R
    else:
        U = S @ DenseLinearOperator(R)
    covariance = RootLinearOperator(U) if case.root == "root_operator" else LowRankRootLinearOperator(U)
    return U, covariance


def make_likelihood(case: Case, data: Data, leaves: dict[str, Any], rows: int | None = None) -> Any:
    """The case's likelihood; a fixed noise for the first ``rows`` rows only (default: all)."""
    import gpytorch

    if case.noise == "gaussian":
        likelihood = gpytorch.likelihoods.GaussianLikelihood().to(data.dtype)
        fill(likelihood.noise_covar.raw_noise, data.raw_noise)
        leaves["raw_noise"] = likelihood.noise_covar.raw_noise
        return likelihood
    learned = case.noise == "fixed_learned"
    likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(
        noise=data.cast(data.d)[..., :rows], learn_additional_noise=learned
    ).to(data.dtype)
    if learned:
        fill(likelihood.second_noise_covar.raw_noise, data.raw_noise)
        leaves["raw_second_noise"] = likelihood.second_noise_covar.raw_noise
    return likelihood


def marginal(case: Case, data: Data, covariance: Any, leaves: dict[str, Any]) -> Any:
    """The marginal distribution of ``y``: ``likelihood(MultivariateNormal(mean, covariance))``, or the covariance
    plus ``DiagLinearOperator(d)`` with ``d`` requiring grad (a per-point noise model)."""
    import gpytorch
    import torch
    from linear_operator.operators import DiagLinearOperator

    mean = torch.full(data.y.shape, data.mean, dtype=data.dtype)
    if case.noise == "diag_grad":
        d = data.cast(data.d).requires_grad_()
        leaves["d"] = d
        return gpytorch.distributions.MultivariateNormal(mean, covariance + DiagLinearOperator(d))
    likelihood = make_likelihood(case, data, leaves)
    return likelihood(gpytorch.distributions.MultivariateNormal(mean, covariance))


# -- the operations ------------------------------------------------------------------------------------------------


def run_inv_quad_logdet(case: Case, data: Data) -> dict[str, Any]:
    S = sparse_operator(data.sparse()[0])
    if case.form == "mll":
        return run_mll(case, data, S)
    R, kernel, leaves = root_inputs(case, data)
    _, covariance = spelled_root(case, data, S, R, kernel)
    distribution = marginal(case, data, covariance, leaves)
    y = data.cast(data.y)
    if case.form == "operator":
        diff = (y - distribution.mean).unsqueeze(-1)
        inv_quad, logdet = distribution.lazy_covariance_matrix.inv_quad_logdet(inv_quad_rhs=diff, logdet=True)
        outputs = {"inv_quad": inv_quad, "logdet": logdet}
        loss = inv_quad.sum() + logdet.sum()
    else:
        log_prob = distribution.log_prob(y)
        outputs, loss = {"log_prob": log_prob}, log_prob.sum()
    return {**outputs, **gradients(loss, leaves)}


def run_mll(case: Case, data: Data, S: Any) -> dict[str, Any]:
    """An ExactGP whose forward builds the covariance from the model's own R (or kernel), trained by
    ``-ExactMarginalLogLikelihood``."""
    import gpytorch
    import torch

    leaves: dict[str, Any] = {}
    likelihood = make_likelihood(case, data, leaves)
    train_x = torch.arange(case.N, dtype=data.dtype).unsqueeze(-1)  # only its length matters
    y = data.cast(data.y)

    class SparseObservationGP(gpytorch.models.ExactGP):
        def __init__(self) -> None:
            super().__init__(train_x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.R = torch.nn.Parameter(data.cast(data.R)) if case.root != "kernel_root" else None
            self.covar_module = make_kernel(data) if case.root == "kernel_root" else None

        def forward(self, x: Any) -> Any:
            _, covariance = spelled_root(case, data, S, self.R, self.covar_module)
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), covariance)

    model = SparseObservationGP().to(data.dtype)
    fill(model.mean_module.raw_constant, data.mean)
    if case.root == "kernel_root":
        leaves["raw_lengthscale"] = model.covar_module.base_kernel.raw_lengthscale
        leaves["raw_outputscale"] = model.covar_module.raw_outputscale
    else:
        leaves["R"] = model.R
    leaves["raw_constant"] = model.mean_module.raw_constant
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    loss = -mll(model(train_x), y)
    return {"loss": loss, **gradients(loss, leaves)}


def run_solve(case: Case, data: Data) -> dict[str, Any]:
    S = sparse_operator(data.sparse()[0])
    R, kernel, leaves = root_inputs(case, data, grad=False)
    _, covariance = spelled_root(case, data, S, R, kernel)
    distribution = marginal(case, data, covariance, leaves)
    return {"solution": distribution.lazy_covariance_matrix.solve(data.cast(data.rhs))}


def run_to_dense(case: Case, data: Data) -> dict[str, Any]:
    from linear_operator.operators import DiagLinearOperator, MatmulLinearOperator

    S = sparse_operator(data.sparse()[0])
    if case.form == "sts":
        return {"dense": dense_tensor((S.mT @ S).to_dense())}
    R, kernel, leaves = root_inputs(case, data)
    U, covariance = spelled_root(case, data, S, R, kernel)
    if case.form == "product":
        out = U.to_dense()
    elif case.form == "gram":
        out = MatmulLinearOperator(U.mT, U).to_dense()
    elif case.form == "gram_diag":
        d = data.cast(data.d).requires_grad_()
        leaves["d"] = d
        out = MatmulLinearOperator(U.mT, DiagLinearOperator(d) @ U).to_dense()
    else:
        out = covariance.to_dense()
    out = dense_tensor(out)
    loss = (out * data.cast(weights(tuple(out.shape)))).sum()
    return {"dense": out, **gradients(loss, leaves)}


def run_index(case: Case, data: Data) -> dict[str, Any]:
    S = sparse_operator(data.sparse()[0])
    return {"values": dense_tensor(S[data.index])}


def run_transpose(case: Case, data: Data) -> dict[str, Any]:
    S = sparse_operator(data.sparse()[0])
    if case.form == "mT_matmul":
        out = S.mT @ data.cast(data.Y)
    elif case.form == "mT_matvec":
        out = S.mT @ data.cast(data.yvec)
    elif case.form == "mT_mT_matmul":
        out = S.mT.mT @ data.cast(data.X)
    elif case.form == "mT_to_dense":
        out = S.mT.to_dense()
    else:  # rmatmul
        out = data.cast(data.Y).mT @ S
    return {"product": dense_tensor(out)}


def run_inplace(case: Case, data: Data) -> dict[str, Any]:
    """Build L, call, edit the wrapped values in place, call again with the same SparseLinearOperator."""
    if case.edit == "scipy":
        A, L = data.scipy_matrix()

        def edit() -> None:
            A.data *= 2  # torch.from_numpy shares A.data with L's values

    elif case.edit == "values":
        L, values = data.sparse(share=True)

        def edit() -> None:
            values.mul_(2)

    else:
        L, _ = data.sparse()

        def edit() -> None:
            L.mul_(2)

    S = sparse_operator(L)
    outputs = {f"before_{name}": value for name, value in inplace_call(case, data, S).items()}
    edit()
    outputs.update({f"after_{name}": value for name, value in inplace_call(case, data, S).items()})
    return outputs


def inplace_call(case: Case, data: Data, S: Any) -> dict[str, Any]:
    import torch
    from linear_operator.operators import DiagLinearOperator

    if case.then == "matmul":
        return {"product": dense_tensor(S @ data.cast(data.X))}
    if case.then == "mT_matmul":
        return {"product": dense_tensor(S.mT @ data.cast(data.Y))}
    if case.then == "matmul_many":
        return {"product": torch.cat([dense_tensor(S @ data.cast(X)) for X in data.X_many], dim=-1)}
    if case.then == "mT_matmul_many":
        return {"product": torch.cat([dense_tensor(S.mT @ data.cast(Y)) for Y in data.Y_many], dim=-1)}
    R, kernel, _ = root_inputs(case, data, grad=False)
    _, covariance = spelled_root(case, data, S, R, kernel)  # rebuilt from the same S
    diff = (data.cast(data.y) - data.mean).unsqueeze(-1)
    inv_quad, logdet = (covariance + DiagLinearOperator(data.cast(data.d))).inv_quad_logdet(diff, logdet=True)
    return {"inv_quad": inv_quad, "logdet": logdet}


def run_bad(case: Case, data: Data) -> dict[str, Any]:
    import torch

    if case.form.startswith("mask_wrong"):
        return run_index(case, data)
    if case.form == "oob_index":
        return {"product": dense_tensor(sparse_operator(data.sparse()[0]) @ data.cast(data.X))}
    if case.form == "dtype_mismatch":
        other = torch.float64 if data.dtype == torch.float32 else torch.float32
        return {"product": dense_tensor(sparse_operator(data.sparse()[0]) @ data.cast(data.X, other))}
    if case.form == "csc_leaf_grad":
        L, _ = data.sparse("csc")
        L.requires_grad_(True)
        out = dense_tensor(sparse_operator(L) @ data.cast(data.X))
        (out * data.cast(weights(tuple(out.shape)))).sum().backward()
        outputs = {"product": out}
        if L.grad is not None:  # a missing gradient is reported as a missing output
            outputs["grad_L"] = dense_tensor(L.grad)
        return outputs
    return run_hessian(case, data)


def run_hessian(case: Case, data: Data) -> dict[str, Any]:
    """Second derivatives of ``inv_quad + logdet`` w.r.t. a per-point noise ``d``."""
    import torch
    from linear_operator.operators import DiagLinearOperator

    S = sparse_operator(data.sparse()[0])
    R, kernel, _ = root_inputs(case, data, grad=False)
    _, covariance = spelled_root(case, data, S, R, kernel)
    diff = (data.cast(data.y) - data.mean).unsqueeze(-1)

    def objective(d: Any) -> Any:
        inv_quad, logdet = (covariance + DiagLinearOperator(d)).inv_quad_logdet(diff, logdet=True)
        return inv_quad + logdet

    d = data.cast(data.d)
    return {"value": objective(d), "hessian": torch.autograd.functional.hessian(objective, d)}


def run_reuse(case: Case, data: Data) -> dict[str, Any]:
    """One SparseLinearOperator, several calls (the covariance rebuilt from it each time, as a GP's forward does);
    what the results depend on changes between the calls. Outputs ``<name>_<call>``, calls counted from 1."""
    import torch
    from linear_operator.operators import DiagLinearOperator, MatmulLinearOperator

    outputs: dict[str, Any] = {}
    if case.form in ("values", "sts_values"):
        L, values = data.sparse(share=True)
        S = sparse_operator(L)
        R, kernel, _ = root_inputs(case, data, grad=False) if case.form == "values" else (None, None, None)
        for call, factor in enumerate(VALUE_STEPS, start=1):
            if call > 1 and factor != VALUE_STEPS[call - 2]:
                values.mul_(factor / VALUE_STEPS[call - 2])  # 2 then 0.5: exactly back to the first values
            if case.form == "sts_values":
                outputs[f"dense_{call}"] = dense_tensor((S.mT @ S).to_dense())
                continue
            _, covariance = spelled_root(case, data, S, R, kernel)
            diff = (data.cast(data.y) - data.mean).unsqueeze(-1)
            inv_quad, logdet = (covariance + DiagLinearOperator(data.cast(data.d))).inv_quad_logdet(diff, logdet=True)
            outputs.update({f"inv_quad_{call}": inv_quad, f"logdet_{call}": logdet})
        return outputs
    S = sparse_operator(data.sparse()[0])
    grad_root = case.form.startswith("noise_grad")
    R, kernel, leaves = root_inputs(case, data, grad=grad_root)
    for call, factor in enumerate(NOISE_STEPS, start=1):
        d = data.cast(data.d) * factor
        U, covariance = spelled_root(case, data, S, R, kernel)
        if case.form == "weights":
            with torch.no_grad():
                outputs[f"dense_{call}"] = dense_tensor(MatmulLinearOperator(U.mT, DiagLinearOperator(d) @ U))
            continue
        call_leaves = dict(leaves) if grad_root else {}
        if case.form == "noise_grad_noise":
            d.requires_grad_()
            call_leaves["d"] = d
        diff = (data.cast(data.y) - data.mean).unsqueeze(-1)
        with torch.set_grad_enabled(grad_root):
            inv_quad, logdet = (covariance + DiagLinearOperator(d)).inv_quad_logdet(diff, logdet=True)
        outputs.update({f"inv_quad_{call}": inv_quad.detach(), f"logdet_{call}": logdet.detach()})
        if call_leaves:
            found = gradients(inv_quad.sum() + logdet.sum(), call_leaves)
            outputs.update({f"{name}_{call}": value for name, value in found.items()})
    return outputs


def run_derived(case: Case, data: Data) -> dict[str, Any]:
    """Rows selected from S (``data.index``), then used: a product, a transposed product, a covariance."""
    from linear_operator.operators import DiagLinearOperator

    rows = data.index
    S = sparse_operator(data.sparse()[0])[rows]
    if case.then == "matmul":
        return {"product": dense_tensor(S @ data.cast(data.X))}
    if case.then == "mT_matmul":
        return {"product": dense_tensor(S.mT @ data.cast(data.Y)[rows])}
    R, kernel, leaves = root_inputs(case, data)
    _, covariance = spelled_root(case, data, S, R, kernel)
    diff = (data.cast(data.y)[rows] - data.mean).unsqueeze(-1)
    inv_quad, logdet = (covariance + DiagLinearOperator(data.cast(data.d)[rows])).inv_quad_logdet(diff, logdet=True)
    return {"inv_quad": inv_quad, "logdet": logdet, **gradients(inv_quad.sum() + logdet.sum(), leaves)}


def run_predict(case: Case, data: Data) -> dict[str, Any]:
    """An ExactGP on the first rows (its inputs: row indices), with fixed parameters; in eval mode, the latent mean and
    variance of the last ``predict_rows(N)`` rows, in gpytorch's default mode or with ``fast_pred_var()``.

    The variance is the diagonal of the predictive covariance as linear_operator computes it, before
    ``MultivariateNormal.variance`` clamps it at gpytorch's ``min_variance``: the clamp would hide how far a
    negative variance is from the truth (and make it look closer than a positive one as wrong)."""
    import gpytorch
    import torch
    from linear_operator.operators import DenseLinearOperator, LowRankRootLinearOperator

    train = case.N - predict_rows(case.N)
    S_all = sparse_operator(data.sparse()[0])
    R = data.cast(data.R)
    # Stock's sparse class (the PR #120 thread's) cannot select rows of S @ DenseLinearOperator(R): stock predicts
    # with the dense N x r root its users have, which the fork's result is compared with
    plain = case.root == "plain" or sparse_class()[1] == THREAD_SPARSE_CLASS
    root = R if plain else DenseLinearOperator(R)
    likelihood = make_likelihood(case, data, {}, rows=train)
    train_x = torch.arange(train, dtype=data.dtype).unsqueeze(-1)

    class RowsGP(gpytorch.models.ExactGP):
        def __init__(self) -> None:
            super().__init__(train_x, data.cast(data.y)[:train], likelihood)
            self.mean_module = gpytorch.means.ConstantMean()

        def forward(self, x: Any) -> Any:
            S = S_all[x.squeeze(-1).long()]
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), LowRankRootLinearOperator(S @ root))

    model = RowsGP().to(data.dtype)
    fill(model.mean_module.raw_constant, data.mean)
    model.eval()
    new_x = torch.arange(train, case.N, dtype=data.dtype).unsqueeze(-1)
    with torch.no_grad(), gpytorch.settings.fast_pred_var(case.form == "fast_pred_var"):
        prediction = model(new_x)
        outputs = {"mean": prediction.mean, "variance": prediction.lazy_covariance_matrix.diagonal()}
    # The patched gpytorch must have predicted with its strategy (not silently with its default one)
    strategy = getattr(gpytorch.models.exact_prediction_strategies, "LowRankRootPredictionStrategy", None)
    if strategy is not None and type(model.prediction_strategy) is not strategy:
        raise RuntimeError(
            f"gpytorch predicted with {type(model.prediction_strategy).__name__}, not {strategy.__name__}"
        )
    return outputs


def run_selftest(case: Case, data: Data) -> dict[str, Any]:
    """Cases of the runner's own tests: a result, a dead process, a hang, an exception."""
    import torch

    if case.form == "abort":
        os.abort()
    if case.form == "sleep":
        time.sleep(3600)
    if case.form == "raise":
        raise ValueError("selftest: raised on purpose")
    return {"x": torch.tensor([1.0, 2.0])}
