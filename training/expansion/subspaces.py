"""Base and repurposed subspaces of W (paper Sec. 3.1-3.2, Eq. 1-3).

Notation (paper and spec section 7): `B` the latent basis (columns are directions), `R` the
repurposed dims in task order, `K` all other dims in increasing order, `B_R = B[:, R]`,
`B_K = B[:, K]`, `m` the mean latent (`w_avg`), `s` the subspace distance.

- Base subspace (Eq. 1): `base(w) = w B_K B_K^T + (m B_R) B_R^T`, i.e. keep the latent's
  coordinates along the base directions and take the repurposed ones from the mean.
- Repurposed subspace of task k (Eq. 2): the base subspace shifted by `s * B_R[:, k]`.
- Projection onto it (Eq. 3): `base(w) + s * B_R[:, k]^T`.

Latents are row vectors: W `[N, w_dim]` or W+ `[N, num_ws, w_dim]` (any leading shape works,
the last axis is `w_dim`). Nothing here modifies the caller's tensors.
"""

import numbers

import torch

from torch_utils import misc
from training.expansion.constants import SUBSPACE_DISTANCE

#----------------------------------------------------------------------------

def _as_index_tensor(dims, w_dim: int, what: str) -> torch.Tensor:
    """A 1-D int64 CPU tensor of distinct indices in [0, w_dim)."""
    dims = torch.as_tensor(dims).to(device='cpu', dtype=torch.int64).reshape(-1)
    if dims.numel() > 0 and (dims.min() < 0 or dims.max() >= w_dim):
        raise ValueError(f'{what} must lie in [0, {w_dim - 1}], got {dims.tolist()}')
    if len(set(dims.tolist())) != dims.numel():
        raise ValueError(f'{what} must be distinct, got {dims.tolist()}')
    return dims

#----------------------------------------------------------------------------

class LatentSubspaces(torch.nn.Module):
    """The base subspace and one repurposed subspace per task, for one latent basis.

    A module only so that `.to(device)` moves the basis; it has no parameters. Its buffers are
    not persistent: the snapshot stores `latent_basis`, `repurposed_dims` and
    `subspace_distance` under their own keys.
    """

    def __init__(self,
        basis,                      # [w_dim, w_dim] orthonormal basis, columns are directions.
        repurposed_dims,            # K dims, in task order: task k uses basis column repurposed_dims[k].
        subspace_distance = SUBSPACE_DISTANCE,  # Default step s along a repurposed direction.
        base_dims = None,           # Base dims; None = every dim not repurposed, ascending (official).
    ):
        super().__init__()
        basis = torch.as_tensor(basis)
        if basis.ndim != 2 or basis.shape[0] != basis.shape[1]:
            raise ValueError(f'latent basis must be a square [w_dim, w_dim] matrix, got shape {list(basis.shape)}')
        w_dim = basis.shape[0]
        repurposed = _as_index_tensor(repurposed_dims, w_dim, 'repurposed_dims')
        if base_dims is None:
            is_repurposed = torch.zeros(w_dim, dtype=torch.bool)
            is_repurposed[repurposed] = True
            base = torch.arange(w_dim)[~is_repurposed]
        else:
            base = _as_index_tensor(base_dims, w_dim, 'base_dims')
        self.w_dim = int(w_dim)
        self.subspace_distance = float(subspace_distance)
        basis = basis.to(torch.float32)
        self.register_buffer('basis', basis.clone(), persistent=False)           # [w_dim, w_dim]
        self.register_buffer('repurposed_dims', repurposed, persistent=False)    # [K]
        self.register_buffer('base_dims', base, persistent=False)                # [w_dim - K]
        self.register_buffer('B_R', basis[:, repurposed].contiguous(), persistent=False)  # [w_dim, K]
        self.register_buffer('B_K', basis[:, base].contiguous(), persistent=False)        # [w_dim, w_dim - K]

    @property
    def num_repurposed(self) -> int:
        """K, the number of repurposed directions (= tasks)."""
        return int(self.repurposed_dims.numel())

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, repurposed_dims={self.repurposed_dims.tolist()}, '
            f'subspace_distance={self.subspace_distance:g}')

    def direction(self, k_index: int) -> torch.Tensor:
        """Task k's repurposed direction `B_R[:, k]`, shape [w_dim]."""
        return self.B_R[:, k_index]

    def project_base(self, w: torch.Tensor, mean: torch.Tensor = None) -> torch.Tensor:
        """Project latents onto the base subspace (Eq. 1); same shape as `w`.

        Args:
            w:    W [N, w_dim] or W+ [N, num_ws, w_dim] latents (any leading shape).
            mean: [w_dim] mean latent (the mapping's `w_avg`), whose repurposed coordinates the
                  result takes; None keeps them at 0 (the official call without `mean`).
        """
        misc.assert_shape(w, [*([None] * (w.ndim - 1)), self.w_dim])
        B_K = self.B_K.to(w.dtype)
        base = (w @ B_K) @ B_K.mT                                   # Eq. 1: w B_K B_K^T
        if mean is not None:
            misc.assert_shape(mean, [self.w_dim])
            B_R = self.B_R.to(w.dtype)
            base = base + (mean.to(w.dtype) @ B_R) @ B_R.mT         # Eq. 1: + (m B_R) B_R^T
        return base

    def edit(self, base: torch.Tensor, k_index, step=None) -> torch.Tensor:
        """Move base-subspace latents into a repurposed subspace (Eq. 2): `base + step * B_R[:, k]`.

        Args:
            base:    base latents, W [N, w_dim] or W+ [N, num_ws, w_dim].
            k_index: which repurposed direction: an int / 0-d tensor (all samples), or an int64 tensor [N]
                     with one task index per sample (W or W+ input with leading dim N).
            step:    the distance; a number, or a tensor [N] of per-sample distances.
                     None = `subspace_distance`. Any value is allowed (traversal), 0 gives `base`.
        """
        misc.assert_shape(base, [*([None] * (base.ndim - 1)), self.w_dim])
        step = self.subspace_distance if step is None else step
        B_R = self.B_R.to(base.dtype)
        if isinstance(k_index, numbers.Integral) or (isinstance(k_index, torch.Tensor) and k_index.ndim == 0):
            offset = B_R[:, int(k_index)]                                # [w_dim]
            if isinstance(step, torch.Tensor) and step.ndim == 1:
                step = step.reshape(-1, *([1] * (base.ndim - 1)))
            return base + step * offset                             # Eq. 2
        k_index = torch.as_tensor(k_index, device=base.device)
        misc.assert_shape(k_index, [base.shape[0]])
        offset = B_R[:, k_index].mT                                 # [N, w_dim]
        if isinstance(step, torch.Tensor) and step.ndim == 1:
            offset = offset * step.to(base.dtype)[:, None]
        else:
            offset = offset * step
        offset = offset.reshape(base.shape[0], *([1] * (base.ndim - 2)), self.w_dim)
        return base + offset                                        # Eq. 2, per sample

    def project_repurposed(self, w: torch.Tensor, k_index, mean: torch.Tensor = None, step=None) -> torch.Tensor:
        """Orthogonal projection onto task k's repurposed subspace (Eq. 3)."""
        return self.edit(self.project_base(w, mean), k_index, step) # Eq. 3: base(w) + s v_k

    def edits_all(self, w: torch.Tensor, mean: torch.Tensor = None, steps=None):
        """Project onto the base subspace and step along every repurposed direction.

        Args:
            w:     W [N, w_dim] or W+ [N, num_ws, w_dim] latents.
            mean:  [w_dim] mean latent, as in `project_base`.
            steps: a number or a sequence / 1-D tensor of S distances; None = [subspace_distance].

        Returns:
            `(base, edits)`: `base` like `w`; `edits` [S, K, *w.shape] with
            `edits[s, k] = base + steps[s] * B_R[:, k]` (the official output layout).
        """
        base = self.project_base(w, mean)
        steps = self.subspace_distance if steps is None else steps
        steps = torch.as_tensor(steps, dtype=base.dtype, device=base.device).reshape(-1)     # [S]
        ones = [1] * (w.ndim - 1)
        offsets = self.B_R.to(base.dtype).mT.reshape(1, self.num_repurposed, *ones, self.w_dim) # [1, K, 1.., w_dim]
        edits = base.unsqueeze(0).unsqueeze(0) + steps.reshape(-1, 1, *ones, 1) * offsets   # Eq. 2 for every (s, k)
        return base, edits

    def compose(self, base: torch.Tensor, weights) -> torch.Tensor:
        """Compose several domains: `base + weights @ B_R^T` (paper Sec. 4.4).

        Args:
            base:    W [N, w_dim] or W+ [N, num_ws, w_dim] base latents.
            weights: [K] (same mix for every sample) or [N, K] (one mix per sample) distances
                     along each repurposed direction, in task order.
        """
        misc.assert_shape(base, [*([None] * (base.ndim - 1)), self.w_dim])
        weights = torch.as_tensor(weights, dtype=base.dtype, device=base.device)
        misc.assert_shape(weights, [*([None] * (weights.ndim - 1)), self.num_repurposed])
        offset = weights @ self.B_R.to(base.dtype).mT               # [..., w_dim]
        if weights.ndim == 2 and base.ndim == 3:
            offset = offset.unsqueeze(1)                             # one mix per sample, all ws
        return base + offset

