"""Machine ceilings: the float32 matmul FLOP/s this machine reaches, to judge a model's FLOP/s against.

``bench_training.py`` divides the trainer's achieved FLOP/s by these: numpy's BLAS at the
model's layer size and at a large square (what the CPU can do), and the same layer-size
product through XLA (what JAX's own kernels do). Each is the median over repeats of about
0.1 s, so one slow repeat on a busy machine does not decide the figure.
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def numpy_matmul_flops(m, k, n, min_seconds=1.0, threads=None):
    """float32 ``(m, k) @ (k, n)`` FLOP/s of numpy's BLAS: median of repeats.

    Returns ``(flops_per_wall_second, flops_per_cpu_second)``; the second (process CPU
    time) is much less sensitive to other processes' load. ``threads=None`` uses the BLAS
    default (all cores); an int limits it (threadpoolctl).
    """
    if threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads, user_api="blas"):
            return numpy_matmul_flops(m, k, n, min_seconds)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm up
    reps = 1
    while True:  # pick a repeat count that takes ~0.1 s
        start = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        elapsed = time.perf_counter() - start
        if elapsed > 0.1:
            break
        reps *= 4
    rates, cpu_rates, deadline = [], [], time.perf_counter() + min_seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        rates.append(2.0 * m * k * n * reps / (time.perf_counter() - start))
        cpu_rates.append(2.0 * m * k * n * reps / max(time.process_time() - cpu, 1e-9))
    return statistics.median(rates), statistics.median(cpu_rates)


def jax_matmul_flops(m, k, n, min_seconds=1.0):
    """The same measurement through XLA (``jax.jit(jnp.dot)``), for comparison with numpy; FLOP/s."""
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    rates, deadline = [], time.perf_counter() + min_seconds
    reps = max(1, int(2e8 // (2 * m * k * n)))
    while time.perf_counter() < deadline or len(rates) < 3:
        start = time.perf_counter()
        for _ in range(reps):
            out = dot(a, b)
        out.block_until_ready()
        rates.append(2.0 * m * k * n * reps / (time.perf_counter() - start))
    return statistics.median(rates)
