"""The training protocol that the gpytorch models and the plain-torch reference share: initial raw parameters, Adam
steps, what a record keeps of them, the error measures of the predictions, and the process's peak memory."""

from __future__ import annotations

import ctypes
import resource
from collections.abc import Callable
from typing import Any

from linear_operator_fork.verify.catalogue import LR, RAW_INIT, STEPS


def collect_grads(named: list[tuple[str, Any]]) -> dict[str, list[float]]:
    """Gradients by short parameter name (``raw_noise``...); a parameter of more than 16 entries by its norm and by
    ``signed``, the sum of its entries times fixed random signs (which entries that are swapped or misplaced change,
    where the norm stays)."""
    import torch

    short = [name.rsplit(".", 1)[-1] for name, _ in named]
    grads = {}
    for (name, param), key in zip(named, short, strict=True):
        key = key if short.count(key) == 1 else name
        if param.grad is None:
            continue
        grad = param.grad.detach().double().reshape(-1)
        if grad.numel() <= 16:
            grads[key] = grad.tolist()
        else:
            grads[f"{key}.norm"] = [grad.norm().item()]
            signs = torch.randint(0, 2, (grad.numel(),), generator=torch.Generator().manual_seed(0)) * 2 - 1
            grads[f"{key}.signed"] = [(grad * signs.to(device=grad.device, dtype=grad.dtype)).sum().item()]
    return grads


def adam_steps(parameters: list[Any], named: list[tuple[str, Any]], loss_fn: Callable[[], Any]) -> dict[str, Any]:
    """``STEPS`` Adam steps on ``loss_fn()``: the loss of each step, the gradients after the first backward, and the
    seconds of each step (the first includes what is computed once, e.g. the structures of a sparse operator)."""
    import time

    import torch

    optimizer = torch.optim.Adam(parameters, lr=LR)
    losses, grads, step_seconds = [], {}, []
    for step in range(STEPS):
        started = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = collect_grads(named)
        optimizer.step()
        step_seconds.append(time.perf_counter() - started)
    return {"losses": losses, "grads": grads, "step_seconds": step_seconds}


def set_raw(module: Any, name: str) -> None:
    """Set the raw parameter ``name`` of ``module`` to its ``RAW_INIT`` value (identical in every variant)."""
    import torch

    with torch.no_grad():
        getattr(module, name).fill_(RAW_INIT[name])


def max_relative_error(got: Any, expected: Any) -> float:
    """The largest entrywise relative error (variances are positive)."""
    return float(((got.double() - expected).abs() / expected.abs().clamp_min(1e-300)).max())


def normwise_relative_error(got: Any, expected: Any) -> float:
    """``|got - expected| / |expected|`` (means can be near zero entrywise)."""
    return float((got.double() - expected).norm() / expected.norm().clamp_min(1e-300))


def _status_bytes(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in bytes (Linux), or None where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def self_rss() -> int | None:
    """This process's resident set size now, in bytes (None where the system does not say)."""
    return _status_bytes("VmRSS")


def self_peak_rss() -> int:
    """This process's peak resident set size since the last :func:`reset_peak_rss` (else since it started), in bytes.

    ``VmHWM`` where Linux gives it (``getrusage`` keeps the peak of the process's whole life), else ``ru_maxrss``.
    """
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux: ``5`` into ``/proc/self/clear_refs``); False where it cannot.

    Freed memory that the C allocator still holds is handed back first (glibc's ``malloc_trim``), so that the RSS
    it resets to is what is in use, not what earlier temporaries left behind (which varied by 0.2 GiB between runs).
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


def warm_up() -> None:
    """One Adam step on a scalar: torch imports the modules of its optimizers (about 800, 1 s) on their first step,
    which the measured part of every variant would otherwise include."""
    import torch

    param = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam([param], lr=LR)
    param.square().backward()
    optimizer.step()
