"""Measuring and showing an expanded generator: aligned renders, the task-error matrix and the
labelled per-snapshot grid (base row, then one row per domain)."""

import numpy as np
import torch

from torch_utils import image_utils
from torch_utils import misc
from training.subspaces import LatentSubspaces

# ---------------------------------------------------------------------------------------------


def broadcast_ws(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """W `[N, w_dim]` -> W+ `[N, num_ws, w_dim]`."""
    misc.assert_shape(w, [None, None])
    return w.unsqueeze(1).repeat(1, num_ws, 1)


@torch.no_grad()
def render(G_synthesis: torch.nn.Module, w: torch.Tensor, noise_mode: str = 'const',
           batch_size: int = 16) -> torch.Tensor:
    """Images `[N, C, H, W]` of W latents `[N, w_dim]` (broadcast to every layer), in chunks."""
    chunks = [G_synthesis(broadcast_ws(part, G_synthesis.num_ws), noise_mode=noise_mode)
              for part in w.split(batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def task_latents(task, G_mapping: torch.nn.Module, n: int, seed: int = 0):
    """`(w [M, w_dim], context)` of a task's evaluation latents (z mapped with psi 1, no w_avg update)."""
    batch = task.eval_latents(n, seed)
    if batch.w is not None:
        return batch.w.float(), batch.context
    c = torch.zeros([batch.z.shape[0], G_mapping.c_dim], device=batch.z.device)
    return G_mapping(batch.z, c, skip_w_avg_update=True)[:, 0], batch.context


@torch.no_grad()
def error_matrix(G_synthesis: torch.nn.Module, G_mapping: torch.nn.Module, subspaces: LatentSubspaces,
                 tasks: list, w_avg: torch.Tensor, n: int = 64, seed: int = 0) -> np.ndarray:
    """`E[k, j]` = mean error of task k on renders from domain j's repurposed subspace.

    Task k's own evaluation latents are projected onto the base subspace with `w_avg` (the
    source's stored average, so the measurement does not move with training), rendered with
    `noise_mode='const'`, and stepped by `subspace_distance` along direction j. The diagonal is
    each domain's own error; no leakage means each row is lowest on its diagonal.
    """
    E = np.zeros([len(tasks), len(tasks)])
    for k, task in enumerate(tasks):
        w, context = task_latents(task, G_mapping, n, seed)
        base_w = subspaces.project_base(w, w_avg)                              # Eq. 1
        base_img = render(G_synthesis, base_w)
        for j in range(len(tasks)):
            edit_img = render(G_synthesis, subspaces.edit(base_w, j))          # Eq. 2
            E[k, j] = float(task.error(context, base_img, edit_img).mean())
    return E


@torch.no_grad()
def aligned_rows(G_synthesis: torch.nn.Module, subspaces: LatentSubspaces, w: torch.Tensor,
                 w_avg: torch.Tensor, noise_mode: str = 'const') -> list[torch.Tensor]:
    """Renders of the same latents on the base subspace, then on each repurposed subspace."""
    base_w = subspaces.project_base(w, w_avg)
    rows = [render(G_synthesis, base_w, noise_mode)]
    for k in range(subspaces.num_repurposed):
        rows.append(render(G_synthesis, subspaces.edit(base_w, k), noise_mode))
    return rows


def save_aligned_grid(G_synthesis: torch.nn.Module, G_mapping: torch.nn.Module, subspaces: LatentSubspaces,
                      task_names: list[str], path: str, num_columns: int = 8, seed: int = 0) -> None:
    """Labelled grid: fixed latents on the base subspace (row 'base') and on each domain."""
    device = subspaces.basis.device
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_columns, G_mapping.z_dim)).float().to(device)
    c = torch.zeros([num_columns, G_mapping.c_dim], device=device)
    with torch.no_grad():
        w = G_mapping(z, c, skip_w_avg_update=True)[:, 0]
    rows = aligned_rows(G_synthesis, subspaces, w, G_mapping.w_avg)
    grid = image_utils.make_grid([image_utils.to_uint8(r) for r in rows], row_labels=['base'] + list(task_names))
    image_utils.save_png_atomic(grid, path)
