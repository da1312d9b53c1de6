#!/usr/bin/env python3
"""The microbenchmarks that pull requests' messages quote: one operation of SparseLinearOperator, timed alone.

    python scripts/microbench.py NAME [--site DIR] [--repeats R]

NAME is one of:
  products  one operator, kept and reused, multiplying by L and L^T (one column each): pull request 6
            (sparse-operator-structures)
  gradient  the gradient w.r.t. the values (L's values require grad) of a product, as _bilinear_derivative with
            left (1e6 x 8) and right (500 x 8) vectors: what build 29's pull request 8 (torch.sparse.sampled_addmm)
            bought alone, before it left the series (it bought nothing on the benchmark's case h)
  transpose the transpose of an operator (rebuilt, as in every training step) multiplying one column: pull request 9
            (sparse-transposes)
  learned   the backward pass of L^T v for L whose values require grad (a learned L), one column: pull request 9
            (sparse-transposes; its peak memory, printed at the end)
  gram      the Gram matrix L^T diag(w) L with its backward (w requires grad): pull request 10 (sparse-gram-utils)
  rebuilt   an operator rebuilt from another one's representation (as linear_operator does in every training step)
            multiplying by L and L^T, one column each: pull request 12
            (sparse-shared-structures)
  longrows  the Gram matrix of 1e6 rows of 4 entries and 10 rows of 500 entries: pull request 13 (sparse-gram-long-rows)
  checks    constructing an operator (torch's or our own index checks, O(nnz)): pull request 14 (sparse-index-checks)
  sortkeys  torch alone: a stable sort of 4e6 keys below 500 as int64, int32 and int16: pull request 15
            (sparse-int32-indices)
  csrindex  torch alone: CSR products of L and of L^T (as a CSR tensor) with int64 and int32 indices, by 1, 16 and
            500 columns: pull request 15 (sparse-int32-indices)
  csrvalues torch alone: the backward pass through a COO and a CSR tensor built from values that require grad
            (t.values().sum()), what the README's advice to learn L's values as COO rests on

L has the benchmark's size: 1e6 x 500, 4 entries per row, float32 (COO, and CSR for products, transpose, learned,
rebuilt, checks and csrvalues), at columns drawn at random (the benchmark's own data, linear_operator_fork.verify.data,
puts a row's entries in neighbouring columns). One thread.
Each prints the median and the range of R timed repetitions after one untimed warm-up call, per layout (per index
dtype for sortkeys and csrindex; sortkeys, csrindex and csrvalues measure torch's own operations: they import no
linear_operator).

--site DIR puts a linear_operator installed with pip --target first on sys.path, e.g. one prefix of the series as
`nox -s benchmark -- --through K` installs them: .nox/benchmark/site-through-K (prefix K: pull requests 1 to K).
Compare prefix K-1 with prefix K for pull request K.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable

ROWS, COLS, PER_ROW = 10**6, 500, 4
TORCH_ONLY = ("sortkeys", "csrindex", "csrvalues")  # torch's own operations: no linear_operator is imported


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "name",
        choices=(
            "products", "gradient", "transpose", "learned", "gram", "rebuilt", "longrows", "checks", "sortkeys",
            "csrindex", "csrvalues",
        ),
    )  # fmt: skip
    parser.add_argument("--site", help="a folder with linear_operator installed (pip --target), put first on sys.path")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (default 5)")
    parser.add_argument(
        "--layout", choices=("coo", "csr"), help="only this layout (the peak printed at the end is then its own)"
    )
    arguments = parser.parse_args()
    if arguments.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {arguments.repeats}")
    return arguments


def benchmark_matrix(torch, generator):
    """ROWS x COLS, PER_ROW distinct columns in every row (evenly spaced from a random start), coalesced COO."""
    first = torch.randint(COLS, (ROWS, 1), generator=generator)
    step = torch.randint(1, COLS // PER_ROW, (ROWS, 1), generator=generator)
    cols = (first + torch.arange(PER_ROW) * step) % COLS
    rows = torch.arange(ROWS).repeat_interleave(PER_ROW)
    values = torch.rand(ROWS * PER_ROW, generator=generator) + 0.5
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols.reshape(-1)]), values, (ROWS, COLS), check_invariants=False
    ).coalesce()


def long_rows_matrix(torch, generator):
    """ROWS rows of PER_ROW entries and 10 rows of COLS entries (every column), at random rows."""
    num_long = 10
    short = (torch.randint(COLS, (ROWS, 1), generator=generator) + torch.arange(PER_ROW)) % COLS
    rows = torch.cat(
        [torch.arange(ROWS).repeat_interleave(PER_ROW), torch.arange(ROWS, ROWS + num_long).repeat_interleave(COLS)]
    )
    rows = torch.randperm(ROWS + num_long, generator=generator)[rows]
    cols = torch.cat([short.reshape(-1), torch.arange(COLS).repeat(num_long)])
    values = torch.randn(rows.numel(), generator=generator)
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (ROWS + num_long, COLS), check_invariants=False
    ).coalesce()


def with_values(torch, tensor, values):
    """``tensor`` (COO or CSR) with ``values`` (which require grad): a leaf of the autograd graph."""
    if tensor.layout == torch.sparse_coo:
        return torch.sparse_coo_tensor(tensor.indices(), values, tensor.shape, is_coalesced=True)
    return torch.sparse_csr_tensor(tensor.crow_indices(), tensor.col_indices(), values, tensor.shape)


def with_index_dtype(torch, tensor, dtype):
    """A CSR ``tensor`` with its row pointers and column indices in ``dtype`` (int32 or int64)."""
    return torch.sparse_csr_tensor(
        tensor.crow_indices().to(dtype), tensor.col_indices().to(dtype), tensor.values(), tensor.shape
    )


def timed(function: Callable[[], object], repeats: int) -> list[float]:
    function()  # warm-up (and first-call structures)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    arguments = parse_arguments()
    if arguments.site:
        sys.path.insert(0, arguments.site)
    import torch

    if arguments.name not in TORCH_ONLY:
        import linear_operator
        from linear_operator.operators import SparseLinearOperator

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Sparse CS[RC] tensor support is in beta state")
    generator = torch.Generator().manual_seed(0)
    coo = benchmark_matrix(torch, generator)
    runs: dict[str, Callable[[], object]] = {}
    if arguments.name == "products":
        rhs, lhs = torch.randn(COLS, 1, generator=generator), torch.randn(ROWS, 1, generator=generator)
        for layout, tensor in (("coo", coo), ("csr", coo.to_sparse_csr())):
            operator = SparseLinearOperator(tensor)
            runs[layout] = lambda operator=operator: (
                operator._matmul(rhs),
                operator._transpose_nonbatch()._matmul(lhs),
            )
    elif arguments.name == "gradient":
        operator = SparseLinearOperator(coo.clone().requires_grad_(True))
        left, right = torch.randn(ROWS, 8, generator=generator), torch.randn(COLS, 8, generator=generator)
        runs["coo"] = lambda: operator._bilinear_derivative(left, right)
    elif arguments.name == "transpose":
        lhs = torch.randn(ROWS, 1, generator=generator)
        for layout, tensor in (("coo", coo), ("csr", coo.to_sparse_csr())):
            runs[layout] = lambda tensor=tensor: SparseLinearOperator(tensor).mT._matmul(lhs)
    elif arguments.name == "learned":
        lhs = torch.randn(ROWS, 1, generator=generator)
        for layout, tensor in (("coo", coo), ("csr", coo.to_sparse_csr())):
            values = tensor.values().clone().requires_grad_(True)

            def learned(tensor=tensor, values=values) -> None:
                operator = SparseLinearOperator(with_values(torch, tensor, values))
                (operator.mT @ lhs).sum().backward()

            runs[layout] = learned
    elif arguments.name == "gram":
        operator = SparseLinearOperator(coo)
        weights = (torch.rand(ROWS, generator=generator) + 0.1).requires_grad_(True)
        probe = torch.randn(COLS, COLS, generator=generator)
        runs["coo"] = lambda: (operator._gram(weights) * probe).sum().backward()
    elif arguments.name == "rebuilt":
        rhs, lhs = torch.randn(COLS, 1, generator=generator), torch.randn(ROWS, 1, generator=generator)
        for layout, tensor in (("coo", coo), ("csr", coo.to_sparse_csr())):
            base = SparseLinearOperator(tensor)

            def rebuilt(base=base) -> None:
                operator = base.representation_tree()(*base.representation())
                operator._matmul(rhs)
                operator._transpose_nonbatch()._matmul(lhs)

            runs[layout] = rebuilt
    elif arguments.name == "longrows":
        tensor = long_rows_matrix(torch, generator)
        weights = torch.rand(tensor.size(0), generator=generator) + 0.5
        runs["coo"] = lambda: SparseLinearOperator(tensor)._gram(weights)
    elif arguments.name == "sortkeys":
        keys = torch.randint(COLS, (ROWS * PER_ROW,), generator=generator)
        for dtype in (torch.int64, torch.int32, torch.int16):
            narrowed = keys.to(dtype)
            runs[str(dtype).removeprefix("torch.")] = lambda narrowed=narrowed: torch.sort(narrowed, stable=True)
    elif arguments.name == "csrindex":
        tensors = {"L": coo.to_sparse_csr(), "L^T": coo.t().coalesce().to_sparse_csr()}
        for width in (1, 16, 500):
            for name, tensor in tensors.items():
                rhs = torch.randn(tensor.size(1), width, generator=generator)
                for dtype in (torch.int64, torch.int32):
                    indexed = with_index_dtype(torch, tensor, dtype)
                    label = f"{name} x {width} columns, {str(dtype).removeprefix('torch.')}"
                    runs[label] = lambda indexed=indexed, rhs=rhs: indexed @ rhs
    elif arguments.name == "csrvalues":
        for layout, tensor in (("coo", coo), ("csr", coo.to_sparse_csr())):
            values = tensor.values().clone().requires_grad_(True)
            runs[layout] = lambda tensor=tensor, values=values: (
                with_values(torch, tensor, values).values().sum().backward()
            )
    else:
        for layout, tensor in (("coo", coo), ("csr", coo.to_sparse_csr())):
            runs[layout] = lambda tensor=tensor: SparseLinearOperator(tensor)
    if arguments.layout and arguments.layout not in runs:
        sys.exit(
            f"microbench.py: {arguments.name} measures {', '.join(runs)} only; "
            f"--layout {arguments.layout} has nothing to run"
        )
    if arguments.name in TORCH_ONLY:
        print(f"{arguments.name}: torch {torch.__version__} alone, one thread")
    else:
        version, where = linear_operator.__version__, linear_operator.__file__
        print(f"{arguments.name}: linear_operator {version} ({where}), one thread")
    for layout, function in runs.items():
        if arguments.layout and layout != arguments.layout:
            continue
        times = timed(function, arguments.repeats)
        print(
            f"  {layout}: median {statistics.median(times) * 1e3:.1f} ms "
            f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}, {len(times)} runs)",
            flush=True,
        )
    # (ru_maxrss: KiB on Linux) the peak of the whole process, data included
    print(f"  peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
