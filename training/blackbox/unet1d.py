"""The latent sampler's denoiser: a 1-D U-Net over W+ latents `[N, num_ws, w_dim]`, the num_ws
layer latents taken as channels and w_dim as the length (paper Sec. 3, "Latent space sampler").
It maps a noisy latent x_t and its step t to an estimate of the clean latent x0.

The paper gives only the parameter count (about 440K for 18 x 512 latents); the layout below
(residual blocks with GroupNorm and SiLU, a sinusoidal step embedding added in every block,
stride-2 convolutions down, nearest upsampling up, skip connections by concatenation) is the
common DDPM U-Net written for one spatial axis. The defaults give `UNet1D(18, 512)` 430K
parameters, the paper's size (the count barely depends on num_ws and not at all on w_dim).
"""

import math

import torch
import torch.nn.functional as F

from torch_utils import misc

#----------------------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding `[N, dim]` of integer steps `t` `[N]` (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, [0, dim % 2])

def _groups(channels: int) -> int:
    """GroupNorm groups: 8 where the width allows it, else the largest divisor <= 8."""
    return max(g for g in range(1, 9) if channels % g == 0)

class ResBlock1D(torch.nn.Module):
    """GroupNorm-SiLU-Conv twice, the step embedding added in between, residual connection."""

    def __init__(self,
        in_channels,    # Input channels.
        out_channels,   # Output channels.
        emb_channels,   # Width of the step embedding.
    ):
        super().__init__()
        self.norm1 = torch.nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = torch.nn.Conv1d(in_channels, out_channels, 3, padding=1)
        self.emb = torch.nn.Linear(emb_channels, out_channels)
        self.norm2 = torch.nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = torch.nn.Conv1d(out_channels, out_channels, 3, padding=1)
        self.skip = torch.nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else torch.nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h

#----------------------------------------------------------------------------

class UNet1D(torch.nn.Module):
    """x_t `[N, num_ws, w_dim]`, t `[N]` -> x0_hat `[N, num_ws, w_dim]`."""

    def __init__(self,
        num_ws,                     # Input/output channels: latents per sample.
        w_dim,                      # Length: width of one latent; divisible by 2^(len(channel_mults) - 1).
        base_channels = 24,         # Channels at the first (full-length) level.
        channel_mults = (1, 2, 4),  # Channel multiplier per level; each level after the first halves the length.
    ):
        super().__init__()
        self.num_ws, self.w_dim = int(num_ws), int(w_dim)
        self.base_channels = int(base_channels)
        self.channel_mults = tuple(int(m) for m in channel_mults)
        down_factor = 2 ** (len(self.channel_mults) - 1)
        if self.w_dim % down_factor != 0:
            raise ValueError(f'UNet1D: w_dim={self.w_dim} must be divisible by {down_factor} '
                f'for {len(self.channel_mults)} levels (channel_mults={self.channel_mults})')
        emb_ch = 4 * self.base_channels
        self.emb = torch.nn.Sequential(torch.nn.Linear(self.base_channels, emb_ch), torch.nn.SiLU(),
            torch.nn.Linear(emb_ch, emb_ch))
        self.input = torch.nn.Conv1d(self.num_ws, self.base_channels, 7, padding=3)
        widths = [self.base_channels * m for m in self.channel_mults]
        self.down_blocks, self.downsample = torch.nn.ModuleList(), torch.nn.ModuleList()
        ch = self.base_channels
        for level, width in enumerate(widths):
            self.down_blocks.append(ResBlock1D(ch, width, emb_ch))
            last = level == len(widths) - 1
            self.downsample.append(torch.nn.Identity() if last else torch.nn.Conv1d(width, width, 3, stride=2, padding=1))
            ch = width
        self.mid1 = ResBlock1D(ch, ch, emb_ch)
        self.mid2 = ResBlock1D(ch, ch, emb_ch)
        self.up_blocks, self.upsample = torch.nn.ModuleList(), torch.nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            self.up_blocks.append(ResBlock1D(ch + width, width, emb_ch))
            self.upsample.append(torch.nn.Conv1d(width, width, 3, padding=1) if level > 0 else torch.nn.Identity())
            ch = width
        self.out_norm = torch.nn.GroupNorm(_groups(ch), ch)
        self.output = torch.nn.Conv1d(ch, self.num_ws, 1)

    def extra_repr(self):
        return (f'num_ws={self.num_ws}, w_dim={self.w_dim}, base_channels={self.base_channels}, '
            f'channel_mults={self.channel_mults}')

    def kwargs(self) -> dict:
        """Constructor arguments (stored in the sampler snapshot)."""
        return dict(num_ws=self.num_ws, w_dim=self.w_dim, base_channels=self.base_channels,
            channel_mults=list(self.channel_mults))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        misc.assert_shape(x, [None, self.num_ws, self.w_dim])
        misc.assert_shape(t, [x.shape[0]])
        emb = self.emb(timestep_embedding(t, self.base_channels))          # [N, emb_ch]
        h = self.input(x)                                                   # [N, base, w_dim]
        skips = []
        for block, down in zip(self.down_blocks, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for block, up in zip(self.up_blocks, self.upsample):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if not isinstance(up, torch.nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode='nearest'))
        return self.output(F.silu(self.out_norm(h)))                        # [N, num_ws, w_dim]

#----------------------------------------------------------------------------
