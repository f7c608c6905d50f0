"""The re-grade's tripwires (``vae_lite._tripwires``): every route to a library answer is caught while armed,
the answer works as before while not, and nothing else changes.

Installing tripwires changes the library for the rest of a process, so each case runs in a fresh
interpreter. The re-grade installs them before any of the student's code runs, so the routes start
from what the student's code can reach after that.
"""

import json
import subprocess
import sys
import textwrap

import pytest

SETUP = """
import functools, importlib, inspect, json, types
import jax, jax.numpy as jnp, numpy as np
from vae_lite import _tripwires as T, distributions, elbo, factorization, networks
from vae_lite.distributions import kl_normal_std as imported_before
T.install(["distributions.kl_normal_std", "factorization.image_log_likelihood", "networks.Encoder"])
mu, log_var = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.1, -0.3, 0.7])
namespace = {"imported_before": imported_before}
T.rebind(namespace)

def reaches(route):
    try:
        with T.armed():
            route()
    except T.LibraryAnswerUsed:
        return True
    return False
"""


def run(body):
    script = SETUP + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_route_to_the_answer_trips_while_armed():
    caught = run("""
        routes = {
            "attribute": lambda: distributions.kl_normal_std(mu, log_var),
            "getattr": lambda: getattr(distributions, "kl_normal_std")(mu, log_var),
            "vars": lambda: vars(distributions)["kl_normal_std"](mu, log_var),
            "__import__": lambda: __import__("vae_lite.distributions", fromlist=["_"]).kl_normal_std(mu, log_var),
            "imported before install": lambda: namespace["imported_before"](mu, log_var),
            "the original object": lambda: imported_before(mu, log_var),
            "code object": lambda: types.FunctionType(distributions.kl_normal_std.__code__,
                                                                  vars(distributions))(mu, log_var),
            "partial": lambda: functools.partial(distributions.kl_normal_std, mu)(log_var),
            "inside jax.jit": lambda: jax.jit(lambda a, b: distributions.kl_normal_std(a, b))(mu, log_var),
            "a jitted answer": lambda: factorization.image_log_likelihood(jnp.ones(4), jnp.full(4, 0.3)),
            "inspect.unwrap": lambda: inspect.unwrap(factorization.image_log_likelihood)(jnp.ones(4), jnp.full(4, 0.3)),
            "a class": lambda: networks.Encoder(784, (8,), 2, rngs=__import__("flax").nnx.Rngs(0)),
        }
        print(json.dumps({name: reaches(route) for name, route in routes.items()}))
    """)
    assert caught == dict.fromkeys(caught, True) and len(caught) == 12, caught


@pytest.mark.slow
def test_unarmed_the_answers_work_and_armed_other_functions_do_too():
    out = run("""
        def caught_by_except_exception():
            try:
                distributions.kl_normal_std(mu, log_var)
            except Exception:
                return False
        try:
            with T.armed():
                caught_by_except_exception()
            escaped = False
        except T.LibraryAnswerUsed:
            escaped = True
        with T.armed():
            other = float(distributions.log_normal_diag(jnp.zeros(3), mu, log_var))
        print(json.dumps({
            "kl": float(distributions.kl_normal_std(mu, log_var)),
            "kl_imported_before": float(imported_before(mu, log_var)),
            "image": float(factorization.image_log_likelihood(jnp.array([1.0, 0.0]), jnp.array([0.3, 0.4]))),
            "encoder_params": sum(x.size for x in jax.tree.leaves(
                __import__("flax").nnx.state(networks.Encoder(784, (8,), 2, rngs=__import__("flax").nnx.Rngs(0))))),
            "other": other, "escaped": escaped, "tripped": T.tripped()}))
    """)
    import numpy as np
    from scipy import stats

    mu, log_var = np.array([0.5, -1.0, 2.0]), np.array([0.1, -0.3, 0.7])
    assert out["kl"] == pytest.approx(0.5 * np.sum(mu**2 + np.exp(log_var) - 1 - log_var), rel=1e-5)
    assert out["kl_imported_before"] == pytest.approx(out["kl"], rel=1e-6)
    assert out["image"] == pytest.approx(np.log(0.3) + np.log(0.6), rel=1e-5)
    assert out["encoder_params"] == 784 * 8 + 8 + 8 * 4 + 4  # a hidden layer and the (mu, log_var) head
    assert out["other"] == pytest.approx(stats.norm.logpdf(0, mu, np.exp(0.5 * log_var)).sum(), rel=1e-5)
    assert out["escaped"] and out["tripped"] == ["distributions.kl_normal_std"]


@pytest.mark.slow
def test_a_reloaded_or_rebound_library_counts_as_reaching_the_answer():
    out = run("""
        with T.armed():
            pass
        before = T.tripped()
        importlib.reload(distributions)  # the module's answer is the library's own again
        with T.armed():
            pass
        print(json.dumps({"before": before, "after": T.tripped()}))
    """)
    assert out == {"before": [], "after": ["distributions.kl_normal_std"]}
