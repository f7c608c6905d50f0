"""Library calls leave JAX's process-wide state alone; the compilation cache and memory
release happen only when asked for (``training.enable_compilation_cache``, ``release_memory``);
a write killed half-way leaves the old file or the whole new one (``_runtime.atomic_write_bytes``)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_lite import data, elbo, inference, posterior, training

SMALL = training.TrainConfig(dataset="digits", hidden=(16,), latent_dim=2, epochs=1, batch_size=64)


def _jax_settings():
    return (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)


def test_library_calls_leave_jax_config_and_caches_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_LITE_CACHE", str(tmp_path / "cache"))
    traces = []

    @jax.jit
    def users_function(x):
        traces.append(1)  # runs only while tracing
        return x * 2

    users_function(1.0)
    before = _jax_settings()
    digits = data.load("digits")
    result = training.train(SMALL, digits, progress=False)
    training.evaluate(jax.random.key(0), result.model, data.binarize_fixed(digits.x_test[:50]))
    x = data.binarize_fixed(digits.x_test[:4])
    elbo.vae_log_evidence_is(jax.random.key(1), result.model, x, 8)
    log_joint = inference.vae_point_log_joint(result.model.decoder)
    inference.fit_mean_field(jax.random.key(2), log_joint, x, latent_dim=2, num_steps=5, check_every=5)
    inference.elbo_per_point(jax.random.key(3), log_joint, x, jnp.zeros((4, 2)), jnp.zeros((4, 2)), 4)
    users_function(2.0)
    assert len(traces) == 1, "a vae-lite call cleared JAX's caches: the user's function was traced again"
    assert _jax_settings() == before, "a vae-lite call changed JAX's global configuration"
    assert not (tmp_path / "cache" / "jax").exists()


def test_release_memory_drops_traced_functions():
    traces = []

    @jax.jit
    def f(x):
        traces.append(1)  # runs only while tracing
        return x + 1

    f(1.0)
    f(2.0)
    assert len(traces) == 1  # cached
    training.release_memory()
    f(3.0)
    assert len(traces) == 2  # traced afresh: the cache was dropped


# The compilation cache is process-wide, so each scenario runs in its own interpreter.
_SCENARIO = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import jax, jax.numpy as jnp
    from vae_lite import training

    def compile_something(n):
        # A fresh program (its shape is new); the test lowers the threshold so it is kept.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        return float(jax.jit(lambda x: jnp.sin(x).sum() * n)(jnp.ones(n)))

    def entries(folder):
        return sorted(p.name for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else []

    a, b, ro = sys.argv[1:4]
    os.environ["VAE_LITE_CACHE"] = a
    assert jax.config.jax_compilation_cache_dir is None
    used = training.enable_compilation_cache()
    assert used == Path(a) / "jax", used
    compile_something(3)
    assert entries(Path(a) / "jax"), "nothing written to the first folder"
    # Called again after the variable changed: the cache follows (JAX's own cache is pinned).
    os.environ["VAE_LITE_CACHE"] = b
    assert training.enable_compilation_cache() == Path(b) / "jax"
    compile_something(5)
    assert entries(Path(b) / "jax"), "nothing written to the second folder"
    # An unwritable folder: the cache is left as it was, and None says so.
    before = jax.config.jax_compilation_cache_dir
    assert training.enable_compilation_cache(ro) is None
    assert jax.config.jax_compilation_cache_dir == before
    # The context manager restores the previous folder.
    with training.compilation_cache(Path(a) / "inner") as inner:
        assert inner == Path(a) / "inner" and jax.config.jax_compilation_cache_dir == str(inner)
        compile_something(7)
    assert entries(inner)
    assert jax.config.jax_compilation_cache_dir == before
    print("ok")
    """
)


