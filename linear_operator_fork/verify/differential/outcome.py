"""One case on the imported linear_operator against the dense float64 reference: its outcome record.

Status: ``ok`` (the outputs match the reference within tolerance, or it raised where an error is expected, or raised
a clear error where a result or a clear error is acceptable), ``inaccurate`` (numbers beyond tolerance, a wrong shape,
non-finite values, a missing output), ``wrong`` (numbers where an error is expected), ``error`` (an exception where a
result is expected; also an unclear exception where a clear one was acceptable). The runner adds ``crash`` (the
process died) and ``timeout``; ``invalid`` means the reference itself failed (a bug of the harness, not a variant).
"""

from __future__ import annotations

import math
import time
from typing import Any

from linear_operator_fork.verify.differential import data as case_data
from linear_operator_fork.verify.differential import reference as case_reference
from linear_operator_fork.verify.differential import scenarios
from linear_operator_fork.verify.differential.case import CLEAR_ERRORS, Case, expectation, tolerance_dtype

STATUSES = ("ok", "inaccurate", "wrong", "error", "crash", "timeout", "invalid")
EPS = {"float32": 2.0**-23, "float64": 2.0**-52}
# Tolerance of an output = TOLERANCE_FACTOR · eps · κ^p, relative to the output's scale (reference.py), where κ is the
# condition of the computation the output comes out of (reference.py: ‖C‖/min(noise) for a solve, 1 for products and
# indexing, whose scale already bounds their cancellation; the kernel's condition too for what passes through the
# kernel's Cholesky factor), and p = 1: a backward-stable solve loses about c · eps · κ.
# Measured (stock 0.6.1 and build 12 of the fork; 2400 generated cases at seed 1 and 3000 at seed 7: every
# operation, both dtypes, every conditioning), the largest error of either variant was 2 eps κ for values and 17 eps κ
# for gradients (a float32 grad_R of a near-singular case, κ = 1e4): TOLERANCE_FACTOR = 100 leaves a margin of 6.
# Two kinds of output need more, measured (reference.py sets their power, Reference.powers):
# - the gradient of a solve w.r.t. a per-point noise d (the diagonal of C⁻¹, through Woodbury's formula): 409 eps κ at
#   κ = 533, 0.77 eps κ² (float64, both variants): p = 2; so for the root R (C⁻¹ y yᵀ C⁻¹ L R: two solves), measured
#   at 337 eps κ = 0.045 eps κ² (κ = 7.4e3, float64, n = r = 1; stock the same with the plain root): p = 2;
# - the Hessian (one more solve per derivative): 122 eps κ² at κ = 54 (float64, both variants), 0.08 eps κ³ at κ = 980,
#   0.65 eps κ³ at κ = 215 (float32, stock): p = 3.
TOLERANCE_FACTOR = 100.0
MESSAGE_LIMIT = 300


def tolerance(dtype: str, kappa: float, power: int = 1) -> float:
    return TOLERANCE_FACTOR * EPS[dtype] * kappa**power


def exception_message(exc: BaseException) -> str:
    """``Type: first line of the message`` (shortened)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(first) > MESSAGE_LIMIT:
        first = first[:MESSAGE_LIMIT] + "..."
    return f"{type(exc).__name__}: {first}"


def is_clear(case: Case, exc: BaseException) -> bool:
    """The exception names the problem (see case.CLEAR_ERRORS); any exception counts where no words are listed."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return all(any(word in text for word in group) for group in CLEAR_ERRORS.get(case.form, ()))


def encode(value: Any) -> dict[str, Any]:
    """A tensor as plain data: shape and flattened float64 values (non-finite values as Python's json writes them)."""
    import torch

    value = value.detach().to(torch.float64)
    return {"shape": list(value.shape), "values": value.reshape(-1).tolist()}


def relative_error(got: Any, want: Any, scale: float) -> float:
    """``‖got - want‖ / scale`` (0 where both are exactly equal, inf where the scale is 0 and they differ)."""
    difference = float((got - want).norm()) if want.numel() else 0.0
    if difference == 0:
        return 0.0
    if not math.isfinite(difference) or scale == 0:
        return math.inf
    return difference / scale


# Entries of an output measured entry by entry that are below this fraction of its largest entry are measured against
# that fraction instead: a variance of 1e-53 next to ones of 1e-2 (a point far from the root's few columns) is zero in
# float32, rightly
ENTRYWISE_FLOOR = 1e-13


