"""Machinery shared by the metrics: the options object, progress reporting, feature statistics,
and the two loops that push real images (from the dataset) or generated images (from G) through
a feature network, on one or several processes.

Multi-process runs (`num_gpus > 1`) need an initialised `torch.distributed` process group; every
rank processes a slice of the items and all ranks end up with the same gathered statistics.
"""

import contextlib
import copy
import hashlib
import json
import os
from typing import Callable, Iterator

import numpy as np
import torch
import tqdm

import dnnlib
from metrics import feature_networks

# ---------------------------------------------------------------------------------------------


def without_real_images(fn: Callable) -> Callable:
    """Decorator for a registered metric that looks at generated images only (IS, PPL, most
    expansion metrics): its dataset, if any, only supplies labels for a conditional G, so
    command lines need no --data for it (metric_main.metric_needs_real_images)."""
    fn.needs_real_images = False
    return fn


def needs_weights(*weights: tuple) -> Callable:
    """Decorator for a registered metric: the pretrained files it loads, as ('detector', URL),
    ('clip', config CLIP name) or ('lpips', backbone) pairs, so that a training run can check
    them before its first tick (metric_main.pretrained_weights)."""
    for weight in weights:
        if not (isinstance(weight, tuple) and len(weight) == 2 and weight[0] in ('detector', 'clip', 'lpips')):
            raise ValueError(f"needs_weights: expected ('detector'|'clip'|'lpips', name) pairs, got {weight!r}")

    def decorate(fn: Callable) -> Callable:
        fn.pretrained_weights = tuple(weights)
        return fn
    return decorate


class MetricOptions:
    """Everything a metric function may need; built by `metric_main.calc_metric(**kwargs)`."""

    def __init__(self,
        G: torch.nn.Module | None = None,   # Generator; metrics use a deep copy on `device`. None for metrics that need none.
        G_kwargs: dict | None = None,       # Extra keyword arguments for G(z, c, **G_kwargs), e.g. noise_mode, truncation_psi.
        dataset_kwargs: dict | None = None, # Real images: kwargs for dnnlib.util.construct_class_by_name (incl. class_name).
        num_gpus: int = 1,                  # Number of processes (torch.distributed world size when > 1).
        rank: int = 0,                      # This process's rank, 0 .. num_gpus-1.
        device: torch.device | str | None = None,  # Device for G and the feature networks; required.
        progress: bool | Callable | None = True,   # True: tqdm bar on rank 0; False/None: silent; callable(tag, done, total).
        cache: bool = True,                 # Cache real-image statistics on disk (keyed by dataset, detector, item count).
        cache_dir: str | None = None,       # Cache folder; None: dnnlib.make_cache_dir_path('gan-metrics').
        detector_dir: str | None = None,    # Offline folder holding the detector files; None: $GAN_METRICS_DETECTOR_DIR or download.
        seed: int = 0,                      # Seed of the latents and labels drawn for generated images.
        num_workers: int = 3,               # DataLoader worker processes for real images (0: load in this process).
        tiny_num_items: int = 256,          # Item count of the *_tiny metrics (smoke runs, tests).
        extra: dict | None = None,          # Inputs of special metrics (expansion metrics: parent G, encoders, ...).
    ):
        if device is None:
            raise ValueError('MetricOptions: pass device= (e.g. torch.device("cuda", rank) or "cpu"); '
                             'metrics never pick a device on their own')
        if not 0 <= rank < num_gpus:
            raise ValueError(f'MetricOptions: rank={rank} is outside 0..num_gpus-1 (num_gpus={num_gpus})')
        self.G = G
        self.G_kwargs = dnnlib.EasyDict(G_kwargs or {})
        self.dataset_kwargs = dnnlib.EasyDict(copy.deepcopy(dict(dataset_kwargs or {})))
        self.num_gpus = num_gpus
        self.rank = rank
        self.device = torch.device(device)
        self.progress = progress
        self.cache = cache
        self.cache_dir = cache_dir
        self.detector_dir = detector_dir
        self.seed = seed
        self.num_workers = num_workers
        self.tiny_num_items = tiny_num_items
        self.extra = dnnlib.EasyDict(extra or {})

    def require_G(self, metric: str) -> torch.nn.Module:
        """The generator, or a clear error if the caller gave none."""
        if self.G is None:
            raise ValueError(f'Metric {metric} needs a generator: pass G= (calc_metrics.py --network)')
        return self.G

    def require_dataset(self, metric: str) -> None:
        """Check that real images were configured."""
        if not self.dataset_kwargs.get('class_name'):
            raise ValueError(f'Metric {metric} needs real images: pass dataset_kwargs with a class_name '
                             f'(calc_metrics.py --data DIR_OR_ZIP)')

