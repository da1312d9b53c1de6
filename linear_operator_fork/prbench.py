"""What each pull request buys: its prefix of the series against the prefix below it, in one benchmark run.

``nox -s benchmark -- --through K`` builds the wheels of the series' first K-1 and first K patches (prefix 0: stock),
runs the cases that pull request K claims among :data:`PR_CASES` (fork.toml's ``cases`` of ``[[pr.stack]]`` entry K:
a, b and g, the benchmark's training steps, and d, ``MatmulLinearOperator(Uᵀ, U).to_dense()``), or the benchmark's
a, b and g when it claims none of them, so that its table shows what it costs (:func:`benchmark_cases`), on both
prefixes, COO and CSR, then

* ``python -m linear_operator_fork report build/benchmark-prs/K --through K`` writes ``docs/prs/<K>-<branch>.md``
  (:func:`write_table`): the pull request's branch and title, the sha256 of its prefix's diffs (the digest of
  :func:`linear_operator_fork.recipe.series_digest` over the first K patches), the machine, and a before/after table
  per case and layout; the data it was rendered from rides along in a comment on its first line;
* ``python -m linear_operator_fork report --prs`` writes the README's summary, one row per pull request
  (:func:`summary_lines`), between :data:`SUMMARY_BEGIN` and :data:`SUMMARY_END`: a column per layout of each case some
  pull request of the stack is measured on (d only while one claims it), ``—`` where a case is not the row's.

A table is *current* while its digest is the digest of the series' first K patches now; otherwise it is *stale*, and
``nox -s pr`` (:func:`description_lines`) says so, with the command that measures it again, instead of showing it.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linear_operator_fork import build, recipe, series
from linear_operator_fork.recipe import ROOT, ForkError
from linear_operator_fork.verify.records import GIB, Record

PRS_DIR = ROOT / "docs" / "prs"
README = ROOT / "README.md"
BENCHMARK_CASES = ("a", "b", "g")  # the benchmark's cases (nox -s benchmark): what a pull request claiming none costs
PR_CASES = ("a", "b", "d", "g", "h", "i")  # the cases a pull request's table measures when it claims them
LAYOUTS = ("coo", "csr")
SUMMARY_BEGIN, SUMMARY_END = "<!-- what-each-pr-buys:begin -->", "<!-- what-each-pr-buys:end -->"
DATA_PREFIX = "<!-- pr-benchmark "
DATA_LINE = re.compile(r"^<!-- pr-benchmark (\{.*\}) -->$", re.MULTILINE)
TEST_DIRS = ("test", "tests")


def label(through: int) -> str:
    """The records' variant label of prefix ``through``: ``through-2`` (``through-0``: stock)."""
    return f"through-{through}"


def command(through: int) -> str:
    """The command that measures pull request ``through`` against the one below it."""
    return f"nox -s benchmark -- --through {through}"


def benchmark_cases(pull_request: recipe.StackedPR) -> list[str]:
    """The cases of :data:`PR_CASES` a pull request claims; the benchmark's when it claims none (what it costs)."""
    claimed = [case for case in PR_CASES if case in pull_request.cases]
    return claimed or list(BENCHMARK_CASES)


def patch_names(project: recipe.Project) -> list[str]:
    return series.read_series(project.series_file, project.patches_dir).names


def prefix_digest(project: recipe.Project, through: int, names: Sequence[str] | None = None) -> str:
    """sha256 over the diffs of the series' first ``through`` patches (``series_digest``'s scheme)."""
    names = patch_names(project) if names is None else list(names)
    return recipe.series_digest(project.patches_dir, names[:through])


def first_patches(through: int) -> str:
    return "the series' first patch" if through == 1 else f"the series' first {through} patches"


def table_path(folder: Path, through: int, branch: str) -> Path:
    return folder / f"{through}-{branch}.md"


def prefix_version(project: recipe.Project, through: int) -> str:
    """The linear_operator version prefix ``through`` imports: stock's for 0."""
    return project.version if through == 0 else build.prefix_version(project, through)


# --- the measurements ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One prefix's run of one case and layout: status, the first and the last training step, the peak."""

    status: str
    first: float | None  # seconds
    last: float | None  # seconds
    peak: float | None  # bytes

    @classmethod
    def of(cls, record: Record) -> Side:
        steps = record.get("step_seconds") or []
        ok = record["status"] == "ok"
        first, last = (round(steps[0], 4), round(steps[-1], 4)) if ok and steps else (None, None)
        return cls(record["status"], first, last, record.get("peak_bytes"))


