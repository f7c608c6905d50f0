"""Peak memory of the Monte Carlo estimators as the number of samples grows.

``elbo.log_evidence_is`` on one MNIST test image through the standard VAE's decoder, with
S = 1,000 ... 200,000 importance samples, each in a fresh interpreter (peak resident memory
is per process). The estimators evaluate the samples in blocks of ``elbo.SAMPLE_BLOCK``, so
the peak should stay nearly flat; before the blocks it grew by about 7 MB per 1,000 samples
(1.84 GB peak at 200,000 on the 2-core CI machine). The model comes from the model cache (trained once if absent).

Run: ``python benchmarks/bench_estimator_memory.py [--samples 1000 10000 200000]``.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

_ONE_RUN = """
import json, resource, sys, time
import jax
from vae_lite import data, elbo, training
from vae_lite.posterior import decoder_log_joint
mnist = data.load("mnist")
model = training.train(data=mnist, progress=False).model
x = data.binarize_fixed(mnist.x_test[:1])
mu, log_var = model.encoder(x)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
value = elbo.log_evidence_is(jax.random.key(0), decoder_log_joint(model.decoder, x[0]), mu[0], log_var[0],
                             int(sys.argv[1]))
value = float(value)
print(json.dumps({"samples": int(sys.argv[1]), "log_px": value, "seconds": time.perf_counter() - start,
                  "baseline_mb": baseline, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(num_samples):
    """One fresh interpreter's figures for ``num_samples`` samples (a dict)."""
    run = subprocess.run([sys.executable, "-c", _ONE_RUN, str(num_samples)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"the run with {num_samples} samples failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[1_000, 10_000, 50_000, 200_000])
    args = parser.parse_args(argv)
    print("| samples | log p(x) estimate | seconds | peak RSS (MB) | growth over the loaded model (MB) |")
    print("|---:|---:|---:|---:|---:|")
    rows = []
    for num_samples in args.samples:
        r = measure(num_samples)
        rows.append(r)
        print(f"| {r['samples']:,} | {r['log_px']:.2f} | {r['seconds']:.2f} | {r['peak_mb']:.0f} "
              f"| {r['peak_mb'] - r['baseline_mb']:.0f} |", flush=True)  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
