"""A learned footprint: how an instrument weights the cells it observes is a parameter, trained with the GP.

Areal observations as in areal.py, but each observation is a weighted average of the field over a 2 x 2 block of
cells, with weights that are the same for every observation (the instrument's footprint) and not known: we learn
them (a softmax over 4 raw weights, starting from equal weights) with the kernel and the noise. A tenth of the
observations are point samples of single cells, which pin the field down. The sparse operator is rebuilt in every
forward pass from the learned values, as a COO tensor: torch's backward through a CSR tensor built from values that
require grad densifies the gradient (README, "Learning L's values").

    python examples/learned_weights.py               # small: 20 000 observations, a few seconds
    python examples/learned_weights.py --size full   # 10⁶ observations; prints time and peak memory
"""

import argparse
import resource
import time

import gpytorch
import torch
from linear_operator.operators import DenseLinearOperator, LowRankRootLinearOperator, SparseLinearOperator

SIZES = {"small": (20, 10, 20_000, 100), "full": (40, 25, 1_000_000, 100)}  # grid width, height, N, Adam steps
PER_ROW = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    args = parser.parse_args()
    width, height, N, steps = SIZES[args.size]
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)

    cells = torch.stack(torch.meshgrid(torch.arange(width), torch.arange(height), indexing="ij"), dim=-1)
    cells = cells.reshape(-1, 2).to(torch.get_default_dtype())
    n = cells.size(0)
    field = torch.sin(1.3 * cells[:, 0]) + torch.cos(1.1 * cells[:, 1])  # varies from cell to cell
    # Each observation covers the 2 x 2 block of cells from (i, j), weighted by the footprint; the block's cells in
    # increasing index order (a coalesced COO tensor): (i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1). A tenth of the
    # rows are point samples of one cell each (weight 1, known): without them, a sharper field seen through a flatter
    # footprint would fit as well
    num_points = N // 10
    corner = torch.randint(width - 1, (N - num_points,)) * height + torch.randint(height - 1, (N - num_points,))
    cols = corner.unsqueeze(-1) + torch.tensor([0, 1, height, height + 1])
    points = torch.randint(n, (num_points,))
    rows = torch.cat([torch.arange(N - num_points).repeat_interleave(PER_ROW), torch.arange(N - num_points, N)])
    indices = torch.stack([rows, torch.cat([cols.reshape(-1), points])])
    true_footprint = torch.tensor([0.4, 0.3, 0.2, 0.1])
    y = torch.cat([field[cols] @ true_footprint, field[points]]) + 0.05 * torch.randn(N)
    train_x = torch.arange(N).unsqueeze(-1).to(y.dtype)

    class FootprintGP(gpytorch.models.ExactGP):
        def __init__(self, train_x, train_y, likelihood):
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
            self.raw_footprint = torch.nn.Parameter(torch.zeros(PER_ROW))  # equal weights to start

        def observations(self):
            """L (N x n), COO: the learned footprint (summing to 1) on each block of cells, then the point samples."""
            footprint = torch.softmax(self.raw_footprint, dim=-1)
            values = torch.cat([footprint.repeat(N - num_points), footprint.new_ones(num_points)])
            # (SparseLinearOperator checks the indices itself)
            return torch.sparse_coo_tensor(indices, values, (N, n), is_coalesced=True, check_invariants=False)

        def forward(self, x):  # x: the training rows
            S = SparseLinearOperator(self.observations())
            R = torch.linalg.cholesky(self.covar_module(cells).to_dense() + 1e-4 * torch.eye(n))
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), LowRankRootLinearOperator(S @ DenseLinearOperator(R))
            )

    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = FootprintGP(train_x, y, likelihood)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    started = time.perf_counter()
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = -mll(model(train_x), y)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        learned = torch.softmax(model.raw_footprint, dim=-1)
    error, start_error = (learned - true_footprint).abs().max(), (0.25 - true_footprint).abs().max()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # (KiB on Linux)
    print(
        f"loss {loss.item():.3f}, noise {likelihood.noise.item():.4f} (true 0.0025); footprint "
        f"{[round(w, 3) for w in learned.tolist()]} (true {true_footprint.tolist()}); {steps} steps in "
        f"{seconds:.1f} s, peak memory {peak:.2f} GiB"
    )
    if not error < start_error / 2:
        raise SystemExit(f"the learned footprint is {error:.3f} from the true one (equal weights: {start_error:.3f})")


if __name__ == "__main__":
    main()
