"""The training protocol that the gpytorch models and the plain-torch reference share: initial raw parameters, Adam
steps, what a record keeps of them, the error measures of the predictions, and the process's peak memory."""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any

from linear_operator_fork.verify.catalogue import LR, RAW_INIT, STEPS


def collect_grads(named: list[tuple[str, Any]]) -> dict[str, list[float]]:
    """Gradients by short parameter name (``raw_noise``...); a parameter of more than 16 entries by its norm."""
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
    return grads


def adam_steps(parameters: list[Any], named: list[tuple[str, Any]], loss_fn: Callable[[], Any]) -> dict[str, Any]:
    """``STEPS`` Adam steps on ``loss_fn()``: the loss of each step and the gradients after the first backward."""
    import torch

    optimizer = torch.optim.Adam(parameters, lr=LR)
    losses, grads = [], {}
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = collect_grads(named)
        optimizer.step()
    return {"losses": losses, "grads": grads}


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


def self_peak_rss() -> int:
    """This process's peak resident set size so far, in bytes (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
