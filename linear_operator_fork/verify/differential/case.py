"""A differential case: plain data with a canonical key that fully determines it (the data come from its seed).

    op=solve,form=operator,N=12,n=5,r=3,nnz=2,batch=0,layout=csr,dtype=float32,root=plain,noise=gaussian,cond=benign,seed=7

Fields an operation does not use hold ``-`` (text) or 0 (numbers), so that one case has exactly one key. This module
needs only the standard library: the report reads keys where neither torch nor hypothesis is installed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

NONE = "-"  # a text field the operation does not use

EDITS = ("values", "tensor", "scipy")  # values.mul_(2); L.mul_(2); A.data *= 2 on the scipy matrix
# Called before and after the edit. The "_many" ones multiply MANY_PRODUCTS right-hand sides of MANY_COLUMNS columns
# each time: more columns in all than any switch-over point of the operator (a CSC operator sorts its entries into
# CSR order after 16 columns), so that the edit comes after the operator has changed how it multiplies.
THEN = ("matmul", "mT_matmul", "inv_quad_logdet", "matmul_many", "mT_matmul_many")
MANY_PRODUCTS, MANY_COLUMNS = 3, 8
# reuse: one operator, several calls, and what its results depend on changes between them (the noise, the weights of
# a Gram matrix, the values): the state an operator keeps between calls must follow. NOISE_STEPS scale the noise.
REUSE = ("noise", "noise_grad_root", "noise_grad_noise", "weights", "values", "sts_values")
NOISE_STEPS = (1.0, 3.0, 1.0)
# The values of L at the calls of the reuse cases that edit them: the second call repeats the first, the values are
# doubled before the third and halved (exactly back) before the fourth
VALUE_STEPS = (1.0, 1.0, 2.0, 1.0)
# derived: an operator made from S by selecting rows, then used: a slice, an index tensor of consecutive rows (a
# view of the rows), consecutive rows but two neighbours swapped (nearly a range: a test for consecutive rows must
# look at all of them), an index tensor of any rows, a boolean mask
SELECTIONS = ("slice", "range", "near_range", "rows", "mask")
DERIVED_THEN = ("matmul", "mT_matmul", "inv_quad_logdet")

# Operation -> its forms (what exactly is called; see scenarios.py)
OPS: dict[str, tuple[str, ...]] = {
    # covariance.inv_quad_logdet with backward; MultivariateNormal.log_prob; ExactMarginalLogLikelihood
    "inv_quad_logdet": ("operator", "log_prob", "mll"),
    "solve": ("operator",),  # covariance.solve(rhs), rhs N × k
    # (S @ R).to_dense(); MatmulLinearOperator(Uᵀ, U); MatmulLinearOperator(Uᵀ, D @ U); S.mT @ S; the covariance
    "to_dense": ("product", "gram", "gram_diag", "sts", "covar"),
    # S[index], against torch's indexing of the dense tensor
    "index": ("int", "int_pair", "slice", "slice_cols", "rows", "cols", "pairs", "rows_2d", "mask_rows", "mask_cols"),
    # S.mT @ Y; S.mT @ y; S.mT.mT @ X; S.mT.to_dense(); Yᵀ @ S
    "transpose": ("mT_matmul", "mT_matvec", "mT_mT_matmul", "mT_to_dense", "rmatmul"),
    # edit "+" operation: build L, call, edit the wrapped values in place, call again with the same operator
    "inplace": tuple(f"{edit}+{then}" for edit in EDITS for then in THEN),
    "bad": ("oob_index", "mask_wrong_rows", "mask_wrong_cols", "dtype_mismatch", "csc_leaf_grad", "hessian_noise"),
    # see REUSE: calls with the noise d, 3 d, d (of inv_quad_logdet; with gradients w.r.t. the root, or the root and
    # the noise), the weights d, 3 d, d (of a Gram matrix (S R)^T diag(w) (S R)), the values v, 2 v, v (edited in
    # place between calls of inv_quad_logdet or (S^T S).to_dense())
    "reuse": REUSE,
    # selection "+" operation: S[rows] @ X; S[rows].mT @ Y[rows]; inv_quad_logdet of the rows' covariance
    "derived": tuple(f"{kind}+{then}" for kind in SELECTIONS for then in DERIVED_THEN),
    # an ExactGP whose forward returns LowRankRootLinearOperator(S[rows] @ R), trained rows first, the last
    # predict_rows(N) rows new: the latent mean and variance of the new rows, in gpytorch's default mode or with
    # gpytorch.settings.fast_pred_var()
    "predict": ("default", "fast_pred_var"),
}
# Used by the tests of the runner only: never generated
TEST_OPS: dict[str, tuple[str, ...]] = {"selftest": ("ok", "abort", "sleep", "raise")}
ALL_OPS = {**OPS, **TEST_OPS}

LAYOUTS = ("coo", "coo_uncoalesced", "csr", "csc")
# The layouts whose tensor the operator holds itself, so that in-place edits of it are seen. (The fork coalesces an
# uncoalesced COO tensor into a copy on construction, as documented: torch has no public access to the values of an
# uncoalesced tensor, and coalescing it again at every use would cost a sort each time.)
INPLACE_LAYOUTS = ("coo", "csr", "csc")
DTYPES = ("float32", "float64")
ROOTS = ("plain", "dense", "kernel_root", "root_operator")
NOISES = ("gaussian", "fixed", "fixed_learned", "diag_grad")
CONDS = ("benign", "moderate", "near_singular")
BATCHES = (0, 2)  # 0: no batch dimension; 2: batch shape (2,)
# Predictions: a small noise and many rows per inducing point, so that the posterior variance is small against the
# prior's (where gpytorch's "prior minus explained" variance cancels), with a kernel that is smooth (nearly low rank:
# a Lanczos root of rank 100 is exact enough) or rough (close to full rank, r up to PREDICT_MAX_n > 100)
PREDICT_CONDS = ("smooth", "rough")
PREDICT_ROOTS = ("plain", "dense")
PREDICT_NOISES = ("gaussian", "fixed", "fixed_learned")  # through a likelihood, as gpytorch predicts
PREDICT_MAX_N, PREDICT_MAX_n = 10_000, 160

MAX_N, MAX_n, MAX_NNZ = 40, 10, 4
HESSIAN_MAX_N, HESSIAN_MAX_n = 8, 4  # autograd.functional.hessian: one backward per point

# Expected outcome of the bad-input forms. "error": raising is the only correct answer; "result_or_error": a correct
# result or a clear exception (the verdict still fails a fork that raises where stock computes a correct result);
# "as_torch": what torch does with the dense tensors (an error where torch raises). Every other case expects a
# result, except indexing, which expects what torch does with the dense tensor.
EXPECT: dict[str, str] = {
    "oob_index": "error",
    "mask_wrong_rows": "error",
    "mask_wrong_cols": "error",
    "dtype_mismatch": "as_torch",  # torch's dense matmul raises for mixed dtypes: so must the operator
    "csc_leaf_grad": "result_or_error",
    "hessian_noise": "result_or_error",
}
# A clear exception names the problem: its message contains a word of each group (case-insensitive). A heuristic,
# but it separates "grad of a CSC leaf: unsupported layout" from "Sparse CSC tensors do not have is_contiguous".
CLEAR_ERRORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "dtype_mismatch": (("dtype", "type", "float", "double"),),
    "csc_leaf_grad": (("csc",), ("grad", "backward", "leaf")),
    "hessian_noise": (("second", "hessian", "double backward", "double-backward", "twice", "higher order"),),
}


@dataclass(frozen=True)
class Case:
    op: str
    form: str
    N: int  # rows of L
    n: int  # columns of L (inducing points)
    r: int  # rank of the root R (n × r)
    nnz: int  # most non-zeros per row of L
    batch: int  # 0 or 2
    layout: str
    dtype: str
    root: str  # spelling of the low-rank root
    noise: str  # spelling of the noise
    cond: str  # conditioning of the kernel
    seed: int  # seeds every input (torch.Generator)

    @property
    def key(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def then(self) -> str:
        """The operation repeated around the in-place edit (``inplace``), or applied to the selected rows
        (``derived``)."""
        return self.form.split("+")[1] if self.op in ("inplace", "derived") else NONE

    @property
    def edit(self) -> str:
        return self.form.split("+")[0] if self.op == "inplace" else NONE

    @property
    def selection(self) -> str:
        """How the rows are selected (``derived`` cases)."""
        return self.form.split("+")[0] if self.op == "derived" else NONE


FIELD_TYPES = {f.name: (int if f.type in ("int", int) else str) for f in fields(Case)}


def predict_rows(N: int) -> int:
    """How many of a prediction case's N rows are new (the last ones): a tenth, at least one."""
    return max(1, N // 10)


def uses_root(op: str, form: str) -> bool:
    """Whether the case builds ``R`` (and so uses ``r``, ``root`` and ``cond``)."""
    if op in ("inv_quad_logdet", "solve", "predict"):
        return True
    if op == "to_dense":
        return form != "sts"
    if op in ("inplace", "derived"):
        return form.endswith("+inv_quad_logdet")
    if op == "reuse":
        return form != "sts_values"
    return op == "bad" and form == "hessian_noise"


def edits_values(op: str, form: str) -> bool:
    """Whether the case edits the values of ``L`` in place (so that its layout must be one the operator holds)."""
    return op == "inplace" or (op == "reuse" and form in ("values", "sts_values"))


def uses_noise(op: str) -> bool:
    """Whether the case chooses a noise spelling (the reuse and derived cases add a DiagLinearOperator(d))."""
    return op in ("inv_quad_logdet", "solve", "predict")


def allows_batch(op: str, form: str, noise: str) -> bool:
    """Batched L only where both variants could support it: not through gpytorch's likelihoods, in-place edits (one
    matrix, as scipy has), row selections (about one matrix's rows) or the bad inputs (about one thing each)."""
    if op in ("to_dense", "index", "transpose"):
        return True
    if op == "reuse":
        return not edits_values(op, form)  # (one matrix edited in place, as in inplace)
    return op in ("inv_quad_logdet", "solve") and form == "operator" and noise == "diag_grad"


def expectation(case: Case) -> str:
    """``result``, ``error``, ``result_or_error``, or ``as_torch`` (indexing: decided by the dense reference)."""
    if case.op == "index":
        return "as_torch"
    if case.op == "bad":
        return EXPECT[case.form]
    return "result"


def tolerance_dtype(case: Case) -> str:
    """The dtype whose tolerance applies: the lower precision of the two operands for a dtype mismatch."""
    if case.dtype == NONE:  # the runner's self-test cases
        return "float64"
    return "float32" if case.form == "dtype_mismatch" else case.dtype


def problems(case: Case) -> list[str]:
    """What makes ``case`` invalid or not canonical (empty when it is fine)."""
    found = []
    if case.op not in ALL_OPS:
        return [f"unknown op {case.op!r}: expected one of {sorted(ALL_OPS)}"]
    if case.form not in ALL_OPS[case.op]:
        return [f"unknown form {case.form!r} for op {case.op!r}: expected one of {list(ALL_OPS[case.op])}"]
    if case.op in TEST_OPS:
        blank = Case(case.op, case.form, 0, 0, 0, 0, 0, NONE, NONE, NONE, NONE, NONE, case.seed)
        return [] if case == blank else [f"a {case.op} case has only op, form and seed; expected {blank.key}"]

    def check(name: str, ok: bool, why: str) -> None:
        if not ok:
            found.append(f"{name}={getattr(case, name)}: {why}")

    if case.op == "predict":
        check("N", 2 <= case.N <= PREDICT_MAX_N, f"expected 2..{PREDICT_MAX_N} (training rows and new rows)")
        check("n", 1 <= case.n <= PREDICT_MAX_n, f"expected 1..{PREDICT_MAX_n}")
        check("nnz", case.nnz >= 1, "expected at least 1 (rows with entries)")
        check("root", case.root in PREDICT_ROOTS, f"predictions: expected one of {PREDICT_ROOTS}")
        check("cond", case.cond in PREDICT_CONDS, f"predictions: expected one of {PREDICT_CONDS}")
        check("noise", case.noise in PREDICT_NOISES, f"predictions: expected one of {PREDICT_NOISES}")
    else:
        check("N", 0 <= case.N <= MAX_N, f"expected 0..{MAX_N}")
        check("n", 0 <= case.n <= MAX_n, f"expected 0..{MAX_n}")
    check("nnz", 0 <= case.nnz <= min(case.n, MAX_NNZ), f"expected 0..min(n, {MAX_NNZ})")
    check("batch", case.batch in BATCHES, f"expected one of {BATCHES}")
    check("layout", case.layout in LAYOUTS, f"expected one of {LAYOUTS}")
    check("dtype", case.dtype in DTYPES, f"expected one of {DTYPES}")
    check("seed", case.seed >= 0, "expected a non-negative integer")
    if uses_root(case.op, case.form):
        if case.op != "predict":
            check("root", case.root in ROOTS, f"expected one of {ROOTS}")
            check("cond", case.cond in CONDS, f"expected one of {CONDS}")
        if case.root == "kernel_root":
            check("r", case.r == case.n, "the root of a kernel has rank n")
        else:
            check("r", (1 if case.n else 0) <= case.r <= case.n, "expected 1..n (0 when n=0)")
    else:
        for name in ("root", "cond"):
            check(name, getattr(case, name) == NONE, f"unused by {case.op}/{case.form}: expected {NONE}")
        check("r", case.r == 0, f"unused by {case.op}/{case.form}: expected 0")
    if uses_noise(case.op):
        check("noise", case.noise in NOISES, f"expected one of {NOISES}")
    else:
        check("noise", case.noise == NONE, f"unused by {case.op}: expected {NONE}")
    if case.batch:
        check("batch", allows_batch(case.op, case.form, case.noise), f"{case.op}/{case.form} is not batched here")
    if edits_values(case.op, case.form):
        check("layout", case.layout in INPLACE_LAYOUTS, f"in-place edits: expected one of {INPLACE_LAYOUTS}")
    if case.form == "mll":
        check("noise", case.noise != "diag_grad", "ExactMarginalLogLikelihood needs a likelihood")
        check("N", case.N >= 1, "ExactMarginalLogLikelihood divides by N")
    if case.form == "oob_index":
        check("nnz", case.N >= 1 and case.nnz >= 1, "out-of-range indices need an entry (N, n, nnz >= 1)")
    if case.form == "csc_leaf_grad":
        check("layout", case.layout == "csc", "a CSC leaf")
    if case.form == "hessian_noise":
        check("N", 1 <= case.N <= HESSIAN_MAX_N, f"expected 1..{HESSIAN_MAX_N} (small Hessians; torch's needs a point)")
        check("n", case.n <= HESSIAN_MAX_n, f"expected at most {HESSIAN_MAX_n} (small Hessians)")
    return found


def validate(case: Case) -> Case:
    found = problems(case)
    if found:
        raise ValueError(f"invalid case {case.key}: " + "; ".join(found))
    return case


def from_key(key: str) -> Case:
    """The case a key names (validated): ``ValueError`` naming what is wrong otherwise."""
    values: dict[str, Any] = {}
    for part in key.strip().split(","):
        name, sep, text = part.partition("=")
        if not sep or name not in FIELD_TYPES:
            raise ValueError(f"bad case key {key!r}: {part!r} is not NAME=VALUE with NAME in {list(FIELD_TYPES)}")
        if name in values:
            raise ValueError(f"bad case key {key!r}: {name} given twice")
        if FIELD_TYPES[name] is int:
            try:
                values[name] = int(text)
            except ValueError:
                raise ValueError(f"bad case key {key!r}: {name}={text!r} is not an integer") from None
        else:
            values[name] = text
    missing = [name for name in FIELD_TYPES if name not in values]
    if missing:
        raise ValueError(f"bad case key {key!r}: missing {missing}")
    case = validate(Case(**values))
    if case.key != key.strip():
        raise ValueError(f"bad case key {key!r}: not canonical (fields out of order?); canonical: {case.key}")
    return case


def from_dict(values: dict[str, Any]) -> Case:
    return validate(Case(**values))
