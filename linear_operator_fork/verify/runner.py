"""Run the large-M cases: each case × variant in its own subprocess under a memory cap and a time limit.

``python -m linear_operator_fork cases list`` prints the cases and their sizes (:mod:`.catalogue`); ``cases run``
runs them and writes ``{"records": [...]}`` (:mod:`.records`). The child is
``python -m linear_operator_fork cases child SPEC RECORD`` in a fresh working directory that holds only
the spec, the record, the child's log and a link to this package: the child imports ``linear_operator`` (and
everything else) from its environment, with ``--pythonpath DIR`` first on PYTHONPATH; no source tree of this
repository is on its path.

Status of a record: ``ok``; ``oom`` (MemoryError, "can't allocate memory", CUDA out of memory, or a child killed
without a record while out of memory); ``limit`` (timed out, killed); ``error`` (any other exception: its last line
is the message); ``skipped`` (not run: no CUDA, or a case the variant does not compute).

Measured part: the setup (imports, data, the variants' sparse tensor ``L``, one Adam step on a scalar so that torch's
lazy imports are done) is not; ``seconds`` and ``peak_bytes`` cover the case itself.

Memory: on the CPU the child runs under ``RLIMIT_AS`` (the cap counts address space, about 0.8 GiB of which is
taken by the interpreter, torch and gpytorch once imported). ``peak_bytes`` is the peak RSS of the measured part
(Linux: ``VmHWM``, reset after the setup; ``peak_scope`` says ``measured part``): it counts what stays resident
(interpreter, torch, the data, ``L``: ``baseline_rss_bytes``) but not the setup's temporaries
(``setup_peak_bytes``). Where the peak cannot be reset, or a child dies without a record, it is the process's
peak (``ru_maxrss`` from ``os.wait4``, ``host_peak_bytes`` in every record). On CUDA there is no cap (CUDA
reserves address space) and ``peak_bytes`` is ``torch.cuda.max_memory_allocated()`` of the measured part (the
allocator's peak is reset after the setup; ``setup_peak_bytes`` is the setup's), reported by the child.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from linear_operator_fork.recipe import BUILD_DIR
from linear_operator_fork.verify import records
from linear_operator_fork.verify.catalogue import (
    CASES,
    DEFAULT_CASES,
    DEVICES,
    DTYPES,
    LAYOUTS,
    LONG_ROWS,
    REFERENCE,
    SEED,
    SIZES,
    STEPS,
)
from linear_operator_fork.verify.protocol import reset_peak_rss, self_peak_rss, self_rss, warm_up
from linear_operator_fork.verify.records import Record

PACKAGE = Path(__file__).resolve().parent.parent  # linear_operator_fork/
ROOT = PACKAGE.parent
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


def new_record(spec: dict[str, Any]) -> Record:
    return records.new(spec["case"], spec["variant"], spec["device"], spec["params"])


def skipped(run: Run, message: str) -> Record:
    record = new_record(spec_of(run))
    record.update(status="skipped", message=message)
    return record


def spec_of(run: Run) -> dict[str, Any]:
    return {"case": run.case, "variant": run.variant, "params": run.params, "device": run.device}


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
        records.write_json(spec_path, spec)
        command = [sys.executable, "-m", PACKAGE.name, "cases", "child", str(spec_path), str(record_path)]
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
        if run.device == "cpu" and record.get("peak_bytes") is None:  # (a child that died without its peak)
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


def classify(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    if any(marker in text for marker in OOM_MARKERS):
        return "oom"
    return "error"


def last_line(exc: BaseException, limit: int = 600) -> str:
    """The last line of the traceback, ``Type: message``, with a multi-line message joined (and shortened)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def trace_tail(exc: BaseException, frames: int = 6) -> list[str]:
    return [
        f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno} {frame.name}: {frame.line}"
        for frame in traceback.extract_tb(exc.__traceback__)[-frames:]
    ]


