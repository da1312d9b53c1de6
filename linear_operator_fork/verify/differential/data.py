"""The inputs of a case, from its seed: ``L`` (pattern and values), ``Z``, ``R``, ``y``, ``d``, right-hand sides, index.

Everything is drawn from one ``torch.Generator`` seeded with ``case.seed``, in float64, in a fixed order, and cast to
the case's dtype on use (:meth:`Data.cast`, always a copy: scenarios edit tensors in place). The reference reads the
cast values back in float64 (:meth:`Data.exact`), so that both variants and the reference see identical inputs and
the rounding of the inputs is not counted as an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from linear_operator_fork.verify.differential.case import MANY_COLUMNS, MANY_PRODUCTS, Case, uses_root

# gpytorch's GreaterThan(1e-4) on the noise: the bound is a float32 buffer, cast with the module
NOISE_LOWER_BOUND = 9.999999747378752e-05


@dataclass(frozen=True)
class Conditioning:
    lengthscale: float  # RBF lengthscale, in units of the points' spread (about one point per unit area)
    outputscale: float
    jitter: float  # added to K before its Cholesky factor R is taken
    noise: float  # level of the noise variances
    duplicates: bool  # about half the points are near-duplicates of their predecessor


CONDITIONING = {
    "benign": Conditioning(lengthscale=0.15, outputscale=1.0, jitter=1e-4, noise=0.2, duplicates=False),
    "moderate": Conditioning(lengthscale=0.5, outputscale=2.0, jitter=1e-5, noise=0.03, duplicates=False),
    # K nearly rank one (lengthscale 3 × the spread) with near-duplicate points, small jitter and small noise
    "near_singular": Conditioning(lengthscale=3.0, outputscale=5.0, jitter=1e-6, noise=1e-3, duplicates=True),
    # predictions (case.PREDICT_CONDS): a small noise; a smooth kernel (lengthscale about 4 point spacings at n=160)
    # and a rough one (about half a spacing: K close to full rank)
    "smooth": Conditioning(lengthscale=0.3, outputscale=1.0, jitter=1e-4, noise=1e-2, duplicates=False),
    "rough": Conditioning(lengthscale=0.04, outputscale=1.0, jitter=1e-4, noise=1e-2, duplicates=False),
}


def softplus_inverse(value: float) -> float:
    return math.log(math.expm1(value))


@dataclass
class Data:
    case: Case
    dtype: Any  # torch dtype of the case
    batch_shape: tuple[int, ...]
    indices: Any  # (len(batch_shape) + 2, E) long: the entries of L, unique, sorted by (batch, row, column)
    values: Any  # (E,)
    dup_indices: Any  # the same matrix with duplicate entries (values split in two), shuffled: coo_uncoalesced
    dup_values: Any
    Z: Any  # (*batch, n, 2) kernel inputs
    R: Any  # (*batch, n, r) = cholesky(K + jitter I)[..., :r], computed in float64
    raw_lengthscale: float
    raw_outputscale: float
    jitter: float
    mean: float  # constant mean
    y: Any  # (*batch, N) observations
    d: Any  # (*batch, N) noise variances
    raw_noise: float  # GaussianLikelihood (and the learned part of FixedNoiseGaussianLikelihood)
    rhs: Any  # (*batch, N, k) for solve
    X: Any  # (n, k) for S @ X
    Y: Any  # (*batch, N, k) for S.mT @ Y
    yvec: Any  # (N,) for S.mT @ y
    index: tuple | None  # for index cases, wrong masks and row selections: ints, slices, long and bool tensors
    oob: bool  # L has out-of-range indices (bad/oob_index)
    X_many: Any = None  # (MANY_PRODUCTS, n, MANY_COLUMNS) for the "_many" products of inplace cases
    Y_many: Any = None  # (MANY_PRODUCTS, N, MANY_COLUMNS)

    # -- casts ------------------------------------------------------------------------------------------------------

    def cast(self, tensor: Any, dtype: Any = None) -> Any:
        """``tensor`` in the case's dtype (or ``dtype``), as a new tensor."""
        return tensor.detach().to(dtype or self.dtype, copy=True)

    def exact(self, tensor: Any, dtype: Any = None) -> Any:
        """The float64 value of the cast ``tensor``: what the variants get, exactly."""
        import torch

        return tensor.detach().to(dtype or self.dtype).to(torch.float64, copy=True)

    def exact_scalar(self, value: float) -> Any:
        import torch

        return torch.tensor(value, dtype=self.dtype).to(torch.float64)

    # -- L ----------------------------------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.batch_shape, self.case.N, self.case.n)

    def dense(self, layout: str | None = None) -> Any:
        """``L`` as a dense float64 tensor (duplicate entries summed, each rounded as the variants get it)."""
        import torch

        layout = layout or self.case.layout
        indices, values = (self.dup_indices, self.dup_values) if layout == "coo_uncoalesced" else self.entries()
        dense = torch.zeros(self.shape, dtype=torch.float64)
        return dense.index_put_(tuple(indices), self.exact(values), accumulate=True)

    def entries(self) -> tuple[Any, Any]:
        return self.indices, self.values

    def sparse(self, layout: str | None = None, share: bool = False) -> tuple[Any, Any]:
        """``(L, values)``: ``L`` a torch sparse tensor in ``layout`` built from ``values`` (the case's dtype).

        ``share``: ``L`` holds ``values`` itself (a coalesced COO tensor is then flagged ``is_coalesced=True``
        rather than coalesced, which would copy), so that editing ``values`` in place edits ``L``. Out-of-range
        indices (``oob``) are passed with ``check_invariants=False``, as a user who builds them would.
        """
        import torch

        layout = layout or self.case.layout
        indices, values = (self.dup_indices, self.dup_values) if layout == "coo_uncoalesced" else self.entries()
        values = self.cast(values)
        if layout in ("coo", "coo_uncoalesced"):
            indices = torch.cat([indices[:-1], self.out_of_range(indices[-1:])])
            if layout == "coo" and (share or self.oob):
                tensor = torch.sparse_coo_tensor(indices, values, self.shape, is_coalesced=True, check_invariants=False)
            else:
                tensor = torch.sparse_coo_tensor(indices, values, self.shape, check_invariants=False)
                if layout == "coo":
                    tensor, values = tensor.coalesce(), None  # coalesce() copies: the values are not shared
            return tensor, values
        compressed, plain, values = self.compressed(layout, values)
        build = torch.sparse_csr_tensor if layout == "csr" else torch.sparse_csc_tensor
        return build(compressed, plain, values, self.shape, check_invariants=False), values

    def out_of_range(self, index: Any) -> Any:
        """With ``oob``, ``index`` 1-based: the entry at the last position lies out of range."""
        return index + 1 if self.oob else index

    def compressed(self, layout: str, values: Any) -> tuple[Any, Any, Any]:
        """Compressed indices, plain indices and values (batched: one row per batch) of CSR or CSC."""
        import torch

        batch = len(self.batch_shape)
        nb = self.batch_shape[0] if batch else 1
        rows, cols = self.indices[batch], self.indices[batch + 1]
        flat_batch = self.indices[0] if batch else torch.zeros_like(rows)
        N, n = self.case.N, self.case.n
        # CSR stores the entries by (batch, row, column), CSC by (batch, column, row)
        compressed_index, plain_index, size, plain_size = (rows, cols, N, n) if layout == "csr" else (cols, rows, n, N)
        order = torch.argsort((flat_batch * size + compressed_index) * max(plain_size, 1) + plain_index)
        counts = torch.bincount(flat_batch * size + compressed_index, minlength=nb * size)
        compressed = torch.nn.functional.pad(counts.view(nb, size).cumsum(-1), (1, 0))
        plain = self.out_of_range(plain_index)[order]
        values = values[order]
        if batch:
            return compressed, plain.view(nb, -1), values.view(nb, -1)
        return compressed[0], plain, values

    def scipy_matrix(self) -> tuple[Any, Any]:
        """``(A, L)``: a scipy.sparse matrix in the case's layout and ``L`` built from its arrays with
        ``torch.from_numpy``, which shares their memory (not batched)."""
        import numpy as np
        import scipy.sparse
        import torch

        layout = self.case.layout
        shape = (self.case.N, self.case.n)
        if layout in ("coo", "coo_uncoalesced"):
            indices, values = (self.dup_indices, self.dup_values) if layout == "coo_uncoalesced" else self.entries()
            data = self.cast(values).numpy()
            A = scipy.sparse.coo_matrix((data, (indices[0].numpy(), indices[1].numpy())), shape=shape)
            coords = torch.from_numpy(np.stack([A.row, A.col]).astype(np.int64))
            L = torch.sparse_coo_tensor(coords, torch.from_numpy(A.data), shape, is_coalesced=layout == "coo")
            return A, L
        compressed, plain, values = self.compressed(layout, self.cast(self.values))
        kind = scipy.sparse.csr_matrix if layout == "csr" else scipy.sparse.csc_matrix
        A = kind((values.numpy(), plain.numpy().astype(np.int32), compressed.numpy().astype(np.int32)), shape=shape)
        build = torch.sparse_csr_tensor if layout == "csr" else torch.sparse_csc_tensor
        arrays = [torch.from_numpy(array) for array in (A.indptr, A.indices, A.data)]
        return A, build(*arrays, shape)


