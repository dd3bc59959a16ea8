"""The latent sampler: a 1-D U-Net denoiser, its DDPM schedule and the latent normaliser, drawing
W+ latents of the target domain; plus its snapshot file.

Snapshot: a `torch.save` of plain data (numbers, strings, lists, tensors) read back with
`torch.load(weights_only=True)`; the classes are ours, built from the stored constructor
arguments, so nothing named in the file is ever imported or called.
"""

import torch

import dnnlib
from torch_utils import misc
from training.blackbox import mixing
from training.blackbox.diffusion import DiffusionSchedule
from training.blackbox.normalization import LatentNormalizer
from training.blackbox.unet1d import UNet1D

#----------------------------------------------------------------------------

SNAPSHOT_FORMAT = 'blackbox-latent-sampler/1'
LEGACY_STEP_VARIANCE = 'posterior'  # What snapshots that store no schedule 'variance' were sampled with.

class SamplerSnapshotError(dnnlib.util.UserError, ValueError):
    """A sampler snapshot that cannot be read or does not fit the generator."""

#----------------------------------------------------------------------------

class LatentSampler(torch.nn.Module):
    """Draws W+ latents `[N, num_ws, w_dim]`: DDPM sampling in the standardised space, then
    de-standardisation (w = w_hat * sigma + mu)."""

    def __init__(self,
        unet_kwargs,        # UNet1D arguments (num_ws, w_dim, base_channels, channel_mults).
        schedule_kwargs,    # DiffusionSchedule arguments (num_timesteps, schedule, variance).
    ):
        super().__init__()
        self.denoiser = UNet1D(**unet_kwargs)
        self.schedule = DiffusionSchedule(**schedule_kwargs)
        self.normalizer = LatentNormalizer(self.denoiser.num_ws, self.denoiser.w_dim)

    @property
    def latent_shape(self) -> list:
        return [self.denoiser.num_ws, self.denoiser.w_dim]

    def seed_noise(self, seeds, device='cpu') -> torch.Tensor:
        """The reverse-process noise `[T, len(seeds), num_ws, w_dim]`, one torch.Generator per seed."""
        per_seed = [torch.randn(self.schedule.noise_shape(self.latent_shape),
            generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
        return torch.stack(per_seed, dim=1).to(device)

    @torch.no_grad()
    def sample_normalized(self, noise: torch.Tensor) -> torch.Tensor:
        """Standardised samples `[N, num_ws, w_dim]` from reverse-process noise `[T, N, num_ws, w_dim]`."""
        misc.assert_shape(noise, [self.schedule.num_timesteps, None] + self.latent_shape)
        return self.schedule.sample(self.denoiser, noise)

    @torch.no_grad()
    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        """Raw W+ samples `[N, num_ws, w_dim]` from reverse-process noise `[T, N, num_ws, w_dim]`."""
        return self.normalizer.denormalize(self.sample_normalized(noise))

    @torch.no_grad()
    def sample_seeds(self, seeds, batch_size: int = 256, device='cpu') -> torch.Tensor:
        """Raw W+ samples `[len(seeds), num_ws, w_dim]`; sample i depends only on seeds[i]."""
        seeds = list(seeds)
        parts = [self.sample(self.seed_noise(seeds[i : i + batch_size], device))
            for i in range(0, len(seeds), batch_size)]
        return torch.cat(parts) if parts else torch.zeros([0] + self.latent_shape, device=device)

#----------------------------------------------------------------------------

def save_sampler_snapshot(path: str, sampler: LatentSampler, source_sha256: str, mix_alpha: float,
        mix_first_layer: int, options: dict) -> None:
    """Write the snapshot atomically: weights, mu/sigma, the source pickle's SHA-256, the mixing
    settings used at generation, and the run's options (a JSON-able dict, for the record)."""
    data = dict(
        format=SNAPSHOT_FORMAT,
        unet_kwargs=sampler.denoiser.kwargs(),
        schedule_kwargs=sampler.schedule.kwargs(),
        denoiser_state={k: v.detach().cpu() for k, v in sampler.denoiser.state_dict().items()},
        latent_mean=sampler.normalizer.mean.detach().cpu(),
        latent_std=sampler.normalizer.std.detach().cpu(),
        source_sha256=str(source_sha256),
        mix_alpha=float(mix_alpha),
        mix_first_layer=int(mix_first_layer),
        options=options,
    )
    with dnnlib.util.atomic_write_path(path, durable=True) as tmp:
        torch.save(data, tmp)

def load_sampler_snapshot(path: str, flag: str = '--sampler') -> tuple:
    """(LatentSampler in eval mode, snapshot dict without the weights); SamplerSnapshotError on a bad file."""
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise SamplerSnapshotError(f"{flag}: file not found: '{path}'") from None
    except Exception as err:
        raise SamplerSnapshotError(f"{flag}: '{path}' is not a sampler snapshot ({type(err).__name__}); "
            f'pass the .pt file adapt_blackbox.py printed') from None
    if not isinstance(data, dict) or data.get('format') != SNAPSHOT_FORMAT:
        raise SamplerSnapshotError(f"{flag}: '{path}' is not a sampler snapshot of format {SNAPSHOT_FORMAT!r}; "
            f'pass the .pt file adapt_blackbox.py printed')
    try:
        schedule_kwargs = dict(data['schedule_kwargs'])
        schedule_kwargs.setdefault('variance', LEGACY_STEP_VARIANCE)
        sampler = LatentSampler(dict(data['unet_kwargs']), schedule_kwargs)
        sampler.denoiser.load_state_dict(data['denoiser_state'])
        sampler.normalizer.mean.copy_(data['latent_mean'])
        sampler.normalizer.std.copy_(data['latent_std'])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise SamplerSnapshotError(f"{flag}: '{path}' is damaged ({type(err).__name__}: "
            f'{str(err).splitlines()[0] if str(err) else ""}); re-run adapt_blackbox.py') from None
    info = {k: v for k, v in data.items() if k != 'denoiser_state'}
    return sampler.eval().requires_grad_(False), info

#----------------------------------------------------------------------------

def check_fits_generator(info: dict, G: torch.nn.Module, source_sha256: str, flag: str = '--sampler') -> None:
    """SamplerSnapshotError unless the snapshot was trained for this generator (hash and latent shape)."""
    if info.get('source_sha256') != source_sha256:
        raise SamplerSnapshotError(f'{flag}: the sampler was trained for a different source network '
            f'(SHA-256 {str(info.get("source_sha256"))[:12]}..., --network has {source_sha256[:12]}...); '
            f'pass the --network it was adapted from')
    shape = [info['unet_kwargs']['num_ws'], info['unet_kwargs']['w_dim']]
    if shape != [G.synthesis.num_ws, G.w_dim]:
        raise SamplerSnapshotError(f'{flag}: sampler latents are {shape}, the generator takes '
            f'[{G.synthesis.num_ws}, {G.w_dim}]')

def mix_settings(info: dict, num_ws: int) -> tuple:
    """(alpha, first_layer) stored in a snapshot's info."""
    alpha = float(info.get('mix_alpha', 0.0))
    first = info.get('mix_first_layer')
    return alpha, mixing.default_first_layer(num_ws) if first is None else int(first)

#----------------------------------------------------------------------------
