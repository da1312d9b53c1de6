"""Run a list of cases on one variant; no crash stops the run.

A child process (``python -m linear_operator_fork differential child``) handles the cases in order: before each case
it announces ``start INDEX`` on its stdout (the protocol channel; everything else it prints goes to stderr), runs the
case (:func:`.outcome.evaluate`) and appends the outcome to the JSONL file as one line, flushed. The parent reads the
announcements: a child that dies leaves the case it announced last without an outcome, which the parent records as
``crash`` (exit signal or code, the last lines of the child's stderr); a case that runs past the per-case timeout is
killed and recorded as ``timeout``. Either way the parent starts a new child at the next case.

The child runs in a scratch directory that holds only a link to this package, and refuses a ``linear_operator``
imported from a source tree of this repository: the variant under test is the installed one.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[2]  # linear_operator_fork/
ROOT = PACKAGE.parent
DEFAULT_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 300.0  # importing torch and gpytorch on a busy machine
PROGRESS_EVERY = 50
STDERR_TAIL_LINES = 12


class StartupError(RuntimeError):
    """The child died or hung before its first case: nothing can run (e.g. linear_operator from a source tree)."""


# -- the child -------------------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Versions and files of what the child imported; refuses a linear_operator from this repository's source."""
    import gpytorch
    import linear_operator
    import torch

    from linear_operator_fork.verify.data import sparse_class

    source = Path(linear_operator.__file__).resolve()
    if source.is_relative_to(ROOT / "build") or source.parent.parent == ROOT:
        raise RuntimeError(f"linear_operator imported from a source tree of this repository: {source}")
    return {
        "version": linear_operator.__version__,
        "file": str(source),
        "sparse_class": sparse_class()[1],
        "torch": torch.__version__,
        "gpytorch": gpytorch.__version__,
    }


def child(keys_path: Path, start: int, out_path: Path, variant: str) -> int:
    """Run ``keys[start:]`` in order, appending one JSON line per case to ``out_path``."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)  # line-buffered: each announcement is flushed
    os.dup2(2, 1)  # anything else printed, by Python or by native code, goes to stderr
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    import torch

    from linear_operator_fork.verify.differential.case import from_key
    from linear_operator_fork.verify.differential.outcome import evaluate

    torch.set_num_threads(1)  # the cases are tiny: threads only cost
    info = environment()
    keys = json.loads(keys_path.read_text())
    with open(out_path, "a") as out:
        for index in range(start, len(keys)):
            protocol.write(f"start {index}\n")
            record = evaluate(from_key(keys[index]))
            record.update(index=index, variant=variant, **info)
            out.write(json.dumps(record) + "\n")
            out.flush()
    protocol.write("done\n")
    return 0


# -- the parent ------------------------------------------------------------------------------------------------------


def stderr_tail(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [line for line in lines if line.strip()][-STDERR_TAIL_LINES:]


def died(code: int) -> str:
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def load_outcomes(path: Path) -> list[dict[str, Any]]:
    """The outcome records of a JSONL file (a line cut short by a dying child is dropped)."""
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append(path: Path, record: dict[str, Any]) -> None:
    text = path.read_text() if path.exists() else ""
    with open(path, "a") as out:
        if text and not text.endswith("\n"):
            out.write("\n")  # after a line cut short
        out.write(json.dumps(record) + "\n")


def failure_record(key: str, index: int, variant: str, status: str, message: str, tail: list[str]) -> dict[str, Any]:
    from linear_operator_fork.verify.differential.case import expectation, from_key

    return {
        "key": key,
        "index": index,
        "variant": variant,
        "status": status,
        "expect": expectation(from_key(key)),
        "message": message,
        "stderr_tail": tail,
    }


class Child:
    """One child process from ``start``: its announcements, read with a timeout."""

    def __init__(self, command: list[str], workdir: Path, env: dict[str, str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # its own process group: a timeout kills whatever it started too
            )
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def lines(self, timeout: float) -> list[str] | None:
        """Complete lines announced within ``timeout`` seconds ([] when none came), None at end of output."""
        if not self.selector.select(timeout):
            return []
        chunk = os.read(self.process.stdout.fileno(), 65536)
        if not chunk:
            return None
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        return [line.decode(errors="replace") for line in complete]

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()

    def wait(self) -> int:
        code = self.process.wait()
        self.selector.close()
        self.process.stdout.close()
        return code


def run(
    keys: list[str],
    variant: str,
    out_path: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    python: str | None = None,
    progress: Callable[[str], None] = print,
    progress_every: int = PROGRESS_EVERY,
) -> list[dict[str, Any]]:
    """Run every case of ``keys`` on the variant importable by ``python`` (default: this interpreter); the outcome
    records, also in ``out_path`` (JSONL, rewritten). Raises :class:`StartupError` if a child cannot start."""
    out_path = Path(out_path).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("")
    workdir = Path(tempfile.mkdtemp(prefix="lof-differential-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    crashes = timeouts = spawns = 0
    try:
        (workdir / PACKAGE.name).symlink_to(PACKAGE, target_is_directory=True)
        keys_path = workdir / "keys.json"
        keys_path.write_text(json.dumps(keys))
        index = 0
        while index < len(keys):
            spawns += 1
            stderr_path = workdir / f"stderr-{spawns}.log"
            command = [python or sys.executable, "-m", PACKAGE.name, "differential", "child", str(keys_path),
                       "--start", str(index), "--out", str(out_path), "--variant", variant]  # fmt: skip
            process = Child(command, workdir, env, stderr_path)
            current, since, finished = None, time.monotonic(), False
            while True:
                limit = (STARTUP_TIMEOUT_S if current is None else timeout) - (time.monotonic() - since)
                if limit <= 0:
                    process.kill()
                    if current is None:
                        raise StartupError(f"the {variant} child did not start within {STARTUP_TIMEOUT_S:g} s")
                    message = f"no outcome within {timeout:g} s: killed"
                    append(out_path, failure_record(keys[current], current, variant, "timeout", message, []))
                    timeouts += 1
                    break
                lines = process.lines(min(limit, 1.0))
                if lines is None:
                    code = process.wait()
                    if finished:
                        break
                    tail = stderr_tail(stderr_path)
                    if current is None:
                        raise StartupError(f"the {variant} child died ({died(code)}) before its first case:\n  "
                                           + "\n  ".join(tail or ["(no stderr)"]))  # fmt: skip
                    done = {record.get("index") for record in load_outcomes(out_path)}
                    if current not in done:
                        message = f"the process died ({died(code)}) during this case"
                        append(out_path, failure_record(keys[current], current, variant, "crash", message, tail))
                        crashes += 1
                    break
                for line in lines:
                    if line.startswith("start "):
                        current, since = int(line.split()[1]), time.monotonic()
                        if current and current % progress_every == 0:
                            elapsed = time.perf_counter() - started
                            progress(f"{variant}: {current}/{len(keys)} cases, {elapsed:.0f} s "
                                     f"({crashes} crashed, {timeouts} timed out)")  # fmt: skip
                    elif line == "done":
                        finished = True
            index = len(keys) if finished else current + 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    records = load_outcomes(out_path)
    counts = Counter(record["status"] for record in records)
    summary = ", ".join(f"{status} {count}" for status, count in counts.most_common())
    progress(f"{variant}: {len(records)} cases in {time.perf_counter() - started:.0f} s: {summary}")
    return records
