"""Stock vs fork vs the reference, case by case: verdicts, ``results.json``, ``report.md`` and the README table.

The rule: the fork succeeds wherever stock succeeds, and is never much further from the reference than stock; the
fork is never silently wrong. Per case (``ok`` and the other statuses: :mod:`.outcome`):

- FAIL: the fork is ``wrong`` or ``crash``; ``inaccurate`` (unless stock is at least as far from the reference: "no
  worse than stock"); ``error`` or ``timeout`` where stock is ``ok``; raising (even a clear error, where one is
  acceptable) where stock computes a correct result; ``ok`` but, in an output, more than STOCK_FACTOR times as far
  from the reference as an ``ok`` stock (and beyond the floor: the tolerance of an exact computation).
- fork better: the fork is ``ok`` where stock is not.
- both fail: neither is ``ok`` and the fork is not silently wrong (it raised or timed out).
- PASS: both ``ok`` (or both raising where that is correct).
- invalid: the reference itself failed (a bug of the harness: it fails the run, like a FAIL).

An output is *unchecked* where no answer could fail it: where its bound (its tolerance, or the bound from stock's
error where that is smaller) reaches the error of returning zeros (‖reference‖ / scale). Those are counted per
operation and dtype; an unchecked float64 output fails the run (a check that cannot fail is a defect).

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


# The fork may be closer to the reference than stock, never more than STOCK_FACTOR times further (beyond the floor:
# a STOCK_FLOOR-th of the output's tolerance; see stock_bound)
STOCK_FACTOR = 10.0
STOCK_FLOOR = 100.0
# Predictions through gpytorch's strategies: how much further than stock the fork may be, in units of tolerance
# (prediction_verdict). Measured on 324 generated prediction cases (seed 7; stock 0.6.1 with the dense root against
# build 14 with the lazy one): the fork up to 4.9 times as far as stock, stock up to 10.7 times as far as the fork.
PREDICTION_FACTOR = 20.0


def replay_command(key: str) -> str:
    return f"nox -s differential -- --case '{key}'"


def norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def stock_bound(stock: dict[str, Any] | None, fork: dict[str, Any], name: str) -> float:
    """How far from the reference the fork's output ``name`` may be given stock's error on it: STOCK_FACTOR times
    stock's error, or the floor (inf: no bound, where stock is not ``ok`` or has no number for it).

    The floor is the larger of the tolerance of an exact computation (κ = 1) and a STOCK_FLOOR-th of the output's
    tolerance: below it, the two variants' errors differ by the luck of their rounding (measured: a float64 gradient
    18 times stock's error at 1e-5 of its tolerance), not by accuracy."""
    if not stock or stock.get("status") != "ok" or name not in (stock.get("errors") or {}):
        return math.inf
    tolerance = ((fork.get("reference") or {}).get(name) or {}).get("tolerance", 0.0)
    floor = max(fork.get("floor", 0.0), tolerance / STOCK_FLOOR)
    return max(STOCK_FACTOR * stock["errors"][name], floor)


def much_worse_than_stock(stock: dict[str, Any], fork: dict[str, Any]) -> list[str]:
    """The fork's outputs that are more than STOCK_FACTOR times as far from the reference as stock's (and beyond
    the floor), each described."""
    found = []
    for name, error in (fork.get("errors") or {}).items():
        bound = stock_bound(stock, fork, name)
        if error > bound:
            found.append(f"{name}: {error:.3g} from the reference where stock is {stock['errors'][name]:.3g}")
    return found


# Below this error (relative to its scale) the reference's own output is zero: rounding of a float64 computation (e.g.
# a gradient that is zero in exact arithmetic); zeros are then the right answer, and the output counts as checked
REFERENCE_ZERO = 1e-13


def unchecked_outputs(stock: dict[str, Any] | None, fork: dict[str, Any] | None) -> tuple[int, list[str]]:
    """``(outputs, unchecked)``: how many outputs the case checks, and those that no answer could fail (returning
    zeros would pass: the bound reaches ‖reference‖ / scale, where the reference is not zero itself)."""
    reference = (fork or {}).get("reference") or (stock or {}).get("reference") or {}
    unchecked = []
    for name, entry in reference.items():
        zeros_error = norm(entry["values"]) / entry["scale"] if entry["scale"] else 0.0
        bound = min(entry["tolerance"], stock_bound(stock, fork or {}, name))
        if zeros_error > REFERENCE_ZERO and bound >= zeros_error:
            unchecked.append(name)
    return len(reference), unchecked


def error_of(record: dict[str, Any]) -> float:
    """Distance to the reference in units of tolerance (above 1: inaccurate; inf when unknown)."""
    value = record.get("score")
    return math.inf if value is None else value


