"""Execute every notebook in ``notebooks/`` from a fresh kernel; report wall time and peak memory.

For each notebook a new ``python3`` kernel is started (nbclient) in the notebooks folder.
Memory is the kernel's peak resident set: the kernel process's own high-water mark
(``VmHWM`` in ``/proc/<pid>/status``, exact) and, polled every 50 ms with psutil, the
RSS of the kernel plus any child processes. The notebooks are not modified.

By default the model cache is the user's usual one (warm: the persistent compilation cache
and any models the user trained are on disk). ``--cold`` is a fresh install as a student
meets it: one new empty ``VAE_LITE_CACHE`` for the whole run, the lessons in series order,
so models come from the package (shipped) and JAX compiles everything once, sharing the
compilation cache from one lesson to the next. ``--standalone`` (with ``--cold``) gives each
notebook its own empty cache instead. ``--digits`` runs the lessons in quick mode
(``VAE_LITE_DATASET=digits``: the bundled 8x8 digits, whose models are trained, not shipped).

``--write`` saves each executed notebook in place (outputs and widget state), which is how the
committed lessons are executed: ``python benchmarks/run_notebooks.py --cold --write``.

Run: ``python benchmarks/run_notebooks.py [--cold [--standalone]] [--digits] [--write] [notebooks/03_x.ipynb ...]``.
"""

import argparse
import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import print_table, save_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TARGET_PEAK_GIB = 1.0  # a classroom JupyterHub or mybinder.org gives each student 1 GiB
TARGET_WALL_S = {"warm": 40.0, "cold": 40.0}  # per lesson (a training lesson, once there is one, gets 90 s)
TARGET_TOTAL_S = {"warm": 100.0, "cold": 150.0}  # all lessons in series order
GIB = 1024**3


def vm_hwm_bytes(pid):
    """Peak resident set size of process ``pid`` (``VmHWM``), or None where /proc has no such field."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class MemoryPoller:
    """Poll the RSS of a process and its children in a background thread; keep the maximum."""

    def __init__(self, pid, interval=0.05):
        self.pid, self.interval, self.peak = pid, interval, 0
        self.hwm = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self):
        import psutil

        try:
            proc = psutil.Process(self.pid)
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            return total
        except psutil.Error:
            return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            hwm = vm_hwm_bytes(self.pid)
            self.hwm = hwm if hwm is not None else self.hwm
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()


def run_notebook(path, timeout=600, write=False):
    """Execute ``path`` in a fresh kernel; return a dict with seconds, peaks and any error.

    With ``write``, a notebook that ran without error is saved in place, executed.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    state = {}

    def on_start(notebook):
        pid = client.km.provisioner.pid
        state["poller"] = MemoryPoller(pid)
        state["poller"].start()
        state["hwm"], state["last"] = vm_hwm_bytes(pid), time.perf_counter()  # the fresh kernel

    def on_cell_executed(cell, cell_index, execute_reply):
        now = time.perf_counter()
        hwm = vm_hwm_bytes(client.km.provisioner.pid)  # read while the kernel is alive
        if hwm is not None:
            grew = hwm - (state.get("hwm") or hwm)
            state["hwm"] = hwm
        else:
            grew = 0
        state.setdefault("cells", []).append((cell_index, now - state.get("last", start), grew))
        state["last"] = now

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(path).parent)}},
        on_notebook_start=on_start,
        on_cell_executed=on_cell_executed,
    )
    error = None
    start = time.perf_counter()
    state["last"] = start
    try:
        client.execute()
    except Exception as err:  # report the failure in the table and go on with the next notebook
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # drop ANSI colours
        error = f"{type(err).__name__}: {message.splitlines()[-1] if message else ''}"[:120]
    seconds = time.perf_counter() - start
    if write and error is None:
        nbformat.write(nb, path)
    poller = state.get("poller")
    if poller is not None:
        poller.stop()
    hwm = max(filter(None, [state.get("hwm"), poller and poller.hwm]), default=None)
    polled = poller.peak if poller else 0
    cells = state.get("cells", [])
    slowest = max(cells, key=lambda c: c[1], default=None)
    hungriest = max(cells, key=lambda c: c[2], default=None)
    return {
        "notebook": Path(path).name,
        "seconds": seconds,
        "cells": sum(c.cell_type == "code" for c in nb.cells),
        "kernel_hwm_bytes": hwm,
        "polled_peak_bytes": polled,
        "peak_bytes": max(hwm or 0, polled),
        "error": error,
        "slowest_cell": slowest and {"index": slowest[0], "seconds": slowest[1]},
        "largest_peak_step": hungriest and {"index": hungriest[0], "bytes": hungriest[2]},
        "cells_timeline": [{"index": i, "seconds": t, "peak_growth_bytes": g} for i, t, g in cells],
    }


