"""Inverting an image into a generator's latent space by optimisation (the stylegan2-ada projector).

A latent `w` (W: one `[w_dim]` vector broadcast to every layer; W+: one per layer) starts at the
mean latent and is optimised with Adam so that `G.synthesis(w)` matches the target under a
distance (LPIPS-VGG, as stylegan2-ada, or pixel MSE for offline use). As in stylegan2-ada:

- the learning rate ramps up over the first 5% of the steps and down (cosine) over the last 25%;
- Gaussian noise of scale `w_std * 0.05 * max(0, 1 - t / 0.75)^2` is added to the latent at
  each step (t = step / num_steps), which helps escape poor starts early and vanishes later;
- the per-layer noise inputs (`noise_const` buffers) are optimised too, on a private copy of the
  synthesis network, with a penalty on their spatial autocorrelation at every scale down to 8x8
  (weight 1e5) and re-normalised to zero mean, unit variance after every step, so that they
  cannot encode the image.

The result is a latent; images rendered from it use the generator's own constant noise (the
optimised noise stays inside the projection), which is how MyStyle anchors and every other tool
render latents.

Base-subspace projection of expanded generators: when `subspaces` is given, every latent the
optimisation renders is first projected onto the base subspace (paper Eq. 1, with the given
mean), i.e. the optimisation is constrained to the base subspace. Optimising freely and
projecting afterwards would throw away whatever the optimiser put along the repurposed
directions; constraining makes the reconstruction exactly the image the base subspace shows.
"""

import copy
import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc

#----------------------------------------------------------------------------
# Defaults of stylegan2-ada's projector.

NUM_STEPS               = 1000
W_AVG_SAMPLES           = 10000  # z samples for the mean latent and its spread.
INITIAL_LEARNING_RATE   = 0.1
INITIAL_NOISE_FACTOR    = 0.05   # Latent noise scale at step 0, relative to w_std.
LR_RAMPDOWN_LENGTH      = 0.25   # Fraction of the steps over which the learning rate decays to 0.
LR_RAMPUP_LENGTH        = 0.05   # Fraction of the steps over which it rises from 0.
NOISE_RAMP_LENGTH       = 0.75   # Fraction of the steps after which no latent noise is added.
REGULARIZE_NOISE_WEIGHT = 1e5
PERCEPTUAL_SIZE         = 256    # LPIPS sees images downsampled (area) to at most this size.
METRICS                 = ('lpips', 'l2')

#----------------------------------------------------------------------------

def learning_rate(t: float, initial: float = INITIAL_LEARNING_RATE, rampdown: float = LR_RAMPDOWN_LENGTH,
        rampup: float = LR_RAMPUP_LENGTH) -> float:
    """Learning rate at progress `t` in [0, 1): linear ramp-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup)
    return initial * ramp

def latent_noise_scale(t: float, w_std: float, initial_factor: float = INITIAL_NOISE_FACTOR,
        ramp_length: float = NOISE_RAMP_LENGTH) -> float:
    """Std of the noise added to the latent at progress `t`: `w_std * f * max(0, 1 - t / ramp)^2`."""
    return w_std * initial_factor * max(0.0, 1.0 - t / ramp_length) ** 2

#----------------------------------------------------------------------------

@torch.no_grad()
def w_statistics(G_mapping: torch.nn.Module, c: torch.Tensor, num_samples: int = W_AVG_SAMPLES, seed: int = 123,
        batch_size: int = 1000) -> tuple:
    """Mean latent `[w_dim]` and its spread `w_std = sqrt(mean_n |w_n - w_avg|^2)` (a float).

    z from `np.random.RandomState(seed).randn(num_samples, z_dim)`, label `c` `[1, c_dim]`
    for every sample, psi 1; the mapping's own `w_avg` buffer is neither used nor updated.
    """
    device = c.device
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G_mapping.z_dim)).to(device, torch.float32)
    w = torch.cat([G_mapping(part, c.expand(part.shape[0], -1), skip_w_avg_update=True)[:, 0]
        for part in z.split(batch_size)]).double()                          # [num_samples, w_dim]
    w_avg = w.mean(dim=0)
    w_std = float(((w - w_avg).square().sum() / num_samples).sqrt())
    return w_avg.float(), w_std

#----------------------------------------------------------------------------

def noise_buffers(G_synthesis: torch.nn.Module) -> dict:
    """The per-layer constant noise inputs: `{name: buffer [res, res]}` (names contain 'noise_const')."""
    return {name: buf for name, buf in G_synthesis.named_buffers() if 'noise_const' in name}

def noise_regularization(buffers) -> torch.Tensor:
    """Squared autocorrelation at a one-pixel shift (both axes), summed over a 2x pyramid down to 8x8.

    Zero for noise that is white at every scale; grows when the noise maps carry structure.
    """
    reg = 0.0
    for buf in buffers:
        v = buf[None, None, :, :]                                           # [1, 1, H, W]
        while True:
            reg = reg + (v * torch.roll(v, shifts=1, dims=3)).mean() ** 2
            reg = reg + (v * torch.roll(v, shifts=1, dims=2)).mean() ** 2
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return reg

@torch.no_grad()
def normalize_noise_(buffers) -> None:
    """In place: zero mean, unit variance for each noise map."""
    for buf in buffers:
        buf -= buf.mean()
        buf *= buf.square().mean().rsqrt()

#----------------------------------------------------------------------------

def pixel_l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over C*H*W of squared differences per image, [-1, 1] images -> [N]."""
    misc.assert_shape(y, list(x.shape))
    return (x - y).square().flatten(1).mean(dim=1)

