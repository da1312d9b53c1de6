"""The data of the sparse cases: seeded, generated on the CPU in float64, then cast and moved (identical for every
variant and device), and the sparse class each variant uses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from linear_operator_fork.verify.catalogue import (
    FORK_SPARSE_CLASS,
    LAYOUTS,
    NNZ_PER_ROW,
    SEED,
    THREAD_SPARSE_CLASS,
)


@dataclass
class SparseData:
    N: int
    n: int
    Z: Any  # (n, 2) inducing locations
    cols: Any  # (N - m, k) column of each non-zero of the short rows, sorted within the row
    vals: Any  # (N - m, k) their values (positive weights summing to 1 per row)
    y: Any  # (N,) observations
    noise: Any  # (N,) fixed heteroscedastic noise variances (case b)
    long_vals: Any = None  # (m, n) the values of the m long rows (case i), the last rows of L, over every column


def make_data(N: int, n: int, dtype: Any, device: Any, seed: int = SEED, long_rows: int = 0) -> SparseData:
    """Observations of averages over ``NNZ_PER_ROW`` neighbouring inducing points (in index order); with
    ``long_rows`` (case i), the last ``long_rows`` of the ``N`` rows are averages over all ``n`` points."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    short = N - long_rows
    Z = torch.rand(n, 2, generator=generator, dtype=f64) * math.sqrt(n)  # about one point per unit area
    start = torch.randint(0, n, (short,), generator=generator)
    cols = (start.unsqueeze(-1) + torch.arange(NNZ_PER_ROW)) % n
    vals = torch.rand(short, NNZ_PER_ROW, generator=generator, dtype=f64) + 0.1
    vals = vals / vals.sum(-1, keepdim=True)
    cols, order = cols.sort(dim=-1)
    vals = vals.gather(-1, order)
    latent = 1 + 2 * torch.sin(Z[:, 0]) + 2 * torch.cos(0.7 * Z[:, 1])
    mean = (vals * latent[cols]).sum(-1)
    long_vals = None
    if long_rows:
        long_vals = torch.rand(long_rows, n, generator=generator, dtype=f64) + 0.1
        long_vals = long_vals / long_vals.sum(-1, keepdim=True)
        mean = torch.cat([mean, long_vals @ latent])
    y = mean + 0.3 * torch.randn(N, generator=generator, dtype=f64)
    noise = 0.1 + 0.2 * torch.rand(N, generator=generator, dtype=f64)

    def cast(t: Any) -> Any:
        return None if t is None else t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    return SparseData(N, n, cast(Z), cast(cols), cast(vals), cast(y), cast(noise), cast(long_vals))


def sparse_matrix(data: SparseData, layout: str) -> Any:
    """``L`` (N × n) as a torch sparse tensor in ``layout`` (coo: coalesced; csr: sorted columns)."""
    import torch

    short, k = data.cols.shape
    device = data.cols.device
    row_lengths = torch.full((short,), k, device=device)
    cols, vals = data.cols.reshape(-1), data.vals.reshape(-1)
    if data.long_vals is not None:
        num_long = data.long_vals.size(0)
        row_lengths = torch.cat([row_lengths, torch.full((num_long,), data.n, device=device)])
        cols = torch.cat([cols, torch.arange(data.n, device=device).repeat(num_long)])
        vals = torch.cat([vals, data.long_vals.reshape(-1)])
    if layout == "coo":
        rows = torch.arange(data.N, device=device).repeat_interleave(row_lengths)
        tensor = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (data.N, data.n), check_invariants=False)
        return tensor.coalesce()
    if layout == "csr":
        crow = torch.cat([row_lengths.new_zeros(1), row_lengths.cumsum(0)])
        return torch.sparse_csr_tensor(crow, cols, vals, (data.N, data.n), check_invariants=False)
    raise ValueError(f"unknown layout {layout!r}: expected one of {LAYOUTS}")


def data_rows(data: SparseData, stop: int) -> SparseData:
    """The first ``stop`` rows of the data (the training rows of the prediction cases, which have no long rows)."""
    if data.long_vals is not None:
        raise ValueError("data_rows: the data has long rows (case i); the prediction cases have none")
    return SparseData(stop, data.n, data.Z, data.cols[:stop], data.vals[:stop], data.y[:stop], data.noise[:stop])


def sparse_class() -> tuple[type, str]:
    """The linear_operator's own SparseLinearOperator (the fork) if it has one, else the thread's class (stock)."""
    try:
        from linear_operator.operators import SparseLinearOperator
    except ImportError:
        from linear_operator_fork.verify.thread_script import SparseLinearOperator

        return SparseLinearOperator, THREAD_SPARSE_CLASS
    return SparseLinearOperator, FORK_SPARSE_CLASS
