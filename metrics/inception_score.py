"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over Inception class
probabilities of generated images, reported as mean and standard deviation over splits."""

import numpy as np
import scipy.special

from metrics import feature_networks
from metrics import metric_utils

# ---------------------------------------------------------------------------------------------


def inception_score_from_probs(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `num_splits` consecutive splits of exp(mean_i KL(p_i || mean_j p_j)).

    Args:
        probs: class probabilities `[N, num_classes]` (rows sum to 1).
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) < num_splits:
        raise ValueError(f'Inception score needs [N, num_classes] probabilities with N >= num_splits={num_splits}, '
                         f'got shape {list(probs.shape)}')
    scores = []
    for i in range(num_splits):
        part = probs[i * len(probs) // num_splits: (i + 1) * len(probs) // num_splits]
        marginal = part.mean(axis=0, keepdims=True)                             # p(y) within the split
        # xlogy: 0 * log 0 = 0, so exactly one-hot predictions are fine.
        kl = (scipy.special.xlogy(part, part) - scipy.special.xlogy(part, marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def compute_is(opts: metric_utils.MetricOptions, num_gen: int, num_splits: int,
               detector_url: str = feature_networks.INCEPTION_URL) -> tuple[float, float]:
    """(mean, std) Inception score of `num_gen` generated images. NaN on ranks other than 0."""
    # The official score uses the Inception softmax without the output bias (as the TF original).
    detector_kwargs = dict(no_output_bias=True)
    gen_probs = metric_utils.compute_feature_stats_for_generator(
        opts, detector_url, detector_kwargs, capture_all=True, max_items=num_gen,
        tag='IS: generated images').get_all()
    if opts.rank != 0:
        return float('nan'), float('nan')
    return inception_score_from_probs(gen_probs, num_splits)

# ---------------------------------------------------------------------------------------------