def prediction_verdict(stock: dict[str, Any], fork: dict[str, Any]) -> tuple[str, str]:
    """A prediction through gpytorch's own strategies, where both variants computed numbers: the fork's error (in
    units of tolerance) may exceed stock's by PREDICTION_FACTOR, not more (or the tolerance, where stock is within
    it). Those strategies subtract ("prior minus explained"): their results amplify the rounding of each
    variant's solve, and how close each lands is luck at that scale, not accuracy. Where stock is far off (e.g.
    fast_pred_var's Lanczos root of rank 100 < r), this bounds little: the gpytorch-fork variant, judged alone
    against the tolerance (strategy_results), is the check there of what the fork computes."""
    fork_score, stock_score = error_of(fork), error_of(stock)
    bound = PREDICTION_FACTOR * max(stock_score, 1.0)
    if fork_score <= bound:
        if fork_score <= 1 and stock_score <= 1:
            return PASS, ""
        if fork_score <= 1:
            return BETTER, f"stock {stock['status']}: {stock.get('message', '')}"
        return NO_WORSE, f"fork {fork_score:.3g}, stock {stock_score:.3g} x tolerance (gpytorch's strategy subtracts)"
    return FAIL, (
        f"fork is more than {PREDICTION_FACTOR:g} x as far from the reference as stock ({fork_score:.3g} against "
        f"{stock_score:.3g} x tolerance): {fork.get('message', '')}"
    )


def case_verdict(stock: dict[str, Any] | None, fork: dict[str, Any] | None) -> tuple[str, str]:
    """``(verdict, reason)`` of one case from its stock and fork outcome records (either may be missing)."""
    if fork is None:
        return FAIL, "no fork outcome (did the fork's run finish?)"
    if fork["status"] == "invalid" or (stock or {}).get("status") == "invalid":
        return INVALID, f"the reference failed: {(fork if fork['status'] == 'invalid' else stock)['message']}"
    numbers = ("ok", "inaccurate")
    if from_key(fork["key"]).op == "predict" and stock and {fork["status"], stock["status"]} <= set(numbers):
        return prediction_verdict(stock, fork)
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
        worse = much_worse_than_stock(stock, fork)
        if worse:
            return FAIL, f"fork is more than {STOCK_FACTOR:g} × as far from the reference as stock: " + "; ".join(worse)
        return PASS, ""
    if fork_numbers:
        return BETTER, f"fork computes a correct result where stock raises: {stock.get('message', '')}"
    if stock_numbers:
        return FAIL, f"fork raises where stock computes a correct result: {f_message}"
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
        "outputs": sum(row["outputs"] for row in rows),
        "unchecked": sum(len(row["unchecked"]) for row in rows),
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
        outputs, unchecked = unchecked_outputs(s, f)
        rows.append({"key": key, "case": from_key(key).to_dict(), "verdict": verdict, "reason": reason,
                     "outputs": outputs, "unchecked": unchecked, "stock": s, "fork": f})  # fmt: skip
    return rows


def variant_info(records: list[dict[str, Any]]) -> dict[str, Any]:
    for record in records:
        if record.get("version"):
            return {name: record.get(name) for name in ("version", "file", "sparse_class", "torch", "gpytorch")}
    return {}


# The prediction cases run a third time on the fork with gpytorch's patched prediction strategy (the variant
# "gpytorch-fork", gpytorch.jsonl): a strategy that does not subtract has no excuse, so each of its predictions must
# be within the tolerance on its own (no comparison with stock)
STRATEGY = "gpytorch-fork"


