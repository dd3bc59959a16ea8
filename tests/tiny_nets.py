"""Tiny networks and snapshot contents built the same way across the tests (16-32 px, a few
channels, CPU): one place for the constructor arguments, so a test's sizes and seeds read at a
glance and its numbers stay the same wherever the builder is used.

Used by test_dormancy.py, test_expansion_loss.py, test_loss.py, test_projector.py,
test_train_cli.py, test_atomic_write.py and expanded_toy.py.
"""

import copy

import torch

from training.networks import Discriminator, Generator


def tiny_generator(w_dim: int = 16, z_dim: int | None = None, c_dim: int = 0, resolution: int = 16,
                   channels: int = 3, mapping_layers: int = 2, channel_base: int = 128, channel_max: int = 16,
                   seed: int | None = None) -> Generator:
    """A small StyleGAN2 generator in training mode, as constructed (the caller picks eval/requires_grad).

    Args:
        w_dim:          width of W (and of Z unless `z_dim` is given).
        z_dim:          width of Z; None: same as `w_dim`.
        c_dim:          conditioning label size (0: unconditional).
        resolution:     output size in pixels (square).
        channels:       output channels.
        mapping_layers: mapping-network depth.
        channel_base:   synthesis channel budget (channels = min(channel_base / res, channel_max)).
        channel_max:    widest synthesis layer.
        seed:           when given, seeds torch's global RNG first (the weights are drawn from it);
                        None draws from the RNG as it stands.
    """
    if seed is not None:
        torch.manual_seed(seed)
    return Generator(z_dim=w_dim if z_dim is None else z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=resolution,
                     img_channels=channels, mapping_kwargs=dict(num_layers=mapping_layers),
                     synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max))


def tiny_discriminator(c_dim: int = 0, resolution: int = 16, channels: int = 3, channel_base: int = 128,
                       channel_max: int = 16, **kwargs) -> Discriminator:
    """A small StyleGAN2 discriminator matching `tiny_generator`'s defaults; `kwargs` go to
    Discriminator unchanged (e.g. epilogue_kwargs). Draws its weights from torch's global RNG."""
    return Discriminator(c_dim=c_dim, img_resolution=resolution, img_channels=channels, channel_base=channel_base,
                         channel_max=channel_max, **kwargs)


def snapshot_data(G: torch.nn.Module, D: torch.nn.Module, **extra) -> dict:
    """What save_network_pkl takes for a plain (not expanded) snapshot: G, D, G_ema = a copy of G,
    no dataset and no augmentation pipe; `extra` adds keys (expansion info, resume state)."""
    return dict(training_set_kwargs=None, G=G, D=D, G_ema=copy.deepcopy(G), augment_pipe=None, **extra)


def adam_like_state_dict() -> dict:
    """What torch.optim.Adam(...).state_dict() holds after a step (built by hand: constructing a
    torch optimizer imports torch._dynamo, seconds of test time)."""
    shapes = ([3, 2], [2])
    return {
        'state': {i: {'step': torch.tensor(3.0), 'exp_avg': torch.randn(s), 'exp_avg_sq': torch.rand(s)}
                  for i, s in enumerate(shapes)},
        'param_groups': [{'lr': 0.0025, 'betas': (0.0, 0.99), 'eps': 1e-08, 'weight_decay': 0, 'amsgrad': False,
                          'maximize': False, 'foreach': None, 'capturable': False, 'differentiable': False,
                          'fused': None, 'decoupled_weight_decay': False, 'params': [0, 1]}],
    }