def entrywise_error(got: Any, want: Any) -> float:
    """The largest ``|got - want| / |want|``, ``|want|`` at least ENTRYWISE_FLOOR times the largest (where that is 0
    too: 0 if ``got`` is, else inf)."""
    difference = (got - want).abs()
    if not difference.numel() or float(difference.max()) == 0:
        return 0.0
    ratios = difference / want.abs().clamp_min(ENTRYWISE_FLOOR * float(want.abs().max()))
    ratios[difference == 0] = 0.0
    return float(ratios.max())


def compare(outputs: dict[str, Any], reference: case_reference.Reference) -> tuple[dict[str, float], list[str]]:
    """Each reference output's relative error (inf: missing, wrong shape, non-finite) and what is wrong."""
    import torch

    errors, problems = {}, []
    for name, want in reference.outputs.items():
        got = outputs.get(name)
        if got is None:
            errors[name] = math.inf
            problems.append(f"{name}: missing")
            continue
        got = got.detach().to(torch.float64)
        if tuple(got.shape) != tuple(want.shape):
            errors[name] = math.inf
            problems.append(f"{name}: shape {tuple(got.shape)} where the reference has {tuple(want.shape)}")
            continue
        if not torch.isfinite(got).all():
            errors[name] = math.inf
            problems.append(f"{name}: non-finite values")
            continue
        if name in reference.entrywise:
            errors[name] = entrywise_error(got, want)
        else:
            errors[name] = relative_error(got, want, reference.scales[name])
    return errors, problems


def evaluate(case: Case) -> dict[str, Any]:
    """Run ``case`` here on the imported linear_operator; its outcome record (never raises for a failing case)."""
    import torch

    record: dict[str, Any] = {"key": case.key, "status": None, "expect": expectation(case), "message": ""}
    data = case_data.make(case)
    reference, reference_error = None, None
    try:
        reference = case_reference.compute(case, data)
    except Exception as exc:  # torch rejects the index: the expected outcome is an error
        reference_error = exc
    if record["expect"] == "as_torch":
        record["expect"] = "error" if reference_error is not None else "result"
    elif reference_error is not None and record["expect"] != "error":
        record.update(status="invalid", message=f"the reference failed: {exception_message(reference_error)}")
        return record
    if reference is not None:
        dtype = tolerance_dtype(case)
        record["kappa"] = reference.kappa
        record["tolerance"] = tolerance(dtype, reference.kappa)
        record["floor"] = tolerance(dtype, 1.0)  # of an output computed exactly up to rounding (the verdict's floor)
        record["reference"] = {
            name: {
                **encode(value),
                "scale": reference.scales[name],
                "kappa": reference.kappa_of(name),
                "tolerance": tolerance(dtype, reference.kappa_of(name), reference.power_of(name)),
            }
            for name, value in reference.outputs.items()
        }

    torch.manual_seed(case.seed)
    started = time.perf_counter()
    try:
        outputs = {name: scenarios.dense_tensor(value) for name, value in scenarios.run(case, data).items()}
    except Exception as exc:
        record["seconds"] = time.perf_counter() - started
        record["message"] = exception_message(exc)
        record["error_type"] = type(exc).__name__
        if record["expect"] in ("error", "result_or_error") and is_clear(case, exc):
            record["status"] = "ok"
        else:
            record["status"] = "error"
            if record["expect"] != "result":
                record["message"] += " (not a clear error: expected one naming the problem)"
        return record
    record["seconds"] = time.perf_counter() - started
    record["outputs"] = {name: encode(value) for name, value in outputs.items()}
    if record["expect"] == "error":
        record.update(status="wrong", message="returned numbers where an error is expected")
        return record
    errors, problems = compare(outputs, reference)
    tolerances = {name: entry["tolerance"] for name, entry in record["reference"].items()}
    scores = {name: errors[name] / tolerances[name] for name in errors}
    record.update(errors=errors, rel_error=max(errors.values(), default=0.0), score=max(scores.values(), default=0.0))
    if record["score"] <= 1:
        record["status"] = "ok"
    else:
        worst = max(scores, key=scores.get)
        problems = problems or [f"{worst}: relative error {errors[worst]:.2e} > tolerance {tolerances[worst]:.1e}"]
        record.update(status="inaccurate", message="; ".join(problems))
    return record
