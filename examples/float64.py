"""Train in float32, predict in float64: the path to variances you can trust with unmodified gpytorch.

Unmodified gpytorch computes a predictive variance as the prior minus the explained part; with a small noise the two
nearly cancel, and in float32 little is left (README: Predict). Training is fine in float32. So train in float32, then
convert for the prediction: the model with .double(), and the data and L as new float64 tensors. The sparse operator
is built from L and keeps L's dtype, so build it again from the float64 L (an operator of one dtype refuses a tensor
of another). With the patched gpytorch (README: Install), both predictions go through its LowRankRootPredictionStrategy
and agree.

    python examples/float64.py               # small: 20 000 observations, a few seconds
    python examples/float64.py --size full   # 10⁶ observations; prints time and peak, saves a plot
"""

import argparse
import resource
import time

import gpytorch
import torch
from linear_operator.operators import DenseLinearOperator, LowRankRootLinearOperator, SparseLinearOperator

SIZES = {"small": (20, 10, 20_000, 50), "full": (40, 25, 1_000_000, 50)}  # grid width, height, N, Adam steps


class AreaGP(gpytorch.models.ExactGP):
    """Rows of L as inputs: ``forward(x)`` takes the rows ``x`` of ``L_all`` (``L_train``'s while training)."""

    def __init__(self, train_x, train_y, likelihood, cells, L_all):
        super().__init__(train_x, train_y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
        self.cells = cells
        self.use(L_all)

    def use(self, L_all):
        """Build the sparse operators (once per dtype: they keep what they compute from L)."""
        self.S_all = SparseLinearOperator(L_all)
        self.S_train = self.S_all[: self.train_targets.size(-1)]

    def forward(self, x):
        S = self.S_train if self.training else self.S_all[x.squeeze(-1).long()]
        n = self.cells.size(0)
        K = self.covar_module(self.cells).to_dense() + 1e-4 * torch.eye(n, dtype=self.cells.dtype)
        R = torch.linalg.cholesky(K)
        return gpytorch.distributions.MultivariateNormal(
            self.mean_module(x), LowRankRootLinearOperator(S @ DenseLinearOperator(R))
        )


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

    # float32 (torch's default dtype) for training
    cells = torch.stack(torch.meshgrid(torch.arange(width), torch.arange(height), indexing="ij"), dim=-1)
    cells = cells.reshape(-1, 2).float()
    n = cells.size(0)
    field = torch.sin(cells[:, 0] / 4) + torch.cos(cells[:, 1] / 3)
    L_train = areas(N, n, per_row=4)
    y = L_train @ field + 0.1 * torch.randn(N)
    L_all = torch.cat([L_train, torch.eye(n).to_sparse()]).coalesce()
    train_x = torch.arange(N).unsqueeze(-1).float()

    started = time.perf_counter()
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = AreaGP(train_x, y, likelihood, cells, L_all)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = -mll(model(train_x), y)
        loss.backward()
        optimizer.step()
    trained = time.perf_counter()

    new_x = torch.arange(N, N + n).unsqueeze(-1)  # one row per cell: the field there
    predictions = {}
    for dtype in (torch.float32, torch.float64):
        model.to(dtype)  # the parameters and buffers
        model.cells = cells.to(dtype)
        model.set_train_data(train_x.to(dtype), y.to(dtype), strict=False)
        model.use(L_all.to(dtype))  # a new operator of the new dtype
        model.eval()
        with torch.no_grad(), gpytorch.settings.fast_pred_var():
            predicted = model(new_x.to(dtype))
        predictions[dtype] = (predicted.mean.double(), predicted.variance.double().sqrt())
        model.train()
    done = time.perf_counter()

    print(f"{N} observations of {n} cells, {steps} Adam steps in float32: loss {loss.item():.3f}")
    for dtype, (mean, sd) in predictions.items():
        error = (mean - field.double()).abs()
        inside = (error <= 2 * sd).double().mean()
        print(
            f"predicted in {str(dtype).replace('torch.', '')}: mean error {error.mean():.4f}, "
            f"mean sd {sd.mean():.5f}, truth within 2 sd in {100 * inside:.0f} % of the cells"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # (KiB on Linux)
    print(f"time: training {trained - started:.1f} s, predictions {done - trained:.1f} s; peak memory {peak:.2f} GiB")
    if args.size == "full":
        import matplotlib.pyplot as plt

        middle = torch.arange(width) * height + height // 2
        x = cells[middle, 0]
        figure, axes = plt.subplots(figsize=(7, 3.5))
        for dtype, (mean, sd) in predictions.items():
            name = str(dtype).replace("torch.", "")
            axes.fill_between(x, mean[middle] - 2 * sd[middle], mean[middle] + 2 * sd[middle], alpha=0.25)
            axes.plot(x, mean[middle], label=f"predicted in {name}: mean ± 2 sd")
        axes.plot(x, field[middle], "k--", label="truth")
        axes.set_xlabel("cell (middle row of the grid)")
        axes.set_title(f"Trained in float32 on {N} areal observations")
        axes.legend()
        figure.tight_layout()
        figure.savefig("float64.png", dpi=110)
        print("wrote float64.png")


if __name__ == "__main__":
    main()
