"""The report: stock vs fork, side by side, from the records of a verify or benchmark run.

    python -m linear_operator_fork report build/verify [--cases-only] [--readme docs/benchmark.md]
    python -m linear_operator_fork report build/benchmark-prs/K --through K   (docs/prs/<K>-<branch>.md)
    python -m linear_operator_fork report --prs                                (README.md: what each PR buys)

The one place that renders the records (:mod:`linear_operator_fork.verify.records`): the verify report, the tables of
the pull requests' descriptions (:mod:`linear_operator_fork.pr`) and the benchmark's table in the documents
(``--readme``, which ``nox -s benchmark`` passes: the block between ``README_BEGIN`` and ``README_END``).

Reads every ``records/*.json`` (``{"records": [...]}``, written by the suite and case sessions),
writes ``results.json`` (all records under ``"records"``), ``report.md`` and, when matplotlib is
installed, ``against_n.png`` (case a swept over N: peak memory and time, log scale). Exits 1 when the
fork regresses: a fork case that is not ok, a suite test that fails on the fork, fewer fork passes
than stock, a fork loss that departs from the plain-torch reference beyond the tolerance, or a fork
FAIL of the differential harness (``build/differential/results.json`` next to the folder, when present).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from linear_operator_fork import prbench
from linear_operator_fork.recipe import ForkError
from linear_operator_fork.recipe import load as load_recipe
from linear_operator_fork.verify import records as record_files
from linear_operator_fork.verify.records import GIB, SUITE_VARIANTS, SUITES, Record

TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
README_BEGIN, README_END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"


def params_key(record: Record) -> str:
    params = record.get("params") or {}
    shown = {k: params[k] for k in ("N", "n", "T", "m", "dtype", "layout") if k in params}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def gib(value: float | None) -> str:
    return "" if value is None else f"{value / GIB:.2f}"


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def cell(record: Record | None) -> str:
    """``ok, 0.93 s (0.66 + 0.27), 0.67 GiB``: status, seconds (of each step, for more than one), peak memory."""
    if record is None:
        return "—"
    if record["status"] == "ok":
        steps = record.get("step_seconds") or []
        split = f" ({' + '.join(seconds(step) for step in steps)})" if len(steps) > 1 else ""
        return f"ok, {seconds(record.get('seconds'))} s{split}, {gib(record.get('peak_bytes'))} GiB"
    return (
        f"**{record['status']}** ({gib(record.get('peak_bytes'))} GiB)"
        if record.get("peak_bytes")
        else (f"**{record['status']}**")
    )


def loss_difference(record: Record | None, reference: Record | None) -> float | None:
    """Largest relative difference of the per-step losses, when both runs are ok."""
    if not record or not reference or record["status"] != "ok" or reference["status"] != "ok":
        return None
    return relative_difference(record.get("losses", []), reference.get("losses", []))


def ratio(numerator: Record | None, denominator: Record | None, field: str) -> str:
    """numerator/denominator of a field, when both runs are ok; '' otherwise. ``last_step_seconds``: the seconds of
    their last steps (``step_seconds[-1]``)."""
    if not numerator or not denominator or numerator["status"] != "ok" or denominator["status"] != "ok":
        return ""
    a, b = field_value(numerator, field), field_value(denominator, field)
    return f"{a / b:.2f}×" if a and b else ""


def field_value(record: Record, field: str) -> float | None:
    """A numeric field of a record, or ``last_step_seconds`` (derived from ``step_seconds``)."""
    if field == "last_step_seconds":
        steps = record.get("step_seconds") or []
        return steps[-1] if steps else None
    return record.get(field)


def relative_difference(a: Iterable[float], b: Iterable[float]) -> float:
    a, b = list(a), list(b)
    if not a or len(a) != len(b):
        return float("inf")
    pairs = zip(a, b, strict=True)
    return max(abs(x - y) / max(abs(y), 1e-30) for x, y in pairs)


RowKey = tuple[str, str, float, str]  # case, device, N (or m), parameters as text: sorts numerically


def case_rows(records: list[Record]) -> tuple[list[str], dict[RowKey, dict[str, Record]]]:
    """Variants in display order, and (case, device, size, params) -> variant -> record (the median of the rounds,
    where a variant ran a case more than once: :func:`median_of_rounds`)."""
    rows: dict[RowKey, dict[str, list[Record]]] = {}
    variants: list[str] = []
    for record in records:
        if record["case"] in SUITES:
            continue
        device = "cuda" if str(record.get("device", "cpu")).lower() not in ("cpu",) else "cpu"
        params = record.get("params") or {}
        key = (record["case"], device, float(params.get("N", params.get("m", 0))), params_key(record))
        rows.setdefault(key, {}).setdefault(record["variant"], []).append(record)
        if record["variant"] not in variants:
            variants.append(record["variant"])
    order = {"stock": 0, "fork": 2, "reference": 3}
    variants.sort(key=lambda v: (order.get(v, 1), v))
    return variants, {key: {v: median_of_rounds(runs) for v, runs in by.items()} for key, by in rows.items()}


def median_of_rounds(runs: list[Record]) -> Record:
    """One record for the runs (rounds) of one case by one variant: the first run's, with the medians of its
    seconds, of each step's seconds and of its peak, and ``rounds``, their number. A run that is not ok stands for
    them all: a failure is never averaged away."""
    if len(runs) == 1:
        return runs[0]
    failed = [run for run in runs if run["status"] != "ok"]
    if failed:
        return failed[0]
    merged = {**runs[0], "rounds": len(runs)}
    for field in ("seconds", "peak_bytes"):
        values = [run[field] for run in runs if run.get(field) is not None]
        if values:
            merged[field] = statistics.median(values)
    steps = [run.get("step_seconds") or [] for run in runs]
    if steps[0] and all(len(each) == len(steps[0]) for each in steps):
        merged["step_seconds"] = [statistics.median(column) for column in zip(*steps, strict=True)]
    return merged


def suite_problems(suite: str, stock: Record | None, fork: Record, fork_name: str = "fork") -> list[str]:
    """A suite run on the fork against stock's: failures, a run that did not complete, and regressions
    (a test that passes on stock and does not pass on the fork, even where the fork's new tests keep the
    pass count up)."""
    problems = []
    if fork.get("status") != "ok" or not fork.get("passed"):
        problems.append(f"{suite}: the {fork_name} run is {fork.get('status')}: {fork.get('message', '')}")
    if fork.get("failed"):
        new = sorted(set(fork.get("failures", [])) - set((stock or {}).get("failures", [])))
        problems.append(f"{suite}: {fork['failed']} failing on {fork_name} ({len(new)} not failing on stock)")
        problems += [f"  {test}" for test in new[:50]]
    if stock is not None:
        lost = sorted(set(stock.get("passed_ids", [])) - set(fork.get("passed_ids", [])))
        if lost:
            problems.append(f"{suite}: {len(lost)} test(s) pass on stock but not on {fork_name}")
            problems += [f"  {test}" for test in lost[:50]]
        if fork.get("passed", 0) < stock.get("passed", 0):
            problems.append(
                f"{suite}: {fork_name} passes {fork.get('passed')}, fewer than stock's {stock.get('passed')}"
            )
    return problems


def verdicts(records: list[Record], suites: bool = True) -> tuple[list[str], list[str]]:
    """(problems that fail the run, facts worth stating)."""
    problems, facts = [], []
    by_suite = {(r["case"], r["variant"]): r for r in records if r["case"] in SUITES}
    for suite in SUITES if suites else ():
        for variant in SUITE_VARIANTS[suite]:
            stock, fork = by_suite.get((suite, "stock")), by_suite.get((suite, variant))
            if fork is None:
                problems.append(f"{suite}: no record for {'the fork' if variant == 'fork' else variant} "
                                "(did its session run?)")  # fmt: skip
                continue
            found = suite_problems(suite, stock, fork, variant)
            problems += found
            if stock is not None and not found:
                facts.append(f"{suite}: {variant} {fork['passed']} passed vs stock {stock['passed']}, no regression")
    variants, rows = case_rows(records)
    if "fork" not in variants:
        problems.append("large-M cases: no record for the fork (did `cases(variant='fork')` run?)")
    stock_failures = 0
    for (case, device, _, params), by_variant in sorted(rows.items()):
        fork = by_variant.get("fork")
        label = f"case {case} [{device}] {params}"
        if fork is not None and fork["status"] not in ("ok", "skipped"):
            problems.append(f"{label}: fork {fork['status']}: {fork.get('message', '')}")
        for name, record in by_variant.items():
            if name.startswith("stock") and record["status"] in ("oom", "limit", "error"):
                stock_failures += 1
                facts.append(f"{label}: {name} {record['status']} ({record.get('message', '')[:120]})")
        diff = loss_difference(by_variant.get("fork"), by_variant.get("reference"))
        dtype = ((fork or {}).get("params") or {}).get("dtype", "float32")
        if diff is not None and diff > TOLERANCE.get(dtype, 1e-4):
            problems.append(f"{label}: fork loss departs from the reference by {diff:.2e} (relative)")
    facts.append(f"stock failed (oom/limit/error) on {stock_failures} case run(s)")
    facts += learned_noise_facts(rows)
    return problems, facts


def learned_noise_facts(rows: dict[RowKey, dict[str, Record]]) -> list[str]:
    """The fork's learned extra noise (case g) against its fixed noise (case b), at the same parameters."""
    facts = []
    fixed = {(key[1], key[3]): by_variant.get("fork") for key, by_variant in rows.items() if key[0] == "b"}
    for (case, device, _, params), by_variant in sorted(rows.items()):
        learned, base = by_variant.get("fork"), fixed.get((device, params))
        if case == "g" and ratio(learned, base, "seconds"):
            facts.append(
                f"case g [{device}] {params}: learned / fixed noise (case b) on the fork: time "
                f"{ratio(learned, base, 'seconds')}, peak {ratio(learned, base, 'peak_bytes')}"
            )
    return facts


