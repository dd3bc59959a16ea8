"""The one W -> W+ broadcast and the one chunked render used by the expansion wing.

Domain expansion moves single W latents (Eq. 1-3 act on `[N, w_dim]`); the synthesis network
takes one latent per layer, so every layer gets the same W (`[N, num_ws, w_dim]`).
"""

import torch

from torch_utils import misc

# ---------------------------------------------------------------------------------------------


def broadcast_ws(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """W `[N, w_dim]` -> W+ `[N, num_ws, w_dim]` (every layer the same latent); W+ passes through.

    Differentiable (the expansion loss trains through it).
    """
    if w.ndim == 3:
        misc.assert_shape(w, [None, num_ws, None])
        return w
    misc.assert_shape(w, [None, None])
    return w.unsqueeze(1).repeat(1, num_ws, 1)


@torch.no_grad()
def render(G_synthesis: torch.nn.Module, w: torch.Tensor, noise_mode: str = 'const',
           batch_size: int = 16) -> torch.Tensor:
    """Images `[N, C, H, W]` of W `[N, w_dim]` (broadcast to every layer) or W+ latents, in
    chunks of `batch_size`; `noise_mode='const'` by default so measurements are deterministic."""
    chunks = [G_synthesis(broadcast_ws(part, G_synthesis.num_ws), noise_mode=noise_mode)
              for part in w.split(batch_size)]
    return torch.cat(chunks)
