"""Per-observation noise: known noise variances (heteroscedastic), and known plus a learned extra noise.

Areal observations as in areal.py, but each observation comes with its own noise variance d_i (e.g. the sampling
variance of a survey estimate): the covariance is L K Lᵀ + diag(d) with gpytorch's FixedNoiseGaussianLikelihood, or
L K Lᵀ + diag(d) + σ² I with learn_additional_noise=True. The fork keeps the learned diagonal's backward in O(nnz).

    python examples/noise.py               # small: 20 000 observations, about 10 s per model
    python examples/noise.py --size full   # 10⁶ observations; prints time and peak, saves a plot
"""

import argparse
import resource
import time

import gpytorch
import torch
from linear_operator.operators import DenseLinearOperator, LowRankRootLinearOperator, SparseLinearOperator

SIZES = {"small": (20, 10, 20_000, 150), "full": (40, 25, 1_000_000, 100)}  # grid width, height, N, Adam steps


def areas(rows: int, n: int, per_row: int) -> torch.Tensor:
    """Each row averages ``per_row`` random cells."""
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
    field = torch.sin(cells[:, 0] / 4) + torch.cos(cells[:, 1] / 3)
    L_train = areas(N, n, per_row=4)
    d = 0.005 + 0.03 * torch.rand(N)  # each observation's known noise variance
    y = L_train @ field + d.sqrt() * torch.randn(N) + 0.05 * torch.randn(N)  # plus noise nobody reported
    L_all = torch.cat([L_train, torch.eye(n).to_sparse()]).coalesce()
    S_all = SparseLinearOperator(L_all)
    S_train = S_all[:N]
    train_x = torch.arange(N).unsqueeze(-1).to(y.dtype)

    class AreaGP(gpytorch.models.ExactGP):
        def __init__(self, train_x, train_y, likelihood):
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

        def forward(self, x):  # x: row indices into L_all, shape (rows, 1)
            S = S_train if self.training else S_all[x.squeeze(-1).long()]
            R = torch.linalg.cholesky(self.covar_module(cells).to_dense() + 1e-4 * torch.eye(n))
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), LowRankRootLinearOperator(S @ DenseLinearOperator(R))
            )

    results = {}
    for learned in (False, True):
        likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=d, learn_additional_noise=learned)
        model = AreaGP(train_x, y, likelihood)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
        started = time.perf_counter()
        model.train()
        for _ in range(steps):
            optimizer.zero_grad()
            loss = -mll(model(train_x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad(), gpytorch.settings.fast_pred_var():
            predicted = model(torch.arange(N, N + n).unsqueeze(-1).to(y.dtype))  # the field in each cell
        seconds = time.perf_counter() - started
        mean, sd = predicted.mean, predicted.variance.sqrt()
        inside = ((mean - field).abs() <= 2 * sd).double().mean()
        name = "known + learned noise" if learned else "known noise only"
        extra = f", learned extra noise {likelihood.second_noise.item():.4f} (true 0.0025)" if learned else ""
        print(
            f"{name}: loss {loss.item():.3f}{extra}; mean error {(mean - field).abs().mean():.4f}, "
            f"mean sd {sd.mean():.4f}, truth within 2 sd in {100 * inside:.0f} % of the cells; {seconds:.1f} s"
        )
        results[name] = (mean, sd)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # (KiB on Linux)
    print(f"peak memory {peak:.2f} GiB")
    if args.size == "full":
        import matplotlib.pyplot as plt

        middle = torch.arange(width) * height + height // 2
        x = cells[middle, 0]
        figure, axes = plt.subplots(figsize=(7, 3.5))
        for name, (mean, sd) in results.items():
            axes.fill_between(x, mean[middle] - 2 * sd[middle], mean[middle] + 2 * sd[middle], alpha=0.25)
            axes.plot(x, mean[middle], label=f"{name}: mean ± 2 sd")
        axes.plot(x, field[middle], "k--", label="truth")
        axes.set_xlabel("cell (middle row of the grid)")
        axes.set_title(f"Field from {N} areal observations with per-observation noise")
        axes.legend()
        figure.tight_layout()
        figure.savefig("noise.png", dpi=110)
        print("wrote noise.png")


if __name__ == "__main__":
    main()
