"""Command line: ``python -m linear_operator_fork {fetch,checkout,export,check,tree,apply,pr}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from linear_operator_fork import build, pr, queue, recipe, upstream
from linear_operator_fork.recipe import BUILD_DIR, ForkError

DEFAULT_CHECKOUT = BUILD_DIR / "checkout"


def _series(rec: recipe.Recipe) -> queue.Series:
    return queue.read_series(rec.series_file, rec.patches_dir)


def cmd_fetch(args: argparse.Namespace) -> None:
    rec = recipe.load()
    print(upstream.archive(rec))


def cmd_checkout(args: argparse.Namespace) -> None:
    rec = recipe.load()
    series = _series(rec)
    destination = Path(args.dir)
    queue.checkout(upstream.pristine_tree(rec), series, destination, f"{rec.name} {rec.version} (pristine sdist)")
    print(f"{destination}: tag '{queue.BASE_TAG}' is {rec.name} {rec.version}; ", end="")
    print(f"branch '{queue.BRANCH}' has {len(series.names)} patch commit(s).")
    print(f"Edit with git (commit, rebase -i), then: python -m linear_operator_fork export {destination}")


def cmd_export(args: argparse.Namespace) -> None:
    rec = recipe.load()
    names = queue.export(Path(args.dir), rec.series_file, rec.patches_dir)
    digest = recipe.series_digest(rec.patches_dir, names)
    number = rec.build_number
    if digest != rec.series_sha256:
        number += 1
        recipe.write_build(rec, number, digest)
        print(f"series changed: build number {rec.build_number} -> {number} ({rec.version}+fork.{number})")
    print(f"exported {len(names)} patch(es) to {rec.patches_dir}")


def cmd_check(args: argparse.Namespace) -> None:
    rec = recipe.load()
    series = _series(rec)
    queue.round_trip(upstream.pristine_tree(rec), series, rec.series_file, f"{rec.name} {rec.version} (pristine sdist)")
    digest = recipe.series_digest(rec.patches_dir, series.names)
    if digest != rec.series_sha256:
        raise ForkError(
            f"{rec.path}: build.series-sha256 does not match patches/ (the series changed without a new "
            "build number); run 'python -m linear_operator_fork export' from a checkout"
        )
    print(f"ok: {len(series.names)} patch(es) apply to {rec.name} {rec.version} without fuzz and export identically")


def cmd_tree(args: argparse.Namespace) -> None:
    print(build.patched_tree(destination=Path(args.dir) if args.dir else None))


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m linear_operator_fork", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download (or find in the cache) and verify the pinned upstream sdist")
    sub = commands.add_parser("checkout", help="git repository: pristine upstream commit + one commit per patch")
    sub.add_argument("dir", nargs="?", default=str(DEFAULT_CHECKOUT))
    sub = commands.add_parser("export", help="write the checkout's commits back to patches/ (deterministic)")
    sub.add_argument("dir", nargs="?", default=str(DEFAULT_CHECKOUT))
    commands.add_parser("check", help="the series applies without fuzz and the export round-trips")
    sub = commands.add_parser("tree", help="write the patched source tree the wheel is built from")
    sub.add_argument("dir", nargs="?", default=None)
    sub = commands.add_parser("apply", help="git am the series onto a git checkout of upstream (e.g. its main)")
    pr.add_apply_arguments(sub)
    sub = commands.add_parser("pr", help="build/pr/: branch + bundle, PR_DESCRIPTION.md, upstream's lint")
    pr.add_pr_arguments(sub)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = {
        "fetch": cmd_fetch,
        "checkout": cmd_checkout,
        "export": cmd_export,
        "check": cmd_check,
        "tree": cmd_tree,
        "apply": pr.run_apply,
        "pr": pr.run_pr,
    }[args.command]
    try:
        handler(args)
    except ForkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
