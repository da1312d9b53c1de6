"""Mutation testing: curated bugs planted in the patched tree, one at a time; the test net must catch each one.

``mutants/linear_operator/*.patch`` holds the mutants: each a small diff against the patched tree (upstream + the
series), after a header that says what it breaks::

    Mutant: what the planted bug does
    PR: the stacked pull request whose code it breaks (a branch of fork.toml's [[pr.stack]])
    State: the state kept between calls that it breaks ("-": none)
    From: who planted it

``run`` builds each mutated tree into a wheel, installs it into a folder of its own, and runs the catchers with that
folder first on ``PYTHONPATH`` (installed code, never a source tree):

- ``differential``: the differential harness on the default case list; caught by a FAIL that the unmutated fork's
  run does not have;
- ``tests``: our tests (``tests/``), without ``tests/test_build.py``, which compares the installed files with the
  series and so would catch any change at all; caught by a test that fails where the unmutated fork passes;
- ``upstream``: upstream's suite on the mutated tree (its ``test/``, with the patches' own tests), likewise.

The unmutated fork runs every catcher first (the baseline). ``run`` fails if a mutant does not apply (re-make it for
the new code), or if a mutant survives every catcher. ``check`` (in ``nox -s patches``) only applies them.

    python -m linear_operator_fork mutants check
    python -m linear_operator_fork mutants run --stock-site DIR --work DIR [--mutant NAME ...]
        [--readme docs/testing.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linear_operator_fork import build, recipe
from linear_operator_fork.recipe import BUILD_DIR, ROOT, ForkError
from linear_operator_fork.verify import records, suites
from linear_operator_fork.verify.differential import verdict
from linear_operator_fork.verify.differential.runner import load_outcomes

MUTANTS_DIR = ROOT / "mutants" / "linear_operator"
OUT_DIR = BUILD_DIR / "mutants"
HEADER_FIELDS = ("Mutant", "PR", "State", "From")
CATCHERS = ("differential", "tests", "upstream")
README_BEGIN, README_END = "<!-- mutants:begin -->", "<!-- mutants:end -->"


@dataclass(frozen=True)
class Mutant:
    name: str  # the file name without .patch
    path: Path
    what: str
    pr: str
    state: str
    origin: str


def read_mutant(path: Path, branches: tuple[str, ...]) -> Mutant:
    """The mutant in ``path``, its header checked (``ForkError`` naming what is wrong)."""
    text = path.read_text(encoding="utf-8")
    head, sep, _ = text.partition("\ndiff --git ")
    if not sep:
        raise ForkError(f"{path}: no diff (a mutant is a header, then a `git diff` of the patched tree)")
    fields = {}
    for line in head.splitlines():
        name, colon, value = line.partition(":")
        if colon and name in HEADER_FIELDS:
            fields[name] = value.strip()
    missing = [name for name in HEADER_FIELDS if not fields.get(name)]
    if missing:
        raise ForkError(f"{path}: missing header field(s) {missing} (expected {', '.join(HEADER_FIELDS)})")
    if fields["PR"] not in branches:
        raise ForkError(f"{path}: PR {fields['PR']!r} is not a branch of fork.toml's stack: {list(branches)}")
    return Mutant(path.stem, path, fields["Mutant"], fields["PR"], fields["State"], fields["From"])


def load(directory: Path = MUTANTS_DIR, rec: recipe.Recipe | None = None) -> list[Mutant]:
    rec = rec or recipe.load()
    paths = sorted(directory.glob("*.patch"))
    if not paths:
        raise ForkError(f"no mutants in {directory}")
    return [read_mutant(path, tuple(pr.branch for pr in rec.stack)) for path in paths]


def mutated_tree(mutant: Mutant, tree: Path, destination: Path) -> Path:
    """A copy of the patched ``tree`` with ``mutant`` applied, at ``destination``."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(tree, destination)
    apply(mutant, destination)
    return destination


