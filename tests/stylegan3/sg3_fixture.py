"""The stylegan3_tiny fixtures (tests/fixtures/stylegan3_tiny/README.md): configurations, arrays
and networks filled from `*_state_dicts.npz`, shared by the StyleGAN3 tests."""

import numpy as np
import torch

from conftest import require_fixtures
from training import networks
from training import networks_stylegan3

FIXTURE = 'stylegan3_tiny'
CONFIGS = ('t', 'r')
MAGNITUDE_EMA_BETA = 0.5 ** (32 / 20000)  # README "Construction": batch 32 assumed.

# Constructor arguments stored in the pickles (README "Exact _init_kwargs").
G_KWARGS = {
    't': dict(z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=32,
              magnitude_ema_beta=MAGNITUDE_EMA_BETA, c_dim=0, img_resolution=32, img_channels=3),
    'r': dict(z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2), channel_base=512, channel_max=64,
              magnitude_ema_beta=MAGNITUDE_EMA_BETA, conv_kernel=1, use_radial_filters=True, c_dim=3,
              img_resolution=32, img_channels=3),
}
# D: the StyleGAN2 class with the stylegan3 repository's defaults (num_fp16_res 4, conv_clamp 256).
D_KWARGS = {
    cfg: dict(block_kwargs=dict(freeze_layers=0), mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=4),
              channel_base=256, channel_max=32, c_dim=c_dim, img_resolution=32, img_channels=3,
              num_fp16_res=4, conv_clamp=256)
    for cfg, c_dim in (('t', 0), ('r', 3))
}


def path(cfg: str, what: str):
    """`sg3{cfg}_tiny32_{what}` in the vendored fixture folder (a missing file fails the test)."""
    return require_fixtures(FIXTURE, f'sg3{cfg}_tiny32_{what}')


def arrays(cfg: str, what: str) -> dict[str, np.ndarray]:
    with np.load(path(cfg, f'{what}.npz'), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_listing(cfg: str) -> dict[str, list[tuple[str, str, list[int]]]]:
    """state_dict_listing.txt -> {net: [(kind, name, shape), ...]} in file order."""
    listing: dict = {}
    for line in path(cfg, 'state_dict_listing.txt').read_text().splitlines()[1:]:  # after the header
        if not line.strip():
            continue
        net, kind, name, shape, _dtype = line.split('\t')
        listing.setdefault(net, []).append((kind, name, [int(s) for s in shape.strip('[]').split(',') if s.strip()]))
    return listing


def fill(module: torch.nn.Module, cfg: str, net: str) -> torch.nn.Module:
    """Copy the fixture's `<net>.*` tensors into `module` (strict by name and shape), eval, no grad."""
    state = {k[len(net) + 1:]: torch.from_numpy(v) for k, v in arrays(cfg, 'state_dicts').items()
             if k.startswith(net + '.')}
    module.load_state_dict(state, strict=True)
    return module.eval().requires_grad_(False)


def build_G(cfg: str) -> networks_stylegan3.Generator:
    return networks_stylegan3.Generator(**G_KWARGS[cfg])


def build_D(cfg: str) -> networks.Discriminator:
    return networks.Discriminator(**D_KWARGS[cfg])



def tiny_sg3_generator(seed: int = 0, w_dim: int = 16, c_dim: int = 0) -> networks_stylegan3.Generator:
    """A small StyleGAN3 generator (16 px, 4 layers + ToRGB, 16 channels), eval, no grad, for fast tests."""
    torch.manual_seed(seed)
    G = networks_stylegan3.Generator(z_dim=w_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=16, img_channels=3,
                                     channel_base=256, channel_max=16, num_layers=4, num_critical=2, margin_size=4)
    return G.eval().requires_grad_(False)


def save_tiny_sg3_snapshot(path, seed: int = 0) -> str:
    """Our snapshot format with a tiny StyleGAN3 G / G_ema and a matching StyleGAN2 D."""
    from training import snapshot_io
    G = tiny_sg3_generator(seed)
    D = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)
    snapshot_io.save_network_pkl(dict(G=G, D=D.eval().requires_grad_(False), G_ema=G, augment_pipe=None,
                                      training_set_kwargs=None), path)
    return str(path)
