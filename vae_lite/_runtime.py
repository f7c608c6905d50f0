"""Runtime plumbing (private): the cache folder, atomic writes, and the two process-wide JAX
settings a lesson opts into explicitly.

No vae-lite function touches JAX's caches or global configuration by itself: training,
fitting and estimating leave them as the user set them. A lesson that wants re-runs to
skip compilation calls :func:`enable_compilation_cache` once at the top, and one that must
stay within a classroom server's memory calls :func:`release_memory` between sections.
Both are re-exported by :mod:`vae_lite.training`, where the lessons find them.

This module imports no JAX at import time (``data.cache_dir`` must not pull it in).
"""

import contextlib
import ctypes
import gc
import os
from pathlib import Path

CACHE_ENV = "VAE_LITE_CACHE"
MIN_COMPILE_TIME_S = 0.0  # every program: a lesson compiles ~600 small ones (36 ms each, under 1 ms to load)


def cache_dir():
    """The per-user cache folder (``$VAE_LITE_CACHE`` or ``~/.cache/vae-lite``; ``~`` expanded)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "vae-lite")
    return Path(os.path.expanduser(root))


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _writable_folder(folder):
    """``folder`` as a ``Path`` after creating it, or ``None`` where it cannot be written."""
    folder = Path(os.path.expanduser(str(folder)))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _set_compilation_cache(folder, min_compile_time_s):
    """Point JAX's persistent compilation cache at ``folder`` (``None``: off), effective at once."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", None if folder is None else str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_s)
    compilation_cache.reset_cache()  # JAX opens its cache once; a new folder needs a fresh start


def enable_compilation_cache(folder=None):
    """Keep JAX's compiled programs on disk, so that the next run of a lesson skips compiling.

    Sets JAX's process-wide ``jax_compilation_cache_dir``: call it yourself, once, at the top
    of a notebook or script (the lessons do); no other vae-lite function changes JAX's
    configuration. Calling it again with another folder moves the cache there.

    Args:
        folder: where to keep the programs; default ``<cache folder>/jax``, where the cache
            folder is ``$VAE_LITE_CACHE`` (or ``~/.cache/vae-lite``) at the time of the call.

    Returns:
        the folder in use, or ``None`` when it cannot be written (a read-only shared cache):
        the cache then stays off, since JAX would warn at every compilation. Lessons 1-8.
    """
    import jax

    target = _writable_folder(cache_dir() / "jax" if folder is None else folder)
    if target is None:
        return None
    current = jax.config.jax_compilation_cache_dir
    if current is None or Path(current) != target:
        _set_compilation_cache(target, MIN_COMPILE_TIME_S)
    return target


@contextlib.contextmanager
def compilation_cache(folder=None):
    """``with compilation_cache(): ...`` — :func:`enable_compilation_cache` for a block only.

    JAX's previous cache folder and threshold are restored on leaving the block. Yields the
    folder in use (``None`` when it cannot be written).
    """
    import jax

    previous = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    try:
        yield enable_compilation_cache(folder)
    finally:
        if (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs) != previous:
            _set_compilation_cache(*previous)


def release_memory():
    """Drop JAX's in-memory caches of traced and compiled functions, then collect garbage.

    JAX keeps every function it has traced (about 1 MB each, for every new shape or
    closure) for the life of the process. This empties those caches for the *whole
    process* — your own ``jax.jit`` functions are traced again on their next call — so
    no vae-lite function calls it: a lesson that computes many different things calls it
    between sections to stay within a classroom server's memory (lessons 2-4 and 6-8). Later
    calls recompile what they need, or load it from the persistent compilation cache.
    On Linux it also hands the freed memory back to the system (``malloc_trim``): XLA's
    many threads leave freed blocks in the C allocator's arenas, where they would still
    count against a classroom server's limit.
    """
    import jax

    jax.clear_caches()
    gc.collect()
    _trim_c_heap()


def _trim_c_heap():
    """Return free memory of the C allocator to the system (glibc only; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)  # the C library already loaded into this process
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
