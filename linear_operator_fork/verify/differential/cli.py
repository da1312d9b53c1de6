"""The differential harness's subcommands of ``python -m linear_operator_fork``.

    python -m linear_operator_fork differential generate [--count N] [--seed S] [--case KEY ...]
    python -m linear_operator_fork differential run --variant NAME [--python PY]     (the installed linear_operator)
    python -m linear_operator_fork differential compare [--readme README.md]
    python -m linear_operator_fork differential replay KEY                            (one case, here, in detail)

Files (``--dir``, default ``build/differential``): ``cases.json`` (the case keys and how they were generated),
``<variant>.jsonl`` (one outcome per line), ``results.json`` and ``report.md`` (compare).
Environment: ``LINEAR_OPERATOR_FORK_DIFFERENTIAL_SEED`` and ``LINEAR_OPERATOR_FORK_DIFFERENTIAL_COUNT`` (the defaults
of generate).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from linear_operator_fork.recipe import ForkError

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DIR = ROOT / "build" / "differential"
DEFAULT_SEED = 20261127
DEFAULT_COUNT = 600


def env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text) if text else default
    except ValueError:
        raise ForkError(f"${name}={text!r} is not an integer") from None


def load_cases_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ForkError(f"no {path}: run `python -m linear_operator_fork differential generate` first")
    return json.loads(path.read_text())


def cmd_generate(args: argparse.Namespace) -> int:
    from linear_operator_fork.verify.differential.case import from_key

    meta: dict[str, Any] = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if args.case:
        try:
            keys = [from_key(key).key for key in args.case]
        except ValueError as exc:
            raise ForkError(f"{exc}") from None
        meta.update(seed=None, count=len(keys), hypothesis=None, replay=True)
    else:
        import hypothesis

        from linear_operator_fork.verify.differential import space

        keys = [case.key for case in space.generate(args.count, args.seed)]
        meta.update(seed=args.seed, count=args.count, hypothesis=hypothesis.__version__, replay=False)
    args.dir.mkdir(parents=True, exist_ok=True)
    for stale in [*args.dir.glob("*.jsonl"), args.dir / "results.json", args.dir / "report.md"]:
        stale.unlink(missing_ok=True)  # outcomes of another case list
    path = args.dir / "cases.json"
    path.write_text(json.dumps({**meta, "cases": keys}, indent=1) + "\n")
    print(f"wrote {len(keys)} case(s) to {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from linear_operator_fork.verify.differential import runner

    keys = load_cases_file(args.cases or args.dir / "cases.json")["cases"]
    if args.ops:
        from linear_operator_fork.verify.differential.case import OPS, from_key

        wanted = set(args.ops.split(","))
        if wanted - set(OPS):
            raise ForkError(f"--ops {args.ops}: unknown operation(s) {sorted(wanted - set(OPS))}; known: {list(OPS)}")
        keys = [key for key in keys if from_key(key).op in wanted]
    out = args.out or args.dir / f"{args.variant}.jsonl"
    try:
        runner.run(keys, args.variant, out, timeout=args.timeout, python=args.python)
    except runner.StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from linear_operator_fork.verify import records
    from linear_operator_fork.verify.differential import verdict
    from linear_operator_fork.verify.differential.runner import load_outcomes

    meta = load_cases_file(args.dir / "cases.json")
    outcomes = {}
    for variant in ("stock", "fork"):
        path = args.dir / f"{variant}.jsonl"
        if not path.exists():
            raise ForkError(f"no {path}: run `python -m linear_operator_fork differential run --variant "
                             f"{variant}` (or nox -s differential)")  # fmt: skip
        outcomes[variant] = load_outcomes(path)
    strategy_path = args.dir / f"{verdict.STRATEGY}.jsonl"
    strategy = load_outcomes(strategy_path) if strategy_path.exists() else None
    if strategy is None and any(key.startswith("op=predict,") for key in meta["cases"]):
        command = f"python -m linear_operator_fork differential run --variant {verdict.STRATEGY} --ops predict"
        print(f"warning: no {strategy_path}: the patched gpytorch's predictions are not checked ({command})")
    data = verdict.results(meta, outcomes["stock"], outcomes["fork"], strategy)
    results_path, report_path = verdict.write(args.dir, data)
    print(verdict.variants_line(data))
    print("\n".join(verdict.summary_table(data)))
    if data.get("strategy"):
        print(verdict.strategy_line(data["strategy"]))
    for fail in data["fails"]:
        print(f"FAIL {fail['key']}\n     {fail['reason'][:200]}\n     replay: {fail['replay']}")
    if args.readme:
        if meta.get("replay"):
            raise ForkError("--readme with a replayed case list: run the full list (nox -s differential)")
        records.replace_block(args.readme, verdict.README_BEGIN, verdict.README_END, verdict.readme_lines(data))
        print(f"updated the table in {args.readme}")
    print(f"wrote {results_path}, {report_path}")
    unchecked = verdict.unchecked_float64(data)
    if unchecked:
        print(f"{unchecked} float64 output(s) unchecked: no answer could fail them (report.md, Unchecked outputs)")
    return 1 if data["fails"] or unchecked else 0


def describe(record: dict[str, Any]) -> list[str]:
    """A replayed outcome in detail: status, message, each output against the reference."""
    lines = [f"{record['variant']}: {record['status']} (expected {record.get('expect')}) {record.get('message', '')}"]
    for name in ("version", "file", "sparse_class", "kappa", "tolerance", "rel_error", "seconds"):
        if record.get(name) is not None:
            lines.append(f"  {name}: {record[name]}")
    reference, outputs = record.get("reference") or {}, record.get("outputs") or {}
    for name in sorted(set(reference) | set(outputs)):
        want, got = reference.get(name), outputs.get(name)
        error = (record.get("errors") or {}).get(name)
        lines.append(f"  {name}: relative error {error}" if error is not None else f"  {name}:")
        for label, item in (("reference", want), ("output", got)):
            if item is not None:
                values = item["values"]
                shown = ", ".join(f"{v:.6g}" for v in values[:12]) + (", ..." if len(values) > 12 else "")
                lines.append(f"    {label:9} shape {item['shape']}: [{shown}]")
    lines += [f"  stderr: {line}" for line in record.get("stderr_tail", [])]
    return lines


def cmd_replay(args: argparse.Namespace) -> int:
    from linear_operator_fork.verify.differential import runner
    from linear_operator_fork.verify.differential.case import from_key
    from linear_operator_fork.verify.differential.data import describe_index, make

    try:
        case = from_key(args.key)
    except ValueError as exc:
        raise ForkError(f"{exc}") from None
    index = make(case).index
    if index is not None:
        print(f"index: {describe_index(index)}")
    with tempfile.TemporaryDirectory(prefix="lof-replay-") as folder:
        try:
            records = runner.run([case.key], args.variant, Path(folder) / "replay.jsonl", timeout=args.timeout,
                                 python=args.python, progress=lambda line: None)  # fmt: skip
        except runner.StartupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print("\n".join(describe(records[0])))
    return 0 if records[0]["status"] == "ok" else 1


def cmd_child(args: argparse.Namespace) -> int:
    from linear_operator_fork.verify.differential import runner

    return runner.child(args.keys, args.start, args.out, args.variant)


def add_arguments(commands: Any) -> None:
    """The ``differential`` subcommands of ``python -m linear_operator_fork``."""
    main = commands.add_parser("differential", help="the differential harness: generate, run, compare, replay cases")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="folder of the files (default %(default)s)")
    sub = main.add_subparsers(dest="differential_command", required=True)
    generate = sub.add_parser(
        "generate", parents=[common], help="write cases.json: the seeded case list (or the cases given)"
    )
    generate.add_argument(
        "--count", type=int, default=env_int("LINEAR_OPERATOR_FORK_DIFFERENTIAL_COUNT", DEFAULT_COUNT)
    )
    generate.add_argument("--seed", type=int, default=env_int("LINEAR_OPERATOR_FORK_DIFFERENTIAL_SEED", DEFAULT_SEED))
    generate.add_argument("--case", action="append", help="a case key (repeatable): exactly these cases")
    run = sub.add_parser(
        "run", parents=[common], help="run every case on the installed linear_operator, one JSON line each"
    )
    run.add_argument(
        "--variant", required=True, help="what is under test: stock, fork, or gpytorch-fork (with --ops predict)"
    )
    run.add_argument("--ops", help="only the cases of these operations (comma-separated, e.g. predict)")
    run.add_argument("--cases", type=Path, help="the cases file (default DIR/cases.json)")
    run.add_argument("--out", type=Path, help="the outcomes (default DIR/VARIANT.jsonl)")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds per case (default %(default)s)")
    run.add_argument("--python", help="the interpreter of the children (default: this one)")
    compare = sub.add_parser(
        "compare",
        parents=[common],
        help="verdicts: results.json and report.md; exit 1 on a fork FAIL or an unchecked float64 output",
    )
    compare.add_argument("--readme", type=Path, help="also rewrite the differential table of this README")
    replay = sub.add_parser("replay", help="run one case here (in a child process) and show it in detail")
    replay.add_argument("key")
    replay.add_argument("--variant", default="here", help="label for the output (default %(default)s)")
    replay.add_argument("--timeout", type=float, default=600.0)
    replay.add_argument("--python", help="the interpreter of the child (default: this one)")
    child = sub.add_parser("child", help="(internal) run cases in this process")
    child.add_argument("keys", type=Path)
    child.add_argument("--start", type=int, default=0)
    child.add_argument("--out", type=Path, required=True)
    child.add_argument("--variant", required=True)
    main.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    commands = {
        "generate": cmd_generate,
        "run": cmd_run,
        "compare": cmd_compare,
        "replay": cmd_replay,
        "child": cmd_child,
    }
    return commands[args.differential_command](args)
