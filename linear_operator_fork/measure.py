"""Run one case × variant in a subprocess under a memory cap and a time limit, and return its record.

The child is ``python -m linear_operator_fork.cases child SPEC RECORD`` in a fresh working directory that holds only
the spec, the record, the child's log and a link to this package: the child imports ``linear_operator`` (and
everything else) from its environment, with ``--pythonpath DIR`` first on PYTHONPATH; no source tree of this
repository is on its path.

Status of a record: ``ok``; ``oom`` (MemoryError, "can't allocate memory", CUDA out of memory, or a child killed
without a record while out of memory); ``limit`` (timed out, killed); ``error`` (any other exception: its last line
is the message); ``skipped`` (not run: no CUDA, or a case the variant does not compute).

Memory: on the CPU the child runs under ``RLIMIT_AS`` (the cap counts address space, about 0.8 GiB of which is
taken by the interpreter, torch and gpytorch once imported) and ``peak_bytes`` is its peak RSS from ``os.wait4``
(``ru_maxrss``, which includes the interpreter and the imports: ``baseline_rss_bytes`` is the peak before the
measured part). On CUDA there is no cap (CUDA reserves address space) and ``peak_bytes`` is
``torch.cuda.max_memory_allocated()`` reported by the child; ``host_peak_bytes`` is the RSS in both cases.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
DEFAULT_CAP_GIB = 8.0
DEFAULT_TIMEOUT_S = 1800.0
NO_CUDA = "--device cuda, but torch.cuda.is_available() is False on this machine"
OOM_MARKERS = (
    "can't allocate memory",
    "Cannot allocate memory",
    "out of memory",
    "MemoryError",
    "std::bad_alloc",
    "failed to map segment",  # a shared library that no longer fits under the cap
    "Memory allocation still failed",  # OpenBLAS
)
SIZE_KEYS = ("N", "n", "T", "m", "alloc_gib", "sleep_s")
LOG_TAIL_LINES = 12


@dataclass
class Run:
    case: str
    variant: str
    params: dict[str, Any]  # the case's size parameters plus dtype, layout, size
    device: str  # "cpu" or "cuda"


def size_params(params: dict[str, Any]) -> dict[str, Any]:
    return {key: params[key] for key in SIZE_KEYS if key in params}


def new_record(spec: dict[str, Any]) -> dict[str, Any]:
    """A record with every field of the schema; the child or the parent fills them in."""
    return {
        "case": spec["case"],
        "variant": spec["variant"],
        "version": None,
        "file": None,
        "device": spec["device"],
        "status": "error",
        "peak_bytes": None,
        "seconds": None,
        "message": "",
        "params": dict(spec["params"]),
        "losses": [],
        "grads": {},
    }


def skipped(run: Run, message: str) -> dict[str, Any]:
    record = new_record(spec_of(run))
    record.update(status="skipped", message=message)
    return record


def spec_of(run: Run) -> dict[str, Any]:
    return {"case": run.case, "variant": run.variant, "params": run.params, "device": run.device}


def write_json(path: Path, data: Any) -> int:
    """Write atomically: a child killed mid-write leaves no half record behind."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)
    return 0


def self_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _limit_address_space(cap_bytes: int | None) -> Any:
    def apply() -> None:
        if cap_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    return apply


def _child_env(pythonpath: str | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(Path(p).resolve()) for p in (pythonpath or "").split(os.pathsep) if p]
    paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if not paths:
        del env["PYTHONPATH"]
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait(pid: int, timeout: float) -> tuple[int, Any, bool]:
    """``(exit code, rusage, timed out)`` of ``pid``, killed with SIGKILL after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited == pid:
            return os.waitstatus_to_exitcode(status), usage, False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return os.waitstatus_to_exitcode(status), usage, True
        time.sleep(0.05)


def _log_tail(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if line.strip()][-LOG_TAIL_LINES:]


def run_one(run: Run, *, pythonpath: str | None, cap_bytes: int | None, timeout: float) -> dict[str, Any]:
    """Run ``run`` in a child process; the record (never an exception for a failing case)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"lof-case-{run.case}-"))
    try:
        (workdir / PACKAGE.name).symlink_to(PACKAGE, target_is_directory=True)
        spec_path, record_path, log_path = workdir / "spec.json", workdir / "record.json", workdir / "child.log"
        spec = spec_of(run)
        write_json(spec_path, spec)
        command = [sys.executable, "-m", f"{PACKAGE.name}.cases", "child", str(spec_path), str(record_path)]
        load = os.getloadavg()[0]  # other work on the machine skews the timings
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=_child_env(pythonpath),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_limit_address_space(cap_bytes),
            )
            code, usage, timed_out = _wait(process.pid, timeout)
            process.returncode = code
        wall = time.perf_counter() - started
        record = json.loads(record_path.read_text()) if record_path.exists() else new_record(spec)
        tail = _log_tail(log_path)
        record["host_peak_bytes"] = usage.ru_maxrss * 1024
        if run.device == "cpu":
            record["peak_bytes"] = record["host_peak_bytes"]
        record["total_seconds"] = wall
        record["load_average"] = load
        record["exit_code"] = code
        record["params"].update(cap_bytes=cap_bytes, timeout_s=timeout)
        if timed_out:
            record.update(status="limit", message=f"timed out after {timeout:g} s (killed)")
        elif not record_path.exists():
            died = f"signal {-code}" if code < 0 else f"exit code {code}"
            text = "\n".join(tail)
            oom = code == -signal.SIGKILL or any(marker in text for marker in OOM_MARKERS)
            last = tail[-1] if tail else "no output"
            record.update(status="oom" if oom else "error", message=f"child died ({died}) without a record: {last}")
        if record["status"] not in ("ok", "skipped"):
            record["log_tail"] = tail
        return record
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def summary(record: dict[str, Any]) -> str:
    """``ok 4.1 s, peak 0.95 GiB`` (or the status and the message)."""
    parts = [record["status"]]
    if record.get("seconds") is not None:
        parts.append(f"{record['seconds']:.1f} s")
    elif record.get("total_seconds") is not None:
        parts.append(f"after {record['total_seconds']:.1f} s")
    text = " ".join(parts)
    if record.get("peak_bytes") is not None:
        text += f", peak {record['peak_bytes'] / 2**30:.2f} GiB"
    if record["status"] != "ok" and record.get("message"):
        text += f" ({record['message']})"
    return text
