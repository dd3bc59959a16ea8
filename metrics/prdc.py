"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity
Metrics for Generative Models"), k-nearest-neighbour balls in a feature space:

    r_i        distance from real feature X_i to its k-th nearest other real feature;
    precision  fraction of fake Y_j inside some real ball B(X_i, r_i);
    recall     fraction of real X_i inside some fake ball B(Y_j, s_j) (s_j: k-NN radius among fakes);
    density    (1 / kM) sum_j #{i : Y_j in B(X_i, r_i)}  (M fakes; 1 when both sets match on average);
    coverage   fraction of real X_i whose ball contains at least one fake.

"Inside" is a strict `<`, as in the authors' `prdc` package (tests/blackbox checks ours against
it to 1e-6). Features: Inception pool features for images (the registered `prdc*` metrics), or
any `[N, D]` arrays (W latents, raw pixels) through `compute_prdc`.
"""

import numpy as np
import torch

from metrics import feature_networks
from metrics import metric_utils

# ---------------------------------------------------------------------------------------------

DEFAULT_K = 5       # Naeem et al.'s recommended k (and the black-box adaptation paper's).
FEATURE_KINDS = ('inception', 'pixels')   # What the registered metrics compare (calc_metrics.py --features).


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
    ('inception', the default, or 'pixels'). Rank 0 computes; other ranks return NaN."""
    kind = opts.extra.get('prdc_features', 'inception')
    if kind not in FEATURE_KINDS:
        raise ValueError(f"--features: unknown feature kind '{kind}'; choose one of {', '.join(FEATURE_KINDS)}")
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

# ---------------------------------------------------------------------------------------------
