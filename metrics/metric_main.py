"""The metric registry: `calc_metric(name, **options)` runs a registered metric and
`report_metric` appends its result to `<run_dir>/metric-<name>.jsonl`.

Names follow the official convention: `fid50k_full` = FID of 50k generated images against the
full dataset (no x-flips); names without `_full` use at most as many real images as generated
ones. The `*_tiny` metrics use `tiny_num_items` images (default 256) for smoke runs and tests.

Method packages register their own metrics when imported (`training/expansion/evaluation.py`
registers the domain-expansion ones); `metrics/` itself imports no training code.
"""

import json
import os
import time
from typing import Callable

import torch

import dnnlib
from metrics import feature_networks
from metrics import frechet_inception_distance
from metrics import inception_score
from metrics import kernel_inception_distance
from metrics import metric_utils
from metrics import perceptual_path_length
from metrics import precision_recall
from metrics import prdc

# ---------------------------------------------------------------------------------------------
# Registry.

_metric_dict: dict[str, Callable] = {}


def register_metric(fn: Callable) -> Callable:
    """Decorator: register `fn(opts: MetricOptions) -> dict of results` under `fn.__name__`.
    The first line of its docstring is what `calc_metrics.py --list` shows."""
    if not callable(fn):
        raise TypeError(f'register_metric expects a function, got {type(fn).__name__}')
    _metric_dict[fn.__name__] = fn
    return fn


def is_valid_metric(metric: str) -> bool:
    return metric in _metric_dict


def list_valid_metrics() -> list[str]:
    """Registered metric names, in registration order."""
    return list(_metric_dict.keys())


def metric_needs_real_images(metric: str) -> bool:
    """False for metrics that only look at generated images (IS, PPL)."""
    return getattr(_metric_dict[metric], 'needs_real_images', True)


def pretrained_weights(metric: str) -> tuple:
    """The pretrained files a registered metric loads (metric_utils.needs_weights), e.g.
    (('detector', feature_networks.INCEPTION_URL),); () for one that loads none."""
    return tuple(getattr(_metric_dict[metric], 'pretrained_weights', ()))


def describe_metric(metric: str) -> str:
    """First docstring line of a registered metric."""
    doc = (_metric_dict[metric].__doc__ or '').strip()
    return doc.splitlines()[0] if doc else ''


def parse_metric_list(spec: str | None, flag: str = '--metrics') -> list[str]:
    """'fid50k_full,kid50k_full' -> list of names; 'none' or '' -> []. Unknown names raise a
    one-line ValueError that names the flag and lists the valid metrics."""
    if spec is None or spec.strip().lower() in ('', 'none'):
        return []
    names = [name.strip() for name in spec.split(',') if name.strip()]
    for name in names:
        if not is_valid_metric(name):
            raise ValueError(f"{flag}: unknown metric '{name}'; valid: {', '.join(list_valid_metrics())} "
                             f"(or 'none')")
    return names

# ---------------------------------------------------------------------------------------------
# Running and reporting.


def calc_metric(metric: str, **kwargs) -> dnnlib.EasyDict:
    """Run a registered metric; `kwargs` are `metric_utils.MetricOptions` arguments (G, G_kwargs,
    dataset_kwargs, num_gpus, rank, device, progress, cache, ...).

    Returns EasyDict(results=EasyDict(name=value, ...), metric, total_time, total_time_str,
    num_gpus); every rank gets rank 0's values.
    """
    if not is_valid_metric(metric):
        raise ValueError(f"Unknown metric '{metric}'; valid: {', '.join(list_valid_metrics())}")
    opts = metric_utils.MetricOptions(**kwargs)
    start_time = time.time()
    results = _metric_dict[metric](opts)
    total_time = time.time() - start_time

    # Only rank 0 computes the final numbers; share them so every rank returns the same dict.
    for key, value in list(results.items()):
        value = float(value)
        if opts.num_gpus > 1:
            tensor = torch.tensor(value, dtype=torch.float64, device=opts.device)
            torch.distributed.broadcast(tensor, src=0)
            value = float(tensor.item())
        results[key] = value
    return dnnlib.EasyDict(results=dnnlib.EasyDict(results), metric=metric, total_time=total_time,
                           total_time_str=dnnlib.util.format_time(total_time), num_gpus=opts.num_gpus)


def report_metric(result_dict: dict, run_dir: str | None = None, snapshot_pkl: str | None = None) -> str:
    """Print the result as one JSON line and append it to `<run_dir>/metric-<metric>.jsonl` when
    run_dir is an existing folder (`snapshot_pkl` is stored relative to it). Returns the line."""
    metric = result_dict['metric']
    if not is_valid_metric(metric):
        raise ValueError(f"report_metric: unknown metric '{metric}'")
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time()))
    print(line)
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f'metric-{metric}.jsonl'), 'at') as f:
            f.write(line + '\n')
    return line

# ---------------------------------------------------------------------------------------------
# Helpers for the metric definitions.