def lpips_distance(lpips_fn, max_size: int = PERCEPTUAL_SIZE):
    """Wrap an LPIPS callable `(x, y) -> [N]` for projection: area-downsample images larger than
    `max_size` (as stylegan2-ada does for its VGG features) and repeat gray images to RGB."""
    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)
        if x.shape[2] > max_size:
            x = F.interpolate(x, size=(max_size, max_size), mode='area')
            y = F.interpolate(y, size=(max_size, max_size), mode='area')
        return lpips_fn(x, y)
    return distance

def make_distance(metric: str, shared_models=None):
    """The projection distance for `metric`: 'l2' (pixel MSE) or 'lpips' (LPIPS-VGG from
    `shared_models.perceptual('vgg')`; may raise PretrainedWeightsError offline)."""
    if metric == 'l2':
        return pixel_l2
    if metric == 'lpips':
        if shared_models is None:
            raise ValueError("make_distance: metric 'lpips' needs shared_models (a SharedModels object)")
        return lpips_distance(shared_models.perceptual('vgg'))
    raise ValueError(f"unknown projection metric {metric!r}; choose one of {', '.join(METRICS)}")

#----------------------------------------------------------------------------

@dataclasses.dataclass
class ProjectionResult:
    """What `project` returns."""
    w_steps: torch.Tensor   # [num_steps, num_ws, w_dim] the (noise-free, constrained) latent after each step.
    dist:    list           # [num_steps] distance to the target at each step (with that step's latent noise).
    w_plus:  bool           # Whether W+ (one latent per layer) was optimised.

    @property
    def latent(self) -> torch.Tensor:
        """The final latent in the anchors format: W `[w_dim]`, or W+ `[num_ws, w_dim]`."""
        final = self.w_steps[-1]
        return final.clone() if self.w_plus else final[0].clone()

#----------------------------------------------------------------------------

def target_to_float(target_uint8, channels: int, resolution: int) -> torch.Tensor:
    """uint8 `[C, H, W]` (tensor or array) -> float `[1, C, H, W]` in [-1, 1]; ValueError on a shape mismatch."""
    target = torch.as_tensor(target_uint8)
    if target.dtype != torch.uint8:
        raise ValueError(f'project: the target must be a uint8 [C, H, W] image, got dtype {target.dtype}')
    if tuple(target.shape) != (channels, resolution, resolution):
        raise ValueError(f'project: the target has shape {list(target.shape)}, the generator makes '
            f'[{channels}, {resolution}, {resolution}]')
    return target[None].to(torch.float32) / 127.5 - 1

