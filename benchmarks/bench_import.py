"""``import vae_lite`` time in a fresh interpreter: median of several runs.

Each run starts ``python -c "import vae_lite"`` and measures the import inside the child
(``time.perf_counter`` around the import), so interpreter start-up is reported separately.

Run: ``python benchmarks/bench_import.py [--runs 7]``.
"""

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import print_table, row, save_json  # noqa: E402

TARGET_S = 2.0
CORE = "vae_lite.data, vae_lite.distributions, vae_lite.networks, vae_lite.training, vae_lite.plotting"
CHILD = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module="vae_lite", runs=5):
    """Seconds to import ``module`` in ``runs`` fresh interpreters (list), plus a bare start-up time."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(module=module)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return times


def main(argv=None):
    """Measure and print the import times; return the table rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per module (median reported)")
    parser.add_argument("--quick", action="store_true", help="3 runs")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else args.runs
    rows, results = [], {}
    for module in ("vae_lite", CORE, "jax", "flax.nnx"):
        times = import_seconds(module, runs)
        results["vae_lite core" if module == CORE else module] = times
        median = statistics.median(times)
        if module == "vae_lite":
            rows.append(
                row(
                    "import vae_lite",
                    f"{median:.2f} s",
                    f"< {TARGET_S} s",
                    median < TARGET_S,
                    note=f"median of {runs}: " + ", ".join(f"{t:.2f}" for t in times),
                )
            )
        elif module == CORE:
            rows.append(
                row(
                    "import vae_lite + core modules",
                    f"{median:.2f} s",
                    f"< {TARGET_S} s",
                    median < TARGET_S,
                    note="data, distributions, networks, training, plotting (what a lesson imports)",
                )
            )
        else:
            rows.append(row(f"import {module} (for comparison)", f"{median:.2f} s", note=f"median of {runs}"))
    save_json("import", {"runs": runs, "seconds": results, "rows": rows})
    print_table("Import time (fresh interpreter)", rows)
    return rows


if __name__ == "__main__":
    main()