def ratio(after: Side | None, before: Side | None, field: str) -> float | None:
    """after/before of a field when both runs are ok and measured it; None otherwise."""
    if after is None or before is None or after.status != "ok" or before.status != "ok":
        return None
    a, b = getattr(after, field), getattr(before, field)
    return a / b if a and b else None


def measured_rows(records: Sequence[Record], through: int) -> list[dict[str, Any]]:
    """One row per case and layout: the before (prefix through-1) and after (prefix through) sides."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    sides = {label(through - 1): "before", label(through): "after"}
    for record in records:
        side = sides.get(record.get("variant", ""))
        if side is None or record.get("case") in (None, "probe"):
            continue
        params = record.get("params") or {}
        key = (record["case"], str(params.get("layout", "coo")))
        row = rows.setdefault(key, {"case": key[0], "layout": key[1], "N": params.get("N"), "n": params.get("n")})
        row[side] = Side.of(record).__dict__
    order = {layout: index for index, layout in enumerate(LAYOUTS)}
    return [rows[key] for key in sorted(rows, key=lambda key: (key[0], order.get(key[1], len(order)), key[1]))]


def check_versions(project: recipe.Project, records: Sequence[Record], through: int) -> None:
    """Each prefix's records imported that prefix's linear_operator (not one that shadowed it)."""
    for prefix in (through - 1, through):
        found = {str(r.get("version")) for r in records if r.get("variant") == label(prefix)}
        expected = prefix_version(project, prefix)
        if not found:
            raise ForkError(f"no records of {label(prefix)} (prefix {prefix}): did its `cases run` write them?")
        if found != {expected}:
            raise ForkError(
                f"the records of {label(prefix)} imported linear_operator {', '.join(sorted(found))}, not {expected}: "
                f"run `{command(through)}` again"
            )


def machine(records: Sequence[Record]) -> dict[str, Any]:
    """Where the records ran (this machine: the report is written right after the runs)."""
    return {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "torch": ", ".join(sorted({str(r["torch"]) for r in records if r.get("torch")})) or "?",
        "threads": ", ".join(sorted({str(r["threads"]) for r in records if r.get("threads")})) or "?",
    }


def table_data(project: recipe.Project, through: int, records: Sequence[Record], date: str) -> dict[str, Any]:
    """What ``docs/prs/<K>-<branch>.md`` records: the pull request, its prefix's digest, the machine, the rows."""
    names = patch_names(project)
    count = min(len(names), len(project.stack))
    if not 1 <= through <= count:
        raise ForkError(f"--through {through}: the stack has pull requests 1 to {count}")
    check_versions(project, records, through)
    prefixes = (label(through - 1), label(through))
    sizes = sorted({str((r.get("params") or {}).get("size")) for r in records if r.get("variant") in prefixes})
    return {
        "through": through,
        "branch": project.stack[through - 1].branch,
        "title": series.message(project.patches_dir / names[through - 1]).subject,
        "digest": prefix_digest(project, through, names),
        "before": prefix_version(project, through - 1),
        "after": prefix_version(project, through),
        "size": ", ".join(sizes),
        "date": date,
        "machine": machine(records),
        "rows": measured_rows(records, through),
    }


# --- docs/prs/<K>-<branch>.md ----------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def gib(value: float | None) -> str:
    return "" if value is None else f"{value / GIB:.2f}"


def ratio_text(value: float | None) -> str:
    """``0.42×``; two significant digits below 0.1 (``0.0081×``), so a large gain keeps its size."""
    if value is None:
        return ""
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.2g}×"


def side_cells(side: dict[str, Any] | None) -> list[str]:
    """Last step, first step, peak of one prefix's run (a failed run: its status, and its peak if any)."""
    if side is None:
        return ["—", "—", "—"]
    if side["status"] != "ok":
        return [f"**{side['status']}**", "", gib(side.get("peak"))]
    return [seconds(side["last"]), seconds(side["first"]), gib(side["peak"])]