def project(G: torch.nn.Module, target_uint8, *, num_steps: int = NUM_STEPS, w_plus: bool = False, distance=None,
        c: torch.Tensor = None, subspaces=None, base_mean: torch.Tensor = None, w_avg_samples: int = W_AVG_SAMPLES,
        seed: int = 303, initial_learning_rate: float = INITIAL_LEARNING_RATE,
        initial_noise_factor: float = INITIAL_NOISE_FACTOR, lr_rampdown_length: float = LR_RAMPDOWN_LENGTH,
        lr_rampup_length: float = LR_RAMPUP_LENGTH, noise_ramp_length: float = NOISE_RAMP_LENGTH,
        regularize_noise_weight: float = REGULARIZE_NOISE_WEIGHT, progress=None) -> ProjectionResult:
    """Find the latent whose image matches `target_uint8` (see the module docstring).

    Args:
        G:             generator (mapping + synthesis); not modified (noise is optimised on a copy).
        target_uint8:  uint8 [C, H, W] image at G's resolution and channel count.
        num_steps:     optimisation steps.
        w_plus:        optimise one latent per layer (W+) instead of one shared W latent.
        distance:      `(synth, target) -> [N]` on [-1, 1] images; None = pixel MSE.
        c:             label [1, c_dim] (conditional G); None = no label.
        subspaces:     a LatentSubspaces: constrain the latent to its base subspace (Eq. 1).
        base_mean:     [w_dim] mean for the base projection (the expanded G's `w_avg`).
        w_avg_samples: z samples for the start latent (their mean) and the latent-noise scale.
        seed:          seeds the torch draws (initial noise maps, latent noise); the mean latent
                       always uses RandomState(123), as stylegan2-ada.
        progress:      optional callable `(step, num_steps, dist)` after every step.

    Returns:
        ProjectionResult; `.latent` is the final latent, `.w_steps` the trajectory.
    """
    if num_steps < 1:
        raise ValueError(f'project: num_steps must be >= 1, got {num_steps}')
    distance = pixel_l2 if distance is None else distance
    device = next(G.synthesis.parameters()).device
    num_ws, w_dim = G.synthesis.num_ws, G.w_dim
    target = target_to_float(target_uint8, G.img_channels, G.img_resolution).to(device)
    c = torch.zeros([1, G.c_dim], device=device) if c is None else c.to(device)
    misc.assert_shape(c, [1, G.c_dim])
    w_avg, w_std = w_statistics(G.mapping, c, w_avg_samples)           # fixed seed: the start does not depend on `seed`

    # A private synthesis copy whose noise maps we may overwrite and optimise.
    synthesis = _private_copy(G.synthesis)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    noise = list(noise_buffers(synthesis).values())
    for buf in noise:
        buf.copy_(torch.randn(buf.shape, generator=gen, device=device))
        buf.requires_grad_(True)

    def constrain(w):                                                   # Eq. 1 when expanded
        return w if subspaces is None else subspaces.project_base(w, base_mean)

    w_opt = w_avg.to(device).reshape(1, 1, w_dim).repeat(1, num_ws if w_plus else 1, 1)
    w_opt = w_opt.detach().clone().requires_grad_(True)                 # [1, 1 or num_ws, w_dim]
    optimizer = torch.optim.Adam([w_opt] + noise, betas=(0.9, 0.999), lr=initial_learning_rate)
    w_steps = torch.zeros([num_steps, num_ws, w_dim], dtype=torch.float32)
    dists = []
    for step in range(num_steps):
        t = step / num_steps
        for group in optimizer.param_groups:
            group['lr'] = learning_rate(t, initial_learning_rate, lr_rampdown_length, lr_rampup_length)
        scale = latent_noise_scale(t, w_std, initial_noise_factor, noise_ramp_length)
        w = constrain(w_opt + torch.randn(w_opt.shape, generator=gen, device=device) * scale)
        synth = synthesis(w.expand(1, num_ws, w_dim), noise_mode='const')
        dist = distance(synth, target).sum()
        loss = dist + noise_regularization(noise) * regularize_noise_weight
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        normalize_noise_(noise)
        with torch.no_grad():
            w_steps[step] = constrain(w_opt).expand(1, num_ws, w_dim)[0].float().cpu()
        dists.append(float(dist.detach()))
        if progress is not None:
            progress(step + 1, num_steps, dists[-1])
    return ProjectionResult(w_steps=w_steps, dist=dists, w_plus=bool(w_plus))

def _private_copy(G_synthesis: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode with frozen parameters (buffers are cloned by deepcopy)."""
    return copy.deepcopy(G_synthesis).eval().requires_grad_(False)

#----------------------------------------------------------------------------

@torch.no_grad()
def render_latent(G_synthesis: torch.nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """Image `[1, C, H, W]` in [-1, 1] of a W `[w_dim]` or W+ `[num_ws, w_dim]` latent, constant noise."""
    device = next(G_synthesis.parameters()).device
    latent = latent.to(device)
    if latent.ndim == 1:
        latent = latent.reshape(1, -1).repeat(G_synthesis.num_ws, 1)
    misc.assert_shape(latent, [G_synthesis.num_ws, None])
    return G_synthesis(latent.unsqueeze(0), noise_mode='const')

#----------------------------------------------------------------------------