@contextlib.contextmanager
def empty_cache():
    """Within the block, ``VAE_LITE_CACHE`` (inherited by the kernel) is a new empty folder, removed after."""
    with tempfile.TemporaryDirectory(prefix="vae-lite-cold-", ignore_cleanup_errors=True) as folder:
        with mock.patch.dict(os.environ, {"VAE_LITE_CACHE": folder}):
            yield folder


def run_all(paths, cold=False, timeout=600, standalone=False, write=False):
    """Run each notebook in order (cold: in one new empty cache folder; standalone: one each); return the results."""
    results = []
    with empty_cache() if cold and not standalone else contextlib.nullcontext():
        for path in paths:
            with empty_cache() if cold and standalone else contextlib.nullcontext():
                results.append(run_notebook(path, timeout, write))
        r = results[-1]
        print(
            f"{r['notebook']}: {r['seconds']:.1f} s, peak {r['peak_bytes'] / GIB:.2f} GiB"
            + (f", ERROR {r['error']}" if r["error"] else ""),
            flush=True,
        )
    return results


def table_rows(results, cold):
    mode = "cold" if cold else "warm"
    rows = []
    for r in results:
        ok_time = r["seconds"] <= TARGET_WALL_S[mode]
        ok_mem = r["peak_bytes"] <= TARGET_PEAK_GIB * GIB
        status = "ERROR" if r["error"] else ("ok" if ok_time and ok_mem else "MISSED")
        rows.append(
            {
                "notebook": r["notebook"],
                "code cells": r["cells"],
                "wall": f"{r['seconds']:.1f} s",
                "wall target": f"<= {TARGET_WALL_S[mode]:.0f} s",
                "kernel peak (VmHWM)": f"{r['kernel_hwm_bytes'] / GIB:.2f} GiB"
                if r["kernel_hwm_bytes"]
                else "n/a",
                "peak incl. children (polled)": f"{r['polled_peak_bytes'] / GIB:.2f} GiB",
                "memory target": f"<= {TARGET_PEAK_GIB} GiB",
                "status": status,
                "slowest cell": _cell_note(r["slowest_cell"], "seconds", lambda v: f"{v:.1f} s"),
                "cell raising the peak most": _cell_note(
                    r["largest_peak_step"], "bytes", lambda v: f"+{v / GIB:.2f} GiB"
                ),
                "note": r["error"] or "",
            }
        )
    return rows


def _cell_note(entry, key, fmt):
    """``"cell 7: 12.3 s"`` (cell index counts all cells from 0, as nbformat does)."""
    return f"cell {entry['index']}: {fmt(entry[key])}" if entry else ""


COLUMNS = (
    "notebook",
    "code cells",
    "wall",
    "wall target",
    "kernel peak (VmHWM)",
    "peak incl. children (polled)",
    "memory target",
    "status",
    "slowest cell",
    "cell raising the peak most",
    "note",
)


def main(argv=None):
    """Run the notebooks and print the table; return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--cold", action="store_true", help="one new empty VAE_LITE_CACHE for the run, in order")
    parser.add_argument("--standalone", action="store_true", help="with --cold: each notebook its own empty cache")
    parser.add_argument("--digits", action="store_true", help="quick mode: VAE_LITE_DATASET=digits")
    parser.add_argument("--write", action="store_true", help="save each executed notebook in place")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument(
        "--quick", action="store_true", help="accepted for run_all; runs the notebooks as usual"
    )
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    mode = ("cold: empty cache" + (" per notebook" if args.standalone else ", series order")) if args.cold else "warm cache"
    title = f"Notebooks ({mode}{', digits' if args.digits else ', MNIST'}), fresh kernel each"
    if not paths:
        print(f"\n### {title}\n\nNo notebooks found in {NOTEBOOKS.name}/; nothing to run.")
        return []
    kernel_env = {"JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}  # inherited by the kernels
    if args.digits:
        kernel_env["VAE_LITE_DATASET"] = "digits"
    with mock.patch.dict(os.environ, kernel_env):
        results = run_all(paths, cold=args.cold, timeout=args.timeout, standalone=args.standalone, write=args.write)
    rows = table_rows(results, args.cold)
    name = ("notebooks-cold" if args.cold else "notebooks") + ("-digits" if args.digits else "")
    save_json(name, {"cold": args.cold, "digits": args.digits, "results": results, "rows": rows})
    print_table(title, rows, columns=COLUMNS)
    total = sum(r["seconds"] for r in results)
    mode = "cold" if args.cold else "warm"
    peak = max(r["peak_bytes"] for r in results) / GIB
    print(f"\nAll {len(results)} notebooks: {total:.0f} s in total (target <= {TARGET_TOTAL_S[mode]:.0f} s for "
          f"the series on MNIST), largest kernel peak {peak:.2f} GiB (target <= {TARGET_PEAK_GIB} GiB).")
    return rows


if __name__ == "__main__":
    main()
