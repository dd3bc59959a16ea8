"""Perceptual Path Length (Karras et al. 2019, StyleGAN; the 'end' variant of StyleGAN2): the
LPIPS distance between images at interpolation points t and t + epsilon, divided by epsilon^2,
averaged over random latent pairs after dropping the lowest and highest percent."""

import copy

import numpy as np
import torch

from metrics import feature_networks
from metrics import metric_utils

# ---------------------------------------------------------------------------------------------


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of a and b `[N, D]` at t `[N, 1]`; returns
    unit vectors (PPL in Z compares directions, the norm of z being nearly constant)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(dim=-1, keepdim=True)
    angle = t * torch.acos(cos.clamp(-1, 1))
    ortho = b - cos * a                                      # component of b orthogonal to a
    ortho = ortho / ortho.norm(dim=-1, keepdim=True)
    out = a * torch.cos(angle) + ortho * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)


class PPLSampler(torch.nn.Module):
    """Per-pair PPL distances for given latents; the caller supplies all randomness."""

    def __init__(self,
        G: torch.nn.Module,         # Generator with .mapping(z, c) -> ws and .synthesis(ws, ...) -> images.
        G_kwargs: dict,             # Extra keyword arguments for G.synthesis.
        perceptual: torch.nn.Module,# VGG16-style network: perceptual(img_0_255, resize_images=False, return_lpips=True).
        epsilon: float,             # Interpolation step (1e-4 officially).
        space: str,                 # 'z' (slerp between z) or 'w' (lerp between w).
        sampling: str,              # 'full' (t ~ U[0, 1]) or 'end' (t = 0).
        crop: bool,                 # Crop to the central face region first (the FFHQ-era ppl_* metrics).
    ):
        super().__init__()
        if space not in ('z', 'w') or sampling not in ('full', 'end'):
            raise ValueError(f"PPL: space must be 'z' or 'w' and sampling 'full' or 'end', got {space!r}, {sampling!r}")
        self.G = G
        self.G_kwargs = dict(G_kwargs)
        self.perceptual = perceptual
        self.epsilon = epsilon
        self.space = space
        self.sampling = sampling
        self.crop = crop

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Distances `[N]` for latent pairs z0, z1 `[N, z_dim]`, t `[N]` (ignored for 'end': t = 0)
        and labels c `[N, c_dim]`."""
        G = self.G
        t = t.unsqueeze(1) * (1 if self.sampling == 'full' else 0)              # [N, 1]
        if self.space == 'w':
            w0, w1 = G.mapping(z=torch.cat([z0, z1]), c=torch.cat([c, c])).chunk(2)   # [N, num_ws, w_dim] each
            wt0 = w0.lerp(w1, t.unsqueeze(2))
            wt1 = w0.lerp(w1, t.unsqueeze(2) + self.epsilon)
        else:
            zt0 = slerp(z0, z1, t)
            zt1 = slerp(z0, z1, t + self.epsilon)
            wt0, wt1 = G.mapping(z=torch.cat([zt0, zt1]), c=torch.cat([c, c])).chunk(2)
        img = G.synthesis(torch.cat([wt0, wt1]), noise_mode='const', force_fp32=True, **self.G_kwargs)
        if self.crop:
            # Central region of an aligned face: rows 3/8..7/8, columns 2/8..6/8.
            assert img.shape[2] == img.shape[3], 'PPL crop expects square images'
            c8 = img.shape[2] // 8
            img = img[:, :, c8 * 3: c8 * 7, c8 * 2: c8 * 6]
        # Box-downsample by img_resolution // 256 (LPIPS-VGG works at about 256 px); like the
        # official metric, the factor comes from the full resolution even after the crop.
        factor = G.img_resolution // 256
        if factor > 1:
            img = img.reshape([img.shape[0], img.shape[1], img.shape[2] // factor, factor,
                               img.shape[3] // factor, factor]).mean([3, 5])
        img = (img + 1) * (255 / 2)                                              # [-1, 1] -> [0, 255], not quantised
        if img.shape[1] == 1:
            img = img.repeat([1, 3, 1, 1])
        emb0, emb1 = self.perceptual(img, resize_images=False, return_lpips=True).chunk(2)
        return (emb0 - emb1).square().sum(dim=1) / self.epsilon ** 2


def ppl_from_distances(dist: np.ndarray) -> float:
    """Mean of the distances between the 1st (lower) and 99th (higher) percentiles, inclusive."""
    dist = np.asarray(dist, np.float64)
    lo = np.percentile(dist, 1, method='lower')
    hi = np.percentile(dist, 99, method='higher')
    return float(dist[(dist >= lo) & (dist <= hi)].mean())


def _randomize_noise_buffers(G: torch.nn.Module, gen: torch.Generator) -> None:
    # A fresh draw of the constant noise per batch, so noise_mode='const' does not pin one noise.
    for name, buf in G.named_buffers():
        if name.endswith('.noise_const'):
            buf.copy_(torch.randn(buf.shape, generator=gen).to(buf.device, buf.dtype))


@torch.no_grad()
def compute_ppl(opts: metric_utils.MetricOptions, num_samples: int, epsilon: float, space: str, sampling: str,
                crop: bool, batch_size: int = 2, detector_url: str = feature_networks.VGG16_URL) -> float:
    """PPL over `num_samples` latent pairs; NaN on ranks other than 0."""
    perceptual = feature_networks.load_detector(detector_url, opts.device, opts.num_gpus, opts.rank, opts.detector_dir)
    G = copy.deepcopy(opts.require_G('PPL')).eval().requires_grad_(False).to(opts.device)
    dataset = metric_utils.make_dataset(opts) if G.c_dim > 0 and opts.dataset_kwargs.get('class_name') else None
    sampler = PPLSampler(G, opts.G_kwargs, perceptual, epsilon, space, sampling, crop)
    dist = []           # gathered [num_gpus * batch_size] distances per step
    num_done = 0
    step = 0
    with metric_utils.Progress(opts.progress, 'PPL: latent pairs', num_samples, opts.rank) as progress:
        while num_done < num_samples:
            batch_idx = step * opts.num_gpus + opts.rank
            z0, c = metric_utils.sample_latents(opts, G, batch_size, batch_idx, dataset)
            gen = metric_utils.batch_generator(opts.seed + 1, batch_idx)  # independent of z0's stream
            z1 = torch.randn([batch_size, G.z_dim], generator=gen).to(opts.device)
            t = torch.rand([batch_size], generator=gen).to(opts.device)
            _randomize_noise_buffers(G, gen)
            d = sampler(z0, z1, t, c)
            dist.append(metric_utils.gather_rows(d, opts.num_gpus, interleave=False))
            num_done += dist[-1].shape[0]
            progress.update(num_done)
            step += 1
    if opts.rank != 0:
        return float('nan')
    return ppl_from_distances(torch.cat(dist)[:num_samples].cpu().numpy())

# ---------------------------------------------------------------------------------------------