def test_compilation_cache_is_explicit_follows_the_folder_and_restores(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("a file where the cache folder should be")  # unwritable, even for root
    run = subprocess.run(
        [sys.executable, "-c", _SCENARIO, str(tmp_path / "a"), str(tmp_path / "b"), str(blocked / "jax")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_compilation_cache_speeds_up_a_second_process(tmp_path):
    """Programs a first run kept are loaded by a second one (what a lesson's set-up line buys)."""
    script = textwrap.dedent(
        """
        import sys
        import jax, jax.numpy as jnp
        from jax._src import monitoring
        from vae_lite import training
        hits = []
        monitoring.register_event_listener(lambda event, **kw: hits.append(event))
        training.enable_compilation_cache(sys.argv[1])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.jit(lambda x: jnp.cumsum(jnp.tanh(x) @ x.T))(jnp.ones((7, 7))).block_until_ready()
        print(sum(e == "/jax/compilation_cache/cache_hits" for e in hits))
        """
    )
    runs = [
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "jax")], capture_output=True, text=True,
                       timeout=300)
        for _ in range(2)
    ]  # fmt: skip
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-3000:]
    first, second = (int(r.stdout.split()[-1]) for r in runs)
    assert first == 0 and second >= 1, (first, second)  # the second run loaded what the first kept


def test_grid_models_need_no_cache_folder(monkeypatch, tmp_path):
    """Nothing in the maths writes to the cache folder: an unwritable one does not matter."""
    monkeypatch.setenv("VAE_LITE_CACHE", "/proc/not-a-folder")
    model = posterior.LinearGaussian.random(jax.random.key(0), data_dim=3, latent_dim=2)
    x = model.sample(jax.random.key(1), 1)[1][0]
    post = posterior.grid_posterior(model.log_joint(x), [jnp.linspace(-6, 6, 121)] * 2)
    np.testing.assert_allclose(post.log_evidence, model.log_evidence(x), atol=1e-2)


# A writer that imports only vae_lite._runtime (no JAX: it starts in ~50 ms) and rewrites one file
# for ever, printing n once version n is written. Version n is its number in 8 bytes, then bytes of
# FILLS[n % 2] (so a truncated or a mixed file shows); both bodies are made once, so the writer spends
# its time writing.
_WRITER = textwrap.dedent(
    """
    import sys
    from vae_lite import _runtime
    assert "jax" not in sys.modules, "vae_lite._runtime imported JAX"
    path, size = sys.argv[1], int(sys.argv[2])
    bodies = [bytearray([0x55]) * size, bytearray([0xAA]) * size]
    n = 1
    while True:
        version = bodies[n % 2]
        version[:8] = n.to_bytes(8, "little")
        _runtime.atomic_write_bytes(path, version)
        print(n, flush=True)
        n += 1
    """
)
FILLS = (0x55, 0xAA)
SIZE = 32 * 2**20  # 32 MB: each write and fsync takes tens of milliseconds, so a kill lands inside one


@pytest.mark.parametrize("whole_versions, delay", [(1, 0.005), (1, 0.02), (2, 0.01), (3, 0.015), (3, 0.04)])
def test_a_write_killed_half_way_leaves_the_old_file_or_the_whole_new_one(tmp_path, whole_versions, delay):
    """SIGKILL after ``whole_versions`` writes and ``delay`` seconds: the file under the name is one whole
    version (that one or a later one), never a truncated or a mixed one."""
    path = tmp_path / "model.npz"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(SIZE)], stdout=subprocess.PIPE)
    try:
        written = [proc.stdout.readline().strip() for _ in range(whole_versions)]
        assert written[-1] == str(whole_versions).encode(), written  # the writer ran (and imported no JAX)
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert len(data) == SIZE, f"a truncated file: {len(data)} of {SIZE} bytes"
    assert n >= whole_versions and data.count(FILLS[n % 2], 8) == SIZE - 8, f"a mixed file (version {n})"
    # A killed writer may leave its own temporary file, but never under the model's name.
    assert all(p.name.startswith(".model.npz.") and p.name.endswith(".tmp") for p in tmp_path.iterdir() if p != path)
