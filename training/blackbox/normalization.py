"""Latent standardisation (paper Sec. 4.1, training details): w_hat = (w - mu) / sigma, with mu and
sigma per layer and channel, from the inverted target set. Stored with the sampler."""

import torch

from torch_utils import misc

#----------------------------------------------------------------------------

MIN_STD = 1e-6  # Floor of sigma: a coordinate constant over the targets must not divide by zero.

class LatentNormalizer(torch.nn.Module):
    """Holds mu and sigma `[num_ws, w_dim]` as buffers; maps raw W+ latents to and from the
    standardised space the diffusion model works in."""

    def __init__(self,
        num_ws,     # Latents per sample (synthesis layers).
        w_dim,      # Width of one latent.
    ):
        super().__init__()
        self.num_ws = int(num_ws)
        self.w_dim = int(w_dim)
        self.register_buffer('mean', torch.zeros([self.num_ws, self.w_dim]))
        self.register_buffer('std', torch.ones([self.num_ws, self.w_dim]))

    def extra_repr(self):
        return f'num_ws={self.num_ws}, w_dim={self.w_dim}'

    @torch.no_grad()
    def fit(self, ws: torch.Tensor) -> 'LatentNormalizer':
        """Set mu and sigma from latents `[N, num_ws, w_dim]` (N >= 2); returns self."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        if ws.shape[0] < 2:
            raise ValueError(f'LatentNormalizer.fit: needs at least 2 latents, got {ws.shape[0]}')
        ws = ws.to(torch.float64)
        self.mean.copy_(ws.mean(dim=0))
        self.std.copy_(ws.std(dim=0).clamp(min=MIN_STD))
        return self

    def normalize(self, ws: torch.Tensor) -> torch.Tensor:
        """Raw `[N, num_ws, w_dim]` -> standardised."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        return (ws - self.mean) / self.std

    def denormalize(self, ws_hat: torch.Tensor) -> torch.Tensor:
        """Standardised `[N, num_ws, w_dim]` -> raw W+ latents."""
        misc.assert_shape(ws_hat, [None, self.num_ws, self.w_dim])
        return ws_hat * self.std + self.mean

#----------------------------------------------------------------------------
