"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity
Metrics for Generative Models"), k-nearest-neighbour balls in a feature space:

    r_i        distance from real feature X_i to its k-th nearest other real feature;
    precision  fraction of fake Y_j inside some real ball B(X_i, r_i);
    recall     fraction of real X_i inside some fake ball B(Y_j, s_j) (s_j: k-NN radius among fakes);
    density    (1 / kM) sum_j #{i : Y_j in B(X_i, r_i)}  (M fakes; 1 when both sets match on average);
    coverage   fraction of real X_i whose ball contains at least one fake.

"Inside" is a strict `<`, as in the authors' `prdc` package (tests/blackbox checks ours against
it to 1e-6). Features of the registered `prdc*` metrics (calc_metrics.py --features): Inception
pool features of images, raw pixels (toy data), or latents ('w': real W `[N, w_dim]` or W+
`[N, num_ws, w_dim]` latents from a file against the generator's mapping outputs, or against a
black-box sampler's latents that calc_metrics.py passes in); any `[N, D]` arrays through
`compute_prdc`.
"""

import copy
import os
import zipfile


import numpy as np
import torch

from metrics import feature_networks
from metrics import metric_utils

# ---------------------------------------------------------------------------------------------

DEFAULT_K = 5       # Naeem et al.'s recommended k (and the black-box adaptation paper's).
FEATURE_KINDS = ('inception', 'pixels', 'w')   # What the registered metrics compare (calc_metrics.py --features).
LATENT_FILE_TYPES = ('.npy', '.npz')            # Files of real latents for --features w.


def _distances(a: torch.Tensor, b: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Euclidean distances `[len(a), len(b)]` in float64, computed in row batches."""
    return torch.cat([torch.cdist(part, b) for part in a.split(batch_size)])


def _kth_neighbour_radii(d_self: torch.Tensor, k: int) -> torch.Tensor:
    """k-th smallest distance to another point, from a self-distance matrix (the 0-th is the point itself)."""
    return d_self.kthvalue(k + 1, dim=1).values


def compute_prdc(real_features, fake_features, nearest_k: int = DEFAULT_K) -> dict:
    """Precision, recall, density and coverage of fake features `[M, D]` against real ones `[N, D]`.

    Args:
        real_features: numpy array (or tensor) `[N, D]`, N > nearest_k.
        fake_features: numpy array (or tensor) `[M, D]`, M > nearest_k.
        nearest_k:     k of the k-NN balls.

    Returns:
        dict precision, recall, density, coverage (Python floats).
    """
    real = torch.as_tensor(np.asarray(real_features), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake_features), dtype=torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f'compute_prdc: expected real [N, D] and fake [M, D] features, got '
                         f'{list(real.shape)} and {list(fake.shape)}')
    if min(len(real), len(fake)) <= nearest_k:
        raise ValueError(f'compute_prdc: nearest_k={nearest_k} needs more than {nearest_k} real and fake features, '
                         f'got {len(real)} and {len(fake)}')
    real_radii = _kth_neighbour_radii(_distances(real, real), nearest_k)     # [N]
    fake_radii = _kth_neighbour_radii(_distances(fake, fake), nearest_k)     # [M]
    d = _distances(real, fake)                                                # [N, M]
    inside_real = d < real_radii[:, None]                                     # fake j in real ball i
    return dict(
        precision=float(inside_real.any(dim=0).double().mean()),
        recall=float((d < fake_radii[None, :]).any(dim=1).double().mean()),
        density=float(inside_real.sum(dim=0).double().mean() / nearest_k),
        coverage=float((d.min(dim=1).values < real_radii).double().mean()),
    )

# ---------------------------------------------------------------------------------------------


class PixelFeatures(torch.nn.Module):
    """A detector stand-in for toy data: uint8 images `[N, C, H, W]` -> raw pixels in [0, 1], flattened."""

    def forward(self, images: torch.Tensor, **_detector_kwargs) -> torch.Tensor:
        return images.to(torch.float32).flatten(1) / 255


PIXELS_URL = 'builtin://prdc-raw-pixels'    # Name under which PixelFeatures is registered as a detector.


def compute_prdc_metric(opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int,
                        nearest_k: int = DEFAULT_K) -> dict:
    """PRDC between dataset and generated images; features from `opts.extra.prdc_features`
    ('inception', the default, or 'pixels'; 'w' compares latents, see `compute_prdc_latents`).
    Rank 0 computes; other ranks return NaN."""
    kind = feature_kind(opts)
    if kind == 'w':
        return compute_prdc_latents(opts, max_real, num_gen, nearest_k)
    if kind == 'pixels':
        feature_networks.register_detector(PIXELS_URL, PixelFeatures())
        url = PIXELS_URL
    else:
        url = feature_networks.INCEPTION_URL    # 2048-d pool features (return_features=True).
    real, fake = metric_utils.compute_real_and_generated_features(opts, url, max_real=max_real, num_gen=num_gen,
                                                                  label='PRDC')
    if opts.rank != 0:
        return {key: float('nan') for key in ('precision', 'recall', 'density', 'coverage')}
    return compute_prdc(real, fake, nearest_k)


