"""The records of a verify or benchmark run: one per case × variant (× size) and one per suite × variant.

The runners (:mod:`.runner`, :mod:`.suites`) write them as ``{"records": [...]}`` files under ``records/``; the report
(:mod:`linear_operator_fork.report`), the workflows' gate and the PR package read them back with :func:`load`. Only
the fields below are relied upon; case records carry more diagnostics (``setup_seconds``, ``baseline_rss_bytes``,
``setup_peak_bytes``, ``host_peak_bytes``, ``threads``, ``torch``, ``gpytorch``, ``load_average``, ``trace``,
``log_tail``, ...), which the report ignores.
Also the writers of what the runs leave behind: atomic JSON files, and tables between markers in a README.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypedDict

from linear_operator_fork.recipe import ForkError

SUITES = ("upstream-suite", "gpytorch-suite")
# The variants of each suite that the report compares with stock: the fork, and for gpytorch's suite also
# ``gpytorch-fork`` (the fork's linear_operator with the patched gpytorch, running the patched gpytorch's test/).
SUITE_VARIANTS = {"upstream-suite": ("fork",), "gpytorch-suite": ("fork", "gpytorch-fork")}
STATUSES = ("ok", "oom", "limit", "error", "skipped")
GIB = 1024**3


class Record(TypedDict, total=False):
    """A case or suite record (``case`` is a case name, or one of :data:`SUITES`)."""

    case: str  # a, b, ... or upstream-suite / gpytorch-suite
    variant: str  # stock, stock-0.6.0, fork, reference (plain torch), main (upstream's main branch), gpytorch-fork
    version: str | None  # linear_operator.__version__ as imported by the run (None for the reference)
    file: str | None  # linear_operator.__file__
    gpytorch: str | None  # gpytorch.__version__ (case records; gpytorch's suite: 1.15.2+fork.N for gpytorch-fork)
    device: str  # cpu or cuda
    device_name: str  # the CUDA device's name
    status: str  # one of STATUSES
    peak_bytes: int | None  # CPU: the peak RSS of the measured part (see peak_scope); CUDA: max_memory_allocated()
    peak_scope: str  # CPU: "measured part" (VmHWM reset after the set-up) or "process" (the child's whole life)
    seconds: float | None  # wall time of the measured part (a case: model built from L, trained; a suite: pytest)
    message: str  # the reason for any status but ok
    params: dict[str, Any]  # a case's sizes (N, n, T or m), dtype, layout, the sparse class, ...
    losses: list[float]  # a case: the loss of each Adam step
    grads: dict[str, list[float]]  # a case: the gradients after the first backward
    step_seconds: list[float]  # a case: the seconds of each Adam step (the first computes what operators keep)
    info: dict[str, Any]  # a case: what else it measured (e.g. the prediction's time and errors)
    passed: int  # a suite: counts from pytest's JUnit XML
    failed: int
    skipped: int
    failures: list[str]  # a suite: ids of the failed tests
    passed_ids: list[str]  # a suite: ids of the passed tests


def is_suite(record: Record) -> bool:
    return record.get("case") in SUITES


def new(case: str, variant: str, device: str, params: dict[str, Any] | None = None) -> Record:
    """A record with every field of the schema (status ``error`` until the run says otherwise)."""
    return Record(
        case=case,
        variant=variant,
        version=None,
        file=None,
        device=device,
        status="error",
        peak_bytes=None,
        seconds=None,
        message="",
        params=dict(params or {}),
        losses=[],
        grads={},
    )


def write_json(path: Path, data: Any) -> int:
    """Write atomically: a process killed mid-write leaves no half file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)
    return 0


def write(path: Path, records: list[Record]) -> None:
    write_json(path, {"records": records})


def read(path: Path) -> list[Record]:
    """The records of one ``{"records": [...]}`` file (a records file, or a report's ``results.json``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ForkError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise ForkError(f"{path} is not valid JSON ({exc})") from None
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "case" in r for r in records):
        raise ForkError(f'{path}: expected {{"records": [...]}}, each record with a "case"')
    return records


def load(folder: Path) -> list[Record]:
    """Every record of ``folder/records/*.json``, in file name order."""
    return [record for path in sorted((folder / "records").glob("*.json")) for record in read(path)]


def replace_block(path: Path, begin: str, end: str, lines: list[str]) -> None:
    """Replace the lines between the markers ``begin`` and ``end`` of a text file (e.g. a README's table)."""
    text = path.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise ForkError(f"{path} has no {begin} ... {end} block to write the table into")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(head + "\n".join([begin, *lines, end]) + tail, encoding="utf-8")
