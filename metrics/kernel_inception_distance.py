"""Kernel Inception Distance (Binkowski et al. 2018): the unbiased estimate of the squared MMD
between Inception features of real and generated images, with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets."""

import numpy as np

from metrics import feature_networks
from metrics import metric_utils

# ---------------------------------------------------------------------------------------------


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x_i, y_j) = (x_i . y_j / d + 1)^3 for rows of x `[n, d]` and y `[m, d]` -> `[n, m]`."""
    d = x.shape[1]
    return (x @ y.T / d + 1) ** 3


def kid_from_features(real_features: np.ndarray, gen_features: np.ndarray, num_subsets: int = 100,
                      max_subset_size: int = 1000, seed: int = 0) -> float:
    """Mean over `num_subsets` random subsets (m rows of each set, without replacement, with
    m = min(len(real), len(gen), max_subset_size)) of the unbiased MMD^2 estimate

        1/(m(m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)]  -  2/m^2 sum_{i,j} k(x_i, y_j).

    Args:
        real_features, gen_features: `[n_real, d]`, `[n_gen, d]`.
        seed: seed of the subset choice (the estimate is exactly reproducible).
    """
    real_features = np.asarray(real_features, np.float64)
    gen_features = np.asarray(gen_features, np.float64)
    if real_features.ndim != 2 or gen_features.ndim != 2 or real_features.shape[1] != gen_features.shape[1]:
        raise ValueError(f'kid_from_features: expected [n, d] feature arrays of equal d, got '
                         f'{list(real_features.shape)} and {list(gen_features.shape)}')
    m = min(len(real_features), len(gen_features), max_subset_size)
    if m < 2:
        raise ValueError(f'KID needs at least 2 real and 2 generated images, got {len(real_features)} and {len(gen_features)}')
    rnd = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen_features[rnd.choice(len(gen_features), m, replace=False)]
        y = real_features[rnd.choice(len(real_features), m, replace=False)]
        k_xx = polynomial_kernel(x, x)
        k_yy = polynomial_kernel(y, y)
        k_xy = polynomial_kernel(x, y)
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        total += within - 2 * k_xy.sum() / (m * m)
    return float(total / num_subsets)


def compute_kid(opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int, num_subsets: int = 100,
                max_subset_size: int = 1000, detector_url: str = feature_networks.INCEPTION_URL) -> float:
    """KID between (at most `max_real`; None: all) dataset images and `num_gen` generated images.
    Returns NaN on ranks other than 0."""
    # Inception pool3 features, 2048-d.
    real_features, gen_features = metric_utils.compute_real_and_generated_features(
        opts, detector_url, max_real=max_real, num_gen=num_gen, label='KID')
    if opts.rank != 0:
        return float('nan')
    return kid_from_features(real_features, gen_features, num_subsets, max_subset_size, seed=opts.seed)

# ---------------------------------------------------------------------------------------------
