"""Areal (aggregated) observations: each observation averages a latent field over a few cells of a grid.

The covariance of the observations is L K Lᵀ + σ² I: L (N × n, sparse) says which cells each observation averages,
K is an RBF kernel on the n cells. The model is trained on the observations, then asked for the field in every cell
(new rows of L: one entry each), with its uncertainty.

    python examples/areal.py               # small: 20 000 observations of a 20 x 10 grid, a few seconds
    python examples/areal.py --size full   # 10⁶ observations of a 40 x 25 grid; prints time and peak, saves a plot
"""

import argparse
import resource
import time

import gpytorch
import torch
from linear_operator.operators import DenseLinearOperator, LowRankRootLinearOperator, SparseLinearOperator

SIZES = {"small": (20, 10, 20_000, 50), "full": (40, 25, 1_000_000, 50)}  # grid width, height, N, Adam steps


def areas(rows: int, n: int, per_row: int) -> torch.Tensor:
    """Each row averages ``per_row`` random cells (a cell drawn twice counts twice)."""
    row = torch.arange(rows).repeat_interleave(per_row)
    cells = torch.randint(n, (rows * per_row,))
    values = torch.full((rows * per_row,), 1.0 / per_row)
    return torch.sparse_coo_tensor(torch.stack([row, cells]), values, (rows, n), check_invariants=True).coalesce()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    args = parser.parse_args()
    width, height, N, steps = SIZES[args.size]
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)  # with unmodified gpytorch, float32 variances lose digits (README)

    cells = torch.stack(torch.meshgrid(torch.arange(width), torch.arange(height), indexing="ij"), dim=-1)
    cells = cells.reshape(-1, 2).to(torch.get_default_dtype())
    n = cells.size(0)
    field = torch.sin(cells[:, 0] / 4) + torch.cos(cells[:, 1] / 3)  # the truth, in each cell
    L_train = areas(N, n, per_row=4)
    y = L_train @ field + 0.1 * torch.randn(N)
    # All rows: the N observations, then one row per cell (the field there): the rows we predict
    L_all = torch.cat([L_train, torch.eye(n).to_sparse()]).coalesce()

    started = time.perf_counter()
    S_all = SparseLinearOperator(L_all)
    S_train = S_all[:N]  # contiguous rows: a view, built once, reused by every training step

    class AreaGP(gpytorch.models.ExactGP):
        def __init__(self, train_x, train_y, likelihood):
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

        def forward(self, x):  # x: row indices into L_all, shape (rows, 1)
            S = S_train if self.training else S_all[x.squeeze(-1).long()]
            R = torch.linalg.cholesky(self.covar_module(cells).to_dense() + 1e-4 * torch.eye(n))  # K = R Rᵀ
            covar = LowRankRootLinearOperator(S @ DenseLinearOperator(R))  # L K Lᵀ, never N × n dense
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), covar)

    train_x = torch.arange(N).unsqueeze(-1).to(y.dtype)
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = AreaGP(train_x, y, likelihood)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = -mll(model(train_x), y)
        loss.backward()
        optimizer.step()
    trained = time.perf_counter()

    model.eval()
    with torch.no_grad(), gpytorch.settings.fast_pred_var():
        predicted = model(torch.arange(N, N + n).unsqueeze(-1).to(y.dtype))  # the field in each cell
    mean, sd = predicted.mean, predicted.variance.sqrt()
    done = time.perf_counter()

    inside = ((mean - field).abs() <= 2 * sd).double().mean()
    print(
        f"{N} observations of {n} cells, {steps} Adam steps: loss {loss.item():.3f}, "
        f"noise {likelihood.noise.item():.4f}"
    )
    print(
        f"field in each cell: mean error {(mean - field).abs().mean():.4f}, mean sd {sd.mean():.4f}, "
        f"truth within 2 sd in {100 * inside:.0f} % of the cells"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # (KiB on Linux)
    print(f"time: training {trained - started:.1f} s, prediction {done - trained:.1f} s; peak memory {peak:.2f} GiB")
    if args.size == "full":
        import matplotlib.pyplot as plt

        middle = torch.arange(width) * height + height // 2  # the cells of the middle row of the grid
        x = cells[middle, 0]
        figure, axes = plt.subplots(figsize=(7, 3.5))
        axes.fill_between(x, mean[middle] - 2 * sd[middle], mean[middle] + 2 * sd[middle], alpha=0.3, label="± 2 sd")
        axes.plot(x, mean[middle], label="predicted mean")
        axes.plot(x, field[middle], "k--", label="truth")
        axes.set_xlabel("cell (middle row of the grid)")
        axes.set_title(f"Field from {N} areal observations")
        axes.legend()
        figure.tight_layout()
        figure.savefig("areal.png", dpi=110)
        print("wrote areal.png")


if __name__ == "__main__":
    main()
