"""Lesson 6's measured numbers: where its step check draws its line, and how far two trainings differ.

1. The step check's margin.
``grading.check_train_step`` ends by running 200 of the student's steps (batches of 100 from
1,000 MNIST training images, Adam 1e-3, a 784-400-20 VAE) and requires the ELBO on those
images to rise by ``_checks_training.STEP_MARGIN_NATS``. This script measures that gain for a
correct step over several seeds (the model's initialisation and the step keys) and for typical
wrong steps, so the margin is read off measurements rather than guessed.

2. The seed-to-seed spread of the library trainer's held-out ELBO after 2 epochs (the
standard 784-400-20 VAE on MNIST, ``training.fit`` with seeds 0-4): lesson 6 compares the
student's own two epochs with the library's within this spread.

Run: ``python benchmarks/bench_training_lesson.py [--seeds 5]``; prints Markdown tables.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vae_lite import _checks_training as C
from vae_lite import data, training


def loss(model, x, key, kl_weight=1.0, sample=True):
    mu, log_var = model.encoder(x)
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape) if sample else mu
    logits = model.decoder(z)
    recon = jnp.sum(x * logits - jax.nn.softplus(logits), axis=1)
    kl = 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1 - log_var, axis=1)
    return jnp.mean(kl_weight * kl - recon)


def step_of(kind):
    @nnx.jit
    def step(model, optimizer, x, key):
        if kind == "ascends the loss":
            value, grads = nnx.value_and_grad(lambda m: -loss(m, x, key))(model)
        elif kind == "no KL term":
            value, grads = nnx.value_and_grad(lambda m: loss(m, x, key, kl_weight=0.0))(model)
        elif kind == "mean instead of a sample":
            value, grads = nnx.value_and_grad(lambda m: loss(m, x, key, sample=False))(model)
        elif kind == "grey pixels":  # an un-binarised minibatch: here, the probabilities of a blurred image
            value, grads = nnx.value_and_grad(lambda m: loss(m, 0.5 * x + 0.25, key))(model)
        else:
            value, grads = nnx.value_and_grad(lambda m: loss(m, x, key))(model)
        if kind != "never updates":
            optimizer.update(model, grads)
        return value

    return step


def gain(kind, seed, num_steps=200, batch=100):
    images = data.load("mnist").x_train[:1000]
    x = jax.random.bernoulli(jax.random.key(7), jnp.asarray(images, jnp.float32)).astype(jnp.float32)
    model = C.step_check_model(x.shape[1], seed)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    probe = jax.random.key(8)
    before = float(nnx.jit(lambda m: -loss(m, x, probe))(model))
    step = step_of(kind)
    for i, key in enumerate(jax.random.split(jax.random.key(9 + seed), num_steps)):
        start = (i * batch) % x.shape[0]
        step(model, optimizer, x[start : start + batch], key)
    return float(nnx.jit(lambda m: -loss(m, x, probe))(model)) - before


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    kinds = ("correct", "no KL term", "mean instead of a sample", "grey pixels", "ascends the loss", "never updates")
    print(f"| step | ELBO gain after 200 steps, nats per image ({args.seeds} seeds) | min | max |")
    print("|---|---|---|---|")
    for kind in kinds:
        start = time.perf_counter()
        gains = [gain(kind, seed) for seed in range(args.seeds)]
        print(f"| {kind} | {', '.join(f'{g:.1f}' for g in gains)} | {min(gains):.1f} | {max(gains):.1f} |"
              f"  <!-- {time.perf_counter() - start:.0f} s -->")
    print(f"\nthe check's margin: {C.STEP_MARGIN_NATS:g} nats\n")
    ds = data.load("mnist")
    elbos = []
    for seed in range(args.seeds):
        config = training.TrainConfig(epochs=2, seed=seed)
        history = training.fit(training.build_model(config, ds.num_pixels), config, ds.x_train, held_out=ds.x_test,
                               progress=False)
        elbos.append(history["test_elbo"][-1])
    mean = sum(elbos) / len(elbos)
    sd = (sum((e - mean) ** 2 for e in elbos) / (len(elbos) - 1)) ** 0.5
    print("| held-out ELBO after 2 epochs, training.fit, seeds 0-%d | mean | standard deviation |" % (args.seeds - 1))
    print("|---|---|---|")
    print(f"| {', '.join(f'{e:.2f}' for e in elbos)} | {mean:.2f} | {sd:.2f} |")


if __name__ == "__main__":
    main()
