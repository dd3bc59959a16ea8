"""`--cfg` presets of train.py, as plain data (spec section 6.1), and how they resolve.

Each preset fixes the training hyperparameters and, for a run that does not `--resume` a
pickle, the network architecture. Keys:

    ref_gpus   GPUs the preset was tuned for; batch_gpu = batch // ref_gpus.
    kimg       Training length in thousands of real images.
    mb         Global batch size.
    mbstd      Minibatch-stddev group size of D.
    fmaps      Width multiplier: channel_base = int(fmaps * 32768).
    lrate      Adam learning rate of G and D.
    gamma      R1 weight.
    ema        G_ema half-life in kimg.
    ramp       EMA ramp-up (ema_nimg <= cur_nimg * ramp), None = off.
    map        Mapping network layers.

Optional keys (defaults in ARCHITECTURE_DEFAULTS / TRAINING_DEFAULTS below) let a preset change
what the official presets keep fixed; `cifar`, `tiny` and the StyleGAN3 presets use them.

The StyleGAN3 presets (`stylegan3-t`, `stylegan3-r`) are the official stylegan3 train.py's: like
there, `--batch` and `--gamma` have no default (mb and gamma are None) and the EMA half-life,
magnitude-EMA decay and blur fade follow the batch. `stylegan3-t-tiny` / `stylegan3-r-tiny` are
ours: the same configs at CPU size (tests, the StyleGAN3 demo generator).
"""

import copy

# Fixed by the official train.py for every preset.
ARCHITECTURE_DEFAULTS = dict(
    z_dim=512,            # Latent z width.
    w_dim=512,            # Intermediate latent w width.
    channel_max=512,      # Upper bound of feature maps per layer (G and D).
    num_fp16_res=4,       # Highest resolutions computed in float16 (G and D); --fp32 sets 0.
    conv_clamp=256,       # Clamp of conv outputs (G and D); --fp32 sets None.
    D_architecture='resnet',  # Discriminator architecture ('orig', 'skip', 'resnet').
    mbstd_num_channels=1,     # Minibatch-stddev features of D; 0 = no minibatch-stddev layer.
    generator='stylegan2',    # G family: 'stylegan2' (training.networks) or 'stylegan3' (training.networks_stylegan3).
    G_channel_mult=1,         # StyleGAN3 G only: multiplier of channel_base and channel_max (config R: 2).
    G_layer_kwargs={},        # StyleGAN3 G only: extra SynthesisLayer arguments (config R: 1x1 convs, radial filters).
    G_num_layers=None,        # StyleGAN3 G only: synthesis layers before ToRGB; None = the network's default (14).
)
TRAINING_DEFAULTS = dict(
    pl_weight=2,          # Path-length penalty weight.
    style_mixing_prob=0.9,  # Style-mixing probability.
    G_reg_interval=4,     # Lazy path-length regularisation every 4 steps.
    D_reg_interval=16,    # Lazy R1 every 16 steps.
    betas=(0.0, 0.99),    # Adam betas (before the lazy-regularisation rescaling).
    eps=1e-8,             # Adam epsilon.
    kimg_per_tick=4,      # Progress tick length in kimg.
    grid_size=None,       # Image-snapshot grid (cols, rows); None = official rule from the resolution.
    D_lrate=None,         # D's Adam learning rate; None = lrate (StyleGAN3: 0.002 while G has 0.0025).
    blur_init_sigma=0,    # Blur std (pixels) of every D input at the start of a fresh run; 0 = off.
    blur_fade_kimg_per_batch=0,  # The blur fades out over batch * this many kimg (config R: 200 / 32).
)

# What the official stylegan3 train.py sets for every StyleGAN3 config (spec stylegan3-network-format.md;
# its loss has path length and style mixing off, and only D-fake renders move G's EMAs).
_STYLEGAN3 = dict(generator='stylegan3', D_lrate=0.002, G_reg_interval=None, pl_weight=0, style_mixing_prob=0)
# Config R on top: 1x1 convolutions, radial down-sampling filters, twice the channels, D-input blur.
_STYLEGAN3_R = dict(G_channel_mult=2, G_layer_kwargs=dict(conv_kernel=1, use_radial_filters=True),
                    blur_init_sigma=10, blur_fade_kimg_per_batch=200 / 32)
# Our CPU size, as `tiny` (z_dim = w_dim = 32, channel_base 512, at most 32 channels, float32); the
# StyleGAN3 ones also have 6 synthesis layers instead of 14 (about 3x faster on a CPU).
_TINY = dict(ref_gpus=1, kimg=1, mb=4, mbstd=4, fmaps=1 / 64, gamma=1, ema=0.1, ramp=None, z_dim=32, w_dim=32,
             channel_max=32, num_fp16_res=0, conv_clamp=None, kimg_per_tick=0.02, grid_size=(4, 2))