def apply(mutant: Mutant, tree: Path, check_only: bool = False) -> None:
    command = ["git", "apply", *(["--check"] if check_only else []), str(mutant.path)]
    # Inside a git repository (e.g. build/ of this one), git apply would take paths from the repository's top and
    # silently skip those outside the current folder: the tree must be the top
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.resolve().parent)}
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise ForkError(
            f"mutant {mutant.name} does not apply to the patched tree (re-make it for the new code, do not drop "
            f"it):\n{result.stderr.strip()}"
        )


def check(mutants: list[Mutant], tree: Path) -> None:
    problems = []
    for mutant in mutants:
        try:
            apply(mutant, tree, check_only=True)
        except ForkError as exc:
            problems.append(str(exc))
    covered = {mutant.pr for mutant in mutants}
    missing = [pr.branch for pr in recipe.load().stack if pr.branch not in covered]
    if missing:
        problems.append(f"no mutant for the pull request(s) {missing}: each PR of the stack needs at least one")
    if problems:
        raise ForkError("\n".join(problems))


# -- installing a tree -----------------------------------------------------------------------------------------------


def install(tree: Path, site: Path, wheels: Path) -> Path:
    """Build ``tree`` into a wheel (upstream's setuptools configuration, as the fork's own build does; its output in
    ``wheels``/build.log) and install it into ``site`` with pip (``--target``); the wheel's path."""
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    with output_to(wheels / "build.log"):
        name = build.wheel_from_tree(tree, wheels)
    shutil.rmtree(site, ignore_errors=True)
    wheel = wheels / name
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ForkError(f"pip could not install {name} into {site}:\n{result.stderr.strip()}")
    return wheel


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """This process's standard output and error (file descriptors 1 and 2: setuptools' output too) into ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with path.open("w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def site_env(site: Path | None, wheel: Path | None = None) -> dict[str, str]:
    """The environment of a catcher: ``site`` first on PYTHONPATH (the installed mutant), or the venv's fork."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    if wheel is not None:
        env.update(LINEAR_OPERATOR_FORK_WHEEL=str(wheel), LINEAR_OPERATOR_FORK_VARIANT="fork")
    return env


# -- the catchers ----------------------------------------------------------------------------------------------------


