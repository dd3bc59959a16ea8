"""The latent basis of domain expansion (paper Sec. 3.1): SeFA directions of W.

SeFA treats the style affines that read W as one linear map and takes its right singular
vectors as an orthonormal basis of W. Directions with small singular values barely change the
image ("dormant"); domain expansion repurposes the last ones. The basis is a `[w_dim, w_dim]`
float32 matrix whose *columns* are the directions, sorted by decreasing singular value.

Which basis a run uses (see `resolve_latent_basis`): a snapshot's stored `latent_basis` always
wins (it is what the expanded generator was trained with; recomputing it from the changed
weights would give other directions), else `--latent_factors_path`, else `factorize(G_ema)`.
"""

import os

import torch

import dnnlib
from torch_utils import misc
from training import networks_stylegan3

#----------------------------------------------------------------------------
# Tolerance of the orthonormality check on loaded bases: max |B^T B - I|. A float32 SVD of a
# 512-d map is orthonormal to about 1e-5; 1e-3 only rejects matrices that are not bases at all.

ORTHONORMAL_ATOL = 1e-3

#----------------------------------------------------------------------------

def is_sefa_weight(name: str) -> bool:
    """Does the official SeFA selection keep the parameter `name`?

    The official rule keeps names containing both 'affine' and 'weight' whose name contains
    'b4' or does not contain 'torgb'. So every modulated-conv affine is kept, the ToRGB affines
    are dropped, except the ToRGB affine of the 4x4 block: its name contains 'b4'. This quirk is
    reproduced on purpose, because it changes the basis. No other block name (b8 ... b1024)
    contains the substring 'b4'.
    """
    return ('affine' in name) and ('weight' in name) and ('b4' in name or 'torgb' not in name)

#----------------------------------------------------------------------------

def stylegan3_sefa_weight_names(G: torch.nn.Module) -> set:
    """Parameter names SeFA stacks for a StyleGAN3 generator: the affine of the Fourier input and the
    affines of every SynthesisLayer except the last (ToRGB) one.

    The ToRGB affine is left out as the StyleGAN2 rule leaves out its ToRGB affines (its styles are
    not demodulated and are scaled by 1/sqrt(fan-in), so its rows sit on another scale). The input
    affine (rotation and translation of the Fourier features, [4, w_dim]) is kept: it reads W like
    the others, and without it a direction that only rotates or shifts the whole image would look
    dormant and could be repurposed, moving every base image.
    """
    synthesis = G.synthesis
    kept = ['synthesis.input.affine.weight']
    kept += [f'synthesis.{layer}.affine.weight' for layer in synthesis.layer_names[:-1]]
    return set(kept)


def sefa_weights(G: torch.nn.Module) -> list:
    """The `(name, weight)` pairs that SeFA stacks, in `G.named_parameters()` order (StyleGAN2:
    `is_sefa_weight`; StyleGAN3: `stylegan3_sefa_weight_names`)."""
    if networks_stylegan3.is_stylegan3_synthesis(getattr(G, 'synthesis', None)):
        names = stylegan3_sefa_weight_names(G)
        return [(name, param) for name, param in G.named_parameters() if name in names]
    return [(name, param) for name, param in G.named_parameters() if is_sefa_weight(name)]

#----------------------------------------------------------------------------

def factorize(G: torch.nn.Module) -> torch.Tensor:
    """SeFA basis of W for generator `G` (normally `G_ema`).

    Stacks the selected affine weights (`sefa_weights`, each `[out_features, w_dim]`) along
    dim 0 into `W [rows, w_dim]` and returns the right singular vectors of `W` as the columns
    of a `[w_dim, w_dim]` float32 CPU tensor, ordered by decreasing singular value.

    Computed on the CPU in float32 with LAPACK (`torch.linalg.svd(W, full_matrices=False)`),
    which reproduced the official basis bitwise, signs included; a GPU SVD may flip signs, and a
    sign decides on which side of the base subspace a repurposed subspace lies.
    """
    pairs = sefa_weights(G)
    if len(pairs) == 0:
        raise ValueError('factorize: the generator has no parameter named like "*affine*weight*"; '
            'it does not look like a StyleGAN2 generator (pass G_ema, not G.mapping)')
    W = torch.cat([param.detach().to(device='cpu', dtype=torch.float32) for _name, param in pairs], dim=0)
    rows, w_dim = W.shape
    if rows < w_dim:
        raise ValueError(f'factorize: the stacked affine weights have {rows} rows but w_dim is {w_dim}; '
            f'SeFA needs at least w_dim rows to give a full basis (use --latent_factors_path to supply one)')
    basis = torch.linalg.svd(W, full_matrices=False).Vh.mH # [w_dim, w_dim], columns = directions
    return basis.contiguous()

