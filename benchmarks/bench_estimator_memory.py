"""Peak memory of the Monte Carlo estimators as the number of samples grows.

On one MNIST test image through the standard VAE's decoder (latent_dim 20), each estimator with
S = 1,000 ... 200,000 samples, each in a fresh interpreter (peak resident memory is per process):

- ``elbo.log_evidence_is``: importance sampling with the encoder's q as the proposal (lesson 4);
- ``posterior.naive_log_evidence``: naive Monte Carlo with samples from the prior (lesson 3).

Both evaluate the samples in blocks of ``posterior.SAMPLE_BLOCK`` (``elbo.SAMPLE_BLOCK`` is the
same number), so the peak should stay nearly flat. Before the blocks ``log_evidence_is`` grew by
about 7 MB per 1,000 samples (1.84 GB peak at 200,000 on the 2-core CI machine), and
``naive_log_evidence`` (blocked later, issue 22) peaked at 2.19 GB at 200,000. The model comes
from the model cache or the shipped models (trained once if absent).

Run: ``python benchmarks/bench_estimator_memory.py [--samples 1000 20000 200000]
[--estimators log_evidence_is naive_log_evidence]``.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

ESTIMATORS = ("log_evidence_is", "naive_log_evidence")

_ONE_RUN = """
import json, resource, sys, time
import jax
from vae_lite import data, elbo, posterior, training
estimator, num_samples = sys.argv[1], int(sys.argv[2])
mnist = data.load("mnist")
model = training.train(data=mnist, progress=False).model
x = data.binarize_fixed(mnist.x_test[:1])
mu, log_var = model.encoder(x)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
key = jax.random.key(0)
if estimator == "log_evidence_is":
    value = elbo.log_evidence_is(key, posterior.decoder_log_joint(model.decoder, x[0]), mu[0], log_var[0], num_samples)
else:
    value = posterior.naive_log_evidence(key, posterior.decoder_log_likelihood(model.decoder, x[0]),
                                         model.latent_dim, num_samples)
value = float(value)
print(json.dumps({"estimator": estimator, "samples": num_samples, "log_px": value,
                  "seconds": time.perf_counter() - start, "baseline_mb": baseline,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(estimator, num_samples):
    """One fresh interpreter's figures for ``estimator`` with ``num_samples`` samples (a dict)."""
    run = subprocess.run([sys.executable, "-c", _ONE_RUN, estimator, str(num_samples)], capture_output=True,
                         text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{estimator} with {num_samples} samples failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[1_000, 20_000, 200_000])
    parser.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    args = parser.parse_args(argv)
    print("| estimator | samples | log p(x) estimate | seconds | peak RSS (MB) | growth over the loaded model (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for estimator in args.estimators:
        for num_samples in args.samples:
            r = measure(estimator, num_samples)
            rows.append(r)
            print(f"| {estimator} | {r['samples']:,} | {r['log_px']:.2f} | {r['seconds']:.2f} | {r['peak_mb']:.0f} "
                  f"| {r['peak_mb'] - r['baseline_mb']:.0f} |", flush=True)  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
