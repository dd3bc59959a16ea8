"""The sampler's optimisation loop: Adam on the denoiser, random batches of the standardised
target latents, the loss of loss.py. Deterministic for a given seed on one device."""

import time

import torch

from torch_utils import misc

#----------------------------------------------------------------------------

def train_sampler(denoiser: torch.nn.Module, loss_fn, latents_hat: torch.Tensor, num_steps: int, batch_size: int,
        learning_rate: float, seed: int, progress=None) -> list:
    """Optimise `denoiser` in place; returns one dict of loss terms (floats) per step.

    Args:
        denoiser:       the U-Net (trained in place).
        loss_fn:        `(denoiser, x0 [B, ...], generator) -> (total, {term: float})` (a BlackboxLoss).
        latents_hat:    standardised target latents `[N, num_ws, w_dim]`, N >= batch_size.
        num_steps:      optimiser steps.
        batch_size:     latents per step (drawn without replacement within an epoch).
        learning_rate:  Adam step size.
        seed:           seeds the batches, diffusion steps, noise and mixing latents.
        progress:       optional callable `(step, num_steps, terms)` after every step.
    """
    misc.assert_shape(latents_hat, [None, denoiser.num_ws, denoiser.w_dim])
    N = latents_hat.shape[0]
    if not 1 <= batch_size <= N:
        raise ValueError(f'train_sampler: batch_size must be in [1, {N}] (the number of target latents), got {batch_size}')
    device = latents_hat.device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=learning_rate)
    denoiser.train().requires_grad_(True)
    history, order = [], torch.zeros([0], dtype=torch.int64)
    start = time.time()
    for step in range(num_steps):
        if len(order) < batch_size:                                         # New epoch.
            order = torch.randperm(N, generator=generator, device=device)
        idx, order = order[:batch_size], order[batch_size:]
        total, terms = loss_fn(denoiser, latents_hat[idx], generator)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        terms = dict(terms, total=float(total.detach()), sec=time.time() - start)
        history.append(terms)
        if progress is not None:
            progress(step + 1, num_steps, terms)
    denoiser.eval().requires_grad_(False)
    return history

#----------------------------------------------------------------------------