PREDICTION_CASES = ("e", "f")


def prediction_lines(records: list[Record]) -> list[str]:
    """The prediction cases (e, f): time and memory of the prediction, and the errors of the mean and variance."""
    rows = [r for r in records if r["case"] in PREDICTION_CASES and r["status"] != "skipped"]
    if not rows:
        return []
    lines = [
        "",
        "## Predictions (cases e and f)",
        "",
        "Train peak: peak memory when training ends; added: the rest of the peak, in T × N floats of the dtype; "
        "errors: relative to a float64 Woodbury prediction with the same parameters (mean: normwise, variance: "
        "largest entrywise); the last column: the same Woodbury prediction computed in the run's dtype.",
        "",
        "| case | device | parameters | variant | status | predict s | train peak GiB | peak GiB | added (T × N) "
        "| mean error | variance error | float32 Woodbury's variance error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["case"], str(r.get("device")), params_key(r), r["variant"])):
        info, params = r.get("info") or {}, r.get("params") or {}
        added = ""
        if r["status"] == "ok" and r.get("peak_bytes") and info.get("train_peak_bytes"):
            itemsize = 8 if params.get("dtype") == "float64" else 4
            size = params.get("N", 0) * params.get("T", 0) * itemsize
            added = f"{(r['peak_bytes'] - info['train_peak_bytes']) / size:.2f}" if size else ""
        keys = ("mean_error", "variance_error", "reference_variance_error")
        errors = [f"{info[k]:.1e}" if isinstance(info.get(k), float) else "" for k in keys]
        cells = [r["case"], r.get("device"), params_key(r), r["variant"], r["status"]]
        cells += [seconds(info.get("predict_seconds")), gib(info.get("train_peak_bytes")), gib(r.get("peak_bytes"))]
        lines.append("| " + " | ".join(str(cell) for cell in [*cells, added, *errors]) + " |")
    return lines


def versions(records: list[Record]) -> list[str]:
    """``variant: linear_operator version`` of every variant that imported one (and gpytorch's, for
    ``gpytorch-fork``)."""
    found = {f"{r['variant']}: linear_operator {r['version']}" for r in records if r.get("version")}
    found |= {f"{r['variant']}: gpytorch {r['gpytorch']}" for r in records if r.get("variant") == "gpytorch-fork"
              and r.get("gpytorch")}  # fmt: skip
    return sorted(found)


def suites_table(records: list[Record]) -> list[str]:
    """One row per suite × variant: passed, failed, skipped, seconds."""
    lines = ["| suite | variant | passed | failed | skipped | seconds |", "|---|---|---|---|---|---|"]
    for r in records:
        if r["case"] in SUITES:
            lines.append(
                f"| {r['case']} | {r['variant']} | {r.get('passed')} | {r.get('failed')} | {r.get('skipped')} | "
                f"{seconds(r.get('seconds'))} |"
            )
    return lines


def cases_table(records: list[Record], cases: Iterable[str] | None = None) -> list[str]:
    """One row per case × device × parameters (``cases``: only those), one cell per variant (status, seconds, peak
    memory), then the ratios stock/fork peak, fork/reference time, last step and peak, and the loss against the
    reference;
    then the messages of the runs that are not ok."""
    chosen = [r for r in records if r["case"] not in SUITES and (cases is None or r["case"] in cases)]
    variants, rows = case_rows(chosen)
    extra = ["stock/fork peak", "fork/ref. time", "fork/ref. last step", "fork/ref. peak", "loss vs ref."]
    lines = ["| case | device | parameters | " + " | ".join(variants + extra) + " |"]
    lines.append("|---|---|---|" + "---|" * (len(variants) + len(extra)))
    for (case, device, _, params), by_variant in sorted(rows.items()):
        cells = [cell(by_variant.get(v)) for v in variants]
        fork, reference = by_variant.get("fork"), by_variant.get("reference")
        diff = loss_difference(fork, reference)
        cells += [
            ratio(by_variant.get("stock"), fork, "peak_bytes"),
            ratio(fork, reference, "seconds"),
            ratio(fork, reference, "last_step_seconds"),
            ratio(fork, reference, "peak_bytes"),
            "" if diff is None else f"{diff:.1e}",
        ]
        lines.append(f"| {case} | {device} | {params} | {' | '.join(cells)} |")
    skipped = sorted({r.get("message", "") for r in chosen if r["status"] == "skipped"})
    messages = [r for r in chosen if r["status"] not in ("ok", "skipped")]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped)]
    if messages:
        lines += ["", "Messages:", ""]
        lines += [
            f"- case {r['case']} {params_key(r)} {r['variant']} ({r['status']}): {r['message'][:300]}" for r in messages
        ]
    return lines


