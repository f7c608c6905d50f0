"""Shared helpers for the benchmark scripts: Markdown tables and JSON results.

Benchmarks are measurements printed as tables, not timed tests. Each script returns a
list of row dicts ``{"metric", "measured", "target", "status"}``; this module formats them.
"""

import json
import os
import platform
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def row(metric, measured, target="", ok=None, note=""):
    """One table row; ``ok`` is True/False against the target, or None when there is none."""
    status = {True: "ok", False: "MISSED", None: ""}[ok]
    return {"metric": metric, "measured": measured, "target": target, "status": status, "note": note}


def markdown_table(rows, columns=None):
    """Rows (dicts) as a GitHub-flavoured Markdown table; empty columns are dropped.

    ``columns`` defaults to the rows' keys in order of first appearance.
    """
    columns = columns or list(dict.fromkeys(key for r in rows for key in r))
    columns = [c for c in columns if any(str(r.get(c, "")) for r in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def print_table(title, rows, **kwargs):
    print(f"\n### {title}\n")
    print(markdown_table(rows, **kwargs))
    print(flush=True)


def machine_info():
    """A short description of the machine, and its load, for the JSON results."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def save_json(name, payload):
    """Write ``payload`` (plus machine info) to ``benchmarks/results/<name>.json``; return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2, default=str))
    return path
