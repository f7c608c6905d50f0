"""The PyTorch eager reference for ``bench_training.py``: the standard model, trained the same way.

Same layers (an MLP encoder to ``(mu, log_var)``, an MLP decoder to Bernoulli logits), same
loss (the negative ELBO with the closed-form KL), same batch size, dynamic binarisation and
Adam learning rate as ``vae_lite.training``, written the way a PyTorch user would write it.
torch is optional (``pip install torch``, or the ``benchmark`` extra).
"""

import time

import numpy as np


def make_torch_epoch(x_train, *, hidden, latent, batch, lr, seed=0):
    """A PyTorch eager epoch of a ``pixels-hidden-latent`` VAE on images ``x_train (N, pixels)``.

    Returns ``run(max_steps, num_threads) -> (seconds, cpu_seconds, images, train_elbo)``, which
    trains for ``max_steps`` minibatches (``None``: a full epoch) on ``num_threads`` threads, or
    ``None`` when torch is not installed.
    """
    try:
        import torch
        from torch import nn
        from torch.nn import functional as F
    except ImportError:
        return None
    torch.manual_seed(seed)
    num_pixels = x_train.shape[1]

    class TorchVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(num_pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
            self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, num_pixels))

        def forward(self, x):
            mu, log_var = self.encoder(x).chunk(2, dim=-1)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            logits = self.decoder(z)
            # log Bernoulli(x; sigmoid(logits)) = -BCE-with-logits (stable), summed over pixels
            recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
            kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)
            return recon, kl

    model = TorchVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    num_batches = x.shape[0] // batch

    def run(max_steps, num_threads):
        torch.set_num_threads(num_threads)
        steps = num_batches if max_steps is None else min(max_steps, num_batches)
        order = torch.randperm(x.shape[0])
        total = 0.0
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(steps):
            xb = torch.bernoulli(x[order[i * batch : (i + 1) * batch]])  # dynamic binarisation
            recon, kl = model(xb)
            loss = -(recon - kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        return time.perf_counter() - start, time.process_time() - cpu, steps * batch, -total / steps

    run.torch_version = torch.__version__
    return run
