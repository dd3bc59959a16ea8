"""Tiny expanded snapshots built by the tests (16 px, w_dim 8), saved in our pickle format.

Used by test_generate_aligned.py, test_generate_mystyle.py and test_traverse.py.
"""

import copy

import torch

from tiny_nets import tiny_discriminator, tiny_generator
from training.snapshot_io import save_network_pkl

W_DIM = 8


def toy_expansion_cfg(dims_and_transforms) -> dict:
    """An expansion config of Transform tasks: [(dim, transform name), ...]."""
    return {'tasks': [{'type': 'Transform', 'dimension': dim, 'args': {'transform': name}}
                      for dim, name in dims_and_transforms]}


def save_toy_snapshot(path, c_dim: int = 0, tasks=((7, 'grayscale'),), subspace_distance: float = 5.0,
                      seed: int = 0, expansion_cfg='auto') -> dict:
    """Write a tiny expanded snapshot to `path` and return the saved dict.

    The basis is a random orthonormal matrix (QR of a Gaussian) and `w_avg` is random, so the
    base projection and its mean term both matter. `expansion_cfg='auto'` builds a config of
    Transform tasks from `tasks`; None stores none.
    """
    G = tiny_generator(W_DIM, c_dim=c_dim, channel_base=64, channel_max=8, seed=seed)
    D = tiny_discriminator(c_dim=c_dim, channel_base=64, channel_max=8)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn([W_DIM]))
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    basis = torch.linalg.qr(torch.randn([W_DIM, W_DIM], dtype=torch.float64))[0].to(torch.float32)
    data = dict(training_set_kwargs=None,
                expansion_cfg=toy_expansion_cfg(tasks) if expansion_cfg == 'auto' else expansion_cfg,
                latent_basis=basis, repurposed_dims=torch.tensor([dim for dim, _ in tasks], dtype=torch.int32),
                subspace_distance=float(subspace_distance), G=G, D=D, G_ema=G_ema, augment_pipe=None)
    save_network_pkl(data, path)
    return data