# ---------------------------------------------------------------------------------------------


class Progress:
    """How far one stage of a metric has got, on rank 0: a tqdm bar, a callback
    `progress(tag, done, total)`, or nothing (progress False/None)."""

    def __init__(self, progress: bool | Callable | None, tag: str, total: int, rank: int = 0):
        self.tag = tag
        self.total = total
        self.callback = None
        self.bar = None
        if rank != 0 or not progress:
            return
        if callable(progress):
            self.callback = progress
            self.callback(tag, 0, total)
        else:
            self.bar = tqdm.tqdm(total=total, desc=tag, unit='img', dynamic_ncols=True, leave=False)

    def update(self, done: int) -> None:
        done = min(done, self.total)
        if self.callback is not None:
            self.callback(self.tag, done, self.total)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

# ---------------------------------------------------------------------------------------------


class FeatureStats:
    """Accumulates feature vectors: all of them (`capture_all`) and/or their running mean and
    covariance (`capture_mean_cov`, float64 sums), up to `max_items` rows."""

    def __init__(self,
        capture_all: bool = False,      # Keep every feature row (KID, PR, IS).
        capture_mean_cov: bool = False, # Keep float64 sums for mean and covariance (FID).
        max_items: int | None = None,   # Stop accepting rows after this many; None: unlimited.
    ):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = []
        self.raw_mean = None    # [D] float64: sum of rows
        self.raw_cov = None     # [D, D] float64: sum of outer products

    def set_num_features(self, num_features: int) -> None:
        if self.num_features is not None and self.num_features != num_features:
            raise ValueError(f'FeatureStats: got {num_features} features per row after {self.num_features}')
        self.num_features = num_features
        if self.raw_mean is None and self.capture_mean_cov:
            self.raw_mean = np.zeros([num_features], dtype=np.float64)
            self.raw_cov = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x: np.ndarray) -> None:
        """Add rows `x` `[N, D]`; rows beyond `max_items` are dropped."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f'FeatureStats.append expects [N, D] features, got shape {list(x.shape)}')
        if self.max_items is not None:
            x = x[:max(self.max_items - self.num_items, 0)]
        self.set_num_features(x.shape[1])
        if x.shape[0] == 0:
            return
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def append_torch(self, x: torch.Tensor, num_gpus: int = 1, interleave: bool = True) -> None:
        """Gather `x` `[N, D]` from every rank (see `gather_rows`) and append the result."""
        self.append(gather_rows(x, num_gpus, interleave).cpu().numpy())

    def get_all(self) -> np.ndarray:
        """All rows `[num_items, D]` (needs capture_all)."""
        assert self.capture_all, 'FeatureStats.get_all needs capture_all=True'
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean `[D]` and covariance `[D, D]` (normalised by N, as the official metrics do)."""
        assert self.capture_mean_cov, 'FeatureStats.get_mean_cov needs capture_mean_cov=True'
        if self.num_items == 0:
            raise ValueError('FeatureStats: no items were accumulated (empty dataset?)')
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items - np.outer(mean, mean)
        return mean, cov

    def save(self, path: str) -> None:
        """Write an .npz (no pickled objects) atomically: a temporary file, then a rename."""
        arrays = dict(capture_all=self.capture_all, capture_mean_cov=self.capture_mean_cov,
                      max_items=-1 if self.max_items is None else self.max_items,
                      num_items=self.num_items, num_features=-1 if self.num_features is None else self.num_features)
        if self.capture_all:
            arrays['all_features'] = self.get_all()
        if self.capture_mean_cov and self.raw_mean is not None:
            arrays['raw_mean'] = self.raw_mean
            arrays['raw_cov'] = self.raw_cov
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with dnnlib.util.atomic_write_path(path) as tmp_path, open(tmp_path, 'wb') as f:
            np.savez(f, **arrays)

    @staticmethod
    def load(path: str) -> 'FeatureStats':
        with np.load(path, allow_pickle=False) as data:
            max_items = int(data['max_items'])
            stats = FeatureStats(capture_all=bool(data['capture_all']), capture_mean_cov=bool(data['capture_mean_cov']),
                                 max_items=None if max_items < 0 else max_items)
            stats.num_items = int(data['num_items'])
            num_features = int(data['num_features'])
            stats.num_features = None if num_features < 0 else num_features
            if stats.capture_all:
                stats.all_features = [data['all_features']]
            if 'raw_mean' in data:
                stats.raw_mean = data['raw_mean']
                stats.raw_cov = data['raw_cov']
        return stats