_INCEPTION = ('detector', feature_networks.INCEPTION_URL)  # FID, KID, IS, PRDC features.
_VGG16 = ('detector', feature_networks.VGG16_URL)          # Precision/recall features, LPIPS inside PPL.


def _real_images(opts: metric_utils.MetricOptions, metric: str) -> None:
    # '_full' metrics compare against every dataset image, without x-flips; the legacy ones use
    # the dataset as configured (max_real caps the count).
    opts.require_dataset(metric)
    if metric.endswith('_full') or metric.endswith('_tiny'):
        opts.dataset_kwargs.update(max_size=None, xflip=False)


def _fid(opts, name, max_real, num_gen):
    _real_images(opts, name)
    opts.require_G(name)
    return {name: frechet_inception_distance.compute_fid(opts, max_real=max_real, num_gen=num_gen)}


def _kid(opts, name, max_real, num_gen, num_subsets=100, max_subset_size=1000):
    _real_images(opts, name)
    opts.require_G(name)
    kid = kernel_inception_distance.compute_kid(opts, max_real=max_real, num_gen=num_gen,
                                                num_subsets=num_subsets, max_subset_size=max_subset_size)
    return {name: kid}


def _pr(opts, name, max_real, num_gen, nhood_size=3):
    _real_images(opts, name)
    opts.require_G(name)
    precision, recall = precision_recall.compute_pr(opts, max_real=max_real, num_gen=num_gen, nhood_size=nhood_size)
    return {f'{name}_precision': precision, f'{name}_recall': recall}


def _is(opts, name, num_gen, num_splits=10):
    opts.require_G(name)
    if opts.dataset_kwargs.get('class_name'):  # only needed for the labels of a conditional G
        opts.dataset_kwargs.update(max_size=None, xflip=False)
    mean, std = inception_score.compute_is(opts, num_gen=num_gen, num_splits=num_splits)
    return {f'{name}_mean': mean, f'{name}_std': std}


def _ppl(opts, name, num_samples, space, sampling, crop, epsilon=1e-4, batch_size=2):
    opts.require_G(name)
    if opts.dataset_kwargs.get('class_name'):
        opts.dataset_kwargs.update(max_size=None)
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=num_samples, epsilon=epsilon, space=space,
                                             sampling=sampling, crop=crop, batch_size=batch_size)
    return {name: ppl}

# ---------------------------------------------------------------------------------------------
# Recommended metrics.


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def fid50k_full(opts):
    """FID, 50k generated images vs. the full dataset (Inception-v3)."""
    return _fid(opts, 'fid50k_full', max_real=None, num_gen=50000)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def kid50k_full(opts):
    """KID, 50k generated images vs. up to 1M dataset images (100 subsets of 1000)."""
    return _kid(opts, 'kid50k_full', max_real=1000000, num_gen=50000)


@register_metric
@metric_utils.needs_weights(_VGG16)
def pr50k3_full(opts):
    """Precision and recall, 50k generated vs. up to 200k dataset images, 3-NN (VGG16)."""
    return _pr(opts, 'pr50k3_full', max_real=200000, num_gen=50000, nhood_size=3)


@register_metric
@metric_utils.needs_weights(_VGG16)
@metric_utils.without_real_images
def ppl2_wend(opts):
    """Perceptual path length in W, endpoints, no crop, 50k pairs (StyleGAN2 definition)."""
    return _ppl(opts, 'ppl2_wend', num_samples=50000, space='w', sampling='end', crop=False)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
@metric_utils.without_real_images
def is50k(opts):
    """Inception score of 50k generated images (10 splits)."""
    return _is(opts, 'is50k', num_gen=50000, num_splits=10)

# ---------------------------------------------------------------------------------------------
# Cheaper variants (progress monitoring during training, small datasets).


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def fid10k_full(opts):
    """FID, 10k generated images vs. the full dataset."""
    return _fid(opts, 'fid10k_full', max_real=None, num_gen=10000)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def fid1k_full(opts):
    """FID, 1k generated images vs. the full dataset (biased upwards; for quick trends only)."""
    return _fid(opts, 'fid1k_full', max_real=None, num_gen=1000)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def kid10k_full(opts):
    """KID, 10k generated images vs. up to 1M dataset images."""
    return _kid(opts, 'kid10k_full', max_real=1000000, num_gen=10000)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def kid1k_full(opts):
    """KID, 1k generated images vs. up to 1M dataset images (domain-expansion --debug runs)."""
    return _kid(opts, 'kid1k_full', max_real=1000000, num_gen=1000)


@register_metric
@metric_utils.needs_weights(_VGG16)
def pr10k3_full(opts):
    """Precision and recall, 10k generated vs. up to 200k dataset images, 3-NN."""
    return _pr(opts, 'pr10k3_full', max_real=200000, num_gen=10000, nhood_size=3)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
@metric_utils.without_real_images
def is10k(opts):
    """Inception score of 10k generated images (10 splits)."""
    return _is(opts, 'is10k', num_gen=10000, num_splits=10)

