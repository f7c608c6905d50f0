"""Float64 NumPy reference formulas (private), shared by :mod:`vae_lite.grading` and the tests.

Textbook formulas written independently of the JAX code they check: no JAX, no vae-lite
imports, float64 throughout. The linear-Gaussian model is z ~ N(0, I_d),
x | z ~ N(W z + b, sigma^2 I_D); its posterior here comes from conditioning the joint
Gaussian of (z, x), a different route from :meth:`vae_lite.posterior.LinearGaussian.posterior`.
"""

import math

import numpy as np

LOG_2PI = math.log(2 * math.pi)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def bernoulli_log_pmf(x, p):
    """Elementwise log Bernoulli(x; p)."""
    return x * np.log(p) + (1 - x) * np.log1p(-p)


def logsumexp(a, axis=None):
    return np.logaddexp.reduce(a, axis=axis)


def log_beta(a, b):
    """log B(a, b) for scalars."""
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def kl_std(mu, log_var, axis=-1):
    """KL(N(mu, diag e^log_var) || N(0, I)), summed over ``axis``."""
    return 0.5 * np.sum(mu**2 + np.exp(log_var) - 1.0 - log_var, axis=axis)


def kl_gaussians(mean_q, cov_q, mean_p, cov_p):
    """KL(N(mean_q, cov_q) || N(mean_p, cov_p)) for full covariances."""
    mean_q, cov_q, mean_p, cov_p = (f64(a) for a in (mean_q, cov_q, mean_p, cov_p))
    precision = np.linalg.inv(cov_p)
    diff = mean_p - mean_q
    return 0.5 * (
        np.trace(precision @ cov_q) + diff @ precision @ diff - len(mean_q)
        + np.linalg.slogdet(cov_p)[1] - np.linalg.slogdet(cov_q)[1]
    )  # fmt: skip


def linear_gaussian_log_joint(W, b, sigma, x, z):
    """log p(x, z) for ``z (..., d)``."""
    W, b, x, z, s2 = f64(W), f64(b), f64(x), f64(z), float(sigma) ** 2
    resid = x - z @ W.T - b
    return -0.5 * np.sum(np.log(2 * np.pi * s2) + resid**2 / s2, -1) - 0.5 * np.sum(LOG_2PI + z**2, -1)


def linear_gaussian_posterior(W, b, sigma, x):
    """``(mean (d,), cov (d, d))`` of p(z|x), by conditioning the joint Gaussian of (z, x)."""
    W, b, x, s2 = f64(W), f64(b), f64(x), float(sigma) ** 2
    cov_xx = W @ W.T + s2 * np.eye(len(b))
    gain = W.T @ np.linalg.inv(cov_xx)  # Cov(z, x) Cov(x)^-1
    return gain @ (x - b), np.eye(W.shape[1]) - gain @ W


def linear_gaussian_log_evidence(W, b, sigma, x):
    """log p(x) = log N(x; b, W W^T + sigma^2 I)."""
    W, b, x, s2 = f64(W), f64(b), f64(x), float(sigma) ** 2
    marginal = W @ W.T + s2 * np.eye(len(x))
    _, logdet = np.linalg.slogdet(2 * np.pi * marginal)
    return -0.5 * (logdet + (x - b) @ np.linalg.solve(marginal, x - b))


def linear_gaussian_expected_log_joint(W, b, sigma, x, mu, var):
    """E_{z ~ N(mu, diag var)} log p(x, z), in closed form (a Gaussian expectation of a quadratic)."""
    W, b, x, mu, var, s2 = f64(W), f64(b), f64(x), f64(mu), f64(var), float(sigma) ** 2
    resid = x - W @ mu - b
    lik = -0.5 * len(x) * np.log(2 * np.pi * s2) - 0.5 * (resid @ resid + np.sum(W**2 * var)) / s2
    return lik - 0.5 * len(mu) * LOG_2PI - 0.5 * (mu @ mu + var.sum())


def gaussian_entropy_of_variance(var):
    """Entropy of N(mu, diag var) in nats."""
    return 0.5 * np.sum(LOG_2PI + 1.0 + np.log(f64(var)))


def linear_gaussian_elbo(W, b, sigma, x, mu, var):
    """ELBO of q = N(mu, diag var) in closed form: expected log joint plus entropy."""
    return linear_gaussian_expected_log_joint(W, b, sigma, x, mu, var) + gaussian_entropy_of_variance(var)


def linear_gaussian_elbo_grad(W, b, sigma, x, mu, log_var, eps):
    """Gradient of the reparameterised Monte Carlo ELBO w.r.t. ``(mu, log_var)``, by hand.

    With z_s = mu + e^{log_var/2} eps_s the estimate is mean_s [log p(x, z_s) - log q(z_s)],
    and log q(z_s) = -1/2 sum(log 2 pi + log_var + eps_s^2) depends on log_var only. With
    g_s = grad_z log p(x, z_s) = W^T (x - W z_s - b) / sigma^2 - z_s:
    grad_mu = mean_s g_s, grad_log_var = mean_s g_s * eps_s * e^{log_var/2} / 2 + 1/2.
    ``eps (S, d)``; returns ``(grad_mu (d,), grad_log_var (d,))``.
    """
    W, b, x, mu, log_var, eps, s2 = f64(W), f64(b), f64(x), f64(mu), f64(log_var), f64(eps), float(sigma) ** 2
    std = np.exp(0.5 * log_var)
    z = mu + std * eps
    g = (x - z @ W.T - b) @ W / s2 - z
    return g.mean(0), (g * eps).mean(0) * 0.5 * std + 0.5