def weights(shape: tuple[int, ...]) -> Any:
    """Fixed float64 weights of a scalar loss ``(out * W).sum()``: a deterministic pattern of mixed signs."""
    import torch

    count = math.prod(shape)
    return torch.cos(torch.arange(count, dtype=torch.float64) * 0.7 + 0.3).reshape(shape)


def rbf(Z: Any, lengthscale: Any, outputscale: Any) -> Any:
    """``outputscale · exp(-|z - z'|² / 2ℓ²)``: gpytorch's ScaleKernel(RBFKernel), exact differences."""
    import torch

    scaled = Z / lengthscale
    sq_dist = (scaled.unsqueeze(-2) - scaled.unsqueeze(-3)).pow(2).sum(-1)
    return outputscale * torch.exp(-0.5 * sq_dist)


def make(case: Case) -> Data:
    """The case's inputs (deterministic in ``case.seed``)."""
    import torch

    g = torch.Generator().manual_seed(case.seed)
    f64 = torch.float64
    dtype = getattr(torch, case.dtype) if case.dtype != "-" else f64
    batch_shape = (case.batch,) if case.batch else ()
    nb, N, n = max(case.batch, 1), case.N, case.n

    def uniform(*shape: int) -> Any:
        return torch.rand(*shape, generator=g, dtype=f64)

    def normal(*shape: int) -> Any:
        return torch.randn(*shape, generator=g, dtype=f64)

    def integer(low: int, high: int) -> int:
        """Uniform in [low, high); ``low`` when the range is empty."""
        return low if high <= low else int(torch.randint(low, high, (1,), generator=g))

    # L: rows of 0..nnz distinct columns (exactly nnz for batched CSR/CSC: torch needs equal counts per batch)
    oob = case.form == "oob_index"
    fixed_count = case.batch and case.layout in ("csr", "csc")
    entries = []
    for b in range(nb):
        for i in range(N):
            count = case.nnz if fixed_count else integer(0, case.nnz + 1)
            cols = torch.randperm(n, generator=g)[:count].sort().values.tolist()
            if oob and b == nb - 1 and i == N - 1 and n - 1 not in cols:
                cols = sorted(cols[1:] + [n - 1])  # an entry at (N-1, n-1): out of range once 1-based
            entries += [(b, i, j) for j in cols]
    indices = torch.tensor(entries, dtype=torch.long).reshape(-1, 3).T
    if not case.batch:
        indices = indices[1:]
    magnitudes = 0.25 + 0.75 * uniform(indices.size(1))
    signs = torch.where(uniform(indices.size(1)) < 0.3, -1.0, 1.0).to(f64)
    values = signs * magnitudes
    # coo_uncoalesced: about half the entries split in two parts, in a shuffled order
    split = uniform(values.numel()) < 0.5
    part = values * uniform(values.numel())
    dup_indices = torch.cat([indices, indices[:, split]], dim=1)
    dup_values = torch.cat([torch.where(split, part, values), (values - part)[split]])
    order = torch.randperm(dup_values.numel(), generator=g)
    dup_indices, dup_values = dup_indices[:, order], dup_values[order]

    # The kernel: n points in the plane, about one per unit area; R = cholesky(K + jitter I)[..., :r] in float64
    conditioning = CONDITIONING.get(case.cond, CONDITIONING["benign"])
    spread = math.sqrt(max(n, 1)) + 1
    Z = uniform(nb, n, 2) * spread
    if conditioning.duplicates and n > 1:
        near = uniform(nb, n) < 0.5
        near[:, 0] = False
        shifted = torch.roll(Z, 1, dims=1) + 1e-3 * normal(nb, n, 2)
        Z = torch.where(near.unsqueeze(-1), shifted, Z)
    lengthscale = conditioning.lengthscale * spread
    K = rbf(Z, lengthscale, conditioning.outputscale) + conditioning.jitter * torch.eye(n, dtype=f64)
    r = case.r if uses_root(case.op, case.form) else n
    R = torch.linalg.cholesky(K)[..., :r]
    if not case.batch:
        Z, R = Z[0], R[0]

    mean = 0.5 * float(normal(1))
    y = normal(nb, N)
    d = conditioning.noise * (1 + uniform(nb, N))
    k = integer(1, 4)
    rhs, X, Y, yvec = normal(nb, N, k), normal(n, k), normal(nb, N, k), normal(N)
    if not case.batch:
        y, d, rhs, Y = y[0], d[0], rhs[0], Y[0]
    index = index_expression(case, integer, uniform)
    X_many = Y_many = None
    if case.then.endswith("_many"):  # (drawn last: the other inputs are those of the same seed without them)
        X_many, Y_many = normal(MANY_PRODUCTS, n, MANY_COLUMNS), normal(MANY_PRODUCTS, N, MANY_COLUMNS)
    return Data(
        case=case,
        dtype=dtype,
        batch_shape=batch_shape,
        indices=indices,
        values=values,
        dup_indices=dup_indices,
        dup_values=dup_values,
        Z=Z,
        R=R,
        raw_lengthscale=softplus_inverse(lengthscale),
        raw_outputscale=softplus_inverse(conditioning.outputscale),
        jitter=conditioning.jitter,
        mean=mean,
        y=y,
        d=d,
        raw_noise=softplus_inverse(conditioning.noise - NOISE_LOWER_BOUND),
        rhs=rhs,
        X=X,
        Y=Y,
        yvec=yvec,
        index=index,
        oob=oob,
        X_many=X_many,
        Y_many=Y_many,
    )