def markdown(records: list[Record], problems: list[str], facts: list[str], plots: list[str]) -> str:
    lines = ["# Verify report: stock vs fork", ""]
    lines.append(f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
                 f"{platform.machine()} ({platform.system()}), Python {platform.python_version()}.")  # fmt: skip
    lines += ["", *[f"- {v}" for v in versions(records)], ""]
    lines += ["## Verdict", ""]
    lines += [f"- FAIL: {p}" for p in problems] or ["- the fork regresses nowhere"]
    lines += [f"- {f}" for f in facts]
    lines += ["", "## Test suites", "", *suites_table(records)]
    lines += [
        "",
        "## Large-M cases",
        "",
        "Each cell: status, seconds, peak memory (CPU: peak RSS; CUDA: peak allocated).",
        "",
    ]
    lines += cases_table(records)
    lines += prediction_lines(records)
    if plots:
        lines += ["", "## Case a swept over N", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def benchmark_lines(records: list[Record], command: str) -> list[str]:
    """The README's measured table: how it was made (the command, the build, the machine), then the cases table."""
    fork = sorted({str(r["version"]) for r in records if r.get("variant") == "fork" and r.get("version")})
    torch = sorted({str(r["torch"]) for r in records if r.get("torch")})
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    _, rows = case_rows(records)
    runs = [(name, run) for row in rows.values() for name, run in row.items()]
    rounds = sorted({f"{name} {run['rounds']}" for name, run in runs if "rounds" in run})
    medians = f" (medians of rounds: {', '.join(rounds)})" if rounds else ""
    return [
        f"`{command}`, {stamp}, fork {', '.join(fork) or '(none)'}, torch {', '.join(torch) or '?'}, on "
        f"{platform.machine()} with {platform.python_implementation()} {platform.python_version()}{medians}:",
        "",
        *cases_table(records),
    ]


def differential_section(path: Path) -> tuple[list[str], list[str]]:
    """(problems, report lines) from the differential harness's ``results.json`` (nox -s differential), if any."""
    from linear_operator_fork.verify.differential import verdict

    if not path.exists():
        return [], []
    data = json.loads(path.read_text())
    summary, fails = data["summary"], data["fails"]
    problems = [f"differential: fork FAIL {fail['key']}: {fail['reason'][:200]}" for fail in fails]
    unchecked = verdict.unchecked_float64(data)
    if unchecked:
        problems.append(f"differential: {unchecked} float64 output(s) unchecked (no answer could fail them)")
    names = ("cases", "outputs", "unchecked", "stock_failures", "fork_failures", "fork_fails", "fork_better")
    counts = [summary[name] for name in names]
    lines = [
        "",
        "## Differential",
        "",
        "Stock vs fork vs a dense float64 reference on seeded cases of what users write "
        f"({path.parent / 'report.md'}, generated {data['generated']}).",
        "",
        "| cases tried | outputs | unchecked outputs | stock failures | fork failures | fork FAILs | fork better |",
        "|---|---|---|---|---|---|---|",
        "| " + " | ".join(str(count) for count in counts) + " |",
    ]
    if fails:
        lines += ["", "Fork FAILs (replay one on both variants: `nox -s differential -- --case KEY`):", ""]
        lines += [f"- `{fail['key']}`: {fail['reason'][:200]}" for fail in fails]
    return problems, lines


PLOT = "against_n.png"


def plot(records: list[Record], folder: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots", file=sys.stderr)
        return []
    _, rows = case_rows(records)  # (the medians of the rounds)
    sweep = [
        r
        for (case, device, _, _), by_variant in rows.items()
        for r in by_variant.values()
        if case == "a"
        and device == "cpu"
        and "N" in (r.get("params") or {})
        and r["params"].get("layout", "coo") == "coo"
    ]
    if len({r["params"]["N"] for r in sweep}) < 2:
        return []  # no sweep over N among these records
    figure, panels = plt.subplots(1, 2, figsize=(11, 4))
    for axes, (field, label) in zip(panels, (("peak_bytes", "peak memory (GiB)"), ("seconds", "seconds")), strict=True):
        for variant in sorted({r["variant"] for r in sweep}):
            points = sorted(
                (r["params"]["N"], r) for r in sweep if r["variant"] == variant and r.get(field) is not None
            )
            ok = [(n, r[field] / (GIB if field == "peak_bytes" else 1)) for n, r in points if r["status"] == "ok"]
            bad = [(n, r[field] / (GIB if field == "peak_bytes" else 1)) for n, r in points if r["status"] != "ok"]
            if ok:
                (line,) = axes.plot(*zip(*ok, strict=True), marker="o", label=variant)
                color = line.get_color()
            else:
                color = None
            if bad:
                axes.plot(*zip(*bad, strict=True), linestyle="none", marker="x", markersize=10, color=color,
                          label=f"{variant} (failed: oom/limit)")  # fmt: skip
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("N (rows of the sparse L)")
        axes.set_ylabel(label)
        axes.set_title(f"{label} against N")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle("Two training steps of L K Lᵀ + σ² I (case a: n = 500, 4 entries per row, float32, COO)")
    figure.tight_layout()
    figure.savefig(folder / PLOT, dpi=110)
    plt.close(figure)
    return [PLOT]


def add_arguments(commands: Any) -> None:
    """The ``report`` subcommand of ``python -m linear_operator_fork``."""
    parser = commands.add_parser("report", help="stock vs fork: results.json, report.md and plots of a run's records")
    parser.add_argument("folder", type=Path, nargs="?", help="the run's folder, holding records/ (e.g. build/verify)")
    parser.add_argument("--cases-only", action="store_true", help="no suite records expected (the benchmark)")
    parser.add_argument("--readme", type=Path, help=f"also write the cases table into this file's {README_BEGIN} block")
    parser.add_argument("--command", default="nox -s benchmark", help="the command named above the README's table")
    parser.add_argument("--through", type=int, metavar="K",
                        help="the folder holds prefixes K-1 and K (nox -s benchmark -- --through K): write "
                        "docs/prs/<K>-<branch>.md, pull request K against the one below it")  # fmt: skip
    parser.add_argument("--prs", action="store_true",
                        help=f"write README.md's summary of docs/prs/ (its {prbench.SUMMARY_BEGIN} block)")  # fmt: skip
    parser.add_argument("--prs-dir", type=Path, default=prbench.PRS_DIR, help="the tables (default: docs/prs)")
    parser.set_defaults(handler=run_command)


def write_pr_table(folder: Path, through: int, prs_dir: Path) -> None:
    """docs/prs/<K>-<branch>.md from the records of ``folder`` (``nox -s benchmark -- --through K``)."""
    records = record_files.load(folder)
    if not records:
        raise ForkError(f"no records under {folder / 'records'}: run `{prbench.command(through)}`")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    data = prbench.table_data(load_recipe(), through, records, date)
    path = prbench.write_table(prs_dir, data)
    print("\n".join(prbench.table_lines(data)))
    print(f"wrote {path}")


def write_pr_summary(readme: Path, prs_dir: Path) -> None:
    """README.md's table of what each pull request buys, from docs/prs/; names the tables that are not current."""
    project = load_recipe()
    lines = prbench.summary_lines(project, prs_dir)
    record_files.replace_block(readme, prbench.SUMMARY_BEGIN, prbench.SUMMARY_END, lines)
    print("\n".join(lines))
    for table in prbench.tables(project, prs_dir):
        if (found := prbench.problem(table)) is not None:
            print(f"note: pull request {table.through}: {found}; measure it: {prbench.command(table.through)}")
    for path in prbench.orphans(project, prs_dir):
        print(f"note: {path} is no pull request's table now (a branch renamed or dropped?): remove it")
    print(f"wrote what each pull request buys into {readme}")


def run_command(args: argparse.Namespace) -> int:
    if args.through is not None:
        if args.folder is None:
            raise ForkError("--through K needs the run's folder (build/benchmark-prs/K)")
        write_pr_table(args.folder, args.through, args.prs_dir)
    if args.prs:
        write_pr_summary(args.readme or prbench.README, args.prs_dir)
    if args.through is not None or args.prs:
        return 0
    if args.folder is None:
        raise ForkError("report: give the run's folder (e.g. build/verify), or --prs")
    records = record_files.load(args.folder)
    if not records:
        raise ForkError(f"no records under {args.folder / 'records'}: run `nox -s verify` (or benchmark)")
    problems, facts = verdicts(records, suites=not args.cases_only)
    differential_problems, differential_lines = [], []
    if not args.cases_only:
        differential_path = args.folder.resolve().parent / "differential" / "results.json"
        differential_problems, differential_lines = differential_section(differential_path)
    problems += differential_problems
    plots = plot(records, args.folder)
    results = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "problems": problems,
        "records": records,
    }
    (args.folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(records, problems, facts, plots) + "".join(line + "\n" for line in differential_lines)
    (args.folder / "report.md").write_text(report)
    print(report)
    print(f"wrote {args.folder / 'results.json'}, {args.folder / 'report.md'}" + "".join(f", {p}" for p in plots))
    if args.readme:
        record_files.replace_block(args.readme, README_BEGIN, README_END, benchmark_lines(records, args.command))
        print(f"wrote the measured table into {args.readme}")
    return 1 if problems else 0
