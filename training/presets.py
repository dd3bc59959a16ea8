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
what the official presets keep fixed; `cifar` and `tiny` use them.
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
)

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
}

# The domain-expansion fork's `stylegan2` preset trains at lr 0.001 (spec section 8).
EXPANSION_LRATE = {'stylegan2': 0.001}


def preset_names() -> list[str]:
    return list(PRESETS)


def resolve_preset(cfg: str, resolution: int, gpus: int, expansion: bool = False) -> dict:
    """All values of preset `cfg` for this resolution and GPU count, with the defaults filled in.

    `auto` follows the official formulas (spec 6.1); `expansion=True` applies the
    domain-expansion learning rates. Raises ValueError naming --cfg for an unknown preset.
    """
    if cfg not in PRESETS:
        raise ValueError(f"--cfg: unknown preset '{cfg}'; choose one of {', '.join(PRESETS)}")
    spec = {**ARCHITECTURE_DEFAULTS, **TRAINING_DEFAULTS, **copy.deepcopy(PRESETS[cfg])}
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
    return spec


def default_grid_size(resolution: int) -> tuple[int, int]:
    """Official image-snapshot grid: about 7680x4320 pixels, 7..32 columns, 4..32 rows."""
    cols = min(max(7680 // resolution, 7), 32)
    rows = min(max(4320 // resolution, 4), 32)
    return cols, rows