def differential_fails(folder: Path, label: str, env: dict[str, str]) -> list[str]:
    """The keys of the FAILs of the differential harness (cases.json in ``folder``) on the linear_operator of
    ``env``, against stock's outcomes in ``folder``."""
    out = folder / f"{label}.jsonl"
    command = [sys.executable, "-m", "linear_operator_fork", "differential", "run", "--variant", label,
               "--dir", str(folder), "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ForkError(f"the differential harness did not run on {label}:\n{result.stderr.strip()[-2000:]}")
    meta = json.loads((folder / "cases.json").read_text())
    data = verdict.results(meta, load_outcomes(folder / "stock.jsonl"), load_outcomes(out))
    return [fail["key"] for fail in data["fails"]]


def pytest_failures(command: list[str], cwd: Path, junit: Path, env: dict[str, str]) -> list[str]:
    """The ids of the tests that failed (pytest's JUnit XML); ``ForkError`` if pytest ran nothing."""
    junit.unlink(missing_ok=True)
    subprocess.run([*command, "--junitxml", str(junit), "-o", "junit_family=xunit2"], cwd=cwd, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    if not junit.is_file():
        raise ForkError(f"pytest wrote no report: {' '.join(command)} (in {cwd})")
    return suites.junit_counts(junit)["failures"]


def our_tests(env: dict[str, str], junit: Path, deselect: list[str], first: bool) -> list[str]:
    command = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
               "--ignore", "tests/test_build.py", *(["-x"] if first else [])]  # fmt: skip
    command += [arg for test in deselect for arg in ("--deselect", test)]
    return pytest_failures(command, ROOT, junit, env)


def upstream_suite(tree: Path, workdir: Path, env: dict[str, str], deselect: list[str], first: bool) -> list[str]:
    copy = suites.copy_tests(tree / "test", workdir)
    (workdir / "pytest.ini").write_text("[pytest]\n")  # (workdir is pytest's rootdir: see suites.run)
    command = [sys.executable, "-m", "pytest", copy.name, "-q", "-p", "no:cacheprovider", *(["-x"] if first else [])]
    command += [arg for test in deselect for arg in ("--deselect", test)]
    return pytest_failures(command, workdir, workdir / "junit.xml", env)


def test_ids(failures: list[str]) -> list[str]:
    """JUnit ``classname::name`` ids as pytest node ids (``a.b.test_x.TestY::test_z`` -> ``a/b/test_x.py::TestY::
    test_z``), for --deselect."""
    ids = []
    for failure in failures:
        classname, _, name = failure.partition("::")
        parts = classname.split(".")
        module = next((i for i in range(len(parts), 0, -1) if parts[i - 1].startswith("test")), len(parts))
        ids.append("::".join(["/".join(parts[:module]) + ".py", *parts[module:], name]))
    return ids


# -- the run ---------------------------------------------------------------------------------------------------------


def run(mutants: list[Mutant], stock_site: Path, work: Path, catchers: tuple[str, ...], out: Path) -> dict[str, Any]:
    """Every mutant through every catcher; the results (also written to ``out``/results.json and report.md)."""
    out.mkdir(parents=True, exist_ok=True)
    tree = build.patched_tree()
    folder = out / "differential"
    if "differential" in catchers:
        generate = [sys.executable, "-m", "linear_operator_fork", "differential", "generate", "--dir", str(folder)]
        subprocess.run(generate, check=True, stdout=subprocess.DEVNULL)
        progress("baseline: differential harness on stock")
        differential_fails(folder, "stock", site_env(stock_site))
    progress("baseline: the unmutated fork through every catcher")
    baseline = catch(tree, folder, work / "baseline", catchers, None, None, {})
    started = time.perf_counter()
    rows = []
    for index, mutant in enumerate(mutants):
        left = (time.perf_counter() - started) / index * (len(mutants) - index) if index else 0.0
        eta = f", about {left / 60:.0f} min left" if index else ""
        progress(f"mutant {index + 1}/{len(mutants)}: {mutant.name}{eta}")
        place = work / mutant.name
        mutant_tree = mutated_tree(mutant, tree, place / "tree")
        wheel = install(mutant_tree, place / "site", place / "wheel")
        found = catch(mutant_tree, folder, place, catchers, place / "site", wheel, baseline)
        rows.append({"mutant": mutant.name, "what": mutant.what, "pr": mutant.pr, "state": mutant.state,
                     "from": mutant.origin, "caught_by": found})  # fmt: skip
        shutil.rmtree(place / "tree", ignore_errors=True)
        caught = [name for name, new in found.items() if new]
        progress(f"  {'caught by ' + ', '.join(caught) if caught else 'SURVIVED'}")
    data = {
        "generated": time.strftime("%Y-%m-%d", time.gmtime()),
        "fork_version": recipe.load().fork_version,
        "catchers": list(catchers),
        "baseline": baseline,
        "mutants": rows,
        "survivors": [row["mutant"] for row in rows if not any(row["caught_by"].values())],
    }
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "report.md").write_text("# Mutants\n\n" + "\n".join(table(data)) + "\n")
    return data


def catch(
    tree: Path,
    folder: Path,
    place: Path,
    catchers: tuple[str, ...],
    site: Path | None,
    wheel: Path | None,
    baseline: dict[str, list[str]],
) -> dict[str, list[str]]:
    """What each catcher finds on the linear_operator installed in ``site`` (None: the venv's fork) that the
    baseline does not: FAIL keys, failing test ids. Against an empty baseline (the baseline run itself), every
    catcher runs in full; against a baseline, the test runs stop at their first new failure."""
    env = site_env(site, wheel)
    first = bool(baseline)
    place.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    for catcher in catchers:
        known = baseline.get(catcher, [])
        if catcher == "differential":
            new = differential_fails(folder, place.name, env)
        elif catcher == "tests":
            new = our_tests(env, place / "tests.xml", test_ids(known), first)
        else:
            new = upstream_suite(tree, BUILD_DIR / "suites" / f"mutant-{place.name}", env, test_ids(known), first)
        found[catcher] = [item for item in new if item not in known]
    return found