# ---------------------------------------------------------------- lesson 6: the VAE written by hand
# Parameters in the layout lesson 6's exercises prescribe (nnx.Linear: kernel (in, out), bias (out,)):
# encoder hidden (D, H), mu (H, d), log_var (H, d); decoder hidden (d, H), logits (H, D).
VAE_LAYERS = ("encoder.hidden", "encoder.mu", "encoder.log_var", "decoder.hidden", "decoder.logits")


def relu(a):
    return np.maximum(a, 0.0)


def softplus(a):
    return np.logaddexp(0.0, a)


def encoder_forward(p, x):
    """``(mu, log_var)`` of the one-hidden-layer ReLU encoder; ``p`` maps "layer.kernel"/"layer.bias" to arrays."""
    h = relu(f64(x) @ f64(p["encoder.hidden.kernel"]) + f64(p["encoder.hidden.bias"]))
    return h @ f64(p["encoder.mu.kernel"]) + f64(p["encoder.mu.bias"]), \
        h @ f64(p["encoder.log_var.kernel"]) + f64(p["encoder.log_var.bias"])


def decoder_forward(p, z):
    """Pixel logits of the one-hidden-layer ReLU decoder."""
    g = relu(f64(z) @ f64(p["decoder.hidden.kernel"]) + f64(p["decoder.hidden.bias"]))
    return g @ f64(p["decoder.logits.kernel"]) + f64(p["decoder.logits.bias"])


def vae_loss_and_grad(p, x, eps, through_sample=True):
    """The minibatch loss mean_b [KL_b - log p(x_b | z_b)], z_b = mu_b + e^{log_var_b/2} eps_b, and its
    gradient with respect to every parameter, by hand (back-propagation written out in float64).

    ``x (B, D)`` binary, ``eps (B, d)``. Returns ``(loss, {name: gradient})``. With
    ``through_sample=False`` the gradient stops at z (as if z were a constant): the encoder then
    receives only the KL's gradient, the typical mistake of a sample that is not reparameterised.
    """
    p = {k: f64(v) for k, v in p.items()}
    x, eps = f64(x), f64(eps)
    batch = x.shape[0]
    pre1 = x @ p["encoder.hidden.kernel"] + p["encoder.hidden.bias"]
    h = relu(pre1)
    mu = h @ p["encoder.mu.kernel"] + p["encoder.mu.bias"]
    log_var = h @ p["encoder.log_var.kernel"] + p["encoder.log_var.bias"]
    std = np.exp(0.5 * log_var)
    z = mu + std * eps
    pre2 = z @ p["decoder.hidden.kernel"] + p["decoder.hidden.bias"]
    g = relu(pre2)
    logits = g @ p["decoder.logits.kernel"] + p["decoder.logits.bias"]
    recon = np.sum(x * logits - softplus(logits), axis=1)
    loss = np.mean(kl_std(mu, log_var) - recon)
    grads = {}
    d_logits = (1.0 / (1.0 + np.exp(-logits)) - x) / batch
    grads["decoder.logits.kernel"], grads["decoder.logits.bias"] = g.T @ d_logits, d_logits.sum(0)
    d_pre2 = (d_logits @ p["decoder.logits.kernel"].T) * (pre2 > 0)
    grads["decoder.hidden.kernel"], grads["decoder.hidden.bias"] = z.T @ d_pre2, d_pre2.sum(0)
    d_z = d_pre2 @ p["decoder.hidden.kernel"].T if through_sample else 0.0
    d_mu = d_z + mu / batch
    d_log_var = d_z * eps * 0.5 * std + 0.5 * (np.exp(log_var) - 1.0) / batch
    grads["encoder.mu.kernel"], grads["encoder.mu.bias"] = h.T @ d_mu, d_mu.sum(0)
    grads["encoder.log_var.kernel"], grads["encoder.log_var.bias"] = h.T @ d_log_var, d_log_var.sum(0)
    d_pre1 = (d_mu @ p["encoder.mu.kernel"].T + d_log_var @ p["encoder.log_var.kernel"].T) * (pre1 > 0)
    grads["encoder.hidden.kernel"], grads["encoder.hidden.bias"] = x.T @ d_pre1, d_pre1.sum(0)
    return loss, grads


def adam(params, grads_of, steps, learning_rate, b1=0.9, b2=0.999, eps=1e-8):
    """Adam (Kingma & Ba, Algorithm 1) from zero moments: ``steps`` updates of ``params`` (a dict),
    the gradient at step t being ``grads_of(t, params)``. Returns the parameters after each step."""
    params = {k: f64(v) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(a) for k, a in params.items()}
    history = []
    for t in range(1, steps + 1):
        grads = grads_of(t, params)
        new = {}
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            new[k] = params[k] - learning_rate * m_hat / (np.sqrt(v_hat) + eps)
        params = new
        history.append(params)
    return history
