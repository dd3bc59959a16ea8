"""The sampler's optimisation loop: Adam on the denoiser, random batches of the standardised
target latents, the loss of loss.py, and an exponential moving average (EMA) of the weights that
becomes the trained sampler (as in DDPM training: the last iterate of a noisy optimiser varies a
lot between seeds; README, "Black-box adaptation"). Deterministic for a given seed on one device."""

import time

import torch

from torch_utils import misc

#----------------------------------------------------------------------------

def train_sampler(denoiser: torch.nn.Module, loss_fn, latents_hat: torch.Tensor, num_steps: int, batch_size: int,
        learning_rate: float, seed: int, progress=None, ema_decay: float = 0.0) -> list:
    """Optimise `denoiser` in place; returns one dict of loss terms (floats) per step.
    With ema_decay > 0 the denoiser ends with the EMA of its weights, not the last iterate.

    Args:
        denoiser:       the U-Net (trained in place).
        loss_fn:        `(denoiser, x0 [B, ...], generator) -> (total, {term: float})` (a BlackboxLoss).
        latents_hat:    standardised target latents `[N, num_ws, w_dim]`, N >= batch_size.
        num_steps:      optimiser steps.
        batch_size:     latents per step (drawn without replacement within an epoch).
        learning_rate:  Adam step size.
        seed:           seeds the batches, diffusion steps, noise and mixing latents.
        progress:       optional callable `(step, num_steps, terms)` after every step.
        ema_decay:      EMA decay per step (warmed up as min(ema_decay, (1 + step) / (10 + step)));
                        0: keep the last iterate.
    """
    misc.assert_shape(latents_hat, [None, denoiser.num_ws, denoiser.w_dim])
    N = latents_hat.shape[0]
    if not 1 <= batch_size <= N:
        raise ValueError(f'train_sampler: batch_size must be in [1, {N}] (the number of target latents), got {batch_size}')
    if not 0 <= ema_decay < 1:
        raise ValueError(f'train_sampler: ema_decay must be in [0, 1), got {ema_decay}')
    device = latents_hat.device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=learning_rate)
    denoiser.train().requires_grad_(True)
    ema = [p.detach().clone() for p in denoiser.parameters()] if ema_decay > 0 else None
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
        if ema is not None:
            with torch.no_grad():
                decay = min(ema_decay, (1 + step) / (10 + step))
                for average, param in zip(ema, denoiser.parameters()):
                    average.lerp_(param, 1 - decay)
        terms = dict(terms, total=float(total.detach()), sec=time.time() - start)
        history.append(terms)
        if progress is not None:
            progress(step + 1, num_steps, terms)
    if ema is not None:
        with torch.no_grad():
            for average, param in zip(ema, denoiser.parameters()):
                param.copy_(average)
    denoiser.eval().requires_grad_(False)
    return history

#----------------------------------------------------------------------------
