"""Which latent directions are dormant (paper App. C.1, Fig. 12).

For every direction `v_i` of the latent basis (SeFA, columns sorted by decreasing singular
value) we measure how much a step of length `s` along it changes the image: the mean perceptual
distance between `G(w)` and `G(w + s v_i)` over N latents. The paper plots this with LPIPS and
notes that the effect never reaches exactly 0 and has no sharp cut-off, but the last directions
change the image much less; domain expansion repurposes those.

`suggest_dormant_range` turns the curve into a concrete proposal: the contiguous tail of
directions (counted from the last index backwards) whose effect stays below a fraction of the
largest effect. Users pick the `dimension`s of their expansion config from that range
(`analyze_dormancy.py --write-config-dims K` prints K of them).
"""

import json

import numpy as np
import torch

import dnnlib
from torch_utils import misc
from training.expansion.constants import SUBSPACE_DISTANCE
from training.expansion.render import render

#----------------------------------------------------------------------------

DEFAULT_THRESHOLD_FRACTION = 0.1    # A direction is dormant below 10% of the largest effect.

#----------------------------------------------------------------------------

def pixel_l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over C*H*W of squared differences, per image: `[N, C, H, W] x 2 -> [N]` (no download needed)."""
    misc.assert_shape(y, list(x.shape))
    return (x - y).square().flatten(1).mean(dim=1)

#----------------------------------------------------------------------------

def make_labels(c_dim: int, num: int, class_idx, rnd: np.random.RandomState, device) -> torch.Tensor:
    """Conditioning `[num, c_dim]`: empty for unconditional nets; one-hot of `class_idx`, or of a
    class drawn per latent from `rnd` when `class_idx` is None (all classes then contribute)."""
    c = torch.zeros([num, c_dim], device=device)
    if c_dim == 0:
        return c
    classes = np.full(num, class_idx) if class_idx is not None else rnd.randint(c_dim, size=num)
    c[torch.arange(num), torch.as_tensor(classes, dtype=torch.int64)] = 1
    return c

@torch.no_grad()
def sample_w(G: torch.nn.Module, num_latents: int, seed: int = 0, class_idx: int = None, device=None) -> torch.Tensor:
    """W latents `[num_latents, w_dim]`: z from `np.random.RandomState(seed).randn`, mapped with psi 1.

    The mapping's `w_avg` is not updated. Conditional networks get `class_idx` or, when None,
    a class per latent drawn from the same RandomState after the z's.
    """
    device = torch.device(device) if device is not None else next(G.parameters()).device
    rnd = np.random.RandomState(seed)
    z = torch.from_numpy(rnd.randn(num_latents, G.z_dim)).to(device=device, dtype=torch.float32)
    c = make_labels(G.c_dim, num_latents, class_idx, rnd, device)
    return G.mapping(z, c, truncation_psi=1, skip_w_avg_update=True)[:, 0]

#----------------------------------------------------------------------------

@torch.no_grad()
def direction_effects(G: torch.nn.Module, basis, num_latents: int = 64, step: float = SUBSPACE_DISTANCE, perceptual=None,
        batch_size: int = 16, seed: int = 0, class_idx: int = None, progress=None) -> np.ndarray:
    """Mean perceptual change caused by a step along each basis direction (App. C.1, Fig. 12).

    `effects[i] = mean_n perceptual(G(w_n), G(w_n + step * basis[:, i]))` over `num_latents`
    latents from `sample_w(G, num_latents, seed, class_idx)` (psi 1); `w` is broadcast to every
    layer and images use `noise_mode='const'`.

    Args:
        G:           generator (mapping + synthesis), in eval mode; its device is used.
        basis:       [w_dim, w_dim] directions as columns (normally sorted by singular value).
        num_latents: N, latents averaged per direction.
        step:        s, the distance moved along each direction (the paper's subspace distance).
        perceptual:  callable `(x, y) -> [N]` on [-1, 1] images; None = `pixel_l2`.
        batch_size:  latents rendered at once.
        seed:        seed of the latents' RandomState.
        class_idx:   class of conditional networks; None = a random class per latent.
        progress:    optional callable `(done, total)` called after each latent batch.

    Returns:
        float64 numpy array `[w_dim]`.
    """
    if num_latents < 1:
        raise ValueError(f'direction_effects: num_latents must be >= 1, got {num_latents}')
    perceptual = pixel_l2 if perceptual is None else perceptual
    device = next(G.synthesis.parameters()).device
    basis = torch.as_tensor(basis).to(device=device, dtype=torch.float32)
    misc.assert_shape(basis, [G.w_dim, G.w_dim])
    w_all = sample_w(G, num_latents, seed, class_idx, device)                # [N, w_dim]
    totals = torch.zeros([G.w_dim], dtype=torch.float64)
    for start in range(0, num_latents, batch_size):
        w = w_all[start : start + batch_size]
        images = render(G.synthesis, w, batch_size=len(w)).float()          # G(w), noise 'const'
        for i in range(G.w_dim):
            moved = render(G.synthesis, w + step * basis[:, i], batch_size=len(w)).float()  # G(w + s v_i)
            totals[i] += perceptual(images, moved).double().sum().cpu()
        if progress is not None:
            progress(min(start + batch_size, num_latents), num_latents)
    return (totals / num_latents).numpy()

#----------------------------------------------------------------------------

def suggest_dormant_range(effects, threshold_fraction: float = DEFAULT_THRESHOLD_FRACTION) -> tuple:
    """The contiguous tail of least effect, as a half-open index range `(start, stop)`.

    Definition: `threshold = threshold_fraction * max(effects)`; walking from the last index
    backwards, every direction with `effect < threshold` belongs to the range, and the walk
    stops at the first direction at or above the threshold. So `stop` is always `len(effects)`
    and the range is empty (`start == stop`) when the last direction itself is not dormant.
    Basis columns are sorted by decreasing singular value, so this tail is where the paper
    takes its repurposed directions.
    """
    effects = np.asarray(effects, dtype=np.float64).reshape(-1)
    if effects.size == 0:
        raise ValueError('suggest_dormant_range: no effects given')
    if not np.all(np.isfinite(effects)):
        raise ValueError('suggest_dormant_range: effects contain NaN or Inf')
    if not 0 < threshold_fraction < 1:
        raise ValueError(f'threshold fraction must lie in (0, 1), got {threshold_fraction}')
    threshold = threshold_fraction * effects.max()
    start = effects.size
    while start > 0 and effects[start - 1] < threshold:
        start -= 1
    return int(start), int(effects.size)

def dims_from_range(start: int, stop: int, count: int) -> list:
    """`count` dimensions from the range `[start, stop)`, most dormant first (stop-1, stop-2, ...).

    These are the values to write as `"dimension"` in the expansion config, one per task.
    """
    if count < 1:
        raise ValueError(f'the number of dimensions must be >= 1, got {count}')
    if count > stop - start:
        raise ValueError(f'asked for {count} dimensions but the suggested dormant range [{start}, {stop}) holds '
            f'only {stop - start}; ask for fewer, or raise the threshold fraction')
    return list(range(stop - 1, stop - 1 - count, -1))

#----------------------------------------------------------------------------

def dormancy_record(effects, step: float, num_latents: int, metric: str, dormant_range: tuple,
        threshold_fraction: float, basis_source: str = None) -> dict:
    """The `dormancy.json` content (plain JSON types)."""
    effects = [float(x) for x in np.asarray(effects).reshape(-1)]
    return {
        'w_dim': len(effects),
        'step': float(step),
        'num_latents': int(num_latents),
        'metric': str(metric),
        'threshold_fraction': float(threshold_fraction),
        'basis': basis_source,
        'effects': effects,
        'suggested_dormant': {'start': int(dormant_range[0]), 'stop': int(dormant_range[1])},
    }

def save_dormancy_json(record: dict, path: str) -> None:
    """Write a `dormancy_record` as indented JSON (atomically)."""
    dnnlib.util.write_json_atomic(path, record)

def load_dormancy_json(path: str) -> dict:
    """Read a `dormancy.json`; ValueError naming the file when it is not one."""
    try:
        with open(path, 'r', encoding='utf-8') as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: cannot be read as dormancy.json ({type(err).__name__}: {err})') from err
    rng = record.get('suggested_dormant') if isinstance(record, dict) else None
    if not (isinstance(record, dict) and isinstance(record.get('effects'), list) and isinstance(rng, dict)
            and isinstance(rng.get('start'), int) and isinstance(rng.get('stop'), int)):
        raise ValueError(f'{path}: not a dormancy.json (needs "effects" and "suggested_dormant": {{"start", "stop"}}); '
            f'write one with analyze_dormancy.py --network PKL --out DIR')
    return record

#----------------------------------------------------------------------------

def plot_dormancy(effects, dormant_range: tuple, path: str, metric: str = 'lpips', step: float = SUBSPACE_DISTANCE,
        threshold_fraction: float = None) -> None:
    """Fig. 12-style plot: effect per direction index (sorted by singular value), the suggested
    dormant range shaded and, when given, the threshold drawn. Uses matplotlib's object API with
    the Agg canvas (no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    effects = np.asarray(effects, dtype=np.float64).reshape(-1)
    start, stop = dormant_range
    fig = Figure(figsize=(8, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(np.arange(effects.size), effects, color='tab:blue', linewidth=1.2, label='mean effect')
    if threshold_fraction is not None:
        ax.axhline(threshold_fraction * effects.max(), color='tab:gray', linestyle='--', linewidth=1,
            label=f'{threshold_fraction:g} x max')
    if stop > start:
        ax.axvspan(start - 0.5, stop - 0.5, color='tab:orange', alpha=0.25, label=f'suggested dormant [{start}, {stop})')
    else:
        ax.plot([], [], ' ', label='no dormant tail at this threshold')
    ax.set_title(f'{metric} between G(w) and G(w + {step:g} v_i)', fontsize='medium')
    ax.set_xlabel('direction index i (decreasing singular value)')
    ax.set_ylabel('mean distance')
    ax.set_xlim(-0.5, effects.size - 0.5)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc='upper right', fontsize='small')
    fig.tight_layout()
    fig.savefig(path, format='png')

#----------------------------------------------------------------------------