def index_expression(case: Case, integer: Any, uniform: Any) -> tuple | None:
    """The index of an ``index`` case (or a wrong mask): ints, slices, long and bool tensors, as users write them.

    Values are drawn in range (negative ones too, repeats in tensors); torch's own indexing of the dense tensor says
    whether the expression is valid (e.g. an int into N=0 rows is not).
    """
    import torch

    if case.op not in ("index", "bad", "derived") or (case.op == "bad" and not case.form.startswith("mask_wrong")):
        return None
    N, n = case.N, case.n

    def position(size: int) -> int:
        return integer(-size, size)

    def positions(size: int, count: int) -> Any:
        return torch.tensor([position(size) for _ in range(count if size else 0)], dtype=torch.long)

    def bound(size: int) -> int | None:
        return None if uniform(1) < 0.25 else integer(-size - 2, size + 3)

    def steps() -> slice:
        return slice(bound(N), bound(N), None if uniform(1) < 0.3 else integer(1, 4))

    def mask(size: int) -> Any:
        return uniform(size) < 0.4

    if case.op == "derived":
        return row_selection(case, integer, uniform)
    prefix: tuple = ()
    if case.batch:
        prefix = (slice(None),) if uniform(1) < 0.5 else (position(case.batch),)
    count = integer(0, 7)
    form = case.form
    if form == "int":
        index: tuple = (position(N),)
    elif form == "int_pair":
        index = (position(N), position(n))
    elif form == "slice":
        index = (steps(),)
    elif form == "slice_cols":
        index = (slice(None), slice(bound(n), bound(n), None if uniform(1) < 0.3 else integer(1, 4)))
    elif form == "rows":
        index = (positions(N, count),)
    elif form == "cols":
        index = (slice(None), positions(n, count))
    elif form == "pairs":
        index = (positions(N, count), positions(n, count if N else 0))
    elif form == "rows_2d":
        index = (positions(N, 6).reshape(2, -1),)
    elif form == "mask_rows":
        index = (mask(N),)
    elif form == "mask_cols":
        index = (slice(None), mask(n))
    elif form == "mask_wrong_rows":
        index = (mask(N + (1 if N == 0 or uniform(1) < 0.5 else -1)),)
    else:  # mask_wrong_cols
        index = (slice(None), mask(n + (1 if n == 0 or uniform(1) < 0.5 else -1)))
    return prefix + index


