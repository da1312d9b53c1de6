"""The large-M cases: what each one computes, at which sizes, with which training protocol.

Cases a, b, d, g, h and i are ``L K Lᵀ + D`` with a huge sparse ``N × n`` matrix ``L`` (4 non-zeros per row; in h its
values are learned; in i its last 10 rows cover every column); e and f train as a and then predict ``T`` new rows; c is
the PR #120 thread's script. The models of a, b, d, e, f, g, h and i are fully determined (seeded data, fixed initial
raw parameters), so stock, fork and the plain-torch reference compute the same thing: ``n`` inducing locations ``Z``,
``K = ScaleKernel(RBFKernel)(Z) + 1e-4 I`` as a dense matrix, ``R = cholesky(K)`` inside ``forward`` (with autograd),
and the covariance ``LowRankRootLinearOperator(SparseLinearOperator(L) @ DenseLinearOperator(R))`` plus the noise.
(:mod:`.data`: the data; :mod:`.models`: the gpytorch models; :mod:`.reference`: plain torch; :mod:`.runner`: one case
per child process.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIZES = ("small", "cpu", "cuda")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
LAYOUTS = ("coo", "csr")
REFERENCE = "reference"
SEED = 20260114
STEPS = 2
LR = 0.1
JITTER = 1e-4
NNZ_PER_ROW = 4
LONG_ROWS = 10  # case i: the last LONG_ROWS rows of L have an entry in every column
NOISE_LOWER_BOUND = 9.999999747378752e-05  # gpytorch's GreaterThan(1e-4) on the noise: 1e-4 rounded to float32
# Initial raw (unconstrained) parameters, set identically in every variant.
RAW_INIT = {"raw_constant": 0.0, "raw_outputscale": -2.0, "raw_lengthscale": -1.0, "raw_noise": -1.5}
FORK_SPARSE_CLASS = "linear_operator.operators.SparseLinearOperator"
THREAD_SPARSE_CLASS = "linear_operator_fork.verify.thread_script.SparseLinearOperator"


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    sizes: dict[str, dict[str, int]]  # size name -> parameters (N, n or m, ...)
    sweep: dict[str, list[int]] = field(default_factory=dict)  # size name -> values of N
    reference: bool = False  # the `reference` variant computes it
    selftest: bool = False  # not a benchmark: used by the tests of the runner, not run by default


# Sizes of the cases on a sparse N × n observation matrix (a, b and d).
SPARSE_SIZES: dict[str, dict[str, int]] = {
    "small": {"N": 2000, "n": 40},
    "cpu": {"N": 1_000_000, "n": 500},
    "cuda": {"N": 20_000_000, "n": 2000},
}


CASES: dict[str, Case] = {
    "a": Case(
        name="a",
        title="sparse observations, constant noise: L K Lᵀ + σ² I, GaussianLikelihood (σ learned)",
        sizes=SPARSE_SIZES,
        sweep={
            "small": [500, 1000],
            "cpu": [10_000, 100_000, 300_000, 1_000_000],
            "cuda": [100_000, 1_000_000, 5_000_000, 20_000_000],
        },
        reference=True,
    ),
    "b": Case(
        name="b",
        title="sparse observations, fixed heteroscedastic noise: L K Lᵀ + diag(d), FixedNoiseGaussianLikelihood",
        sizes=SPARSE_SIZES,
        reference=True,
    ),
    "c": Case(
        name="c",
        title="the PR #120 thread's script: GridKernel on an m³ grid, Lanczos root, sparse identity L (M = m³)",
        # m ≤ 9 (M ≤ max_cholesky_size = 800): dense Cholesky root, M × M. m ≥ 10: Lanczos root, M × 100
        # (max_root_decomposition_size). 0.6.0 densifies the noise's inverse, torch.diag_embed: M² floats (forward,
        # and again in backward): at m = 40, 16.4 GB, over the 8 GiB cap; 0.6.1 and the fork stay under 1.5 GiB.
        sizes={"small": {"m": 12}, "cpu": {"m": 40}, "cuda": {"m": 50}},
    ),
    "d": Case(
        name="d",
        title="MatmulLinearOperator(Uᵀ, U).to_dense() for U = SparseLinearOperator(L) @ R; loss tr(UᵀU)/N",
        sizes=SPARSE_SIZES,
    ),
    "e": Case(
        name="e",
        title="train (case a), then predict T new rows: gpytorch's default prediction (densifies T × N)",
        # gpytorch's DefaultPredictionStrategy forms the T × N cross-covariance and an N × T solve: the sizes keep
        # T × N within the memory cap
        sizes={
            "small": {"N": 2000, "n": 40, "T": 200},
            "cpu": {"N": 200_000, "n": 500, "T": 1000},
            "cuda": {"N": 2_000_000, "n": 2000, "T": 10_000},
        },
        reference=True,
    ),
    "f": Case(
        name="f",
        title="train (case a), then predict T new rows with gpytorch.settings.fast_pred_var()",
        sizes={
            "small": {"N": 2000, "n": 40, "T": 200},
            "cpu": {"N": 1_000_000, "n": 500, "T": 10_000},
            "cuda": {"N": 20_000_000, "n": 2000, "T": 100_000},
        },
        reference=True,
    ),
    "g": Case(
        name="g",
        title="learned extra noise: L K Lᵀ + diag(d) + σ² I, FixedNoiseGaussianLikelihood(learn_additional_noise=True)",
        sizes=SPARSE_SIZES,
        reference=True,
    ),
    "h": Case(
        name="h",
        title="learned observation weights: L K Lᵀ + σ² I with L's values softplus(raw weights), built in forward",
        sizes=SPARSE_SIZES,
        reference=True,
    ),
    "i": Case(
        name="i",
        title="areas of uneven size: as g (L K Lᵀ + diag(d) + σ² I), the last 10 rows of L averaging all n points",
        sizes=SPARSE_SIZES,
        reference=True,
    ),
    "probe": Case(
        name="probe",
        title="self-test of the runner: allocate alloc_gib GiB, then sleep sleep_s seconds",
        sizes={"small": {"alloc_gib": 0, "sleep_s": 0}, "cpu": {"alloc_gib": 0, "sleep_s": 0}},
        selftest=True,
    ),
}


DEFAULT_CASES = [name for name, case in CASES.items() if not case.selftest]