# ---------------------------------------------------------------------------------------------
# Legacy metrics (StyleGAN / StyleGAN2 papers): at most 50k real images, possibly x-flipped.


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def fid50k(opts):
    """FID, 50k generated vs. up to 50k dataset images (legacy)."""
    return _fid(opts, 'fid50k', max_real=50000, num_gen=50000)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def kid50k(opts):
    """KID, 50k generated vs. up to 50k dataset images (legacy)."""
    return _kid(opts, 'kid50k', max_real=50000, num_gen=50000)


@register_metric
@metric_utils.needs_weights(_VGG16)
def pr50k3(opts):
    """Precision and recall, 50k generated vs. up to 50k dataset images, 3-NN (legacy)."""
    return _pr(opts, 'pr50k3', max_real=50000, num_gen=50000, nhood_size=3)


@register_metric
@metric_utils.needs_weights(_VGG16)
@metric_utils.without_real_images
def ppl_zfull(opts):
    """PPL in Z, full paths, face crop, 50k pairs (StyleGAN1 definition)."""
    return _ppl(opts, 'ppl_zfull', num_samples=50000, space='z', sampling='full', crop=True)


@register_metric
@metric_utils.needs_weights(_VGG16)
@metric_utils.without_real_images
def ppl_wfull(opts):
    """PPL in W, full paths, face crop, 50k pairs (StyleGAN1 definition)."""
    return _ppl(opts, 'ppl_wfull', num_samples=50000, space='w', sampling='full', crop=True)


@register_metric
@metric_utils.needs_weights(_VGG16)
@metric_utils.without_real_images
def ppl_zend(opts):
    """PPL in Z, endpoints, face crop, 50k pairs (StyleGAN1 definition)."""
    return _ppl(opts, 'ppl_zend', num_samples=50000, space='z', sampling='end', crop=True)


@register_metric
@metric_utils.needs_weights(_VGG16)
@metric_utils.without_real_images
def ppl_wend(opts):
    """PPL in W, endpoints, face crop, 50k pairs (StyleGAN1 definition)."""
    return _ppl(opts, 'ppl_wend', num_samples=50000, space='w', sampling='end', crop=True)

# ---------------------------------------------------------------------------------------------
# Tiny metrics: `opts.tiny_num_items` images (CPU smoke runs, tests; not comparable to papers).


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def fid_tiny(opts):
    """FID with tiny_num_items generated vs. full dataset (smoke runs and tests)."""
    return _fid(opts, 'fid_tiny', max_real=None, num_gen=opts.tiny_num_items)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def kid_tiny(opts):
    """KID with tiny_num_items generated images, 10 subsets (smoke runs and tests)."""
    n = opts.tiny_num_items
    return _kid(opts, 'kid_tiny', max_real=None, num_gen=n, num_subsets=10, max_subset_size=n)


@register_metric
@metric_utils.needs_weights(_VGG16)
def pr_tiny(opts):
    """Precision and recall with tiny_num_items generated images, 3-NN (smoke runs and tests)."""
    return _pr(opts, 'pr_tiny', max_real=None, num_gen=opts.tiny_num_items, nhood_size=3)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
@metric_utils.without_real_images
def is_tiny(opts):
    """Inception score of tiny_num_items generated images, 2 splits (smoke runs and tests)."""
    return _is(opts, 'is_tiny', num_gen=opts.tiny_num_items, num_splits=2)


@register_metric
@metric_utils.needs_weights(_VGG16)
@metric_utils.without_real_images
def ppl_tiny(opts):
    """PPL in W, endpoints, tiny_num_items pairs (smoke runs and tests)."""
    return _ppl(opts, 'ppl_tiny', num_samples=opts.tiny_num_items, space='w', sampling='end', crop=False)

# ---------------------------------------------------------------------------------------------
# Precision, recall, density and coverage (Naeem et al. 2020; metrics/prdc.py), k = 5. Features:
# Inception pool features, raw pixels with calc_metrics.py --features pixels (toy data), or
# latents with --features w (real latents from a file instead of dataset images).


def _prdc(opts, name, max_real, num_gen, nearest_k=prdc.DEFAULT_K):
    if prdc.feature_kind(opts) != 'w':
        _real_images(opts, name)
    opts.require_G(name)
    values = prdc.compute_prdc_metric(opts, max_real=max_real, num_gen=num_gen, nearest_k=nearest_k)
    return {f'{name}_{key}': value for key, value in values.items()}


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def prdc10k_full(opts):
    """Precision, recall, density, coverage: 10k generated vs. up to 10k dataset images, k = 5."""
    return _prdc(opts, 'prdc10k_full', max_real=10000, num_gen=10000)


@register_metric
@metric_utils.needs_weights(_INCEPTION)
def prdc_tiny(opts):
    """Precision, recall, density, coverage with tiny_num_items images per side, k = 5 (smoke runs, tests)."""
    return _prdc(opts, 'prdc_tiny', max_real=opts.tiny_num_items, num_gen=opts.tiny_num_items)

# ---------------------------------------------------------------------------------------------