def row_selection(case: Case, integer: Any, uniform: Any) -> tuple:
    """The rows of a ``derived`` case: a slice, an index tensor of consecutive rows (``torch.arange``), an index tensor
    of any rows (negative ones and repeats too), a boolean mask."""
    import torch

    N = case.N
    if case.selection == "slice":
        start = None if uniform(1) < 0.25 else integer(-N - 2, N + 3)
        stop = None if uniform(1) < 0.25 else integer(-N - 2, N + 3)
        return (slice(start, stop, None if uniform(1) < 0.5 else integer(1, 4)),)
    if case.selection == "range":
        start = integer(0, N + 1)
        return (torch.arange(start, integer(start, N + 1)),)
    if case.selection == "near_range":  # rows start..stop-1 with the second and third swapped (reversed if N < 4)
        if N < 4:
            return (torch.arange(N).flip(0),)
        start = integer(0, N - 3)
        rows = torch.arange(start, integer(start + 4, N + 1))
        return (rows[[0, 2, 1, *range(3, rows.numel())]],)
    if case.selection == "rows":
        count = integer(0, 9) if N else 0
        return (torch.tensor([integer(-N, N) for _ in range(count)], dtype=torch.long),)
    return (uniform(N) < 0.6,)


def describe_index(index: tuple | None) -> str:
    """The index as Python source (for messages and the replay output)."""
    if index is None:
        return ""

    def one(item: Any) -> str:
        if isinstance(item, slice):
            parts = ["" if v is None else str(v) for v in (item.start, item.stop, item.step)]
            return ":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")
        if isinstance(item, int):
            return str(item)
        return f"tensor({item.tolist()})"

    return "[" + ", ".join(one(item) for item in index) + "]"
