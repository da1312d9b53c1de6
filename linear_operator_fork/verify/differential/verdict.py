"""Stock vs fork vs the reference, case by case: verdicts, ``results.json``, ``report.md`` and the README table.

The rule: the fork succeeds wherever stock succeeds and agrees with it, unless it is closer to the reference; the
fork is never silently wrong. Per case (``ok`` and the other statuses: :mod:`.outcome`):

- FAIL: the fork is ``wrong`` or ``crash``; ``inaccurate`` (unless stock is at least as far from the reference: "no
  worse than stock"); ``error`` or ``timeout`` where stock is ``ok``; ``ok`` but disagreeing with an ``ok`` stock
  beyond tolerance without being closer to the reference than stock.
- fork better: the fork is ``ok`` where stock is not, or where the two disagree and the fork is closer.
- both fail: neither is ``ok`` and the fork is not silently wrong (it raised or timed out).
- PASS: both ``ok`` and agreeing (or both raising where that is correct).
- invalid: the reference itself failed (a bug of the harness: it fails the run, like a FAIL).

This module needs only the standard library (the report session installs nothing).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from linear_operator_fork.verify.differential.case import ALL_OPS, from_key

PASS, FAIL, BETTER, NO_WORSE, BOTH_FAIL, INVALID = (
    "PASS",
    "FAIL",
    "fork better",
    "no worse than stock",
    "both fail",
    "invalid",
)
VERDICTS = (PASS, FAIL, BETTER, NO_WORSE, BOTH_FAIL, INVALID)
README_BEGIN, README_END = "<!-- differential:begin -->", "<!-- differential:end -->"


def replay_command(key: str) -> str:
    return f"nox -s differential -- --case '{key}'"


def norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def disagreement(stock: dict[str, Any], fork: dict[str, Any]) -> float:
    """Largest ``‖fork - stock‖ / scale / tolerance`` over the reference's outputs: above 1, the two disagree
    (inf: an output missing or shaped apart)."""
    worst = 0.0
    for name, reference in (fork.get("reference") or {}).items():
        a, b = (stock.get("outputs") or {}).get(name), (fork.get("outputs") or {}).get(name)
        if a is None or b is None or a["shape"] != b["shape"]:
            return math.inf
        difference = norm([x - y for x, y in zip(a["values"], b["values"], strict=True)])
        if difference == 0:
            continue
        if not math.isfinite(difference) or reference["scale"] == 0:
            return math.inf
        worst = max(worst, difference / reference["scale"] / reference["tolerance"])
    return worst


def error_of(record: dict[str, Any]) -> float:
    """Distance to the reference in units of tolerance (above 1: inaccurate; inf when unknown)."""
    value = record.get("score")
    return math.inf if value is None else value


def case_verdict(stock: dict[str, Any] | None, fork: dict[str, Any] | None) -> tuple[str, str]:
    """``(verdict, reason)`` of one case from its stock and fork outcome records (either may be missing)."""
    if fork is None:
        return FAIL, "no fork outcome (did the fork's run finish?)"
    if fork["status"] == "invalid" or (stock or {}).get("status") == "invalid":
        return INVALID, f"the reference failed: {(fork if fork['status'] == 'invalid' else stock)['message']}"
    s_status = stock["status"] if stock else "missing"
    f_status, f_message = fork["status"], fork.get("message", "")
    if f_status == "wrong":
        return FAIL, f"fork is silently wrong: {f_message}"
    if f_status == "crash":
        return FAIL, f"fork crashes: {f_message}"
    if f_status == "inaccurate":
        if s_status == "inaccurate" and error_of(stock) >= error_of(fork):
            return NO_WORSE, f"both inaccurate: fork {error_of(fork):.3g}, stock {error_of(stock):.3g} × tolerance"
        return FAIL, f"fork is inaccurate (stock {s_status}): {f_message}"
    if f_status in ("error", "timeout"):
        if s_status == "ok":
            return FAIL, f"fork {f_status} where stock is ok: {f_message}"
        return BOTH_FAIL, f"fork {f_status} ({f_message}); stock {s_status}"
    # the fork is ok
    if s_status != "ok":
        return BETTER, f"stock {s_status}: {stock.get('message', '') if stock else 'no stock outcome'}"
    fork_numbers, stock_numbers = "outputs" in fork, "outputs" in stock
    if fork_numbers and stock_numbers:
        gap = disagreement(stock, fork)
        if gap <= 1:
            return PASS, ""
        detail = f"fork {error_of(fork):.3g}, stock {error_of(stock):.3g} × tolerance from the reference"
        if error_of(fork) < error_of(stock):
            return BETTER, f"disagrees with stock ({gap:.3g} × tolerance) and is closer to the reference ({detail})"
        return FAIL, f"disagrees with stock ({gap:.3g} × tolerance) and is not closer ({detail})"
    if fork_numbers:
        return BETTER, f"fork computes a correct result where stock raises: {stock.get('message', '')}"
    if stock_numbers:
        return PASS, f"fork raises a clear error where stock computes: {f_message}"
    return PASS, ""


def cause(case_key: str, verdict: str, record: dict[str, Any] | None) -> str:
    """What went wrong, as a group label: an exception by its message (numbers blanked, whatever the operation),
    anything else by the operation and form and the status."""
    case = from_key(case_key)
    where = f"{case.op}/{case.form}"
    if record is None:
        return f"{where}: no outcome"
    status, message = record["status"], record.get("message", "")
    if record.get("error_type") and status != "crash":
        return f"raises {re.sub(r'[0-9]+', '#', message)[:110]}"
    if status == "inaccurate":
        kind = "wrong shape" if "shape" in message else "non-finite" if "non-finite" in message else "numbers off"
        return f"{where}: inaccurate ({kind})"
    if status == "ok" and verdict == FAIL:
        return f"{where}: disagrees with stock"
    return f"{where}: {status}"


def summarise(rows: list[dict[str, Any]]) -> dict[str, int]:
    verdicts = Counter(row["verdict"] for row in rows)
    return {
        "cases": len(rows),
        "stock_failures": sum(1 for row in rows if (row["stock"] or {}).get("status") != "ok"),
        "fork_failures": sum(1 for row in rows if (row["fork"] or {}).get("status") != "ok"),
        "fork_fails": verdicts[FAIL] + verdicts[INVALID],
        "fork_better": verdicts[BETTER],
        "no_worse_than_stock": verdicts[NO_WORSE],
        "both_fail": verdicts[BOTH_FAIL],
    }


def evaluate_run(keys: list[str], stock: list[dict[str, Any]], fork: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key: the case, both records, the verdict and its reason."""
    by_key = {"stock": {r["key"]: r for r in stock}, "fork": {r["key"]: r for r in fork}}
    rows = []
    for key in keys:
        s, f = by_key["stock"].get(key), by_key["fork"].get(key)
        verdict, reason = case_verdict(s, f)
        rows.append({"key": key, "case": from_key(key).to_dict(), "verdict": verdict, "reason": reason,
                     "stock": s, "fork": f})  # fmt: skip
    return rows


