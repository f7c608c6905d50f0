"""Where the first epoch's overhead goes, and what XLA's backend optimisation level costs.

For the standard model's compiled epoch (``vae_lite.training.make_epoch``) this measures
tracing, lowering to StableHLO and the XLA compile separately (wall and CPU seconds), for
the default compiler options and for ``xla_backend_optimization_level=1`` (LLVM -O1
instead of the default -O2/-O3), then runs the compiled epochs interleaved on a slice of
MNIST so that both see the same load. No persistent compilation cache is used.

Not part of ``run_all.py``: a diagnostic for ``training.py``.
Run: ``python benchmarks/bench_compile.py [--images 19200] [--rounds 4] [--repeats 2]``.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import optax  # noqa: E402
from _report import print_table, row, save_json  # noqa: E402
from flax import nnx  # noqa: E402

from vae_lite import data, training  # noqa: E402

OPTIONS = {"default": {}, "O1": {"xla_backend_optimization_level": 1}}

# A child process: training.fit for 3 epochs; prints the epoch seconds as JSON.
CHILD = """
import json, sys
from vae_lite import data, training
config = training.TrainConfig(epochs=3)
model = training.build_model(config, 784)
history = training.fit(model, config, data.load("mnist").x_train[:{images}], progress=False)
print(json.dumps(history["seconds"]))
"""


def persistent_cache_overhead(images, runs=3):
    """First-epoch overhead (first epoch minus the fastest later one) of ``training.fit`` in
    ``runs`` fresh processes sharing one new ``VAE_LITE_CACHE``: the first run compiles,
    the later ones load the program from JAX's persistent compilation cache."""
    folder = tempfile.mkdtemp(prefix="vae-lite-compile-")
    env = {**os.environ, "VAE_LITE_CACHE": folder, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    overheads = []
    try:
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", CHILD.format(images=images)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = json.loads(out.stdout.strip().splitlines()[-1])
            overheads.append(seconds[0] - min(seconds[1:]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return overheads


def timed(fn, *args, **kwargs):
    """``(result, wall_seconds, cpu_seconds)`` of ``fn(*args, **kwargs)``."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=19200, help="training images per timed epoch")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved timed epochs per option")
    parser.add_argument("--repeats", type=int, default=2, help="compiles per option (fresh jit each)")
    args = parser.parse_args(argv)
    x = jax.numpy.asarray(data.load("mnist").x_train[: args.images])
    config = training.TrainConfig()
    model = training.build_model(config, x.shape[1])
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer = optax.adam(config.learning_rate)
    opt_state = optimizer.init(params)
    key = jax.random.key(0)

    phases = {name: {"trace": [], "lower": [], "compile": [], "compile_cpu": []} for name in OPTIONS}
    compiled = {}
    for _ in range(args.repeats):
        for name, options in OPTIONS.items():
            epoch = training.make_epoch(graphdef, training.vae_terms, optimizer, config.batch_size)
            traced, t_trace, _ = timed(epoch.trace, params, opt_state, x, key)
            lowered, t_lower, _ = timed(traced.lower)
            compiled[name], t_comp, c_comp = timed(lowered.compile, compiler_options=options or None)
            for phase, value in zip(phases[name], (t_trace, t_lower, t_comp, c_comp), strict=True):
                phases[name][phase].append(value)

    def run_epoch(name, p, s, seed):
        return jax.block_until_ready(compiled[name](p, s, x, jax.random.key(seed)))

    states = {name: (params, opt_state) for name in OPTIONS}
    wall = {name: [] for name in OPTIONS}
    cpu = {name: [] for name in OPTIONS}
    for r in range(args.rounds + 1):
        for name in OPTIONS:
            p, s = states[name]
            (p, s, recon, kl), w, c = timed(run_epoch, name, p, s, r)
            states[name] = (p, s)
            if r:  # round 0 warms up
                wall[name].append(w)
                cpu[name].append(c)

    images = (args.images // config.batch_size) * config.batch_size
    base_compile = min(phases["default"]["compile_cpu"])
    base_epoch = statistics.median(cpu["default"])
    rows = []
    for name in OPTIONS:
        ph = phases[name]
        rows += [
            row(
                f"{name}: trace + lower",
                f"{min(ph['trace']):.2f} + {min(ph['lower']):.2f} s",
                note="wall, best",
            ),
            row(
                f"{name}: XLA compile",
                f"{min(ph['compile']):.2f} s wall, {min(ph['compile_cpu']):.2f} s CPU",
                note=f"best of {args.repeats}; CPU vs default {min(ph['compile_cpu']) / base_compile:.2f}x",
            ),
            row(
                f"{name}: epoch of {images:,} images",
                f"{statistics.median(wall[name]):.2f} s wall (best {min(wall[name]):.2f}), "
                f"{statistics.median(cpu[name]):.2f} s CPU",
                note=f"{images / statistics.median(cpu[name]):,.0f} images per CPU-second; "
                f"CPU vs default {statistics.median(cpu[name]) / base_epoch:.2f}x",
            ),
        ]
    overheads = persistent_cache_overhead(args.images)
    rows += [
        row(
            "training.fit first-epoch overhead, empty persistent cache",
            f"{overheads[0]:.2f} s",
            note="fresh process",
        ),
        row(
            "training.fit first-epoch overhead, warm persistent cache",
            f"{min(overheads[1:]):.2f} s",
            note="fresh processes: " + ", ".join(f"{o:.2f}" for o in overheads[1:]),
        ),
    ]
    save_json(
        "compile", {"args": vars(args), "phases": phases, "epoch_wall": wall, "epoch_cpu": cpu, "rows": rows}
    )
    print_table(f"Compile phases and XLA optimisation level (load {os.getloadavg()[0]:.1f})", rows)
    return rows


if __name__ == "__main__":
    main()
