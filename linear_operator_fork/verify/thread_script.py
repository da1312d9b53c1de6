"""The script from upstream PR #120's thread (case c), as importable code.

The thread: https://github.com/cornellius-gp/linear_operator/pull/120 (Osburg, 2026-01-14). The class
``SparseLinearOperator`` below is the thread's own, verbatim; it is what the cases use on a linear_operator that has
no ``linear_operator.operators.SparseLinearOperator`` (stock 0.6.0 and 0.6.1).

The body of :func:`main` is the thread's script, in order, with these changes only:

- ``torch.set_default_device`` gets the runner's ``device`` instead of ``"cuda:0"``, and ``m`` is a parameter;
- the thread's unused ``import numpy as np`` is dropped, and ``jaxtyping`` (used by the class's annotations only,
  which ``from __future__ import annotations`` never evaluates) is imported for type checkers only, so the script
  runs where jaxtyping is not installed (linear_operator 0.6.1 no longer depends on it);
- ``main`` takes ``sparse_class``, so the same script runs with the fork's own ``SparseLinearOperator``;
- ``forward`` keeps the shape of the root it built (``self.root_shape``), and each step calls ``observe`` after
  ``loss.backward()``, so that the runner can record the root's rank, the losses and the gradients.

``training_iterations = 2`` is the thread's own value.
"""


# The thread's jaxtyping annotations ("*batch M N") are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Union

import gpytorch
import torch
from linear_operator import LinearOperator
from linear_operator.operators import LowRankRootLinearOperator
from torch import Tensor

if TYPE_CHECKING:
    from jaxtyping import Float


class SparseLinearOperator(LinearOperator):
    def __init__(self, tsr):
        super().__init__(tsr)
        self.tensor = tsr

    def _matmul(
        self: Float[LinearOperator, "*batch M N"],
        rhs: Union[Float[torch.Tensor, "*batch2 N C"], Float[torch.Tensor, "*batch2 N"]],  # noqa: UP007
    ) -> Union[Float[torch.Tensor, "... M C"], Float[torch.Tensor, "... M"]]:  # noqa: UP007
        return torch.sparse.mm(self.tensor, rhs)

    def _size(self) -> torch.Size:
        return self.tensor.size()

    def _transpose_nonbatch(self: Float[LinearOperator, "*batch M N"]) -> Float[LinearOperator, "*batch N M"]:
        return SparseLinearOperator(self.tensor.transpose(-2, -1))

    def to_dense(self: Float[LinearOperator, "*batch M N"]) -> Float[Tensor, "*batch M N"]:
        return self.tensor  # not actually returning a dense but sparse tensor since it would not fit in memory


Observer = Callable[[int, Tensor, torch.nn.Module], None]


def main(
    m: int = 50, device: str = "cuda:0", observe: Observer | None = None, sparse_class: type | None = None
) -> torch.nn.Module:
    """The thread's script on ``device`` with an ``m``-point grid per dimension (M = m³ observations).

    ``sparse_class`` replaces the thread's class for ``L`` (the script rewritten with the fork's
    ``linear_operator.operators.SparseLinearOperator``); by default the thread's own class is used.
    """
    Sparse = sparse_class or SparseLinearOperator
    torch.set_default_device(device)

    M = m * m * m

    # create coordinates
    grid_bounds = [(-5, 5), (-5, 5), (-5, 5)]
    grid_size = m
    grid = torch.zeros(grid_size, len(grid_bounds))
    for i in range(len(grid_bounds)):
        grid[:, i] = torch.linspace(grid_bounds[i][0], grid_bounds[i][1], grid_size)

    x = gpytorch.utils.grid.create_data_from_grid(grid)
    y = torch.randn_like(x[:, 0])

    class GPModel(gpytorch.models.ExactGP):
        def __init__(self, train_x, train_y, likelihood):
            super(GPModel, self).__init__(train_x, train_y, likelihood)  # noqa: UP008
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.GridKernel(gpytorch.kernels.RBFKernel(nu=1.5), grid=grid)

        def forward(self, x):
            mean_x = self.mean_module(x)
            covar_x = self.covar_module(x)

            covar = covar_x.root_decomposition().root
            self.root_shape = tuple(covar.shape)  # added: recorded by the runner
            L = Sparse(
                torch.sparse_coo_tensor(
                    indices=torch.stack([torch.arange(0, M), torch.arange(0, M)], dim=0),
                    values=torch.ones(M, dtype=torch.get_default_dtype()),
                    size=(M, M),
                    dtype=torch.get_default_dtype(),
                )
            )
            covar = L @ covar
            covar_x = LowRankRootLinearOperator(covar)

            return gpytorch.distributions.MultivariateNormal(mean_x, covar_x)

    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = GPModel(x, y, likelihood)

    training_iterations = 2

    model.train()
    likelihood.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)

    for i in range(training_iterations):
        optimizer.zero_grad()
        output = model(x)
        loss = -mll(output, y)
        loss.backward()
        if observe is not None:  # added: the runner records the loss and the gradients
            observe(i, loss, model)
        optimizer.step()
    return model