def execute(spec: dict[str, Any], record: dict[str, Any]) -> None:
    """Run the case described by ``spec``, filling ``record`` (status ok) or raising."""
    import torch

    from linear_operator_fork.verify import models, reference
    from linear_operator_fork.verify.data import make_data, sparse_matrix

    case, params, device = spec["case"], spec["params"], spec["device"]
    dtype = getattr(torch, params.get("dtype", "float32"))
    torch.manual_seed(SEED)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    data = L = None
    if case in ("a", "b", "d", "e", "f", "g", "h", "i"):
        # (e, f: N training rows and T new rows; i: the last LONG_ROWS of the N rows are long)
        long_rows = LONG_ROWS if case == "i" else 0
        data = make_data(params["N"] + params.get("T", 0), params["n"], dtype, device, long_rows=long_rows)
        if spec["variant"] != REFERENCE:
            # The variants' input, the sparse tensor L, is data too: built before the measured part, as the
            # reference's row arrays are. Each variant holds its own input only: the row arrays are dropped (a CSR
            # L shares them) except in cases e and f, whose errors are computed from them.
            L = sparse_matrix(data, params["layout"])
            if case not in ("e", "f"):
                data = replace(data, cols=None, vals=None, long_vals=None)
    if case != "probe":
        warm_up()
    record["setup_seconds"] = time.perf_counter() - started
    # The peak of the measured part: the setup's temporaries (generating the data in float64, coalescing L) are left
    # out; what stays resident (torch, the data, L) is counted. On CUDA the same, on the device's allocations
    if device == "cuda":
        torch.cuda.synchronize()
        record["setup_peak_bytes"] = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        record["peak_scope"] = "measured part"
    else:
        record["setup_peak_bytes"] = self_peak_rss()
        record["peak_scope"] = "measured part" if reset_peak_rss() else "process"
    record["baseline_rss_bytes"] = self_rss()

    started = time.perf_counter()
    if spec["variant"] == REFERENCE and case in ("e", "f"):
        result = reference.reference_predict(case, data, params["T"])
    elif spec["variant"] == REFERENCE:
        result = reference.reference_steps(case, data)
    elif case in ("a", "b", "g", "h", "i"):
        result = models.run_gp(case, data, L)
    elif case in ("e", "f"):
        result = models.run_predict(case, data, L, params["T"])
    elif case == "d":
        result = models.run_cross(data, L)
    elif case == "c":
        torch.set_default_dtype(dtype)
        result = models.run_thread(params["m"], device)
    else:
        result = models.run_probe(params["alloc_gib"], params["sleep_s"])
    if device == "cuda":
        torch.cuda.synchronize()
        record["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        record["peak_bytes"] = self_peak_rss()
    record["seconds"] = time.perf_counter() - started
    record["params"]["sparse_class"] = result["info"].pop("sparse_class", None)
    record.update(losses=result["losses"], grads=result["grads"], info=result["info"], status="ok")
    if "step_seconds" in result:
        record["step_seconds"] = result["step_seconds"]


def child(spec_path: Path, record_path: Path) -> int:
    """Entry point of the subprocess: always writes ``record_path`` unless the process itself dies."""
    spec = json.loads(spec_path.read_text())
    record = new_record(spec)
    try:
        import torch

        record["torch"] = torch.__version__
        if spec["params"].get("threads"):
            torch.set_num_threads(spec["params"]["threads"])
        record["threads"] = torch.get_num_threads()
        if spec["device"] == "cuda":
            if not torch.cuda.is_available():
                record.update(status="skipped", message=NO_CUDA)
                return records.write_json(record_path, record)
            record["device_name"] = torch.cuda.get_device_name()
        if spec["variant"] != REFERENCE and spec["case"] != "probe":
            import gpytorch  # imported here, so that `seconds` leaves the imports out
            import linear_operator

            record["version"], record["file"] = linear_operator.__version__, linear_operator.__file__
            record["gpytorch"] = gpytorch.__version__
            source = Path(linear_operator.__file__).resolve()
            if source.is_relative_to(ROOT / "build") or source.parent.parent == ROOT:
                raise RuntimeError(f"linear_operator imported from a source tree of this repository: {source}")
        execute(spec, record)
    except BaseException as exc:  # noqa: B036 - a failure of the case is data, and so is an interrupt
        record.update(status=classify(exc), message=last_line(exc), trace=trace_tail(exc))
        if spec["device"] == "cuda" and "device_name" in record:  # CUDA in use: its peak up to the failure
            record["peak_bytes"] = sys.modules["torch"].cuda.max_memory_allocated()
        elif spec["device"] == "cpu" and "peak_scope" in record:  # its peak up to the failure
            record["peak_bytes"] = self_peak_rss()
    return records.write_json(record_path, record)


def size_label(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items())


def cmd_list(args: argparse.Namespace) -> int:
    for case in CASES.values():
        tag = " (self-test, not run by default)" if case.selftest else ""
        ref = "; variant reference computes it" if case.reference else ""
        print(f"{case.name}: {case.title}{tag}{ref}")
        for size, params in case.sizes.items():
            print(f"    {size:5}  {size_label(params)}")
        for size, values in case.sweep.items():
            print(f"    sweep {size}: N in {values}")
    print(f"defaults: cases {','.join(DEFAULT_CASES)}; dtype {DTYPES[0]}; layout {LAYOUTS[0]}; {STEPS} Adam steps")
    return 0


def plan(args: argparse.Namespace) -> list[Run]:
    """Every (case, params) to run, in order: the selected cases, then case a at the sweep's other values of N."""
    common = {"dtype": args.dtype, "layout": args.layout, "size": args.size}
    if args.threads:
        common["threads"] = args.threads
    runs = []
    for name in args.cases:
        params = {**CASES[name].sizes[args.size], **common}
        if args.new_rows is not None:
            if "T" not in params:
                raise records.ForkError(f"--new-rows: case {name} predicts no new rows (only e and f do)")
            params["T"] = args.new_rows
        runs.append(Run(name, args.variant, params, args.device))
    if args.sweep:
        done = {run.params.get("N") for run in runs if run.case == "a"}
        n = CASES["a"].sizes[args.size]["n"]
        for N in CASES["a"].sweep.get(args.size, []):
            if N not in done:
                runs.append(Run("a", args.variant, {"N": N, "n": n, **common, "sweep": True}, args.device))
    return runs


def cmd_run(args: argparse.Namespace) -> int:
    args.out = args.out or str(BUILD_DIR / "cases" / f"{args.variant}.json")
    runs = plan(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cap = None if args.device == "cuda" else int(args.cap_gib * 2**30)
    no_cuda = args.device == "cuda" and not cuda_available()
    results: list[Record] = []
    for index, run in enumerate(runs, 1):
        label = f"[{index}/{len(runs)}] case {run.case} {size_label(size_params(run.params))} {run.variant}"
        if no_cuda:
            record = skipped(run, NO_CUDA)
        elif run.variant == REFERENCE and not CASES[run.case].reference:
            record = skipped(run, f"the reference does not compute case {run.case}")
        else:
            print(f"{label}: running (at most {args.timeout:.0f} s)", flush=True)
            record = run_one(run, pythonpath=args.pythonpath, cap_bytes=cap, timeout=args.timeout)
        print(f"{label}: {summary(record)}", flush=True)
        results.append(record)
    records.write(Path(args.out), results)
    print(f"wrote {len(results)} record(s) to {args.out}")
    return 0


def case_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown case(s) {unknown or [text]}: expected some of {list(CASES)}")
    return names


def add_arguments(commands: Any) -> None:
    """The ``cases`` subcommands of ``python -m linear_operator_fork``."""
    parser = commands.add_parser("cases", help="the large-M cases: list them, or run them for one variant")
    sub = parser.add_subparsers(dest="cases_command", required=True)
    sub.add_parser("list", help="print the cases and their sizes")
    run = sub.add_parser("run", help="run the selected cases for one variant, each in its own subprocess")
    run.add_argument("--variant", required=True, help=f"label of the linear_operator under test, or {REFERENCE!r}")
    run.add_argument(
        "--pythonpath",
        help="directories (os.pathsep-separated) put first on the children's PYTHONPATH (pip --target sites)",
    )
    run.add_argument("--device", choices=DEVICES, default="cpu")
    cases_help = f"comma-separated (default: {','.join(DEFAULT_CASES)})"
    run.add_argument("--cases", type=case_list, default=DEFAULT_CASES, help=cases_help)
    run.add_argument("--size", choices=SIZES, default="cpu")
    run.add_argument("--sweep", action="store_true", help="also case a at each N of the size's sweep")
    run.add_argument("--dtype", choices=DTYPES, default=DTYPES[0])
    run.add_argument("--layout", choices=LAYOUTS, default=LAYOUTS[0])
    run.add_argument("--threads", type=int, help="torch.set_num_threads in each child (default: torch's)")
    run.add_argument("--new-rows", type=int, help="T of the prediction cases e and f (default: the size's)")
    cap_help = "RLIMIT_AS of each child on the CPU, GiB (default %(default)s)"
    run.add_argument("--cap-gib", type=float, default=DEFAULT_CAP_GIB, help=cap_help)
    timeout_help = "seconds per child (default %(default)s)"
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help=timeout_help)
    run.add_argument("--out", help="JSON file: {'records': [...]} (default build/cases/<variant>.json)")
    child_parser = sub.add_parser("child", help="(internal) run one case in this process")
    child_parser.add_argument("spec", type=Path)
    child_parser.add_argument("record", type=Path)
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    if args.cases_command == "list":
        return cmd_list(args)
    if args.cases_command == "child":
        return child(args.spec, args.record)
    missing = [name for name in args.cases if args.size not in CASES[name].sizes]
    if missing:
        raise records.ForkError(f"size {args.size!r} is not defined for case(s) {missing}")
    if args.cap_gib <= 0 or args.timeout <= 0 or (args.threads is not None and args.threads <= 0):
        raise records.ForkError("--cap-gib, --timeout and --threads must be positive")
    return cmd_run(args)