def gather_rows(x: torch.Tensor, num_gpus: int, interleave: bool = True) -> torch.Tensor:
    """Collect `x` `[N, ...]` (same N on every rank) from all ranks. `interleave=True` orders the
    rows as rank 0 row 0, rank 1 row 0, ..., which restores the dataset order when rank r holds
    items r, r+num_gpus, ...; `interleave=False` puts rank 0's rows first (whole batches)."""
    if num_gpus == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(num_gpus)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.stack(parts, dim=1 if interleave else 0).flatten(0, 1)


def broadcast_flag(flag: bool, num_gpus: int, device: torch.device) -> bool:
    """Rank 0's value of `flag` on every rank."""
    if num_gpus == 1:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.broadcast(tensor, src=0)
    return bool(tensor.item() > 0.5)

# ---------------------------------------------------------------------------------------------
# Real images.


def make_dataset(opts: MetricOptions) -> torch.utils.data.Dataset:
    """Construct the real-image dataset from `opts.dataset_kwargs`."""
    return dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)


def _stats_cache_path(opts: MetricOptions, dataset, detector_url: str, detector_kwargs: dict,
                      stats_kwargs: dict) -> str:
    key = dict(dataset_kwargs=opts.dataset_kwargs,
               detector=feature_networks.detector_fingerprint(detector_url, opts.detector_dir),
               detector_kwargs=detector_kwargs, stats_kwargs=stats_kwargs)
    md5 = hashlib.md5(json.dumps(key, sort_keys=True, default=str).encode('utf-8')).hexdigest()
    name = getattr(dataset, 'name', None) or 'dataset'
    tag = os.path.splitext(os.path.basename(detector_url))[0] or 'detector'
    cache_dir = opts.cache_dir if opts.cache_dir is not None else dnnlib.make_cache_dir_path('gan-metrics')
    return os.path.join(cache_dir, f'{name}-{tag}-{md5}.npz')


def _to_rgb(images: torch.Tensor) -> torch.Tensor:
    # Grayscale images go through the RGB feature networks as three equal channels.
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    if images.shape[1] != 3:
        raise ValueError(f'Metrics need images with 1 or 3 channels, got {images.shape[1]} ({list(images.shape)})')
    return images


