"""Batched W+ inversion of target images with an on-disk cache (paper Sec. 3, "GAN inversion";
the paper uses pSp/e4e encoders, which we do not have: optimisation-based inversion instead).

It reuses the projector's pieces (training/projection.py: the start latent and spread, the
learning-rate ramp, the decaying latent noise, the pixel distance) for a whole batch at once,
one W+ latent `[num_ws, w_dim]` per image. Unlike `projection.project` it keeps the generator's
constant noise maps instead of optimising private ones: the latents are rendered with those maps
afterwards, so optimising against them is what makes the reconstructions match.

Each image's latent depends only on the image, the generator and the settings (its latent noise
comes from a generator seeded by the image's cache key), so a cached latent equals what a fresh
run would compute and a batch's make-up does not matter (up to float rounding of batched
convolutions).
"""

import hashlib
import json
import os

import numpy as np
import torch

import dnnlib
from torch_utils import misc
from training import projection

#----------------------------------------------------------------------------

DEFAULT_STEPS = 200         # Optimisation steps per image (stylegan2-ada projects with 1000 at 1024 px).
DEFAULT_BATCH = 50          # Images optimised together.
W_AVG_SAMPLES = 2000        # z samples for the start latent and the noise scale.

def cache_key(image_uint8: torch.Tensor, source_sha256: str, settings: dict) -> str:
    """Hex SHA-256 of the image bytes, the source generator's hash and the inversion settings."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(image_uint8.cpu().numpy()).tobytes())
    h.update(str(list(image_uint8.shape)).encode())
    h.update(source_sha256.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()

def invert_batch(G: torch.nn.Module, targets_uint8: torch.Tensor, keys: list, num_steps: int, w_avg: torch.Tensor,
        w_std: float) -> torch.Tensor:
    """W+ latents `[B, num_ws, w_dim]` minimising the pixel MSE to uint8 targets `[B, C, H, W]`."""
    device = w_avg.device
    num_ws = G.synthesis.num_ws
    B = targets_uint8.shape[0]
    misc.assert_shape(targets_uint8, [B, G.img_channels, G.img_resolution, G.img_resolution])
    target = targets_uint8.to(device, torch.float32) / 127.5 - 1
    gens = [torch.Generator(device=device).manual_seed(int(key[:15], 16)) for key in keys]
    ws = w_avg.reshape(1, 1, -1).repeat(B, num_ws, 1).detach().requires_grad_(True)   # [B, num_ws, w_dim]
    optimizer = torch.optim.Adam([ws], betas=(0.9, 0.999), lr=projection.INITIAL_LEARNING_RATE)
    for step in range(num_steps):
        t = step / num_steps
        for group in optimizer.param_groups:
            group['lr'] = projection.learning_rate(t)
        scale = projection.latent_noise_scale(t, w_std)
        noise = torch.stack([torch.randn(ws.shape[1:], generator=g, device=device) for g in gens])
        synth = G.synthesis(ws + noise * scale, noise_mode='const')
        loss = projection.pixel_l2(synth, target).sum()                 # Sum: each image's gradient is its own.
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return ws.detach()

def invert_images(G: torch.nn.Module, images_uint8: torch.Tensor, source_sha256: str, cache_dir: str = None,
        num_steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH, device='cpu', progress: bool = False) -> torch.Tensor:
    """W+ latents `[N, num_ws, w_dim]` (on the CPU) of uint8 images `[N, C, H, W]`.

    Args:
        G:             source generator (frozen; only its synthesis is differentiated).
        images_uint8:  targets at G's resolution.
        source_sha256: hash of the source pickle (part of the cache key).
        cache_dir:     folder of `<key>.npy` latents: done images are read, new ones written
                       (atomically, after each batch); None: no cache.
        num_steps:     optimisation steps per image.
        batch_size:    images per optimisation batch.
        device:        where the optimisation runs.
        progress:      show a tqdm bar over the images.
    """
    G = G.eval().requires_grad_(False).to(device)
    settings = dict(method='w_plus_pixel_l2', num_steps=int(num_steps), w_avg_samples=W_AVG_SAMPLES)
    keys = [cache_key(image, source_sha256, settings) for image in images_uint8]
    out = torch.zeros([len(keys), G.synthesis.num_ws, G.w_dim])
    todo = []
    for i, key in enumerate(keys):
        path = None if cache_dir is None else os.path.join(cache_dir, f'{key}.npy')
        if path is not None and os.path.isfile(path):
            out[i] = torch.from_numpy(np.load(path))
        else:
            todo.append(i)
    if not todo:
        return out
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
    c = torch.zeros([1, G.c_dim], device=device)
    w_avg, w_std = projection.w_statistics(G.mapping, c, W_AVG_SAMPLES)
    bar = _progress_bar(len(keys), len(keys) - len(todo), progress)
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        ws = invert_batch(G, images_uint8[idx], [keys[i] for i in idx], num_steps, w_avg.to(device), w_std).cpu()
        for i, w in zip(idx, ws):
            out[i] = w
            if cache_dir is not None:
                with dnnlib.util.atomic_write_path(os.path.join(cache_dir, f'{keys[i]}.npy')) as tmp:
                    with open(tmp, 'wb') as f:
                        np.save(f, w.numpy())
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out

def _progress_bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    import tqdm
    return tqdm.tqdm(total=total, initial=done, desc='inverting', unit='img')

#----------------------------------------------------------------------------