# cfg -> values. `auto` derives mb, mbstd, fmaps, lrate, gamma, ema from resolution and --gpus.
PRESETS = {
    'auto':      dict(ref_gpus=-1, kimg=25000,  mb=-1, mbstd=-1, fmaps=-1, lrate=-1,     gamma=-1,   ema=-1,  ramp=0.05, map=2),
    'stylegan2': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,  lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8),
    'paper256':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=0.5, lrate=0.0025, gamma=1,   ema=20,  ramp=None, map=8),
    'paper512':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=1,  lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8),
    'paper1024': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,  lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8),
    'cifar':     dict(ref_gpus=2,  kimg=100000, mb=64, mbstd=32, fmaps=1,  lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2,
                      pl_weight=0, style_mixing_prob=0, D_architecture='orig'),
    # Not official: a network small enough to train a few ticks on a CPU in seconds (tests, demo).
    # fmaps 1/64 gives channel_base 512: 32 channels at 16 px, capped at channel_max 32 below.
    'tiny':      dict(ref_gpus=1,  kimg=1,      mb=4,  mbstd=4,  fmaps=1 / 64, lrate=0.0025, gamma=1, ema=0.1, ramp=None, map=2,
                      z_dim=32, w_dim=32, channel_max=32, num_fp16_res=0, conv_clamp=None,
                      kimg_per_tick=0.02, grid_size=(4, 2)),
    # mb, gamma None: --batch and --gamma are required; ema -1: batch * 10 / 32 kimg.
    'stylegan3-t': dict(ref_gpus=-1, kimg=25000, mb=None, mbstd=4, fmaps=1, lrate=0.0025, gamma=None, ema=-1, ramp=0.05,
                        map=2, **_STYLEGAN3),
    'stylegan3-r': dict(ref_gpus=-1, kimg=25000, mb=None, mbstd=4, fmaps=1, lrate=0.0025, gamma=None, ema=-1, ramp=0.05,
                        map=2, **_STYLEGAN3, **_STYLEGAN3_R),
    # Not official: the two configs at CPU size.
    'stylegan3-t-tiny': dict(lrate=0.0025, map=2, G_num_layers=6, **_STYLEGAN3, **_TINY),
    'stylegan3-r-tiny': dict(lrate=0.0025, map=2, G_num_layers=6, **_STYLEGAN3, **_STYLEGAN3_R, **_TINY),
}

# The domain-expansion fork's `stylegan2` preset trains at lr 0.001 (spec section 8).
EXPANSION_LRATE = {'stylegan2': 0.001}


def preset_names() -> list[str]:
    return list(PRESETS)


def resolve_preset(cfg: str, resolution: int, gpus: int, expansion: bool = False, batch: int | None = None,
                   gamma: float | None = None) -> dict:
    """All values of preset `cfg` for this resolution and GPU count, with the defaults filled in.

    `auto` follows the official formulas (spec 6.1); `expansion=True` applies the
    domain-expansion learning rates. `batch` / `gamma` (--batch, --gamma; None = not given) replace
    mb / gamma, and the StyleGAN3 values that follow the batch are derived from the result.
    Raises ValueError naming --cfg, --batch or --gamma.
    """
    if cfg not in PRESETS:
        raise ValueError(f"--cfg: unknown preset '{cfg}'; choose one of {', '.join(PRESETS)}")
    spec = {**ARCHITECTURE_DEFAULTS, **TRAINING_DEFAULTS, **copy.deepcopy(PRESETS[cfg])}
    missing = [flag for flag, key, given in (('--batch', 'mb', batch), ('--gamma', 'gamma', gamma))
               if spec[key] is None and given is None]
    if missing:
        raise ValueError(f'--cfg {cfg} needs {" and ".join(missing)}: no default, as in the official stylegan3 '
                         f'train.py (its example for 512x512 on 8 GPUs: --batch=32 --gamma=8.2)')
    if cfg == 'auto':
        spec['ref_gpus'] = gpus
        spec['mb'] = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
        spec['mbstd'] = min(spec['mb'] // gpus, 4)
        spec['fmaps'] = 1 if resolution >= 512 else 0.5
        spec['lrate'] = 0.002 if resolution >= 1024 else 0.0025
        spec['gamma'] = 0.0002 * (resolution ** 2) / spec['mb']
        spec['ema'] = spec['mb'] * 10 / 32
    if expansion and cfg in EXPANSION_LRATE:
        spec['lrate'] = EXPANSION_LRATE[cfg]
    spec['channel_base'] = int(spec['fmaps'] * 32768)
    if spec['generator'] == 'stylegan3':
        _resolve_stylegan3(spec, gpus, batch)
    return spec


def _resolve_stylegan3(spec: dict, gpus: int, batch: int | None) -> None:
    """The StyleGAN3 values that follow the global batch (official stylegan3 train.py)."""
    mb = batch if batch is not None else spec['mb']
    if spec['ref_gpus'] == -1:
        spec['ref_gpus'] = gpus
        spec['mb'] = mb
    if spec['ema'] == -1:
        spec['ema'] = mb * 10 / 32                                  # G_ema half-life, kimg
    spec['magnitude_ema_beta'] = 0.5 ** (mb / 20000)                # per-step decay of the magnitude EMAs
    spec['blur_fade_kimg'] = mb * spec['blur_fade_kimg_per_batch']


def default_grid_size(resolution: int) -> tuple[int, int]:
    """Official image-snapshot grid: about 7680x4320 pixels, 7..32 columns, 4..32 rows."""
    cols = min(max(7680 // resolution, 7), 32)
    rows = min(max(4320 // resolution, 4), 32)
    return cols, rows