@torch.no_grad()
def compute_feature_stats_for_dataset(opts: MetricOptions, detector_url: str, detector_kwargs: dict,
                                      batch_size: int = 64, tag: str = 'real images',
                                      **stats_kwargs) -> FeatureStats:
    """Features of the real images (at most `stats_kwargs['max_items']`), cached on disk when
    `opts.cache`. Returns the same FeatureStats on every rank."""
    dataset = make_dataset(opts)
    # Never more rows than the dataset holds (also makes e.g. fid50k and fid50k_full share the
    # cache on a dataset smaller than 50k).
    max_items = stats_kwargs.get('max_items')
    stats_kwargs['max_items'] = len(dataset) if max_items is None else min(max_items, len(dataset))
    cache_file = None
    if opts.cache:
        cache_file = _stats_cache_path(opts, dataset, detector_url, detector_kwargs, stats_kwargs)
        if broadcast_flag(os.path.isfile(cache_file) if opts.rank == 0 else False, opts.num_gpus, opts.device):
            return FeatureStats.load(cache_file)

    num_items = stats_kwargs['max_items']
    if num_items == 0:
        raise ValueError(f'The dataset {opts.dataset_kwargs.get("path", "")!r} holds no images')
    stats = FeatureStats(**stats_kwargs)
    detector = feature_networks.load_detector(detector_url, opts.device, opts.num_gpus, opts.rank, opts.detector_dir)
    # Rank r reads items r, r+G, r+2G, ...; the list wraps around so that every rank runs the same
    # number of batches (collectives must match), and the wrapped rows fall beyond num_items.
    item_subset = [(i * opts.num_gpus + opts.rank) % num_items for i in range((num_items - 1) // opts.num_gpus + 1)]
    loader_kwargs = dict(num_workers=opts.num_workers, pin_memory=opts.device.type == 'cuda')
    if opts.num_workers > 0:
        loader_kwargs['prefetch_factor'] = 2
    loader = torch.utils.data.DataLoader(dataset, sampler=item_subset, batch_size=batch_size, **loader_kwargs)
    with Progress(opts.progress, tag, num_items, opts.rank) as progress:
        for images, _labels in loader:
            images = _to_rgb(torch.as_tensor(images))                          # [N, 3, H, W] uint8
            features = detector(images.to(opts.device), **detector_kwargs)     # [N, D]
            stats.append_torch(features, opts.num_gpus, interleave=True)
            progress.update(stats.num_items)
            if stats.is_full():
                break
    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats

# ---------------------------------------------------------------------------------------------
# Generated images.


def batch_generator(seed: int, batch_idx: int) -> torch.Generator:
    """CPU random generator for global batch `batch_idx`: the latents and labels depend only on
    (seed, batch size, item count), not on the number of processes."""
    return torch.Generator().manual_seed(seed * 1_000_003 + batch_idx)


@contextlib.contextmanager
def seeded_global_rng(seed: int, batch_idx: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG for one global batch and restore the caller's state afterwards:
    randomness drawn inside G (noise_mode='random') becomes reproducible without side effects."""
    with torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []):
        torch.manual_seed((seed * 1_000_003 + batch_idx) * 2 + 1)  # a stream apart from batch_generator's
        yield


def dataset_label(dataset, idx: int) -> np.ndarray:
    """Label vector of item `idx` (the dataset's `get_label` when it has one: no image decode)."""
    if hasattr(dataset, 'get_label'):
        return np.asarray(dataset.get_label(idx), dtype=np.float32)
    return np.asarray(dataset[idx][1], dtype=np.float32)


def sample_latents(opts: MetricOptions, G: torch.nn.Module, batch_size: int, batch_idx: int,
                   dataset=None) -> tuple[torch.Tensor, torch.Tensor]:
    """z `[batch_size, z_dim]` and c `[batch_size, c_dim]` for one global batch, on opts.device;
    labels are those of random dataset items (conditional G), else an empty `[N, 0]` tensor."""
    gen = batch_generator(opts.seed, batch_idx)
    z = torch.randn([batch_size, G.z_dim], generator=gen)
    c = torch.zeros([batch_size, G.c_dim])
    if G.c_dim > 0:
        if dataset is None:
            raise ValueError('A conditional generator (c_dim > 0) needs the dataset for its labels: '
                             'pass dataset_kwargs (calc_metrics.py --data)')
        idx = torch.randint(len(dataset), [batch_size], generator=gen).tolist()
        c = torch.from_numpy(np.stack([dataset_label(dataset, i) for i in idx]))
        if c.shape[1] != G.c_dim:
            raise ValueError(f'Dataset labels have {c.shape[1]} entries but G.c_dim={G.c_dim}; '
                             f'use the dataset the network was trained on (with use_labels=True)')
    return z.to(opts.device), c.to(opts.device)


def images_to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 [0, 255], as the images would be saved."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def compute_feature_stats_for_generator(opts: MetricOptions, detector_url: str, detector_kwargs: dict,
                                        batch_size: int = 64, batch_gen: int | None = None,
                                        tag: str = 'generated images', G: torch.nn.Module | None = None,
                                        **stats_kwargs) -> FeatureStats:
    """Features of `stats_kwargs['max_items']` generated images.

    Args:
        batch_size:  images per feature-network call (per rank).
        batch_gen:   images per generator call (divides batch_size); None: min(batch_size, 4).
        tag:         progress label.
        G:           the generator, called as G(z=z, c=c, **opts.G_kwargs) on a copy on
                     opts.device; None: opts.G (expansion metrics pass the parent generator or
                     a wrapper that renders one subspace).
    """
    if stats_kwargs.get('max_items') is None:
        raise ValueError('compute_feature_stats_for_generator needs max_items (the number of images)')
    batch_gen = batch_gen or min(batch_size, 4)
    assert batch_size % batch_gen == 0, f'batch_gen={batch_gen} must divide batch_size={batch_size}'
    G = copy.deepcopy(G if G is not None else opts.require_G(tag)).eval().requires_grad_(False).to(opts.device)
    dataset = make_dataset(opts) if G.c_dim > 0 and opts.dataset_kwargs.get('class_name') else None
    stats = FeatureStats(**stats_kwargs)
    detector = feature_networks.load_detector(detector_url, opts.device, opts.num_gpus, opts.rank, opts.detector_dir)
    step = 0
    with Progress(opts.progress, tag, stats.max_items, opts.rank) as progress:
        while not stats.is_full():
            z, c = sample_latents(opts, G, batch_size, step * opts.num_gpus + opts.rank, dataset)
            # In the last step only the first rows (in rank order) are still needed: render those
            # (at least one, to learn the feature size) and pad to batch_size, so that all ranks
            # gather equal shapes; the padding lands after max_items and is dropped by append.
            num_needed = min(max(stats.max_items - stats.num_items - opts.rank * batch_size, 0), batch_size)
            num_run = max(num_needed, 1)
            with seeded_global_rng(opts.seed, step * opts.num_gpus + opts.rank, opts.device):
                images = [images_to_uint8(G(z=z_part, c=c_part, **opts.G_kwargs))
                          for z_part, c_part in zip(z[:num_run].split(batch_gen), c[:num_run].split(batch_gen))]
            images = _to_rgb(torch.cat(images))                                 # [num_run, 3, H, W] uint8
            features = detector(images, **detector_kwargs)[:num_needed]         # [num_needed, D]
            features = torch.nn.functional.pad(features, [0, 0, 0, batch_size - num_needed])  # [batch_size, D]
            stats.append_torch(features, opts.num_gpus, interleave=False)
            progress.update(stats.num_items)
            step += 1
    return stats


def compute_real_and_generated_features(opts: MetricOptions, detector_url: str, max_real: int | None,
                                        num_gen: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Every feature row (`return_features=True`) of at most `max_real` dataset images (None:
    all) and of `num_gen` generated images: the inputs of the metrics that compare the two sets
    row by row (KID, precision/recall). `label` heads the progress tags (e.g. 'KID')."""
    detector_kwargs = dict(return_features=True)
    real_features = compute_feature_stats_for_dataset(
        opts, detector_url, detector_kwargs, capture_all=True, max_items=max_real,
        tag=f'{label}: real images').get_all()
    gen_features = compute_feature_stats_for_generator(
        opts, detector_url, detector_kwargs, capture_all=True, max_items=num_gen,
        tag=f'{label}: generated images').get_all()
    return real_features, gen_features

# ---------------------------------------------------------------------------------------------
