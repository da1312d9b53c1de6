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


def data_rows(data: SparseData, stop: int) -> SparseData:
    """The first ``stop`` rows of the data (the training rows of the prediction cases)."""
    return SparseData(stop, data.n, data.Z, data.cols[:stop], data.vals[:stop], data.y[:stop], data.noise[:stop])


def sparse_class() -> tuple[type, str]:
    """The linear_operator's own SparseLinearOperator (the fork) if it has one, else the thread's class (stock)."""
    try:
        from linear_operator.operators import SparseLinearOperator
    except ImportError:
        from linear_operator_fork.verify.thread_script import SparseLinearOperator

        return SparseLinearOperator, THREAD_SPARSE_CLASS
    return SparseLinearOperator, FORK_SPARSE_CLASS