#----------------------------------------------------------------------------

def project_to_subspaces(latent, basis, repurposed_dims, base_dims=None, step_size=None, mean=None):
    """Functional form with the official signature and outputs (used for parity).

    Unlike the official function, the caller's tensor is never modified (the official code
    unsqueezes a 2-D input in place).

    Args:
        latent:          W [N, w_dim] or W+ [N, num_ws, w_dim].
        basis:           [w_dim, w_dim] basis, columns are directions.
        repurposed_dims: K repurposed dims in task order.
        base_dims:       base dims; None = all others ascending.
        step_size:       None; a number or 1-D sequence of S steps; or a 3-D tensor
                         [a, b, K] of joint steps (one weight per repurposed direction).
        mean:            [w_dim] mean latent (`w_avg`) or None.

    Returns:
        `(base, edits)`: `base` like `latent`; `edits` None without `step_size`,
        [S, K, *latent.shape] for 0-D/1-D steps, [a, b, *latent.shape] for joint steps.
    """
    subspaces = LatentSubspaces(basis, repurposed_dims, base_dims=base_dims).to(latent.device)
    if step_size is None:
        return subspaces.project_base(latent, mean), None
    step = torch.as_tensor(step_size, dtype=latent.dtype, device=latent.device)
    if step.ndim <= 1:
        return subspaces.edits_all(latent, mean, step)
    if step.ndim == 3:
        misc.assert_shape(step, [None, None, subspaces.num_repurposed])
        base = subspaces.project_base(latent, mean)
        offsets = step @ subspaces.B_R.to(latent.dtype).mT                 # [a, b, w_dim]
        offsets = offsets.reshape(*step.shape[:2], *([1] * (latent.ndim - 1)), subspaces.w_dim)
        return base, base.unsqueeze(0).unsqueeze(0) + offsets              # joint steps: base + step @ B_R^T
    raise ValueError(f'step_size must be a number, a 1-D sequence of steps or a 3-D [a, b, K] tensor, '
        f'got shape {list(step.shape)}')

#----------------------------------------------------------------------------