def table_lines(data: dict[str, Any]) -> list[str]:
    """The before/after table of a pull request, with the sentence that says what was measured where."""
    host = data["machine"]
    through = data["through"]
    below = "stock" if through == 1 else f"pull requests 1 to {through - 1}"
    lines = [
        f"Pull request {through} with those below it (linear_operator {data['after']}) against {below} "
        f"({data['before']}): two Adam training steps of each case at size {data['size']}, float32; seconds of each "
        f"step, peak RSS of the run. `{command(through)}`, {data['date']}, on {host['cores']} cores "
        f"({host['machine']}, {host['system']}), torch {host['torch']} ({host['threads']} threads), "
        f"Python {host['python']}.",
        "",
        "| case | layout | N, n | before: last step s | before: first step s | before: peak GiB | after: last step s "
        "| after: first step s | after: peak GiB | last step after/before | first step after/before "
        "| peak after/before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        before, after = row.get("before"), row.get("after")
        b, a = (Side(**side) if side else None for side in (before, after))
        ratios = [ratio_text(ratio(a, b, field)) for field in ("last", "first", "peak")]
        size = f"{row.get('N')}, {row.get('n')}"
        cells = [row["case"], row["layout"], size, *side_cells(before), *side_cells(after), *ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(data: dict[str, Any]) -> str:
    """The whole ``docs/prs/<K>-<branch>.md``: its data (first line), the pull request, its digest, the table."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":")).replace("--", "-\\u002d")  # (inside strings)
    through = data["through"]
    lines = [
        f"{DATA_PREFIX}{encoded} -->",
        f"<!-- generated by `{command(through)}`; `nox -s pr` shows the table in the pull request's description "
        "while the digest below is the series' -->",
        "",
        f"# Pull request {through}: `{data['branch']}`",
        "",
        f"**{data['title']}**",
        "",
        f"Prefix digest (sha256 over the diffs of {first_patches(through)}, as `fork.toml`'s series-sha256 is over "
        f"all of them): `{data['digest']}`.",
        "",
        *table_lines(data),
        "",
    ]
    return "\n".join(lines)


def write_table(folder: Path, data: dict[str, Any]) -> Path:
    """Write ``folder/<K>-<branch>.md``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = table_path(folder, data["through"], data["branch"])
    path.write_text(render(data), encoding="utf-8")
    return path


def read_table(path: Path) -> dict[str, Any] | None:
    """The data of a ``docs/prs`` file (None: no file, or not one this module wrote)."""
    if not path.is_file():
        return None
    match = DATA_LINE.search(path.read_text(encoding="utf-8"))
    if match is None:
        return None
    try:
        data = json.loads(match[1])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and {"through", "digest", "rows"} <= data.keys() else None


# --- current or stale ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A pull request's table as the series stands: ``current``, ``stale`` or ``missing``."""

    through: int
    branch: str
    path: Path
    state: str
    data: dict[str, Any] | None  # the table's data (None: missing)
    digest: str  # the digest of the series' first ``through`` patches now


def table_state(folder: Path, through: int, branch: str, digest: str) -> Table:
    """Whether ``folder/<K>-<branch>.md`` measures the series' first ``through`` patches as they are now."""
    path = table_path(folder, through, branch)
    data = read_table(path)
    if data is None:
        state = "stale" if path.is_file() else "missing"  # (a file this module cannot read measures nothing now)
    else:
        state = "current" if data.get("digest") == digest and data.get("through") == through else "stale"
    return Table(through, branch, path, state, data, digest)


def tables(project: recipe.Project, folder: Path = PRS_DIR) -> list[Table]:
    """Every pull request's table, in stack order."""
    names = patch_names(project)
    return [
        table_state(folder, through, pull_request.branch, prefix_digest(project, through, names))
        for through, pull_request in enumerate(project.stack[: len(names)], 1)
    ]


def orphans(project: recipe.Project, folder: Path = PRS_DIR) -> list[Path]:
    """Files of ``folder`` that are no pull request's table now (a branch renamed, or the stack shortened)."""
    known = {table.path.name for table in tables(project, folder)} | {"README.md"}
    return sorted(path for path in folder.glob("*.md") if path.name not in known) if folder.is_dir() else []


def shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def problem(table: Table) -> str | None:
    """What keeps a pull request's table out of its description (None: it is current)."""
    if table.state == "current":
        return None
    if table.state == "missing":
        return f"{shown(table.path)} is missing"
    measured = (table.data or {}).get("digest", "unknown")
    return (
        f"{shown(table.path)} is stale: it measured other patches (prefix digest {str(measured)[:12]}…, "
        f"{first_patches(table.through)} are {table.digest[:12]}… now)"
    )


def description_lines(table: Table) -> list[str]:
    """The prefix benchmark's part of a pull request's description: the table, or why it is not there."""
    heading = ["### Against the pull request below it", ""]
    found = problem(table)
    if found is None and table.data is not None:
        return [*heading, *table_lines(table.data), ""]
    return [*heading, f"**No benchmark table: {found}.** Measure it: `{command(table.through)}`.", ""]


# --- the README's summary --------------------------------------------------------------------------------------


def lines_added(patch: Path) -> tuple[int, int]:
    """Lines a patch adds: (code, tests); a test is a file under ``test/`` or ``tests/``, or a ``test_*.py``."""
    code = tests = 0
    is_test = False
    for line in patch.read_text(encoding="utf-8").splitlines():
        header = re.match(r"diff --git a/\S+ b/(\S+)$", line)
        if header:
            path = Path(header[1])
            is_test = any(part in TEST_DIRS for part in path.parts[:-1]) or path.name.startswith("test_")
        elif line.startswith("+") and not line.startswith("+++ "):
            if is_test:
                tests += 1
            else:
                code += 1
    return code, tests


def summary_cell(table: Table, case: str, layout: str, cases: Sequence[str] = PR_CASES) -> str:
    """``0.01× / 0.07×`` (last step, peak: after/before), or ``stale``, ``not measured``, ``—`` (not its case: not in
    ``cases``, what its pull request is measured on, or no row of its table)."""
    if case not in cases:
        return "—"
    if table.state == "missing":
        return "not measured"
    if table.state == "stale" or table.data is None:
        return "stale"
    row = next((r for r in table.data["rows"] if r["case"] == case and r["layout"] == layout), None)
    if row is None:
        return "—"
    before, after = (Side(**row[side]) if row.get(side) else None for side in ("before", "after"))
    if after is None or before is None:
        return "—"
    if after.status != "ok":
        return f"**{after.status}**"
    if before.status != "ok":
        return f"before: {before.status}"
    return f"{ratio_text(ratio(after, before, 'last'))} / {ratio_text(ratio(after, before, 'peak'))}"


def summary_cases(project: recipe.Project) -> list[str]:
    """The summary's cases: those of :data:`PR_CASES` that some pull request of the stack is measured on."""
    measured = {
        case for pull_request in project.stack[: len(patch_names(project))] for case in benchmark_cases(pull_request)
    }
    return [case for case in PR_CASES if case in measured]


def summary_lines(project: recipe.Project, folder: Path = PRS_DIR) -> list[str]:
    """The README's table: one row per pull request, its lines added, its after/before ratios per case and layout."""
    columns = [(case, layout) for case in summary_cases(project) for layout in LAYOUTS]
    lines = [
        "| # | branch | lines added (code + tests) | " + " | ".join(f"{c} {layout}" for c, layout in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    found = tables(project, folder)
    names = patch_names(project)
    for table in found:
        code, tests = lines_added(project.patches_dir / names[table.through - 1])
        cases = benchmark_cases(project.stack[table.through - 1])
        cells = [summary_cell(table, case, layout, cases) for case, layout in columns]
        lines.append(f"| {table.through} | `{table.branch}` | {code} + {tests} | " + " | ".join(cells) + " |")
    current = [t for t in found if t.state == "current" and t.data]
    claimed = [t for t in current if t.data.get("size") != "cpu" and t.data.get("size") == stack_size(project, t)]
    if claimed:
        rows = ", ".join(f"{t.through} at size {t.data['size']} ({table_size(t)})" for t in claimed)
        lines += ["", f"(Measured at the size the pull request claims, not the benchmark's cpu size: {rows}.)"]
    sizes = sorted({str(t.data.get("size")) for t in current if t.data.get("size") != stack_size(project, t)})
    if sizes:
        lines += ["", f"(Measured at size {', '.join(sizes)}, not the size of its pull request: not for the README.)"]
    return lines


def stack_size(project: recipe.Project, table: Table) -> str:
    """The size a table's pull request claims (``fork.toml``'s ``size``, default cpu)."""
    return project.stack[table.through - 1].size


def table_size(table: Table) -> str:
    """``N = 20000000, n = 2000``: the sizes of a table's rows."""
    sizes = sorted({(row.get("N"), row.get("n")) for row in table.data.get("rows", [])}, key=str)
    return "; ".join(f"N = {big}, n = {small}" for big, small in sizes)
