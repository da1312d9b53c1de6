"""The case space as hypothesis strategies, and :func:`generate`: a deterministic list of cases for a seed.

:func:`build` makes a valid, canonical :class:`~.case.Case` from a chooser (an operation's unused fields are ``-``
or 0); :func:`cases` is the hypothesis strategy that chooses by drawing. Zero sizes and CSC are chosen rarely,
batches less often than not. :func:`generate` lists the space's corners first (:func:`corner_specs`: every operation
× form, root × noise, N=0, n=0, layout × operation, batches, conditioning × dtype, edits × layouts; their other
fields chosen by a seeded ``random.Random``: explicit examples), then hypothesis's draws, deduplicated by key.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from linear_operator_fork.verify.differential.case import (
    CONDS,
    DTYPES,
    EDITS,
    HESSIAN_MAX_N,
    INPLACE_LAYOUTS,
    LAYOUTS,
    MAX_N,
    MAX_NNZ,
    NOISES,
    NONE,
    OPS,
    PREDICT_CONDS,
    PREDICT_MAX_N,
    PREDICT_NOISES,
    PREDICT_ROOTS,
    REUSE,
    ROOTS,
    SELECTIONS,
    Case,
    HESSIAN_MAX_n,
    MAX_n,
    PREDICT_MAX_n,
    allows_batch,
    edits_values,
    uses_noise,
    uses_root,
    validate,
)

# Draw weights, by repetition: CSC is rare, and so are zero sizes (one draw in ZERO_ONE_IN) and batches
LAYOUT_CHOICES = ("coo", "coo", "coo", "coo_uncoalesced", "coo_uncoalesced", "csr", "csr", "csr", "csc")
BATCH_CHOICES = (0, 0, 0, 2)
ZERO_ONE_IN = 40  # hypothesis favours the ends of a range: N=0 comes out in about one case in 20
MAX_SEED = 2**31 - 1


Chooser = Callable[[str, Sequence[Any]], Any]  # (field name, options) -> one of the options


def form_allowed(op: str, form: str, fixed: dict[str, Any]) -> bool:
    """Whether ``form`` can go with the fixed fields (which are chosen after the form)."""
    if fixed.get("N") == 0 and form in ("mll", "oob_index", "hessian_noise"):
        return False
    if fixed.get("n") == 0 and form == "oob_index":
        return False
    if fixed.get("noise") == "diag_grad" and form == "mll":
        return False
    if "root" in fixed and fixed["root"] != NONE and not uses_root(op, form):
        return False
    if "layout" in fixed and fixed["layout"] not in INPLACE_LAYOUTS and edits_values(op, form):
        return False
    return not fixed.get("batch") or allows_batch(op, form, "diag_grad")


def build(
    choose: Chooser, fixed: dict[str, Any], ops: Sequence[str] = tuple(OPS), conds: Sequence[str] = CONDS
) -> Case:
    """A valid case: ``fixed`` fields as given, the others from ``choose``, in an order that keeps every choice valid
    (the form after the operation, the sizes after the form, ...)."""

    def pick(name: str, options: Sequence[Any]) -> Any:
        return fixed[name] if name in fixed else choose(name, options)

    def size(name: str, low: int, high: int) -> int:
        """``low..high``; 0, where allowed, once in ZERO_ONE_IN choices."""
        if name in fixed:
            return fixed[name]
        if low == 0 and choose(f"{name}_is_zero", range(ZERO_ONE_IN)) == 0:
            return 0
        return choose(name, range(max(low, 1), high + 1))

    op = pick("op", ops)
    form = pick("form", [f for f in OPS[op] if form_allowed(op, f, fixed)])
    hessian, predict = form == "hessian_noise", op == "predict"
    if predict:
        N, n = size("N", 2, PREDICT_MAX_N), size("n", 1, PREDICT_MAX_n)
    else:
        N = size("N", 1 if form in ("mll", "oob_index", "hessian_noise") else 0, HESSIAN_MAX_N if hessian else MAX_N)
        n = size("n", 1 if form == "oob_index" else 0, HESSIAN_MAX_n if hessian else MAX_n)
    nnz = pick("nnz", range(1 if form == "oob_index" or predict else 0, min(n, MAX_NNZ) + 1))
    edits = edits_values(op, form)
    layouts = tuple(x for x in LAYOUT_CHOICES if x in INPLACE_LAYOUTS) if edits else LAYOUT_CHOICES
    layout = pick("layout", ("csc",) if form == "csc_leaf_grad" else layouts)
    dtype = pick("dtype", DTYPES)
    root, cond, r, noise = NONE, NONE, 0, NONE
    if uses_root(op, form):
        root = pick("root", PREDICT_ROOTS if predict else ROOTS)
        cond = pick("cond", PREDICT_CONDS if predict else conds)
        r = n if root == "kernel_root" or n == 0 else pick("r", range(1, n + 1))  # a kernel's root has rank n
    if uses_noise(op):
        batched = fixed.get("batch", 0) != 0
        noises = PREDICT_NOISES if predict else NOISES if form != "mll" else NOISES[:-1]
        noise = pick("noise", ("diag_grad",) if batched else noises)
    batch = pick("batch", BATCH_CHOICES if allows_batch(op, form, noise) else (0,))
    seed = pick("seed", range(MAX_SEED + 1))
    return validate(Case(op, form, N, n, r, nnz, batch, layout, dtype, root, noise, cond, seed))


@st.composite
def cases(draw: Any, ops: Sequence[str] = tuple(OPS), conds: Sequence[str] = CONDS, **fixed: Any) -> Case:
    """The hypothesis strategy of the case space; ``fixed`` fields as given, ``ops`` and ``conds`` restrict it."""

    def choose(name: str, options: Sequence[Any]) -> Any:
        if isinstance(options, range):
            return draw(st.integers(options.start, options.stop - 1), label=name)
        return draw(st.sampled_from(options), label=name)

    return build(choose, fixed, ops, conds)


def corner_specs() -> list[dict[str, Any]]:
    """Fixed fields of the corner cases: each is drawn once, its other fields drawn freely."""
    specs: list[dict[str, Any]] = [{"op": op, "form": form} for op, forms in OPS.items() for form in forms]
    for form in OPS["inv_quad_logdet"]:
        for root in ROOTS:
            for noise in NOISES:
                if not (form == "mll" and noise == "diag_grad"):
                    specs.append({"op": "inv_quad_logdet", "form": form, "root": root, "noise": noise})
    for op, form in (("solve", "operator"), ("to_dense", "gram_diag"), ("inplace", "values+inv_quad_logdet")):
        specs += [{"op": op, "form": form, "root": root} for root in ROOTS]
    specs += [{"op": "bad", "form": "hessian_noise", "root": root} for root in ROOTS]
    for dim in ("N", "n"):
        specs += [{"op": op, dim: 0} for op in OPS if op != "predict"]  # (a prediction needs rows and points)
    specs += [{"op": op, "layout": layout} for op in OPS for layout in LAYOUTS if op not in ("bad", "inplace")]
    specs += [{"op": "inplace", "layout": layout} for layout in INPLACE_LAYOUTS]
    bad_forms = [form for form in OPS["bad"] if form != "csc_leaf_grad"]  # (a CSC leaf is CSC)
    specs += [{"op": "bad", "form": form, "layout": layout} for form in bad_forms for layout in LAYOUTS]
    specs += [{"op": op, "batch": 2} for op in ("inv_quad_logdet", "solve", "to_dense", "index", "transpose", "reuse")]
    specs += [{"op": "inv_quad_logdet", "cond": cond, "dtype": dtype} for cond in CONDS for dtype in DTYPES]
    specs += [
        {"op": "inplace", "form": f"{edit}+{then}", "layout": layout}
        for edit in EDITS
        for then, layout in zip(("mT_matmul", "matmul", "inv_quad_logdet"), INPLACE_LAYOUTS, strict=True)
    ]
    # The state an operator keeps between calls, in every layout it is kept for: products past the switch-over
    # points before an edit, reused operators whose noise, weights or values change, selected rows then used
    specs += [
        {"op": "inplace", "form": f"{edit}+{then}", "layout": layout}
        for edit in EDITS
        for then in ("matmul_many", "mT_matmul_many")
        for layout in INPLACE_LAYOUTS
    ]
    specs += [{"op": "reuse", "form": form, "layout": layout} for form in REUSE for layout in INPLACE_LAYOUTS]
    specs += [
        {"op": "derived", "form": f"{selection}+{then}", "layout": layout}
        for selection in SELECTIONS
        for then in ("matmul", "mT_matmul", "inv_quad_logdet")
        for layout in ("coo", "csr")
    ]
    # Predictions: both modes in each conditioning and dtype, each noise and root spelling, each layout; and the
    # largest size, where the cancellation of the default modes shows most
    specs += [
        {"op": "predict", "form": form, "cond": cond, "dtype": dtype}
        for form in OPS["predict"]
        for cond in PREDICT_CONDS
        for dtype in DTYPES
    ]
    specs += [{"op": "predict", "noise": noise, "root": root} for noise in PREDICT_NOISES for root in PREDICT_ROOTS]
    specs += [
        {"op": "predict", "form": form, "N": PREDICT_MAX_N, "n": PREDICT_MAX_n, "dtype": "float32", "cond": cond}
        for form in OPS["predict"]
        for cond in PREDICT_CONDS
    ]
    return specs


def corner_cases(seed: int) -> list[Case]:
    """One case per corner spec, its free fields chosen by ``random.Random`` seeded from ``seed`` and its index."""
    found = []
    for index, spec in enumerate(corner_specs()):
        rng = random.Random(f"{seed}/{index}")
        found.append(build(lambda name, options, rng=rng: rng.choice(options), spec))
    return found


def draw_cases(count: int, seed: int, strategy: Any = None) -> list[Case]:
    """``count`` draws of ``strategy`` (default: the whole space) by hypothesis, seeded: the same list for the same
    seed and hypothesis version."""
    drawn: list[Case] = []

    @hypothesis.seed(seed)
    @settings(
        max_examples=count,
        derandomize=False,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(cases() if strategy is None else strategy)
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn


def generate(count: int, seed: int) -> list[Case]:
    """``count`` distinct cases (fewer only if the draws repeat): the corners, then hypothesis's draws."""
    corners = corner_cases(seed)
    wanted = count - len(corners)
    drawn = draw_cases(wanted + wanted // 4, seed) if wanted > 0 else []  # a quarter more: draws may repeat
    return list(dict.fromkeys(corners + drawn))[:count]