#----------------------------------------------------------------------------

def check_latent_basis(basis, w_dim: int, what: str) -> torch.Tensor:
    """Validate a basis and return it as a contiguous float32 CPU tensor.

    Args:
        basis: the candidate; must be a `[w_dim, w_dim]` tensor with orthonormal columns.
        w_dim: the generator's W dimensionality.
        what:  where the basis came from, for the error message (e.g. a flag and a path).
    """
    if not isinstance(basis, torch.Tensor):
        raise ValueError(f'{what}: expected a tensor of shape [{w_dim}, {w_dim}], got {type(basis).__name__}; '
            f'save the basis with torch.save(basis_tensor, path)')
    if tuple(basis.shape) != (w_dim, w_dim):
        raise ValueError(f'{what}: latent basis has shape {list(basis.shape)}, but the generator has '
            f'w_dim {w_dim}, so it must be [{w_dim}, {w_dim}]')
    if not (basis.is_floating_point()):
        raise ValueError(f'{what}: latent basis must be a floating-point tensor, got {basis.dtype}')
    basis = basis.detach().to(device='cpu', dtype=torch.float32).contiguous()
    if not torch.isfinite(basis).all():
        raise ValueError(f'{what}: latent basis contains NaN or Inf')
    gram_error = (basis.mT @ basis - torch.eye(w_dim)).abs().max().item()
    if gram_error > ORTHONORMAL_ATOL:
        raise ValueError(f'{what}: latent basis columns are not orthonormal (max |B^T B - I| = {gram_error:.3g} '
            f'> {ORTHONORMAL_ATOL}); pass a basis such as the one saved by save_latent_basis(factorize(G_ema))')
    return basis

#----------------------------------------------------------------------------

def save_latent_basis(basis: torch.Tensor, path: str) -> None:
    """Save a basis with `torch.save` (a plain CPU float32 tensor, loadable with weights_only)."""
    with dnnlib.util.atomic_write_path(path) as tmp:
        torch.save(basis.detach().to(device='cpu', dtype=torch.float32).contiguous(), tmp)

#----------------------------------------------------------------------------

def load_latent_basis(path: str, w_dim: int) -> torch.Tensor:
    """Load and validate a basis saved with `torch.save` (the `--latent_factors_path` file).

    Only tensors are read (`weights_only=True`: no code in the file is executed); the result is
    a `[w_dim, w_dim]` float32 CPU tensor with orthonormal columns, or a `ValueError` naming
    `--latent_factors_path`.
    """
    what = f'--latent_factors_path {path}'
    if not os.path.isfile(path):
        raise ValueError(f'{what}: file not found; give a basis saved with torch.save, or leave the '
            f'option out to compute the SeFA basis from the generator')
    try:
        basis = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err: # torch raises several types (pickle, zip, unsupported globals)
        raise ValueError(f'{what}: cannot be read as a torch.save file of one tensor '
            f'({misc.load_error_summary(err)})') from err
    return check_latent_basis(basis, w_dim, what)

#----------------------------------------------------------------------------

def resolve_latent_basis(G, w_dim: int, snapshot_basis=None, latent_factors_path=None):
    """Pick the basis for a run or tool and say where it came from.

    Precedence: a snapshot's stored `latent_basis` (authoritative for an expanded generator),
    then `--latent_factors_path`, then `factorize(G)`. The result is deterministic (CPU float32
    SVD), so every rank of a multi-process run that calls this gets the same basis.

    Args:
        G:                   the generator to factorize when nothing is stored (normally G_ema).
        w_dim:               the generator's W dimensionality.
        snapshot_basis:      the snapshot's `latent_basis` entry, or None when absent.
        latent_factors_path: the `--latent_factors_path` value, or None.

    Returns:
        `(basis [w_dim, w_dim] float32 CPU, description)`; `description` is one line for the log.
    """
    if snapshot_basis is not None:
        basis = check_latent_basis(snapshot_basis, w_dim, "snapshot key 'latent_basis'")
        note = 'stored latent_basis of the resumed snapshot'
        if latent_factors_path is not None:
            note += f' (--latent_factors_path {latent_factors_path} ignored: a snapshot basis always wins)'
        return basis, note
    if latent_factors_path is not None:
        return load_latent_basis(latent_factors_path, w_dim), f'--latent_factors_path {latent_factors_path}'
    basis = check_latent_basis(factorize(G), w_dim, 'factorize(G_ema)')
    return basis, 'SeFA factorization of G_ema (CPU, float32)'

#----------------------------------------------------------------------------