def variant_info(records: list[dict[str, Any]]) -> dict[str, Any]:
    for record in records:
        if record.get("version"):
            return {name: record.get(name) for name in ("version", "file", "sparse_class", "torch", "gpytorch")}
    return {}


def results(meta: dict[str, Any], stock: list[dict[str, Any]], fork: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of ``results.json``."""
    rows = evaluate_run(meta["cases"], stock, fork)
    by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_op[row["case"]["op"]].append(row)
    fails = [
        {"key": row["key"], "reason": row["reason"], "cause": cause(row["key"], row["verdict"], row["fork"]),
         "replay": replay_command(row["key"])}
        for row in rows
        if row["verdict"] in (FAIL, INVALID)
    ]  # fmt: skip
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cases_file": {name: value for name, value in meta.items() if name != "cases"},
        "variants": {"stock": variant_info(stock), "fork": variant_info(fork)},
        "summary": summarise(rows),
        "by_op": {op: summarise(by_op[op]) for op in sorted(by_op, key=list(ALL_OPS).index)},
        "fails": fails,
        "seconds": {"stock": case_seconds(stock), "fork": case_seconds(fork)},
        "cases": rows,
    }


def case_seconds(records: list[dict[str, Any]]) -> float:
    """Time spent in the cases themselves (imports and the reference excluded)."""
    return sum(record.get("seconds") or 0.0 for record in records)


# -- markdown --------------------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    ("cases", "cases"),
    ("stock_failures", "stock failures"),
    ("fork_failures", "fork failures"),
    ("fork_fails", "fork FAILs"),
    ("fork_better", "fork better"),
    ("no_worse_than_stock", "no worse than stock"),
)


def summary_table(data: dict[str, Any]) -> list[str]:
    lines = ["| operation | " + " | ".join(title for _, title in SUMMARY_COLUMNS) + " |"]
    lines.append("|---" * (len(SUMMARY_COLUMNS) + 1) + "|")
    for op, counts in data["by_op"].items():
        lines.append(f"| {op} | " + " | ".join(str(counts[name]) for name, _ in SUMMARY_COLUMNS) + " |")
    total = data["summary"]
    lines.append("| **all** | " + " | ".join(f"**{total[name]}**" for name, _ in SUMMARY_COLUMNS) + " |")
    return lines


def variants_line(data: dict[str, Any]) -> str:
    parts = []
    for name in ("stock", "fork"):
        info = data["variants"].get(name) or {}
        parts.append(f"{name}: linear_operator {info.get('version', '?')} ({info.get('sparse_class', '?')})")
    meta = data["cases_file"]
    return f"{data['summary']['cases']} cases (seed {meta.get('seed')}, hypothesis {meta.get('hypothesis')}); " + (
        "; ".join(parts)
    )


def grouped(rows: list[dict[str, Any]], verdicts: tuple[str, ...], variant: str) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["verdict"] in verdicts:
            groups[cause(row["key"], row["verdict"], row[variant])].append(row)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def cause_table(groups: list[tuple[str, list[dict]]]) -> list[str]:
    lines = [
        "| cause | cases | operations | layouts | dtypes | example (replay: `nox -s differential -- --case KEY`) |"
    ]
    lines.append("|---|---|---|---|---|---|")
    for label, members in groups:
        forms = ", ".join(sorted({f"{row['case']['op']}/{row['case']['form']}" for row in members}))
        layouts = ", ".join(sorted({row["case"]["layout"] for row in members}))
        dtypes = ", ".join(sorted({row["case"]["dtype"] for row in members}))
        label = label.replace("|", "\\|")
        lines.append(f"| {label} | {len(members)} | {forms} | {layouts} | {dtypes} | `{members[0]['key']}` |")
    return lines


def markdown(data: dict[str, Any], limit: int = 200) -> str:
    rows = data["cases"]
    lines = ["# Differential report: stock vs fork vs dense float64 reference", ""]
    lines += [f"Generated {data['generated']}. {variants_line(data)}.", ""]
    seconds = data["seconds"]
    lines += [f"Time in the cases themselves: stock {seconds['stock']:.1f} s, fork {seconds['fork']:.1f} s.", ""]
    lines += ["## Summary", "", *summary_table(data), ""]
    fails = [row for row in rows if row["verdict"] in (FAIL, INVALID)]
    lines += ["## Fork FAILs by cause", ""]
    lines += cause_table(grouped(rows, (FAIL, INVALID), "fork")) if fails else ["None: the fork regresses nowhere."]
    if fails:
        lines += ["", "## Every fork FAIL", ""]
        for row in fails[:limit]:
            lines.append(f"- `{row['key']}`: {row['reason'][:300]}  \n  replay: `{replay_command(row['key'])}`")
        if len(fails) > limit:
            lines.append(f"- ... and {len(fails) - limit} more (results.json)")
    better = [row for row in rows if row["verdict"] == BETTER]
    lines += ["", "## Fork better", ""]
    lines += cause_table(grouped(rows, (BETTER,), "stock")) if better else ["None."]
    lines += ["", "## Stock failures by cause", ""]
    stock_failures = [row for row in rows if (row["stock"] or {}).get("status") != "ok"]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in stock_failures:
        groups[cause(row["key"], row["verdict"], row["stock"])].append(row)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    lines += cause_table(ordered) if ordered else ["None."]
    return "\n".join(lines) + "\n"


def readme_lines(data: dict[str, Any]) -> list[str]:
    """The README's differential table (written between README_BEGIN and README_END by ``compare --readme``)."""
    return [
        f"`python -m linear_operator_fork differential compare --readme README.md`, {data['generated'][:10]}: "
        f"{variants_line(data)}.",
        "",
        *summary_table(data),
    ]


def write(folder: Path, data: dict[str, Any]) -> tuple[Path, Path]:
    results_path, report_path = folder / "results.json", folder / "report.md"
    results_path.write_text(json.dumps(data, indent=1) + "\n")
    report_path.write_text(markdown(data))
    return results_path, report_path
