"""Frechet Inception Distance (Heusel et al. 2017): the Frechet distance between Gaussians fitted
to Inception pool features of real and generated images."""

import numpy as np
import scipy.linalg

from metrics import feature_networks
from metrics import metric_utils

# ---------------------------------------------------------------------------------------------


def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    Args:
        mu1, mu2:       feature means `[D]`.
        sigma1, sigma2: feature covariances `[D, D]`.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f'fid_from_stats: shapes do not match: mu {mu1.shape} vs {mu2.shape}, '
                         f'sigma {sigma1.shape} vs {sigma2.shape}')
    mean_term = np.square(mu1 - mu2).sum()
    # The product of two PSD matrices has a real, non-negative spectrum, so its square root is
    # real up to round-off; sqrtm may still return tiny imaginary parts, which we drop.
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    covmean = np.real(covmean)
    return float(mean_term + np.trace(sigma1 + sigma2 - 2 * covmean))


def compute_fid(opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int,
                detector_url: str = feature_networks.INCEPTION_URL) -> float:
    """FID between (at most `max_real`; None: all) dataset images and `num_gen` generated images.
    Returns NaN on ranks other than 0 (`metric_main.calc_metric` broadcasts rank 0's value)."""
    detector_kwargs = dict(return_features=True)  # Inception pool3 features, 2048-d.
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts, detector_url, detector_kwargs, capture_mean_cov=True, max_items=max_real,
        tag='FID: real images').get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts, detector_url, detector_kwargs, capture_mean_cov=True, max_items=num_gen,
        tag='FID: generated images').get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    return fid_from_stats(mu_gen, sigma_gen, mu_real, sigma_real)

# ---------------------------------------------------------------------------------------------
