"""Per-domain fit of theta: Adam on the pixel loss against a known transform of the source.

This is the per-domain optimisation that the encoder replaces by one forward pass; what it
reaches bounds what any encoder of the same parameterisation can reach.
"""

import dataclasses
import time

import torch

from torch_utils import misc
from training.encoder import domains

#----------------------------------------------------------------------------

@dataclasses.dataclass
class FitResult:
    theta:   torch.Tensor   # [P], detached.
    losses:  list           # Training loss per step.
    seconds: float          # Wall-clock time of the optimisation.

def source_latents(G_mapping: torch.nn.Module, num: int, seed: int, num_ws: int) -> torch.Tensor:
    """W+ latents `[num, num_ws, w_dim]` of `z ~ N(0, I)` drawn with `seed` (psi 1)."""
    z = torch.randn([num, G_mapping.z_dim], generator=torch.Generator().manual_seed(int(seed)))
    with torch.no_grad():
        ws = G_mapping(z.to(next(G_mapping.parameters()).device), None)
    misc.assert_shape(ws, [num, num_ws, None])
    return ws

@torch.no_grad()
def render_source(param, ws: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Source images (identity theta) of W+ latents, in chunks."""
    theta_id = param.identity(ws.device)
    return torch.cat([param.render(part, theta_id) for part in ws.split(batch_size)])

def fit_domain(param, ws: torch.Tensor, source_img: torch.Tensor, transform, steps: int = 300,
               batch_size: int = 16, lr: float = 0.02, seed: int = 0) -> FitResult:
    """theta minimising the mean of (G_theta(w) - T(G(w)))^2 over `ws` (Adam, minibatches).

    Args:
        param:      a Parameterization bound to the frozen synthesis network.
        ws:         training latents `[N, num_ws, w_dim]`.
        source_img: their source renders `[N, C, H, W]` (identity theta).
        transform:  T, images -> images (the ground-truth domain).
        steps:      Adam steps.
        batch_size: latents per step.
        lr:         Adam learning rate.
        seed:       minibatch order.
    """
    misc.assert_shape(source_img, [ws.shape[0], None, None, None])
    target = transform(source_img)
    theta = param.identity(ws.device).clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    losses, start = [], time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(ws.shape[0], [min(batch_size, ws.shape[0])], generator=gen)
        loss = (param.render(ws[idx], theta) - target[idx]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return FitResult(theta=theta.detach(), losses=losses, seconds=time.perf_counter() - start)

@torch.no_grad()
def evaluate_theta(param, theta: torch.Tensor, ws: torch.Tensor, source_img: torch.Tensor, transform,
                   batch_size: int = 32) -> dict:
    """{'error': mean squared error, 'r2': R^2} of domain theta against T(source) on held-out latents."""
    target = transform(source_img)
    rendered = torch.cat([param.render(part, theta) for part in ws.split(batch_size)])
    return dict(error=domains.mean_squared_error(rendered, target), r2=domains.r_squared(rendered, target))

#----------------------------------------------------------------------------