def feature_kind(opts: metric_utils.MetricOptions) -> str:
    """`opts.extra.prdc_features`, checked against FEATURE_KINDS."""
    kind = opts.extra.get('prdc_features', 'inception')
    if kind not in FEATURE_KINDS:
        raise ValueError(f"--features: unknown feature kind '{kind}'; choose one of {', '.join(FEATURE_KINDS)}")
    return kind

# ---------------------------------------------------------------------------------------------
# Latent features (--features w).


def load_latents(path: str, flag: str = '--data') -> np.ndarray:
    """Real latents from a .npy file or a .npz file holding one array, as float64: W `[N, w_dim]`
    or W+ `[N, num_ws, w_dim]` (check them against the generator with `check_latents`)."""
    if not os.path.isfile(path) or not path.lower().endswith(LATENT_FILE_TYPES):
        raise ValueError(f"{flag}: --features w needs a .npy or .npz file of real latents [N, w_dim] or "
                         f"[N, num_ws, w_dim], got '{path}'")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = {'array': loaded}
        else:
            with loaded:
                arrays = {key: loaded[key] for key in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{flag}: cannot read latents from '{path}' ({type(err).__name__}); "
                         f"save them with numpy.save or numpy.savez") from None
    if len(arrays) != 1:
        raise ValueError(f"{flag}: '{path}' holds {len(arrays)} arrays ({', '.join(arrays) or 'none'}); "
                         f"save exactly one array of latents")
    latents = next(iter(arrays.values()))
    if latents.ndim not in (2, 3) or latents.dtype.kind not in 'fiu':
        raise ValueError(f"{flag}: latents must be numbers shaped [N, w_dim] (W) or [N, num_ws, w_dim] (W+), "
                         f"got {latents.dtype} {list(latents.shape)} in '{path}'")
    if not np.all(np.isfinite(latents)):
        raise ValueError(f"{flag}: '{path}' holds NaN or infinite latents")
    return latents.astype(np.float64)


def check_latents(latents: np.ndarray, num_ws: int, w_dim: int, nearest_k: int = DEFAULT_K, flag: str = '--data') -> None:
    """ValueError unless `latents` are W `[N, w_dim]` or W+ `[N, num_ws, w_dim]` of this generator, N > nearest_k."""
    if list(latents.shape[1:]) not in ([w_dim], [num_ws, w_dim]):
        raise ValueError(f'{flag}: latents shaped {list(latents.shape)} do not fit the generator: expected W '
                         f'[N, {w_dim}] or W+ [N, {num_ws}, {w_dim}]')
    if len(latents) <= nearest_k:
        raise ValueError(f'{flag}: PRDC with k = {nearest_k} needs more than {nearest_k} real latents, got {len(latents)}')


@torch.no_grad()
def mapping_latents(G: torch.nn.Module, num: int, seed: int, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """The generator's W+ latents `[num, num_ws, w_dim]` = G.mapping(z) (psi 1) for z drawn batch by
    batch as the image metrics draw them (metric_utils.batch_generator(seed, batch))."""
    if G.c_dim > 0:
        raise ValueError('--features w: the generator is conditional (c_dim > 0); latent PRDC supports '
                         'unconditional generators only')
    parts = []
    for batch_idx, start in enumerate(range(0, num, batch_size)):
        z = torch.randn([min(batch_size, num - start), G.z_dim], generator=metric_utils.batch_generator(seed, batch_idx))
        parts.append(G.mapping(z.to(device), torch.zeros([len(z), 0], device=device)))
    return torch.cat(parts)


def compute_prdc_latents(opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int,
                         nearest_k: int = DEFAULT_K) -> dict:
    """PRDC between real latents (`opts.extra.prdc_real_latents`, W `[N, w_dim]` or W+ `[N, num_ws,
    w_dim]`, the first `max_real` rows) and `num_gen` generated W+ latents: from
    `opts.extra.prdc_fake_latents(G, num, seed, device)` when given (calc_metrics.py --sampler),
    else the mapping network's. Against real W, the generated latents' first layer is compared
    (the mapping broadcasts one w to every layer). Rank 0 computes; other ranks return NaN."""
    real = opts.extra.get('prdc_real_latents')
    if real is None:
        raise ValueError('--features w: pass --data LATENTS.npy (real W [N, w_dim] or W+ [N, num_ws, w_dim] latents)')
    G = copy.deepcopy(opts.require_G('PRDC in W')).eval().requires_grad_(False).to(opts.device)
    real = np.asarray(real, dtype=np.float64)[:max_real]
    check_latents(real, G.synthesis.num_ws, G.w_dim, nearest_k)
    if opts.rank != 0:
        return {key: float('nan') for key in ('precision', 'recall', 'density', 'coverage')}
    sample = opts.extra.get('prdc_fake_latents')
    if sample is not None and real.ndim == 2:
        raise ValueError('--data: the sampler draws W+ latents; pass real W+ latents [N, num_ws, w_dim]')
    fake = (sample or mapping_latents)(G, num_gen, opts.seed, opts.device)          # [num_gen, num_ws, w_dim]
    fake = fake[:, 0] if real.ndim == 2 else fake
    return compute_prdc(real.reshape(len(real), -1), fake.reshape(len(fake), -1).double().cpu().numpy(), nearest_k)
