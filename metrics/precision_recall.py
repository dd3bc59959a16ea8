"""Improved precision and recall (Kynkaanniemi et al. 2019): each feature set defines a manifold,
the union of balls around its points whose radius is the distance to the point's k-th nearest
neighbour; precision is the fraction of generated points inside the real manifold, recall the
fraction of real points inside the generated manifold. Features are VGG16 fc features."""

import torch

from metrics import feature_networks
from metrics import metric_utils

# ---------------------------------------------------------------------------------------------


def _pairwise_distances(rows: torch.Tensor, cols: torch.Tensor, col_batch_size: int) -> torch.Tensor:
    """Euclidean distances `[len(rows), len(cols)]`, computed in column batches."""
    return torch.cat([torch.cdist(rows, col_batch) for col_batch in cols.split(col_batch_size)], dim=1)


def manifold_radii(manifold: torch.Tensor, nhood_size: int, row_batch_size: int = 10000,
                   col_batch_size: int = 10000) -> torch.Tensor:
    """Distance from every point of `manifold` `[n, d]` to its `nhood_size`-th nearest other
    point -> `[n]` (the point itself, at distance 0, is the 0-th)."""
    if len(manifold) <= nhood_size:
        raise ValueError(f'Precision/recall with nhood_size={nhood_size} needs more than {nhood_size} '
                         f'points per set, got {len(manifold)}')
    radii = [_pairwise_distances(batch, manifold, col_batch_size).kthvalue(nhood_size + 1, dim=1).values
             for batch in manifold.split(row_batch_size)]
    return torch.cat(radii)


def coverage_fraction(manifold: torch.Tensor, radii: torch.Tensor, probes: torch.Tensor,
                      row_batch_size: int = 10000, col_batch_size: int = 10000) -> float:
    """Fraction of `probes` `[m, d]` that lie within `radii[j]` of some manifold point j."""
    inside = [(_pairwise_distances(batch, manifold, col_batch_size) <= radii.unsqueeze(0)).any(dim=1)
              for batch in probes.split(row_batch_size)]
    return float(torch.cat(inside).to(torch.float32).mean())


def precision_recall_from_features(real_features, gen_features, nhood_size: int = 3,
                                   row_batch_size: int = 10000, col_batch_size: int = 10000) -> tuple[float, float]:
    """(precision, recall) of generated features `[m, d]` against real features `[n, d]`
    (numpy arrays or tensors; computed in float32 on the tensors' device)."""
    real = torch.as_tensor(real_features, dtype=torch.float32)
    gen = torch.as_tensor(gen_features, dtype=torch.float32, device=real.device)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f'precision_recall_from_features: expected [n, d] features of equal d, got '
                         f'{list(real.shape)} and {list(gen.shape)}')
    results = []
    for manifold, probes in [(real, gen), (gen, real)]:  # precision, then recall
        radii = manifold_radii(manifold, nhood_size, row_batch_size, col_batch_size)
        results.append(coverage_fraction(manifold, radii, probes, row_batch_size, col_batch_size))
    return results[0], results[1]


def compute_pr(opts: metric_utils.MetricOptions, max_real: int | None, num_gen: int, nhood_size: int,
               row_batch_size: int = 10000, col_batch_size: int = 10000,
               detector_url: str = feature_networks.VGG16_URL) -> tuple[float, float]:
    """(precision, recall) between dataset and generated images. The distance computations run
    on rank 0 only (other ranks return NaN)."""
    # VGG16 fc features, 4096-d.
    real_features, gen_features = metric_utils.compute_real_and_generated_features(
        opts, detector_url, max_real=max_real, num_gen=num_gen, label='PR')
    if opts.rank != 0:
        return float('nan'), float('nan')
    real = torch.from_numpy(real_features).to(opts.device)
    gen = torch.from_numpy(gen_features).to(opts.device)
    return precision_recall_from_features(real, gen, nhood_size, row_batch_size, col_batch_size)

# ---------------------------------------------------------------------------------------------