def strategy_results(keys: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The prediction cases on the patched gpytorch: counts, the worst score, and a FAIL per case off the reference."""
    by_key = {record["key"]: record for record in records}
    wanted = [key for key in keys if from_key(key).op == "predict"]
    fails = []
    for key in wanted:
        record = by_key.get(key)
        if record is None or record["status"] != "ok":
            reason = "no outcome" if record is None else f"{record['status']}: {record.get('message', '')}"
            fails.append({"key": key, "reason": f"{STRATEGY}: {reason}", "cause": f"predict/{STRATEGY}: off",
                          "replay": replay_command(key)})  # fmt: skip
    scores = [by_key[key].get("score") or 0.0 for key in wanted if key in by_key]
    return {"variant": variant_info(records), "cases": len(wanted), "ok": len(wanted) - len(fails),
            "worst_score": max(scores, default=0.0), "fails": fails}  # fmt: skip


def strategy_line(strategy: dict[str, Any]) -> str:
    info = strategy["variant"]
    return (
        f"{STRATEGY} (gpytorch {info.get('gpytorch', '?')}, linear_operator {info.get('version', '?')}): "
        f"{strategy['ok']} of {strategy['cases']} prediction cases within the tolerance (worst: "
        f"{strategy['worst_score']:.3g} x tolerance), {len(strategy['fails'])} FAILs"
    )


def results(
    meta: dict[str, Any],
    stock: list[dict[str, Any]],
    fork: list[dict[str, Any]],
    strategy: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The content of ``results.json`` (with ``strategy``: the prediction cases on the patched gpytorch too)."""
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
    strategy_data = strategy_results(meta["cases"], strategy) if strategy is not None else None
    if strategy_data:
        fails += strategy_data["fails"]
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "strategy": strategy_data,
        "cases_file": {name: value for name, value in meta.items() if name != "cases"},
        "variants": {"stock": variant_info(stock), "fork": variant_info(fork)},
        "summary": summarise(rows),
        "by_op": {op: summarise(by_op[op]) for op in sorted(by_op, key=list(ALL_OPS).index)},
        "checks": checks(rows),
        "fails": fails,
        "seconds": {"stock": case_seconds(stock), "fork": case_seconds(fork)},
        "cases": rows,
    }


def checks(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per operation and dtype: the outputs checked, those unchecked (and where: output names with an example key)."""
    table: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        entry = table[row["case"]["op"]].setdefault(row["case"]["dtype"], {"outputs": 0, "unchecked": 0, "where": {}})
        entry["outputs"] += row["outputs"]
        entry["unchecked"] += len(row["unchecked"])
        for name in row["unchecked"]:
            entry["where"].setdefault(name, row["key"])
    return {op: table[op] for op in sorted(table, key=list(ALL_OPS).index)}


def unchecked_float64(data: dict[str, Any]) -> int:
    return sum(dtypes.get("float64", {}).get("unchecked", 0) for dtypes in data["checks"].values())


def case_seconds(records: list[dict[str, Any]]) -> float:
    """Time spent in the cases themselves (imports and the reference excluded)."""
    return sum(record.get("seconds") or 0.0 for record in records)


# -- markdown --------------------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    ("cases", "cases"),
    ("outputs", "outputs"),
    ("unchecked", "unchecked outputs"),
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
    if data.get("strategy"):
        strategy = data["strategy"]
        lines += ["## gpytorch's prediction strategy (patched gpytorch)", "", strategy_line(strategy) + ".", ""]
        lines += [f"- FAIL `{fail['key']}`: {fail['reason'][:300]}" for fail in strategy["fails"][:limit]]
        lines += [""] if strategy["fails"] else []
    fails = [row for row in rows if row["verdict"] in (FAIL, INVALID)]
    lines += ["## Fork FAILs by cause", ""]
    lines += cause_table(grouped(rows, (FAIL, INVALID), "fork")) if fails else ["None: the fork regresses nowhere."]
    if fails:
        lines += ["", "## Every fork FAIL", ""]
        for row in fails[:limit]:
            lines.append(f"- `{row['key']}`: {row['reason'][:300]}  \n  replay: `{replay_command(row['key'])}`")
        if len(fails) > limit:
            lines.append(f"- ... and {len(fails) - limit} more (results.json)")
    lines += ["", "## Unchecked outputs", ""]
    lines += [
        "Outputs that no answer could fail: their bound (the tolerance, or the bound from stock's error) reaches "
        "the error of returning zeros. None may be float64.",
        "",
        *checks_table(data),
    ]
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


def checks_table(data: dict[str, Any]) -> list[str]:
    lines = ["| operation | dtype | outputs | unchecked | unchecked outputs (example case) |", "|---|---|---|---|---|"]
    for op, dtypes in data["checks"].items():
        for dtype, entry in sorted(dtypes.items()):
            where = "; ".join(f"{name} (`{key}`)" for name, key in sorted(entry["where"].items())[:3])
            lines.append(f"| {op} | {dtype} | {entry['outputs']} | {entry['unchecked']} | {where} |")
    return lines


def readme_lines(data: dict[str, Any]) -> list[str]:
    """The README's differential table (written between README_BEGIN and README_END by ``compare --readme``)."""
    return [
        f"`python -m linear_operator_fork differential compare --readme docs/testing.md`, {data['generated'][:10]}: "
        f"{variants_line(data)}.",
        "",
        *summary_table(data),
        *([""] + [strategy_line(data["strategy"]) + "."] if data.get("strategy") else []),
    ]


def write(folder: Path, data: dict[str, Any]) -> tuple[Path, Path]:
    results_path, report_path = folder / "results.json", folder / "report.md"
    results_path.write_text(json.dumps(data, indent=1) + "\n")
    report_path.write_text(markdown(data))
    return results_path, report_path
