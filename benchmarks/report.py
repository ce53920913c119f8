"""Assemble BENCHMARKS.md from the JSON files the benchmarks wrote (never from hand-typed figures).

A result file may hold, besides any nested figures, these optional keys:
`title` (section heading), `command` (how to reproduce), `notes` (list of sentences),
`tables` (a mapping of table name to a list of row dicts, rendered as Markdown tables).
Everything else is rendered as a flat `figure | value` list.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPORT_PATH = PROJECT_ROOT / "BENCHMARKS.md"
SPECIAL_KEYS = {"title", "command", "notes", "tables", "measured_at"}


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, inner in enumerate(value):
            yield from _flatten(f"{prefix}[{index}]", inner)
    else:
        yield prefix, value


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(_format(v) for v in value)
    return str(value)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |")
    return lines


def render_section(name: str, result: dict[str, Any]) -> list[str]:
    """One benchmark's section of BENCHMARKS.md."""
    lines = [f"## {result.get('title', name)}", ""]
    if "command" in result:
        lines += [f"Reproduce: `{result['command']}`", ""]
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    if result.get("notes"):
        lines.append("")
    for table_name, rows in (result.get("tables") or {}).items():
        lines += [f"**{table_name}**", ""] + _table(rows) + [""]
    figures = {k: v for k, v in result.items() if k not in SPECIAL_KEYS}
    flat = list(_flatten("", figures))
    if flat:
        lines += ["<details><summary>all figures</summary>", "", "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {_format(value)} |" for key, value in flat]
        lines += ["", "</details>", ""]
    return lines


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write a benchmark's result JSON, stamped with `measured_at` (now, UTC): the time the
    figures were measured travels with them (a file's modification time does not survive a
    clone)."""
    stamped = {**result, "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped, indent=1, default=str) + "\n")


def _measured_at(result_path: Path, result: dict) -> datetime:
    """When the benchmark wrote `result_path` (UTC): its `measured_at` (see `write_result`).
    A file written before benchmarks stamped it falls back to its modification time, which is
    only true in the tree the benchmark ran in (a clone stamps every file with the clone's
    time); the first report built there records it in the JSON, later reports read it back."""
    if "measured_at" in result:
        return datetime.fromisoformat(result["measured_at"])
    measured = datetime.fromtimestamp(result_path.stat().st_mtime, UTC)
    result["measured_at"] = measured.isoformat(timespec="seconds")
    result_path.write_text(json.dumps(result, indent=1, default=str))
    return measured


def write_report(results_dir: Path = RESULTS_DIR, path: Path = REPORT_PATH) -> Path:
    """Write BENCHMARKS.md from every `results_dir/*.json`; returns the path written."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks.run_all`) from the JSON files in",
        "`benchmarks/results/`; no figure here is typed by hand. Peers run in the same process",
        "run, on the same split, with the same metric code.",
        "",
        f"Machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, 2 cores, BLAS pinned to one thread. "
        f"Report assembled {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    for result_path in sorted(results_dir.glob("*.json")):
        result = json.loads(result_path.read_text())
        measured = _measured_at(result_path, result)
        lines += render_section(result_path.stem, result)
        lines += [f"_Measured {measured:%Y-%m-%d %H:%M} UTC (`{result_path.name}`)._", ""]
    path.write_text("\n".join(lines))
    return path
