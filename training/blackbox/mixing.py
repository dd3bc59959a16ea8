"""Style mixing of sampled latents with random source latents (paper Sec. 3, "Losses"): on the
later (style) layers only, w_hat' = (1 - alpha) w_hat + alpha w, where w = G.mapping(z) is a random
latent of the source generator. The early layers, which carry the semantics, are left alone.

The paper's value of alpha did not survive in our copy of the text; DEFAULT_ALPHA is our choice
(small: a little style variety without pulling samples back to the source distribution).
"""

import torch

from torch_utils import misc

#----------------------------------------------------------------------------

DEFAULT_ALPHA = 0.1     # Weight of the random source latent on the mixed layers.

def default_first_layer(num_ws: int) -> int:
    """First mixed layer when none is given: the later half of the layers (9 of 18 at 1024 px)."""
    return num_ws // 2

def mix_styles(ws: torch.Tensor, w_source: torch.Tensor, alpha: float, first_layer: int) -> torch.Tensor:
    """Mix W+ latents `[N, num_ws, w_dim]` with source W latents `[N, w_dim]` on layers >= first_layer.

    alpha = 0 returns `ws` unchanged (the same tensor); gradients flow to `ws` (not to w_source's
    producer, which the caller draws without gradients).
    """
    misc.assert_shape(w_source, [ws.shape[0], ws.shape[2]])
    if not 0 <= alpha <= 1:
        raise ValueError(f'mix_styles: alpha must be in [0, 1], got {alpha}')
    if not 0 <= first_layer <= ws.shape[1]:
        raise ValueError(f'mix_styles: first_layer must be in [0, {ws.shape[1]}], got {first_layer}')
    if alpha == 0:
        return ws
    mask = torch.zeros([1, ws.shape[1], 1], dtype=ws.dtype, device=ws.device)
    mask[:, first_layer:] = alpha
    return (1 - mask) * ws + mask * w_source[:, None, :]

@torch.no_grad()
def source_latents(G_mapping: torch.nn.Module, num: int, generator: torch.Generator, device) -> torch.Tensor:
    """`num` random W latents `[num, w_dim]` of the source generator (z ~ N(0, I), no label, psi 1)."""
    z = torch.randn([num, G_mapping.z_dim], generator=generator, device=device)
    c = torch.zeros([num, G_mapping.c_dim], device=device)
    return G_mapping(z, c, skip_w_avg_update=True)[:, 0]

#----------------------------------------------------------------------------