def progress(line: str) -> None:
    print(f"[mutants] {line}", flush=True)


def table(data: dict[str, Any]) -> list[str]:
    catchers = data["catchers"]
    titles = {"differential": "differential harness", "tests": "our tests", "upstream": "upstream suite"}
    lines = [
        f"`nox -s mutants`, {data['generated']}, linear_operator {data['fork_version']}: "
        f"{len(data['mutants'])} mutants, {len(data['survivors'])} survived.",
        "",
        "| mutant | PR | state | " + " | ".join(titles[name] for name in catchers) + " |",
        "|---|---|---|" + "---|" * len(catchers),
    ]
    for row in data["mutants"]:
        cells = []
        for name in catchers:
            new = row["caught_by"].get(name, [])
            cells.append(("caught" + (f" ({len(new)} FAILs)" if name == "differential" else "")) if new else "missed")
        lines.append(f"| {row['what']} | {row['pr']} | {row['state']} | " + " | ".join(cells) + " |")
    return lines


# -- the command line ------------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    mutants = load()
    tree = build.patched_tree()
    check(mutants, tree)
    print(f"ok: {len(mutants)} mutant(s) apply to the patched tree; every pull request of the stack has one")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    work = args.work.resolve()
    if work.is_relative_to(BUILD_DIR):
        raise ForkError(f"--work {work}: not under build/ (the catchers refuse a linear_operator from there)")
    mutants = load()
    if args.mutant:
        unknown = sorted(set(args.mutant) - {mutant.name for mutant in mutants})
        if unknown:
            raise ForkError(f"unknown mutant(s) {unknown}: see {MUTANTS_DIR}")
        mutants = [mutant for mutant in mutants if mutant.name in args.mutant]
    catchers = tuple(args.catchers.split(","))
    if not set(catchers) <= set(CATCHERS):
        raise ForkError(f"--catchers: expected names among {list(CATCHERS)}, got {args.catchers!r}")
    data = run(mutants, args.stock_site.resolve(), work, catchers, args.out.resolve())
    print("\n".join(table(data)))
    if args.readme:
        records.replace_block(args.readme, README_BEGIN, README_END, table(data))
        print(f"updated the table in {args.readme}")
    if data["survivors"]:
        print(f"SURVIVED: {', '.join(data['survivors'])} (no catcher failed on them)")
        return 1
    return 0


def add_arguments(commands: Any) -> None:
    """The ``mutants`` subcommands of ``python -m linear_operator_fork``."""
    main = commands.add_parser("mutants", help="mutation testing: planted bugs, each caught by the test net")
    sub = main.add_subparsers(dest="mutants_command", required=True)
    check_parser = sub.add_parser("check", help="every mutant applies to the patched tree; every PR has one")
    check_parser.set_defaults(handler=cmd_check)
    run_parser = sub.add_parser("run", help="each mutant through the catchers; exit 1 if one survives")
    run_parser.add_argument("--stock-site", type=Path, required=True, help="stock linear_operator (pip --target)")
    run_parser.add_argument("--work", type=Path, required=True, help="folder for the mutants' installs (not build/)")
    run_parser.add_argument("--mutant", action="append", help="only this mutant (repeatable)")
    run_parser.add_argument("--catchers", default=",".join(CATCHERS), help="default %(default)s")
    run_parser.add_argument("--out", type=Path, default=OUT_DIR, help="default %(default)s")
    run_parser.add_argument("--readme", type=Path, help="also rewrite its table in this document")
    run_parser.set_defaults(handler=cmd_run)
