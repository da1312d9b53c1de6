"""The command line: ``python -m linear_operator_fork <subcommand>`` (``--help`` lists them).

The flow, in the order of the subcommands: the pin (``fetch``: the pinned sdist), the patch series (``checkout``,
``export``, ``check``, ``apply``), the build (``tree``), verification (``cases``, ``suite``, ``differential``,
``mutants``), the report (``report``), the pull requests (``pr``), and the CI workflows (``workflows``). Errors the
user can act on (:class:`~linear_operator_fork.recipe.ForkError`) are printed without a traceback, with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from linear_operator_fork import build, pr, recipe, report, sdist, series, workflows
from linear_operator_fork.recipe import BUILD_DIR, ForkError
from linear_operator_fork.verify import mutants, runner, suites
from linear_operator_fork.verify.differential import cli as differential

DEFAULT_CHECKOUT = BUILD_DIR / "checkout"  # linear_operator's; gpytorch's: build/checkout-gpytorch


def default_checkout(project: str) -> Path:
    return DEFAULT_CHECKOUT if project == "linear_operator" else BUILD_DIR / f"checkout-{project}"


def add_project_argument(parser: argparse.ArgumentParser, all_projects: bool = False) -> None:
    """``--project``: which patched upstream (default linear_operator; ``all``: each of them in turn)."""
    if all_projects:
        parser.add_argument("--project", choices=(*recipe.PROJECTS, "all"), default="all",
                            help="the patched upstream (default: all of them)")  # fmt: skip
    else:
        parser.add_argument("--project", choices=recipe.PROJECTS, default="linear_operator",
                            help="the patched upstream (default: %(default)s)")  # fmt: skip


def _series(project: recipe.Project) -> series.Series:
    return series.read_series(project.series_file, project.patches_dir)


def _export_hint(project: recipe.Project) -> str:
    option = "" if project.name == "linear_operator" else f" --project {project.name}"
    return f"python -m linear_operator_fork export{option}"


def cmd_fetch(args: argparse.Namespace) -> int:
    rec = recipe.load()
    print(sdist.archive(rec))
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    project = recipe.load().project(args.project)
    patches = _series(project)
    destination = Path(args.dir) if args.dir else default_checkout(project.name)
    label = f"{project.name} {project.version} (pristine sdist)"
    series.checkout(sdist.pristine_tree(project), patches, destination, label)
    print(f"{destination}: tag '{series.BASE_TAG}' is {project.name} {project.version}; ", end="")
    print(f"branch '{series.BRANCH}' has {len(patches.names)} patch commit(s).")
    print(f"Edit with git (commit, rebase -i), then: {_export_hint(project)} {destination}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    rec = recipe.load()
    project = rec.project(args.project)
    source = Path(args.dir) if args.dir else default_checkout(project.name)
    names = series.export(source, project.series_file, project.patches_dir, rec.author)
    digest = recipe.series_digest(project.patches_dir, names)
    number = project.build_number
    if digest != project.series_sha256:
        number += 1
        recipe.write_build(project, number, digest)
        print(f"series changed: {project.name} build number {project.build_number} -> {number} "
              f"({project.version}+fork.{number})")  # fmt: skip
    print(f"exported {len(names)} patch(es) to {project.patches_dir}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    rec = recipe.load()
    for name in recipe.PROJECTS if args.project == "all" else (args.project,):
        check_project(rec.project(name), rec.author)
    return 0


def check_project(project: recipe.Project, author: str) -> None:
    """The project's series applies without fuzz, exports identically, and matches its series-sha256."""
    patches = _series(project)
    label = f"{project.name} {project.version} (pristine sdist)"
    series.round_trip(sdist.pristine_tree(project), patches, project.series_file, label, author)
    digest = recipe.series_digest(project.patches_dir, patches.names)
    if digest != project.series_sha256:
        raise ForkError(
            f"{project.path}: {project.build_table}.series-sha256 does not match {project.series_file} (the series "
            f"changed without a new build number); run '{_export_hint(project)}' from a checkout"
        )
    print(f"ok: {len(patches.names)} patch(es) apply to {project.name} {project.version} without fuzz and export "
          f"identically ({project.fork_version})")  # fmt: skip


def cmd_tree(args: argparse.Namespace) -> int:
    project = recipe.load().project(args.project)
    destination = Path(args.dir) if args.dir else None
    print(build.patched_tree(project, destination=destination, through=args.through))
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    """One value of fork.toml, for scripts (the only place versions are written)."""
    rec = recipe.load()
    values = {
        "version": rec.version,
        "fork-version": rec.fork_version,
        "downstream-version": rec.downstream.version,
        "thread-release": rec.thread_release,
        "author": rec.author,
        "prefixes": json.dumps(list(range(1, len(rec.stack) + 1))),  # the stack's prefixes 1..k (a CI matrix)
    }
    print(values[args.key])
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m linear_operator_fork", description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("pin", help="print a value of fork.toml (for scripts)")
    sub.add_argument(
        "key", choices=("version", "fork-version", "downstream-version", "thread-release", "author", "prefixes")
    )
    sub.set_defaults(handler=cmd_pin)
    sub = commands.add_parser("fetch", help="download (or find in the cache) and verify the pinned upstream sdist")
    sub.set_defaults(handler=cmd_fetch)
    sub = commands.add_parser("checkout", help="git repository: pristine upstream commit + one commit per patch")
    sub.add_argument("dir", nargs="?", default=None, help=f"default: {DEFAULT_CHECKOUT} (gpytorch: checkout-gpytorch)")
    add_project_argument(sub)
    sub.set_defaults(handler=cmd_checkout)
    sub = commands.add_parser("export", help="write the checkout's commits back to patches/<project>/ (deterministic)")
    sub.add_argument("dir", nargs="?", default=None, help="the checkout (default: checkout's)")
    add_project_argument(sub)
    sub.set_defaults(handler=cmd_export)
    sub = commands.add_parser("check", help="the series applies without fuzz and the export round-trips")
    add_project_argument(sub, all_projects=True)
    sub.set_defaults(handler=cmd_check)
    sub = commands.add_parser("apply", help="git am the series onto a git checkout of upstream (e.g. its main)")
    pr.add_apply_arguments(sub)
    add_project_argument(sub)
    sub.set_defaults(handler=pr.run_apply)
    sub = commands.add_parser("tree", help="write the patched source tree the wheel is built from")
    sub.add_argument("dir", nargs="?", default=None)
    sub.add_argument("--through", type=int, metavar="K", help="the first K patches only (version <v>+fork.N.throughK)")
    add_project_argument(sub)
    sub.set_defaults(handler=cmd_tree)
    runner.add_arguments(commands)
    suites.add_arguments(commands)
    differential.add_arguments(commands)
    mutants.add_arguments(commands)
    report.add_arguments(commands)
    sub = commands.add_parser("pr", help="build/pr/: one folder per stacked pull request, and upstream's lint")
    pr.add_pr_arguments(sub)
    sub.set_defaults(handler=pr.run_pr)
    workflows.add_arguments(commands)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except ForkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
