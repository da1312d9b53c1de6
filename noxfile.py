"""Workflow sessions: ``nox -l`` lists them.

Every session that runs code against linear_operator installs a *variant* (``stock``: the
pinned upstream release from the package index; ``fork``: the wheel built from this
repository; for gpytorch's suite also ``gpytorch-fork``: the fork's wheel and the patched gpytorch's,
built from ``packages/gpytorch``) into its own fresh virtual environment: no source tree is ever put on sys.path.

Environment:
- ``LINEAR_OPERATOR_FORK_TORCH``: torch requirement (default ``torch==2.13.0``; on GitHub the CPU
  index is passed with ``PIP_EXTRA_INDEX_URL``);
- ``LINEAR_OPERATOR_FORK_STOCK``: stock release compared (default: the pinned one);
- ``LINEAR_OPERATOR_FORK_STOCK_CASE_C``: stock release also run on case c (default: the thread's, in fork.toml);
- ``LINEAR_OPERATOR_FORK_DEVICES``: devices of the large-M cases, at their sizes (default ``cpu,cuda``;
  without a GPU the cuda cases are recorded as skipped);
- ``LINEAR_OPERATOR_FORK_DIFFERENTIAL_SEED``, ``LINEAR_OPERATOR_FORK_DIFFERENTIAL_COUNT``: the differential harness's
  case list (default: a fixed seed, 600 cases).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path

import nox

# `nox` (the console script) does not put the noxfile's folder on sys.path; our tooling lives there.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from linear_operator_fork import build as fork_build
from linear_operator_fork import prbench as fork_prbench
from linear_operator_fork import recipe as fork_recipe
from linear_operator_fork import report as fork_report
from linear_operator_fork import sdist as fork_sdist
from linear_operator_fork import series as fork_series

nox.options.sessions = ["patches", "tests", "lint"]
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
VERIFY = ROOT / "build" / "verify"
DIFFERENTIAL = ROOT / "build" / "differential"
RECIPE = fork_recipe.load()
TORCH = os.environ.get("LINEAR_OPERATOR_FORK_TORCH", "torch==2.13.0")
GPYTORCH = f"{RECIPE.downstream.name}=={RECIPE.downstream.version}"  # the pinned downstream (fork.toml)
GPYTORCH_PROJECT = RECIPE.downstream  # gpytorch, also a patched upstream: its series and build number
GPYTORCH_PACKAGE = Path("packages") / "gpytorch"  # its PEP 517 entry point, in this repository
VARIANTS = ["stock", "fork"]
WHEELS = [*VARIANTS, "gpytorch-fork"]  # what dist/ holds: stock's and the fork's linear_operator, the patched gpytorch
BOTH_FORKS = (GPYTORCH_PROJECT.fork_version, RECIPE.fork_version)  # gpytorch's and linear_operator's, installed
RUFF = "ruff==0.17.6"
STOCK = os.environ.get("LINEAR_OPERATOR_FORK_STOCK", RECIPE.version)  # stock release under comparison
STOCK_CASE_C = os.environ.get("LINEAR_OPERATOR_FORK_STOCK_CASE_C", RECIPE.thread_release)  # for case c
# Devices for the large-M cases; without a GPU the cuda runs are recorded as skipped, visibly.
DEVICES = os.environ.get("LINEAR_OPERATOR_FORK_DEVICES", "cpu,cuda").split(",")


def current_wheel(variant: str) -> Path | None:
    """The wheel already in ``dist/<variant>/`` if it is exactly what a build would give now, else None.

    Stock: the wheel of the selected release. Fork (and gpytorch-fork, the patched gpytorch): the wheel of the
    current build number whose generated version file (which records the upstream archive and every patch's sha256)
    matches the series now.
    """
    if variant == "stock":
        wheels = sorted((DIST / variant).glob(f"linear_operator-{STOCK}-*.whl"))
        return wheels[0] if len(wheels) == 1 else None
    project = GPYTORCH_PROJECT if variant == "gpytorch-fork" else RECIPE
    wheels = sorted((DIST / variant).glob(f"{project.name}-{project.fork_version}-*.whl"))
    if len(wheels) != 1:
        return None
    patches = fork_series.read_series(project.series_file, project.patches_dir)
    with zipfile.ZipFile(wheels[0]) as wheel:
        built = wheel.read(project.version_file).decode()
    return wheels[0] if built == fork_build.version_module(project, patches) else None


def build_wheel(session: nox.Session, variant: str, reuse: bool = True) -> Path:
    """Build (fork) or fetch (stock) the variant's wheel into ``dist/<variant>/``; return its path.

    With ``reuse``, a wheel already there that matches the current pin and series is used as it is, so that
    the sessions of one ``verify`` build the fork once.
    """
    if variant not in WHEELS:
        session.error(f"unknown variant {variant!r}: expected one of {WHEELS}")
    existing = current_wheel(variant) if reuse else None
    if existing is not None:
        session.log(f"{variant} wheel: {existing.name} (already built for this pin and series)")
        return existing
    source = {"fork": str(ROOT), "gpytorch-fork": str(ROOT / GPYTORCH_PACKAGE), "stock": f"{RECIPE.name}=={STOCK}"}
    name = GPYTORCH_PROJECT.name if variant == "gpytorch-fork" else RECIPE.name
    wheel = pip_wheel(session, DIST / variant, f"{name}-*.whl", source[variant])
    session.log(f"{variant} wheel: {wheel.name}")
    return wheel


def pip_wheel(session: nox.Session, target: Path, pattern: str, *pip_args: str) -> Path:
    """``pip wheel --no-deps`` of ``pip_args`` into a fresh ``target``; returns the one wheel there that matches
    ``pattern``."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(target), *pip_args)
    wheels = sorted(target.glob(pattern))
    if len(wheels) != 1:
        session.error(f"expected one wheel {pattern} in {target}, found {sorted(p.name for p in target.iterdir())}")
    return wheels[0]


def install_variant(session: nox.Session, variant: str, *extra: str) -> Path:
    """Fresh venv: torch, then the variant's wheel, then ``extra`` (which must not replace it)."""
    wheel = build_wheel(session, variant)
    session.install(TORCH)
    session.install(str(wheel))
    if extra:
        session.install(*extra)
    probe = "import linear_operator as lo; print('linear_operator', lo.__version__, 'from', lo.__file__)"
    output = session.run("python", "-c", probe, silent=True) or ""
    session.log(output.strip())
    # (nox -R and --no-install skip session.install: a reused venv keeps the build it was made with)
    version = wheel.name.split("-")[1]
    if output.split()[1:2] != [version]:
        session.error(
            f"this venv holds {output.strip() or 'no linear_operator'}, not the {variant} wheel {wheel.name}: nox "
            "skips installs with -R or --no-install, so run this session without them (or with -r)"
        )
    return wheel


def install_forks(session: nox.Session, *extra: str) -> Path:
    """Fresh venv with the README's two installs: the fork's linear_operator and the patched gpytorch (then
    ``extra``); returns the fork's wheel."""
    return install_variant(session, "fork", str(build_wheel(session, "gpytorch-fork")), *extra)


def install_site(session: nox.Session, wheel: Path, site: Path) -> Path:
    """``wheel`` installed into a fresh ``site`` (pip --target): a variant that a run picks by PYTHONPATH."""
    shutil.rmtree(site, ignore_errors=True)
    session.run("python", "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel))
    return site


def install_stock_site(session: nox.Session, site: Path) -> Path:
    """Stock's wheel installed into ``site``: the variant a run picks by PYTHONPATH next to the venv's fork."""
    return install_site(session, build_wheel(session, "stock"), site)


def prefix_wheel(session: nox.Session, through: int) -> Path:
    """The wheel of the series' first ``through`` patches (``<v>+fork.N.throughK``) in ``dist/through-K/``, built
    unless the one there matches the series now; prefix 0 is stock's wheel."""
    if through == 0:
        return build_wheel(session, "stock")
    patches = fork_build.prefix_series(fork_series.read_series(RECIPE.series_file, RECIPE.patches_dir), through)
    version = fork_build.prefix_version(RECIPE, through)
    target = DIST / fork_prbench.label(through)
    wheels = sorted(target.glob(f"{RECIPE.name}-{version}-*.whl"))
    if len(wheels) == 1:
        with zipfile.ZipFile(wheels[0]) as wheel:
            if wheel.read(RECIPE.version_file).decode() == fork_build.version_module(RECIPE, patches, through):
                session.log(f"prefix {through} wheel: {wheels[0].name} (already built for this series)")
                return wheels[0]
    setting = f"{fork_build.THROUGH_SETTING}={through}"
    wheel = pip_wheel(session, target, f"{RECIPE.name}-{version}-*.whl", "--config-settings", setting, str(ROOT))
    session.log(f"prefix {through} wheel: {wheel.name}")
    return wheel


def install_prefix_site(session: nox.Session, through: int) -> Path:
    """Prefix ``through``'s wheel installed into its own folder of the venv (pip --target), for ``--pythonpath``."""
    site = Path(session.virtualenv.location) / f"site-{fork_prbench.label(through)}"  # outside build/: installed code
    return install_site(session, prefix_wheel(session, through), site)


@nox.session
@nox.parametrize("variant", WHEELS)
def build(session: nox.Session, variant: str) -> None:
    """Build the fork's wheel (gpytorch-fork: the patched gpytorch's), or fetch stock's, into dist/<variant>/."""
    session.install("pip>=23")
    build_wheel(session, variant, reuse=False)


# The pips a user's `pip install` is tested with: the newest (`pip install --upgrade pip`), and the oldest a user of
# the session's Python may have: what the x.y.0 release of that Python ships (Python 3.10.0: pip 21.2.3, which also
# runs on 3.11; from 3.12 on, pip 21 no longer runs).
OLDEST_PIP = {"3.10": "21.2.3", "3.11": "21.2.3", "3.12": "23.2.1", "3.13": "24.2"}


@nox.session
@nox.parametrize("pip", ["newest", "oldest"])
def install(session: nox.Session, pip: str) -> None:
    """A user's install, as on a fresh machine: this checkout copied without build/ (its tracked and untracked,
    not ignored files), a fresh venv with the selected pip, then `pip install <copy>` and
    `pip install git+file://<copy>`; each must give linear_operator <version>+fork.N, with the sdist fetched by pip.
    Then the patched gpytorch the same two ways, `pip install <copy>/packages/gpytorch` and
    `pip install "git+file://<copy>#subdirectory=packages/gpytorch"`: gpytorch <version>+fork.N next to the fork.
    A pip older than 21.3 copies a local folder before building it, without the repository around it: there the local
    form must fail with the backend's message, and work with `--use-feature=in-tree-build`.
    """
    session.install(TORCH)  # first, so that pip does not pull torch's default (CUDA) build as a dependency
    if pip == "newest":
        requirement = "pip"
    else:
        python = session.run("python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])", silent=True)
        python = str(python).strip()
        if python not in OLDEST_PIP:
            session.error(f"no oldest pip known for Python {python}: add it to OLDEST_PIP in noxfile.py")
        requirement = f"pip=={OLDEST_PIP[python]}"
    session.run("python", "-m", "pip", "install", "--upgrade", requirement)
    session.run("python", "-m", "pip", "--version")
    copy = Path(session.create_tmp()).resolve() / "clone"
    shutil.rmtree(copy, ignore_errors=True)
    copy_checkout(copy)
    # No local archive: pip must fetch the pinned sdists, as on a machine that never built the fork.
    env = {fork_sdist.local_archive_env(pin): "" for pin in (RECIPE, RECIPE.downstream)}
    probe = (
        "import sys, linear_operator as lo; print('linear_operator', lo.__version__, 'from', lo.__file__); "
        f"sys.exit(None if lo.__version__ == {RECIPE.fork_version!r} else 'expected {RECIPE.fork_version}')"
    )
    both = (
        "import sys, gpytorch, gpytorch.version as v, linear_operator as lo; "
        "print(gpytorch.__version__, v.fork_provenance); print('gpytorch from', gpytorch.__file__); "
        f"sys.exit(None if (gpytorch.__version__, lo.__version__) == {BOTH_FORKS!r}"
        f" else 'expected gpytorch {BOTH_FORKS[0]} on linear_operator {BOTH_FORKS[1]}')"
    )
    pip_version = str(session.run("python", "-c", "import pip; print(pip.__version__)", silent=True)).strip()
    copies_local_folders = tuple(int(part) for part in pip_version.split(".")[:2]) < (21, 3)
    gpytorch_package = copy / GPYTORCH_PACKAGE
    forms = [
        (str(copy), str(gpytorch_package)),
        (f"git+{copy.as_uri()}", f"git+{copy.as_uri()}#subdirectory={GPYTORCH_PACKAGE.as_posix()}"),
    ]
    for source, gpytorch_source in forms:
        session.log(f"pip install {source}")
        session.run("python", "-m", "pip", "install", "--no-cache-dir", source, env=env)
        session.run("python", "-c", probe, env=env)
        session.log(f"pip install {gpytorch_source}")
        extra = []
        if copies_local_folders and not gpytorch_source.startswith("git+"):
            output = session.run("python", "-m", "pip", "install", "--no-cache-dir", gpytorch_source, env=env,
                                 success_codes=[1], silent=True)  # fmt: skip
            if "install it from a clone" not in str(output):
                session.error(f"pip {pip_version} on {gpytorch_source}: not the backend's message:\n{output}")
            session.log(f"pip {pip_version} copies {gpytorch_source} alone: refused, as documented; in place now")
            extra = ["--use-feature=in-tree-build"]
        session.run("python", "-m", "pip", "install", "--no-cache-dir", *extra, gpytorch_source, env=env)
        session.run("python", "-c", both, env=env)
        session.run("python", "-m", "pip", "uninstall", "--yes", GPYTORCH_PROJECT.name, RECIPE.name)


def copy_checkout(destination: Path) -> None:
    """This checkout's files as a fresh clone would have them (nothing ignored, so no build/), plus what is not yet
    committed, in a one-commit git repository at ``destination``."""
    listed = fork_series.git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # (a tracked file deleted in the work tree is left out)
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    fork_series.git(destination, "init", "--quiet")
    fork_series.git(destination, "add", "--all")
    fork_series.git(destination, "commit", "--quiet", "--no-verify", "-m", "copy of the checkout")


@nox.session
def examples(session: nox.Session) -> None:
    """The README's example, as written and in float64, and each of examples/*.py at its small size, installed as the
    README's Install says: the fork and the patched gpytorch."""
    install_forks(session)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"(?ms)^## Example\n.*?^```python\n(.*?)^```", readme)
    if len(blocks) != 1:
        session.error("README.md: expected one ```python block in its Example section")
    tmp = Path(session.create_tmp()).resolve()
    as_written, line = blocks[0], "dtype = torch.float32"
    if line not in as_written:
        session.error(f"README.md: the example has no line {line!r} (its float64 run switches it)")
    for name, text in (("as written", as_written), ("in float64", as_written.replace(line, "dtype = torch.float64"))):
        script = tmp / f"readme_example_{name.split()[-1]}.py"
        script.write_text(text, encoding="utf-8")
        session.log(f"the README's example, {name}")
        session.run("python", str(script))
    for example in sorted((ROOT / "examples").glob("*.py")):
        session.log(f"examples/{example.name}")
        session.run("python", str(example))


@nox.session
def patches(session: nox.Session) -> None:
    """Each series (linear_operator's and gpytorch's) applies to its pinned release without fuzz and exports
    identically; the mutants apply to linear_operator's."""
    session.install("tomli; python_version < '3.11'")
    session.run("python", "-m", "linear_operator_fork", "check")
    session.run("python", "-m", "linear_operator_fork", "mutants", "check")


@nox.session
@nox.parametrize("variant", ["fork"])
def tests(session: nox.Session, variant: str) -> None:
    """Our pytest suite (tests/) against the installed fork wheel, with gpytorch installed after it; then upstream's
    suite on the patched tree (its test/, with the patches' own tests), which must pass (with pytest arguments:
    ours only)."""
    from linear_operator_fork import pr as fork_pr

    # upstream's pinned lint tools too, so that tests/test_pr.py runs the real upstream lint
    wheel = install_variant(session, variant, GPYTORCH, "pytest", "hypothesis", "scipy", *fork_pr.LINT_REQUIREMENTS)
    env = {"LINEAR_OPERATOR_FORK_WHEEL": str(wheel), "LINEAR_OPERATOR_FORK_VARIANT": variant}
    session.run("python", "-m", "pytest", *(session.posargs or ["tests"]), env=env)
    if session.posargs:
        return
    records = ROOT / "build" / "tests" / "records"
    session.run(
        "python", "-m", "linear_operator_fork", "suite", "--suite", "upstream-suite", "--variant", variant,
        "--tests", str(fork_build.patched_tree() / "test"), "--out", str(records / f"upstream-suite-{variant}.json"),
    )  # fmt: skip
    gate = ["python", "-m", "linear_operator_fork", "workflows", "gate", "upstream-suite", "--records", str(records)]
    session.run(*gate)


def record_path(name: str, variant: str) -> Path:
    return VERIFY / "records" / f"{name}-{variant}.json"


@nox.session
@nox.parametrize("variant", VARIANTS)
def upstream(session: nox.Session, variant: str) -> None:
    """linear_operator's own test suite (test/ of the sdist; for the fork, of the patched tree)."""
    install_variant(session, variant, "pytest")
    tree = fork_build.patched_tree() if variant == "fork" else fork_sdist.pristine_tree(RECIPE)
    run_suite(session, "upstream-suite", variant, tree / "test")


@nox.session
@nox.parametrize("variant", [*VARIANTS, "gpytorch-fork"])
def gpytorch(session: nox.Session, variant: str) -> None:
    """gpytorch's test suite (test/ of its pinned sdist) against the variant; gpytorch-fork: the patched gpytorch's
    wheel on the fork's linear_operator, running the patched gpytorch tree's test/ (with its patches' tests)."""
    if variant != "gpytorch-fork":
        install_variant(session, variant, GPYTORCH, "pytest")
        run_suite(session, "gpytorch-suite", variant, fork_sdist.pristine_tree(GPYTORCH_PROJECT) / "test")
        return
    install_forks(session, "pytest")
    probe = (
        "import sys, gpytorch, linear_operator as lo; "
        "print('gpytorch', gpytorch.__version__, 'from', gpytorch.__file__); "
        f"sys.exit(None if (gpytorch.__version__, lo.__version__) == {BOTH_FORKS!r} else 'not the two forks')"
    )
    session.run("python", "-c", probe)
    run_suite(session, "gpytorch-suite", variant, fork_build.patched_tree(GPYTORCH_PROJECT) / "test")


def run_suite(session: nox.Session, suite: str, variant: str, tests_dir: Path) -> None:
    out = record_path(suite, variant)
    session.run(
        "python", "-m", "linear_operator_fork", "suite", "--suite", suite, "--variant", variant,
        "--tests", str(tests_dir), "--out", str(out), "--", *session.posargs,
    )  # fmt: skip


@nox.session
@nox.parametrize("variant", [*VARIANTS, "gpytorch-fork"])
def cases(session: nox.Session, variant: str) -> None:
    """The large-M cases, each in its own memory-capped subprocess (fork also runs the plain-torch reference;
    gpytorch-fork: the prediction cases e and f on the fork with the patched gpytorch's prediction strategy)."""
    if variant == "gpytorch-fork":
        install_forks(session)
        for device in DEVICES:
            session.run(
                "python", "-m", "linear_operator_fork", "cases", "run", "--variant", variant, "--device", device,
                "--size", device, "--cases", "e,f", "--out", str(record_path(f"cases-{device}", variant)),
                *session.posargs,
            )  # fmt: skip
        return
    install_variant(session, variant, GPYTORCH)
    runs = [(variant, ["--sweep"])]
    if variant == "fork":
        runs.append(("reference", ["--sweep", "--cases", "a,b,e,f,g,h,i"]))
    if variant == "stock" and STOCK_CASE_C != STOCK:
        # Not installed into the venv (gpytorch 1.15.2 requires linear_operator>=0.6.1): a --target folder that
        # the case's subprocess puts first on PYTHONPATH, with that release's own extra dependencies.
        site = Path(session.virtualenv.location) / f"site-stock-{STOCK_CASE_C}"  # outside build/: installed code
        shutil.rmtree(site, ignore_errors=True)
        session.run("python", "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    f"{RECIPE.name}=={STOCK_CASE_C}", "jaxtyping", "wadler_lindig")  # fmt: skip
        runs.append((f"stock-{STOCK_CASE_C}", ["--pythonpath", str(site), "--cases", "c"]))
    for device in DEVICES:
        for name, extra in runs:
            out = record_path(f"cases-{device}", name)
            session.run(
                "python", "-m", "linear_operator_fork", "cases", "run", "--variant", name, "--device", device,
                "--size", device, "--out", str(out), *extra, *session.posargs,
            )  # fmt: skip


@nox.session
def benchmark(session: nox.Session) -> None:
    """Cases a, b and g at CPU size, stock / fork / plain-torch reference side by side, COO and CSR, and case a swept
    over N (COO); prints the table: stock runs once, the fork and the reference in BENCHMARK_ROUNDS alternating rounds,
    shown as their medians. The full run (no arguments) writes the table into docs/benchmark.md and the plot
    of peak memory and time against N into docs/against_n.png.

    Stock gets a larger memory cap here (LINEAR_OPERATOR_FORK_BENCHMARK_STOCK_CAP_GIB, default 20) so that its
    peak is measured rather than cut off. Results: build/benchmark/.

    nox -s benchmark -- --through K [--size S]   pull request K against the one below it (prefixes K-1 and K of the
                                                 series; 0: stock) on the cases it claims among a, b, d, g, h, i (a, b
                                                 and g when none), at the size it claims (fork.toml's size, default
                                                 cpu): docs/prs/<K>-<branch>.md, and README.md's "what each pull
                                                 request buys" (build/benchmark-prs/K)
    """
    stock_cap = os.environ.get("LINEAR_OPERATOR_FORK_BENCHMARK_STOCK_CAP_GIB", "20")
    if "--through" in session.posargs:
        through, size, rest = prefix_arguments(session)
        benchmark_prefixes(session, through, size, rest, stock_cap)
        return
    install_variant(session, "fork", GPYTORCH, "matplotlib")
    stock_site = install_stock_site(session, Path(session.virtualenv.location) / "site-stock")
    folder = ROOT / "build" / "benchmark"
    shutil.rmtree(folder, ignore_errors=True)
    variants = {
        "stock": ["--pythonpath", str(stock_site), "--cap-gib", stock_cap],
        "fork": [],
        "reference": [],
    }
    # Stock once per layout; the fork and the reference in alternating rounds, whose medians the table shows: a step of
    # about 0.1 s moves by up to 2x from one run to the next on a shared 2-core machine
    runs = [
        (layout, name, round_)
        for layout in ("coo", "csr")
        for round_, names in [(1, ["stock"])] + [(r, ["fork", "reference"]) for r in range(1, BENCHMARK_ROUNDS + 1)]
        for name in names
    ]
    # Measured on this project's 2-core machine (build 12): stock about 5 min per layout (the sweep adds 1 min), fork
    # and reference under a minute each: an estimate of what is left, so that the long stock runs never look hung
    weights = {"stock": 6.0, "fork": 1.0, "reference": 1.0}
    total, done, started = sum(weights[name] for _, name, _ in runs), 0.0, time.perf_counter()
    for index, (layout, name, round_) in enumerate(runs, start=1):
        elapsed = time.perf_counter() - started
        left = f", about {elapsed / done * (total - done) / 60:.0f} min left" if done else ""
        session.log(f"benchmark {index}/{len(runs)}: {name}, {layout}, round {round_}{left}")
        sweep = ["--sweep"] if layout == "coo" else []
        out = folder / "records" / f"{layout}-{name}-{round_}.json"
        session.run(
            "python", "-m", "linear_operator_fork", "cases", "run", "--variant", name, "--cases", "a,b,g",
            "--size", "cpu", "--layout", layout, "--out", str(out), *sweep, *variants[name], *session.posargs,
        )  # fmt: skip
        done += weights[name]
    docs = [] if session.posargs else ["--readme", str(ROOT / "docs" / "benchmark.md")]  # (the full benchmark only)
    session.run("python", "-m", "linear_operator_fork", "report", str(folder), "--cases-only", *docs)
    if not session.posargs and (folder / fork_report.PLOT).is_file():
        shutil.copyfile(folder / fork_report.PLOT, ROOT / "docs" / fork_report.PLOT)
        session.log(f"wrote docs/{fork_report.PLOT}")


# The rounds of the fork and the reference in the full benchmark (stock runs once)
BENCHMARK_ROUNDS = 3


def prefix_arguments(session: nox.Session) -> tuple[int, str, list[str]]:
    """``--through K`` and ``--size S`` (default: the size pull request K claims, ``fork.toml``'s ``size``, cpu when
    it names none) of the benchmark's arguments; the rest go to ``cases run``."""
    through, size, rest = None, None, []
    words = iter(session.posargs)
    for word in words:
        if word in ("--through", "--size"):
            value = next(words, None)
            if value is None:
                session.error(f"usage: nox -s benchmark -- --through K [--size S] ({word} needs a value)")
            if word == "--size":
                size = value
            elif not value.isdigit():
                session.error(f"--through {value}: expected K, the pull request's number in the stack (1, 2, ...)")
            else:
                through = int(value)
        else:
            rest.append(word)
    count = len(RECIPE.stack)
    if through is None or not 1 <= through <= count:
        session.error(f"--through {through}: fork.toml's stack has pull requests 1 to {count}")
    return through, size or RECIPE.stack[through - 1].size, rest


def benchmark_prefixes(session: nox.Session, through: int, size: str, rest: list[str], cap: str) -> None:
    """Pull request ``through`` against the one below it: prefixes K-1 and K of the series, each from its own
    ``--target`` site, on the cases it claims (``prbench.benchmark_cases``), COO and CSR; then
    docs/prs/<K>-<branch>.md and the README's summary. Every prefix gets the larger cap: a prefix without the sparse
    regrouping densifies as stock does."""
    session.install(TORCH)
    # stock's linear_operator for gpytorch's requirement (each run's --pythonpath site shadows it); tomli: fork.toml
    session.install(str(build_wheel(session, "stock")), GPYTORCH, "tomli; python_version < '3.11'")
    prefixes = (through - 1, through)
    sites = {prefix: install_prefix_site(session, prefix) for prefix in prefixes}
    cases = fork_prbench.benchmark_cases(RECIPE.stack[through - 1])
    folder = ROOT / "build" / "benchmark-prs" / str(through)
    shutil.rmtree(folder, ignore_errors=True)
    runs = [(layout, prefix) for layout in fork_prbench.LAYOUTS for prefix in prefixes]
    session.log(
        f"benchmark of pull request {through} ({RECIPE.stack[through - 1].branch}): prefixes {prefixes[0]} and "
        f"{prefixes[1]}, cases {','.join(cases)}, size {size}; a prefix without the sparse regrouping densifies as "
        "stock does: about 5 min per layout at cpu size on a 2-core machine"
    )
    started = time.perf_counter()
    for index, (layout, prefix) in enumerate(runs, start=1):
        elapsed = time.perf_counter() - started
        left = f", about {elapsed / (index - 1) * (len(runs) - index + 1) / 60:.0f} min left" if index > 1 else ""
        session.log(f"benchmark {index}/{len(runs)}: {fork_prbench.label(prefix)}, {layout}{left}")
        session.run(
            "python", "-m", "linear_operator_fork", "cases", "run", "--variant", fork_prbench.label(prefix),
            "--cases", ",".join(cases), "--size", size, "--layout", layout, "--pythonpath", str(sites[prefix]),
            "--cap-gib", cap, "--out", str(folder / "records" / f"{layout}-{fork_prbench.label(prefix)}.json"), *rest,
        )  # fmt: skip
    session.run("python", "-m", "linear_operator_fork", "report", str(folder), "--through", str(through), "--prs")


@nox.session
def sgpr(session: nox.Session) -> None:
    """What the series costs SGPR users (gpytorch's InducingPointKernel: a dense low-rank root, no sparse matrix):
    stock against prefixes of the series, in alternating runs (linear_operator_fork/sgpr.py).

    nox -s sgpr -- [K ...] [--size N --inducing M --steps S --rounds R]   prefixes K (default: the whole series)
    """
    last = len(RECIPE.stack)
    usage = f"usage: nox -s sgpr -- [K ...] [--size N --inducing M --steps S --rounds R]: each K from 1 to {last}"
    prefixes, rest = [], []
    words = iter(session.posargs)
    for word in words:
        if word.startswith("--"):
            value = next(words, None)
            if value is None:
                session.error(f"{usage} ({word} needs a value)")
            rest += [word, value]
        elif word.isdigit() and 1 <= int(word) <= last:
            prefixes.append(int(word))
        else:
            session.error(f"{usage} (got {word!r})")
    session.install(TORCH)
    session.install(str(build_wheel(session, "stock")), GPYTORCH)
    variants = ["--variant", "installed"]
    for prefix in prefixes or [last]:
        variants += ["--variant", str(install_prefix_site(session, prefix))]
    session.run("python", "-m", "linear_operator_fork.sgpr", *variants, *rest)


@nox.session(venv_backend="none")
def verify(session: nox.Session) -> None:
    """The main job: suites, large-M cases and differential cases on stock and fork, then the side-by-side report."""
    shutil.rmtree(VERIFY / "records", ignore_errors=True)
    queued = [f"{name}(variant='{variant}')" for name in ("upstream", "gpytorch", "cases") for variant in VARIANTS]
    queued.insert(queued.index("gpytorch(variant='fork')") + 1, "gpytorch(variant='gpytorch-fork')")
    queued.append("cases(variant='gpytorch-fork')")
    for name in queued:
        session.notify(name)
    notify_differential(session, [])  # report reads build/differential/results.json: a fork FAIL fails verify too
    session.notify("report")
    # (nox names each session as it starts; the cases print each case as they run it)
    session.log(
        f"verify: {len(queued) + 5} sessions queued: {', '.join(queued)}, the differential harness (5 sessions), "
        "report; about 28 minutes on a 2-core machine, most of it in gpytorch's suites and the stock cases"
    )


@nox.session
def report(session: nox.Session) -> None:
    """Merge build/verify/records into results.json, report.md and the plots; fail on any fork regression."""
    session.install("matplotlib")
    session.run("python", "-m", "linear_operator_fork", "report", str(VERIFY))


# --- the differential harness (issue 8; linear_operator_fork/differential/) -----------------------------------------


def notify_differential(session: nox.Session, posargs: list[str]) -> None:
    """Queue the differential sessions: the case list, stock and fork, the report (``--case KEY``: those cases only,
    in build/differential/replay/)."""
    keys = []
    rest = list(posargs)
    while rest:
        flag = rest.pop(0)
        if flag != "--case" or not rest:
            session.error(f"usage: nox -s differential [-- --case KEY [--case KEY ...]] (got {flag!r})")
        keys.append(rest.pop(0))
    folder = ["--dir", str(DIFFERENTIAL / "replay" if keys else DIFFERENTIAL)]
    session.notify("differential_cases", posargs=[*folder, *(arg for key in keys for arg in ("--case", key))])
    for variant in DIFFERENTIAL_VARIANTS:
        session.notify(f"differential_run(variant='{variant}')", posargs=folder)
    session.notify("differential_report", posargs=folder)


@nox.session(venv_backend="none")
def differential(session: nox.Session) -> None:
    """Seeded cases of what users write, on stock and fork, against a dense float64 reference; fails on a fork FAIL.

    nox -s differential                  (build/differential/: cases.json, <variant>.jsonl, results.json, report.md)
    nox -s differential -- --case KEY    (replays one case on both variants: build/differential/replay/)
    """
    notify_differential(session, session.posargs)


@nox.session
def differential_cases(session: nox.Session) -> None:
    """build/differential/cases.json: the seeded case list (hypothesis), or the cases given with --case."""
    session.install("hypothesis")
    session.run("python", "-m", "linear_operator_fork", "differential", "generate", *session.posargs)


# gpytorch-fork: the fork with the patched gpytorch, on the prediction cases only (its prediction strategy)
DIFFERENTIAL_VARIANTS = [*VARIANTS, "gpytorch-fork"]


@nox.session
@nox.parametrize("variant", DIFFERENTIAL_VARIANTS)
def differential_run(session: nox.Session, variant: str) -> None:
    """Every case of cases.json on the installed variant, one child process at a time (a crash is a record);
    gpytorch-fork: the prediction cases, on the fork with the patched gpytorch."""
    if variant == "gpytorch-fork":
        install_forks(session, "hypothesis", "scipy")
        ops = ["--ops", "predict"]
    else:
        install_variant(session, variant, GPYTORCH, "hypothesis", "scipy")
        ops = []
    session.run(
        "python", "-m", "linear_operator_fork", "differential", "run", "--variant", variant, *ops, *session.posargs
    )


@nox.session
def differential_report(session: nox.Session) -> None:
    """Verdicts of stock vs fork vs reference: results.json and report.md; fails on any fork FAIL."""
    session.run("python", "-m", "linear_operator_fork", "differential", "compare", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing: each planted bug of mutants/linear_operator/ through the differential harness, our tests and
    upstream's suite on the mutated tree; fails if one survives. Results: build/mutants/ (`-- --readme docs/testing.md`
    also rewrites the table there; `-- --mutant NAME` runs one)."""
    wheel = install_variant(session, "fork", GPYTORCH, "pytest", "hypothesis", "scipy", "setuptools>=64", "wheel")
    tmp = Path(session.create_tmp()).resolve()  # outside build/: the catchers refuse a linear_operator from there
    stock_site = install_stock_site(session, tmp / "site-stock")
    env = {"LINEAR_OPERATOR_FORK_WHEEL": str(wheel), "LINEAR_OPERATOR_FORK_VARIANT": "fork"}
    session.run(
        "python", "-m", "linear_operator_fork", "mutants", "run", "--stock-site", str(stock_site),
        "--work", str(tmp / "work"), *session.posargs, env=env,
    )  # fmt: skip


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on our code; actionlint and zizmor on .github/workflows (upstream's lint: `nox -s pr -- --lint-only`)."""
    from linear_operator_fork import workflows as fork_workflows

    session.install(RUFF, fork_workflows.ZIZMOR, "tomli; python_version < '3.11'")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", "-m", "linear_operator_fork", "workflows", "lint")


# --- the upstream pull request and upstream's main (issue 5; .github/workflows/) ----------------------------------


@nox.session
def pr(session: nox.Session) -> None:
    """build/pr/: each stack as branches + bundles, PR_DESCRIPTION.md from the last verify, upstream's lint (lint.txt):
    linear_operator's, then gpytorch's (build/pr/gpytorch/, with gpytorch's lint at its pins).

    nox -s pr [-- --upstream-git URL --ref REF]   (linear_operator's base; gpytorch's stack stays on its sdist)
    nox -s pr -- --lint-only                      (upstream's flake8/ufmt on the patched files alone: build/pr-lint/)
    nox -s pr -- --project gpytorch [...]         (one project only, with all the arguments)
    """
    from linear_operator_fork import pr as fork_pr

    session.install("tomli; python_version < '3.11'")
    if "--project" in session.posargs:
        projects = [(session.posargs[session.posargs.index("--project") + 1], list(session.posargs))]
    else:  # gpytorch's stack gets the arguments that are not about linear_operator's base or output folder
        rest, words = [], iter(session.posargs)
        for word in words:
            if word in ("--upstream-git", "--ref", "--out"):
                next(words, None)  # and its value
            else:
                rest.append(word)
        projects = [("linear_operator", list(session.posargs)), ("gpytorch", ["--project", "gpytorch", *rest])]
    for project, arguments in projects:
        if project == "gpytorch":  # linear_operator's flake8 plugin is not part of gpytorch's lint
            session.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", "flake8-print")
        session.install(*fork_pr.lint_requirements(project))
        session.run("python", "-m", "linear_operator_fork", "pr", *arguments)


@nox.session
def upstream_main(session: nox.Session) -> None:
    """Upstream's suite on an upstream git checkout carrying the series; fails on any failing test.

    nox -s upstream_main -- DIR [PYTEST_ARGS], after `python -m linear_operator_fork apply DIR` (upstream-main.yml).
    """
    if not session.posargs:
        session.error("usage: nox -s upstream_main -- DIR [pytest args] (DIR: upstream checkout, series applied)")
    checkout, pytest_args = Path(session.posargs[0]).resolve(), session.posargs[1:]
    if not (checkout / "test").is_dir():
        session.error(f"{checkout} has no test/ folder: is it a git checkout of upstream linear_operator?")
    records = ROOT / "build" / "upstream-main" / "records"
    session.install(TORCH)
    session.install(str(checkout), "pytest", "tomli; python_version < '3.11'")
    session.run(
        "python", "-m", "linear_operator_fork", "suite", "--suite", "upstream-suite", "--variant", "main",
        "--tests", str(checkout / "test"), "--out", str(records / "upstream-suite-main.json"), "--", *pytest_args,
    )  # fmt: skip
    gate = ["python", "-m", "linear_operator_fork", "workflows", "gate", "upstream-suite", "--fork", "main"]
    session.run(*gate, "--records", str(records))
