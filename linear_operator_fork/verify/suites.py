"""Run a released test suite (upstream's or gpytorch's ``test/``) against the installed variant.

The suite's ``test/`` folder is copied out of its sdist (for the fork: out of the patched tree,
so the tests our patches add run too) into ``build/suites/<suite>-<variant>/``: no package
source sits next to it, so every ``import linear_operator`` resolves to the installed wheel.
pytest writes JUnit XML; the counts and failing test ids become one record of the verify report.

    python -m linear_operator_fork suite --suite upstream-suite --variant fork \\
        --tests <tree>/test --out build/verify/records/upstream-suite-fork.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from linear_operator_fork.recipe import BUILD_DIR, ForkError
from linear_operator_fork.verify import records
from linear_operator_fork.verify.records import Record


def copy_tests(source: Path, workdir: Path) -> Path:
    """Copy ``source`` (a ``test/`` folder) alone into a fresh ``workdir``; return the copy."""
    if not source.is_dir():
        raise ForkError(f"no test folder at {source}")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return Path(shutil.copytree(source, workdir / source.name, ignore=shutil.ignore_patterns("__pycache__")))


def junit_counts(path: Path) -> dict:
    """passed / failed / skipped, and the ids of failed and of passed tests, from pytest's JUnit XML."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = failed = skipped = 0
    failures, passed = [], []
    for suite in suites:
        for case in suite.iter("testcase"):
            total += 1
            outcome = {child.tag for child in case}
            if outcome & {"failure", "error"}:
                failed += 1
                failures.append(f"{case.get('classname')}::{case.get('name')}")
            elif "skipped" in outcome:
                skipped += 1
            else:
                passed.append(f"{case.get('classname')}::{case.get('name')}")
    counts = {"passed": total - failed - skipped, "failed": failed, "skipped": skipped, "failures": failures}
    return {**counts, "passed_ids": passed}


def installed(package: str = "linear_operator") -> tuple[str, str]:
    """Version and file of the ``package`` this interpreter imports (checked not to be a source tree)."""
    code = f"import {package} as p, json; print(json.dumps([p.__version__, p.__file__]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    if out.returncode != 0:
        raise ForkError(f"{package} is not importable here:\n{out.stderr.strip()}")
    version, file = json.loads(out.stdout)
    if Path(file).resolve().is_relative_to(BUILD_DIR):
        raise ForkError(f"{package} is imported from a source tree ({file}), not an installed wheel")
    return version, file


def installed_linear_operator() -> dict:
    """Version and file of the linear_operator this interpreter imports (checked not to be a source tree)."""
    version, file = installed("linear_operator")
    return {"version": version, "file": file}


def run(suite: str, variant: str, tests: Path, out: Path, extra: list[str]) -> Record:
    workdir = BUILD_DIR / "suites" / f"{suite}-{variant}"
    copy = copy_tests(tests, workdir)
    # An ini file of its own makes workdir pytest's rootdir: no configuration of this repository applies,
    # and test ids ("test.operators.test_x.TestY::test_z") are the same for every variant.
    (workdir / "pytest.ini").write_text("[pytest]\n")
    junit = workdir / "junit.xml"
    command = [
        sys.executable, "-m", "pytest", copy.name, "-q", "-p", "no:cacheprovider",
        "--junitxml", str(junit), "-o", "junit_family=xunit2", *extra,
    ]  # fmt: skip
    print(f"[{suite} / {variant}] {' '.join(command)}  (in {workdir})", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir)
    seconds = time.perf_counter() - start
    record = records.new(suite, variant, "cpu")
    record.update(installed_linear_operator(), seconds=seconds)
    if suite == "gpytorch-suite":  # which gpytorch ran it: the pinned release, or the patched one (gpytorch-fork)
        record["gpytorch"] = installed("gpytorch")[0]
    del record["losses"], record["grads"], record["params"]
    if junit.is_file():
        counts = junit_counts(junit)
        status = "ok" if counts["failed"] == 0 and result.returncode == 0 else "error"
        message = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        record.update(counts, status=status, message=message)
    else:
        record.update(status="error", message=f"pytest exited {result.returncode} without a report")
        record.update(passed=0, failed=0, skipped=0, failures=[], passed_ids=[])
    records.write(out, [record])
    print(f"[{suite} / {variant}] {record['message']} in {seconds:.0f} s -> {out}", flush=True)
    return record


def add_arguments(commands: Any) -> None:
    """The ``suite`` subcommand of ``python -m linear_operator_fork``."""
    parser = commands.add_parser("suite", help="run a released test suite against the installed linear_operator")
    parser.add_argument("--suite", required=True, help="record name, e.g. upstream-suite or gpytorch-suite")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--tests", required=True, type=Path, help="the suite's test/ folder (copied, not run in place)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    record = run(args.suite, args.variant, args.tests, args.out.resolve(), args.pytest_args)
    # A failing suite is data for the report, which decides; the session fails only when nothing ran.
    return 0 if record["passed"] + record["failed"] > 0 else 1
