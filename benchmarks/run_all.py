"""Run every vae-lite benchmark and print one Markdown table per benchmark.

Benchmarks, in order: import time (fresh interpreters), training of the standard model
(with the PyTorch eager reference when torch is installed), the latent explorer
(``bench_explorer.py``, when present) and the notebooks (fresh kernel each). The tables
are printed as each benchmark finishes and once more together at the end, and saved to
``benchmarks/results/summary.md`` (JSON per benchmark beside it).

Run: ``python benchmarks/run_all.py`` (``make benchmark``); ``--quick`` for a smoke run
(2 epochs, 100 test images, 100 importance samples, short torch epochs); ``--cold`` runs
the notebooks with empty model caches; ``--skip notebooks`` leaves a benchmark out.
"""

import argparse
import importlib
import inspect
import os
import sys
import time
import traceback
from pathlib import Path
from unittest import mock

os.environ.setdefault("JAX_PLATFORMS", "cpu")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import RESULTS_DIR, machine_info, markdown_table, row  # noqa: E402

BENCHMARKS = {
    "import": ("bench_import", "Import time (fresh interpreter)"),
    "training": ("bench_training", "Training: standard model on MNIST"),
    "explorer": ("bench_explorer", "Latent explorer"),
    "notebooks": ("run_notebooks", "Notebooks (fresh kernel each)"),
}


def call_main(module_name, argv, quick):
    """Import ``module_name`` and run its ``main``; our own scripts take ``argv``."""
    module = importlib.import_module(module_name)
    params = inspect.signature(module.main).parameters
    if module_name == "bench_explorer":  # main(quick) returns rows; it reads no command line
        with mock.patch.object(sys, "argv", [module.__file__]):
            return module.main(quick=quick) if "quick" in params else module.main()
    return module.main(argv)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run of everything")
    parser.add_argument(
        "--cold", action="store_true", help="notebooks from an empty cache (a fresh install: shipped models, nothing compiled)"
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=list(BENCHMARKS), help="benchmarks to leave out"
    )
    args = parser.parse_args(argv)
    sections = []
    start_all = time.perf_counter()
    for name, (module_name, title) in BENCHMARKS.items():
        if name in args.skip:
            continue
        if not (HERE / f"{module_name}.py").exists():
            print(f"\n### {title}\n\n{module_name}.py not present; skipped.")
            sections.append((title, [row(name, "skipped: script not present")]))
            continue
        sub_argv = (["--quick"] if args.quick else []) + (
            ["--cold"] if name == "notebooks" and args.cold else []
        )
        start = time.perf_counter()
        try:
            rows = call_main(module_name, sub_argv, args.quick) or []
        except Exception as err:  # one failing benchmark must not hide the others
            traceback.print_exc()
            rows = [row(name, f"FAILED: {type(err).__name__}: {err}"[:200])]
        sections.append((f"{title} ({time.perf_counter() - start:.0f} s)", rows))

    info = machine_info()
    header = (
        f"# vae-lite benchmarks{' (quick)' if args.quick else ''}\n\n"
        f"{info['time']}, {info['cpu_count']} CPUs ({info['processor']}), Python {info['python']}, "
        f"load average at the end {tuple(round(x, 2) for x in info['load_average'] or ())}, "
        f"total {time.perf_counter() - start_all:.0f} s."
    )
    body = "\n\n".join(
        f"## {title}\n\n{markdown_table(rows) if rows else '(no rows)'}" for title, rows in sections
    )
    report = f"{header}\n\n{body}\n"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / ("summary-quick.md" if args.quick else "summary.md")).write_text(report)
    print("\n" + "=" * 80 + "\n" + report)


if __name__ == "__main__":
    main()
