"""Evaluating an expanded generator, in one place (domain expansion, Nitzan et al. 2023, Sec. 4).

During training (`DomainExpansionLoss.on_snapshot` calls `snapshot_report`): the labelled aligned
grid (base row, then one row per domain) and each domain's own task error; `error_matrix` gives
every task's error on every domain's subspace (leakage); `transform_r2` gives each Transform
domain's R^2 against T(base image) (`r_squared`, interfaces.md section 5).

Registered metrics (`calc_metrics.py`, `train.py --metrics`; registered with
`metrics.metric_main` when this module is imported):

- Base-subspace FID (Tab. 2): images from the base subspace against the dataset, or against the
  parent (source) generator's images.
- Per-domain CLIP error (Sec. 4.3): 1 - cos(CLIP(image), CLIP(text)) of images from each
  repurposed subspace, with a CLIP model not used in training (ViT-L/14 by default).
- Intra-cluster LPIPS diversity (Tab. 1, after Ojha et al. 2021): images are assigned to the
  nearest of a few centres by LPIPS; the mean pairwise LPIPS within each cluster, averaged.
- Composition (Fig. 9): CLIP errors of images that combine two domains, each normalised by the
  error of the single-domain setting.
- Semantic-Score / Diversity (the protocol of the encoder-based adaptation papers): mean CLIP
  (ViT-B/16) cosine of adapted images to a domain's reference image; mean pairwise 1 - cosine.

What the metrics read from `MetricOptions.extra` (calc_metrics.py fills the first two):
    expansion:         the snapshot's `latent_basis`, `repurposed_dims`, `subspace_distance`,
                       `expansion_cfg` (required by every metric here).
    parent_G:          the source generator (base-vs-parent FID; calc_metrics.py --parent).
    domain_texts:      {task name: text} CLIP targets; default: each NADA task's target_text
                       (domains without a text are skipped by the CLIP-error metrics).
    reference_images:  {task name: image path} for the Semantic-Score.
    cluster_centers:   {task name: uint8 [K, 3, H, W] tensor} LPIPS cluster centres; default:
                       the domain's first 10 generated images.
    clip_encoders:     {model name: encoder} injected encoders (tests; models loaded elsewhere);
                       an encoder has `encode_images([-1, 1] images) -> [N, D]` and
                       `encode_texts(list of str) -> [T, D]`.
    lpips:             injected distance `(x, y) -> [N]` on [-1, 1] images; default LPIPS-alex.
    allow_task_import: True = import dotted task types named in the snapshot's expansion_cfg (the
                       user's explicit say-so); default: registered types only, a dotted one is refused.
Each metric runs on rank 0 only (other ranks return NaN), except the FIDs, which use all ranks.
"""

import copy
import itertools
import re

import numpy as np
import PIL.Image
import torch

from metrics import feature_networks
from metrics import frechet_inception_distance
from metrics import metric_utils
from metrics import metric_main
from torch_utils import image_utils
from training.expansion.constants import SUBSPACE_DISTANCE
from training.expansion.render import render
from training.expansion.subspaces import LatentSubspaces
from training.expansion.theta_domains import ExpansionDomains

METRICS = []  # Registered with metric_main at the end of this module, in this order.

CLIP_ERROR_MODEL = 'ViT-L/14'   # Held out: training (NADA) uses ViT-B/32 and ViT-B/16.
SEMANTIC_MODEL = 'ViT-B/16'     # The Semantic-Score / Diversity protocol's encoder.

_loaded_models: dict = {}       # (kind, name, device) -> encoder / distance, loaded once per process

# ---------------------------------------------------------------------------------------------
# During training: aligned grids and task errors.


@torch.no_grad()
def task_latents(task, G_mapping: torch.nn.Module, n: int, seed: int = 0):
    """`(w [M, w_dim], context)` of a task's evaluation latents (z mapped with psi 1, no w_avg update)."""
    batch = task.eval_latents(n, seed)
    if batch.w is not None:
        return batch.w.float(), batch.context
    c = torch.zeros([batch.z.shape[0], G_mapping.c_dim], device=batch.z.device)
    return G_mapping(batch.z, c, skip_w_avg_update=True)[:, 0], batch.context


def _domains(subspaces: LatentSubspaces, domains: ExpansionDomains | None) -> ExpansionDomains:
    """`domains` (configs with parameterised tasks), else task k = repurposed direction k."""
    return domains if domains is not None else ExpansionDomains.directions_only(subspaces)


@torch.no_grad()
def error_matrix(G_synthesis: torch.nn.Module, G_mapping: torch.nn.Module, subspaces: LatentSubspaces,
                 tasks: list, w_avg: torch.Tensor, n: int = 64, seed: int = 0,
                 domains: ExpansionDomains | None = None) -> np.ndarray:
    """`E[k, j]` = mean error of task k on renders from domain j's repurposed subspace.

    Task k's own evaluation latents are projected onto the base subspace with `w_avg` (the
    source's stored average, so the measurement does not move with training), rendered with
    `noise_mode='const'`, and stepped by `subspace_distance` along direction j (a parameterised
    domain of `domains`: rendered with its theta instead). The diagonal is each domain's own
    error; no leakage means each row is lowest on its diagonal.
    """
    domains = _domains(subspaces, domains)
    E = np.zeros([len(tasks), len(tasks)])
    for k, task in enumerate(tasks):
        w, context = task_latents(task, G_mapping, n, seed)
        base_w = subspaces.project_base(w, w_avg)                              # Eq. 1
        base_img = render(G_synthesis, base_w)
        for j in range(len(tasks)):
            edit_img = domains.render(G_synthesis, base_w, j)                  # Eq. 2
            E[k, j] = float(task.error(context, base_img, edit_img).mean())
    return E


def r_squared(domain_img: torch.Tensor, target_img: torch.Tensor) -> float:
    """R^2 of domain images against their targets (interfaces.md section 5), over all images:

        R^2 = 1 - sum (domain - target)^2 / sum (target - mean_HW(target))^2

    where mean_HW is each image's per-channel spatial mean. 1 = the domain is exactly the target;
    0 = no better than the target's colour statistics; negative = worse than those.

    Args:
        domain_img: `[N, C, H, W]` images.
        target_img: `[N, C, H, W]` targets, e.g. T(base image) of the same latents.
    """
    if domain_img.shape != target_img.shape or domain_img.ndim != 4:
        raise ValueError(f'r_squared: domain {list(domain_img.shape)} and target {list(target_img.shape)} '
                         f'must be equal [N, C, H, W] shapes')
    domain_img, target_img = domain_img.double(), target_img.double()
    residual = (domain_img - target_img).square().sum()
    spread = (target_img - target_img.mean(dim=[2, 3], keepdim=True)).square().sum()
    if spread == 0:
        raise ValueError('r_squared: every target image is flat (one colour per channel), R^2 is undefined')
    return float(1 - residual / spread)


@torch.no_grad()
def transform_r2(G_synthesis: torch.nn.Module, G_mapping: torch.nn.Module, subspaces: LatentSubspaces,
                 tasks: list, w_avg: torch.Tensor, n: int = 64, seed: int = 0,
                 domains: ExpansionDomains | None = None) -> dict:
    """`{task name: R^2}` of every task with an image transform `T` (Transform tasks): the
    renders of its domain (repurposed subspace, or theta of `domains`) against T(the
    base-subspace renders of the same latents), both from `G_synthesis`, latents as in `error_matrix`."""
    domains = _domains(subspaces, domains)
    r2 = {}
    for k, task in enumerate(tasks):
        if getattr(task, 'T', None) is None:
            continue
        w, _context = task_latents(task, G_mapping, n, seed)
        base_w = subspaces.project_base(w, w_avg)                              # Eq. 1
        base_img = render(G_synthesis, base_w)
        edit_img = domains.render(G_synthesis, base_w, k)                      # Eq. 2
        r2[task.name] = r_squared(edit_img, task.T(base_img))
    return r2


@torch.no_grad()
def aligned_rows(G_synthesis: torch.nn.Module, subspaces: LatentSubspaces, w: torch.Tensor,
                 w_avg: torch.Tensor, noise_mode: str = 'const',
                 domains: ExpansionDomains | None = None) -> list[torch.Tensor]:
    """Renders of the same latents on the base subspace, then in each domain (task order)."""
    domains = _domains(subspaces, domains)
    base_w = subspaces.project_base(w, w_avg)
    rows = [render(G_synthesis, base_w, noise_mode)]
    for k in range(domains.num_domains):
        rows.append(domains.render(G_synthesis, base_w, k, noise_mode))
    return rows


def save_aligned_grid(G_synthesis: torch.nn.Module, G_mapping: torch.nn.Module, subspaces: LatentSubspaces,
                      task_names: list[str], path: str, num_columns: int = 8, seed: int = 0,
                      domains: ExpansionDomains | None = None) -> None:
    """Labelled grid: fixed latents on the base subspace (row 'base') and on each domain."""
    device = subspaces.basis.device
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_columns, G_mapping.z_dim)).float().to(device)
    c = torch.zeros([num_columns, G_mapping.c_dim], device=device)
    with torch.no_grad():
        w = G_mapping(z, c, skip_w_avg_update=True)[:, 0]
    rows = aligned_rows(G_synthesis, subspaces, w, G_mapping.w_avg, domains=domains)
    grid = image_utils.make_grid([image_utils.to_uint8(r) for r in rows], row_labels=['base'] + list(task_names))
    image_utils.save_png_atomic(grid, path)


def snapshot_report(G_ema: torch.nn.Module, subspaces: LatentSubspaces, tasks: list, grid_path: str,
                    n: int = 16, domains: ExpansionDomains | None = None) -> dict:
    """What a training run records at each snapshot: the labelled aligned grid at `grid_path`,
    and `{'Eval/domain/<task name>': error}`, each domain's own task error on `n` of its
    evaluation latents (projected with G_ema's w_avg, rendered with noise 'const')."""
    domains = _domains(subspaces, domains)
    save_aligned_grid(G_ema.synthesis, G_ema.mapping, subspaces, [task.name for task in tasks], grid_path,
                      domains=domains)
    errors = {}
    for k, task in enumerate(tasks):
        w, context = task_latents(task, G_ema.mapping, n=n, seed=0)
        base_w = subspaces.project_base(w, G_ema.mapping.w_avg)                  # Eq. 1
        with torch.no_grad():
            base_img = render(G_ema.synthesis, base_w)
            edit_img = domains.render(G_ema.synthesis, base_w, k)                # Eq. 2
            errors[f'Eval/domain/{task.name}'] = float(task.error(context, base_img, edit_img).mean())
    return errors


# ---------------------------------------------------------------------------------------------
# Closed-form pieces.


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarities `[N, M]` between rows of a `[N, D]` and b `[M, D]`."""
    a = torch.nn.functional.normalize(a.to(torch.float64), dim=1)
    b = torch.nn.functional.normalize(b.to(torch.float64), dim=1)
    return a @ b.T


def clip_error(image_embeddings: torch.Tensor, text_embedding: torch.Tensor) -> float:
    """Mean over images of 1 - cos(image, text) (Sec. 4.3: the 1-complement of the CLIP score)."""
    return float((1 - cosine_matrix(image_embeddings, text_embedding.reshape(1, -1))).mean())


def semantic_score(image_embeddings: torch.Tensor, reference_embedding: torch.Tensor) -> float:
    """Mean over images of cos(E(reference), E(image))."""
    return float(cosine_matrix(image_embeddings, reference_embedding.reshape(1, -1)).mean())


def pairwise_diversity(embeddings: torch.Tensor) -> float:
    """Mean over unordered pairs i < j of 1 - cos(E_i, E_j)."""
    n = embeddings.shape[0]
    if n < 2:
        raise ValueError(f'Diversity needs at least 2 images, got {n}')
    sim = cosine_matrix(embeddings, embeddings)
    i, j = torch.triu_indices(n, n, offset=1)
    return float((1 - sim[i, j]).mean())


def _pair_distances(distance, a: torch.Tensor, b: torch.Tensor, pairs: torch.Tensor, batch_size: int,
                    device: torch.device) -> torch.Tensor:
    """distance(a[p0], b[p1]) for every row of pairs `[P, 2]` -> `[P]` float64 (batched)."""
    out = []
    for chunk in pairs.split(batch_size):
        x = _to_float(a[chunk[:, 0]], device)
        y = _to_float(b[chunk[:, 1]], device)
        out.append(distance(x, y).reshape(-1).to(torch.float64).cpu())
    return torch.cat(out) if out else torch.zeros([0], dtype=torch.float64)


def _to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    # uint8 [0, 255] storage -> float [-1, 1] on the device (other dtypes are taken as they are).
    if images.dtype == torch.uint8:
        return images.to(device).to(torch.float32) / 127.5 - 1
    return images.to(device)


def intra_cluster_diversity(images: torch.Tensor, centers: torch.Tensor, distance, batch_size: int = 64,
                            device: torch.device | str = 'cpu') -> float:
    """Intra-cluster diversity (Ojha et al. 2021): assign each image to its nearest centre under
    `distance`, take the mean distance over the pairs inside each cluster, and average over the
    clusters that hold at least two images.

    Args:
        images:   `[N, ...]` images (uint8 [0, 255] or float [-1, 1]).
        centers:  `[K, ...]` cluster centres, same layout.
        distance: `(x, y) -> [B]` distances between aligned batches (LPIPS in the paper).
    """
    device = torch.device(device)
    n, k = images.shape[0], centers.shape[0]
    all_pairs = torch.cartesian_prod(torch.arange(n), torch.arange(k))                     # [N*K, 2]
    to_centers = _pair_distances(distance, images, centers, all_pairs, batch_size, device).reshape(n, k)
    assignment = to_centers.argmin(dim=1)                                                  # [N]
    cluster_means = []
    for c in range(k):
        members = torch.nonzero(assignment == c).reshape(-1)
        if len(members) < 2:
            continue
        i, j = torch.triu_indices(len(members), len(members), offset=1)
        pairs = torch.stack([members[i], members[j]], dim=1)
        cluster_means.append(float(_pair_distances(distance, images, images, pairs, batch_size, device).mean()))
    if not cluster_means:
        raise ValueError(f'Intra-cluster diversity: no cluster received two images ({n} images, {k} centres); '
                         f'use more images')
    return float(np.mean(cluster_means))

# ---------------------------------------------------------------------------------------------
# Rendering an expanded generator.


class SubspaceGenerator(torch.nn.Module):
    """Wraps an expanded G so that G(z, c) renders one subspace: the base subspace (domain None),
    a repurposed subspace (domain = task index k; Eq. 3 with the stored subspace distance), or a
    composition (weights [K]: distances along every repurposed direction, Sec. 4.4)."""

    def __init__(self,
        G: torch.nn.Module,         # The expanded generator (G_ema of the snapshot).
        latent_basis,               # [w_dim, w_dim] basis (snapshot key latent_basis).
        repurposed_dims,            # [K] dims in task order (snapshot key repurposed_dims).
        subspace_distance: float,   # Step along a repurposed direction (snapshot key subspace_distance).
        domain: int | None = None,  # Task index k to render, or None for the base subspace.
        weights=None,               # [K] composition distances (overrides domain); None: not a composition.
    ):
        super().__init__()
        self.G = G
        self.subspaces = LatentSubspaces(latent_basis, repurposed_dims, subspace_distance)
        self.domain = domain
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.z_dim, self.c_dim = G.z_dim, G.c_dim
        self.img_resolution, self.img_channels = G.img_resolution, G.img_channels

    def extra_repr(self) -> str:
        return f'domain={self.domain}, weights={None if self.weights is None else self.weights.tolist()}'

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1, truncation_cutoff=None,
                **synthesis_kwargs) -> torch.Tensor:
        ws = self.G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)  # [N, num_ws, w_dim]
        ws = self.subspaces.project_base(ws, mean=self.G.mapping.w_avg)                  # Eq. 1
        if self.weights is not None:
            ws = self.subspaces.compose(ws, self.weights.to(ws.device))                  # Sec. 4.4
        elif self.domain is not None:
            ws = self.subspaces.edit(ws, self.domain)                                    # Eq. 2
        return self.G.synthesis(ws, **synthesis_kwargs)


class Domain:
    """One repurposed domain: its task index, name, key (for result names) and CLIP text."""

    def __init__(self, index: int, name: str, text: str | None):
        self.index = index
        self.name = name
        self.key = re.sub(r'[^0-9a-zA-Z]+', '_', name).strip('_').lower() or f'domain{index}'
        self.text = text


def expansion_inputs(opts: metric_utils.MetricOptions, metric: str) -> tuple[dict, list]:
    """(snapshot expansion keys, list of Domain) from opts.extra, or a one-line error."""
    info = opts.extra.get('expansion')
    if not info or info.get('latent_basis') is None or info.get('repurposed_dims') is None:
        raise ValueError(f'Metric {metric} needs an expanded generator: a snapshot with latent_basis and '
                         f'repurposed_dims (domain-expansion --network)')
    dims = [int(d) for d in torch.as_tensor(info['repurposed_dims']).reshape(-1)]
    names = [f'dim{d:03d}' for d in dims]
    texts = [None] * len(dims)
    if info.get('expansion_cfg'):
        from training.expansion.config import parse_expansion_config
        cfg = parse_expansion_config(info['expansion_cfg'], w_dim=int(info['latent_basis'].shape[0]),
                                     check_resources=False, source=f'{metric}: the snapshot\'s expansion_cfg',
                                     allow_task_import=bool(opts.extra.get('allow_task_import', False)))
        if len(cfg.tasks) != len(dims):
            raise ValueError(f'{metric}: the snapshot\'s expansion_cfg has {len(cfg.tasks)} tasks but '
                             f'repurposed_dims has {len(dims)}')
        names = list(cfg.task_names)
        texts = [task.args.get('target_text') for task in cfg.tasks]
    overrides = dict(opts.extra.get('domain_texts') or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f'{metric}: domain_texts names unknown domains {unknown}; domains: {names}')
    domains = [Domain(k, name, overrides.get(name, text)) for k, (name, text) in enumerate(zip(names, texts))]
    return dict(info), domains


def _subspace_G(opts, info, domain=None, weights=None) -> SubspaceGenerator:
    return SubspaceGenerator(opts.require_G('expansion metric'), info['latent_basis'], info['repurposed_dims'],
                             float(info.get('subspace_distance', SUBSPACE_DISTANCE)), domain=domain, weights=weights)


@torch.no_grad()
def render_images(opts: metric_utils.MetricOptions, G: torch.nn.Module, num: int, batch_size: int = 16,
                  max_resolution: int | None = None) -> torch.Tensor:
    """`num` images of G as uint8 `[num, 3, H, W]` on the CPU, from the seeded latents of
    metric_utils (every metric and subspace sees the same z), box-downsampled to at most
    `max_resolution` when given."""
    G = copy.deepcopy(G).eval().requires_grad_(False).to(opts.device)
    dataset = metric_utils.make_dataset(opts) if G.c_dim > 0 and opts.dataset_kwargs.get('class_name') else None
    out = []
    for batch_idx in range((num - 1) // batch_size + 1):
        z, c = metric_utils.sample_latents(opts, G, batch_size, batch_idx, dataset)
        with metric_utils.seeded_global_rng(opts.seed, batch_idx, opts.device):
            img = G(z, c, **opts.G_kwargs)
        if max_resolution is not None and img.shape[2] > max_resolution:
            factor = img.shape[2] // max_resolution
            img = img.reshape([img.shape[0], img.shape[1], img.shape[2] // factor, factor,
                               img.shape[3] // factor, factor]).mean([3, 5])
        img = metric_utils.images_to_uint8(img)
        out.append(img.repeat([1, 3, 1, 1]) if img.shape[1] == 1 else img)
    return torch.cat(out)[:num].cpu()


def _clip_encoder(opts, name: str):
    injected = (opts.extra.get('clip_encoders') or {}).get(name)
    if injected is not None:
        return injected
    key = ('clip', name, str(opts.device))
    if key not in _loaded_models:
        from training.expansion.tasks.shared_models import load_open_clip
        _loaded_models[key] = load_open_clip(name, opts.device)
    return _loaded_models[key]


def _lpips(opts):
    if opts.extra.get('lpips') is not None:
        return opts.extra.lpips
    key = ('lpips', 'alex', str(opts.device))
    if key not in _loaded_models:
        from training.expansion.tasks.shared_models import load_lpips
        _loaded_models[key] = load_lpips('alex', opts.device)
    return _loaded_models[key]


@torch.no_grad()
def _embed_images(encoder, images_uint8: torch.Tensor, device, batch_size: int = 32) -> torch.Tensor:
    return torch.cat([encoder.encode_images(_to_float(part, device)).float().cpu()
                      for part in images_uint8.split(batch_size)])


def _text_domains(domains: list, metric: str) -> list:
    with_text = [d for d in domains if d.text]
    if not with_text:
        raise ValueError(f'{metric}: no domain has a CLIP text (NADA target_text); give texts with '
                         f'extra domain_texts={{task name: text}}')
    return with_text


def _rank0(opts, names: list) -> dict | None:
    # The CLIP/LPIPS metrics run on rank 0; the others report NaN (calc_metric broadcasts rank 0's values).
    return None if opts.rank == 0 else {name: float('nan') for name in names}

# ---------------------------------------------------------------------------------------------
# Metric implementations (registered in metric_main with their sizes).


def compute_fid_base(opts, name: str, num_gen: int) -> dict:
    """FID of base-subspace images against the full dataset."""
    info, _ = expansion_inputs(opts, name)
    opts.require_dataset(name)
    opts.dataset_kwargs.update(max_size=None, xflip=False)
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts, feature_networks.INCEPTION_URL, dict(return_features=True), capture_mean_cov=True,
        tag='FID: real images').get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts, feature_networks.INCEPTION_URL, dict(return_features=True), capture_mean_cov=True, max_items=num_gen,
        G=_subspace_G(opts, info), tag='FID: base-subspace images').get_mean_cov()
    if opts.rank != 0:
        return {name: float('nan')}
    return {name: frechet_inception_distance.fid_from_stats(mu_gen, sigma_gen, mu_real, sigma_real)}


def compute_fid_base_parent(opts, name: str, num_gen: int) -> dict:
    """FID between base-subspace images of the expanded G and images of the parent G."""
    info, _ = expansion_inputs(opts, name)
    parent = opts.extra.get('parent_G')
    if parent is None:
        raise ValueError(f'Metric {name} needs the parent generator: calc_metrics.py --parent PKL '
                         f'(extra parent_G)')
    stats = []
    for G, tag in [(_subspace_G(opts, info), 'FID: base-subspace images'), (parent, 'FID: parent images')]:
        stats.append(metric_utils.compute_feature_stats_for_generator(
            opts, feature_networks.INCEPTION_URL, dict(return_features=True), capture_mean_cov=True,
            max_items=num_gen, G=G, tag=tag).get_mean_cov())
    if opts.rank != 0:
        return {name: float('nan')}
    return {name: frechet_inception_distance.fid_from_stats(*stats[0], *stats[1])}


def compute_clip_errors(opts, name: str, num_images: int) -> dict:
    """Per text domain: CLIP error of its repurposed-subspace images and, for reference, of the
    base-subspace images, against the domain's text (held-out CLIP model)."""
    info, domains = expansion_inputs(opts, name)
    domains = _text_domains(domains, name)
    keys = [f'{name}_{d.key}' for d in domains] + [f'{name}_base_{d.key}' for d in domains] + [f'{name}_mean']
    skipped = _rank0(opts, keys)
    if skipped is not None:
        return skipped
    encoder = _clip_encoder(opts, opts.extra.get('clip_error_model', CLIP_ERROR_MODEL))
    texts = encoder.encode_texts([d.text for d in domains]).float().cpu()                  # [T, D]
    base = _embed_images(encoder, render_images(opts, _subspace_G(opts, info), num_images), opts.device)
    results = {}
    for d, text in zip(domains, texts):
        images = render_images(opts, _subspace_G(opts, info, domain=d.index), num_images)
        results[f'{name}_{d.key}'] = clip_error(_embed_images(encoder, images, opts.device), text)
        results[f'{name}_base_{d.key}'] = clip_error(base, text)
    results[f'{name}_mean'] = float(np.mean([results[f'{name}_{d.key}'] for d in domains]))
    return results


def compute_lpips_diversity(opts, name: str, num_images: int, num_clusters: int = 10) -> dict:
    """Per domain: intra-cluster LPIPS diversity of its repurposed-subspace images (<= 256 px)."""
    info, domains = expansion_inputs(opts, name)
    skipped = _rank0(opts, [f'{name}_{d.key}' for d in domains] + [f'{name}_mean'])
    if skipped is not None:
        return skipped
    distance = _lpips(opts)
    centers_by_name = opts.extra.get('cluster_centers') or {}
    results = {}
    for d in domains:
        images = render_images(opts, _subspace_G(opts, info, domain=d.index), num_images, max_resolution=256)
        centers = centers_by_name.get(d.name)
        if centers is None:
            centers, images = images[:num_clusters], images[num_clusters:]  # Ojha et al. use training images
        results[f'{name}_{d.key}'] = intra_cluster_diversity(images, torch.as_tensor(centers), distance,
                                                             device=opts.device)
    results[f'{name}_mean'] = float(np.mean([results[f'{name}_{d.key}'] for d in domains]))
    return results


def _load_reference(path: str) -> torch.Tensor:
    try:
        image = np.array(PIL.Image.open(path).convert('RGB'))                         # [H, W, 3] uint8
    except OSError as e:
        raise ValueError(f'reference_images: cannot read {path!r} ({e})') from None
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)                          # [1, 3, H, W] uint8


def compute_semantic_diversity(opts, name: str, num_images: int) -> dict:
    """Per domain: Diversity (mean pairwise 1 - cos) and, where a reference image is given,
    Semantic-Score (mean cos to the reference), with CLIP ViT-B/16."""
    info, domains = expansion_inputs(opts, name)
    references = dict(opts.extra.get('reference_images') or {})
    unknown = sorted(set(references) - {d.name for d in domains})
    if unknown:
        raise ValueError(f'{name}: reference_images names unknown domains {unknown}; domains: {[d.name for d in domains]}')
    keys = [f'{name}_diversity_{d.key}' for d in domains] + [f'{name}_score_{d.key}' for d in domains if d.name in references]
    skipped = _rank0(opts, keys)
    if skipped is not None:
        return skipped
    encoder = _clip_encoder(opts, opts.extra.get('semantic_model', SEMANTIC_MODEL))
    results = {}
    for d in domains:
        emb = _embed_images(encoder, render_images(opts, _subspace_G(opts, info, domain=d.index), num_images), opts.device)
        results[f'{name}_diversity_{d.key}'] = pairwise_diversity(emb)
        if d.name in references:
            ref = _embed_images(encoder, _load_reference(references[d.name]), opts.device)
            results[f'{name}_score_{d.key}'] = semantic_score(emb, ref[0])
    return results


def compute_composition(opts, name: str, num_images: int) -> dict:
    """For every ordered pair (i, j) of text domains: render domain i, then i and j together
    (both at the subspace distance). The CLIP errors against text i ('kept') and text j
    ('added') of the composition, each divided by the same error of domain i alone (Fig. 9:
    errors normalised by the initial setting); averaged over pairs."""
    info, domains = expansion_inputs(opts, name)
    domains = _text_domains(domains, name)
    if len(domains) < 2:
        raise ValueError(f'{name}: needs at least two domains with CLIP texts, got {len(domains)}')
    skipped = _rank0(opts, [f'{name}_kept', f'{name}_added'])
    if skipped is not None:
        return skipped
    encoder = _clip_encoder(opts, opts.extra.get('clip_error_model', CLIP_ERROR_MODEL))
    texts = encoder.encode_texts([d.text for d in domains]).float().cpu()
    distance = float(info.get('subspace_distance', SUBSPACE_DISTANCE))
    num_tasks = len(torch.as_tensor(info['repurposed_dims']).reshape(-1))
    single = {}
    for d in domains:
        single[d.index] = _embed_images(encoder, render_images(opts, _subspace_G(opts, info, domain=d.index), num_images),
                                        opts.device)
    kept, added = [], []
    for ia, ib in itertools.permutations(range(len(domains)), 2):
        a, b = domains[ia], domains[ib]
        weights = torch.zeros(num_tasks)
        weights[a.index] = weights[b.index] = distance
        both = _embed_images(encoder, render_images(opts, _subspace_G(opts, info, weights=weights), num_images), opts.device)
        kept.append(clip_error(both, texts[ia]) / clip_error(single[a.index], texts[ia]))
        added.append(clip_error(both, texts[ib]) / clip_error(single[a.index], texts[ib]))
    return {f'{name}_kept': float(np.mean(kept)), f'{name}_added': float(np.mean(added))}

# ---------------------------------------------------------------------------------------------
# Registered metrics (metric_main adds them to the registry).


def _metric(fn):
    METRICS.append(fn)
    return fn


@_metric
@metric_utils.needs_weights(('detector', feature_networks.INCEPTION_URL))
def fid50k_full_base(opts):
    """Expansion: FID of 50k base-subspace images vs. the full dataset (Tab. 2)."""
    return compute_fid_base(opts, 'fid50k_full_base', num_gen=50000)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('detector', feature_networks.INCEPTION_URL))
def fid50k_base_parent(opts):
    """Expansion: FID of 50k base-subspace images vs. 50k parent-generator images (--parent)."""
    return compute_fid_base_parent(opts, 'fid50k_base_parent', num_gen=50000)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('clip', CLIP_ERROR_MODEL))
def clip_error1k(opts):
    """Expansion: per-domain CLIP error (ViT-L/14, held out) of 1k images per domain (Sec. 4.3)."""
    return compute_clip_errors(opts, 'clip_error1k', num_images=1000)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('lpips', 'alex'))
def lpips_diversity1k(opts):
    """Expansion: per-domain intra-cluster LPIPS diversity, 1k images, 10 clusters (Tab. 1)."""
    return compute_lpips_diversity(opts, 'lpips_diversity1k', num_images=1000)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('clip', CLIP_ERROR_MODEL))
def clip_compose100(opts):
    """Expansion: CLIP errors of two-domain compositions, normalised by one domain (Fig. 9)."""
    return compute_composition(opts, 'clip_compose100', num_images=100)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('clip', SEMANTIC_MODEL))
def semantic_diversity100(opts):
    """Expansion: Semantic-Score (to extra reference_images) and Diversity, CLIP ViT-B/16, 100 images."""
    return compute_semantic_diversity(opts, 'semantic_diversity100', num_images=100)


@_metric
@metric_utils.needs_weights(('detector', feature_networks.INCEPTION_URL))
def fid_base_tiny(opts):
    """Expansion: base-subspace FID with tiny_num_items images (smoke runs and tests)."""
    return compute_fid_base(opts, 'fid_base_tiny', num_gen=opts.tiny_num_items)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('detector', feature_networks.INCEPTION_URL))
def fid_base_parent_tiny(opts):
    """Expansion: base-subspace vs. parent FID with tiny_num_items images (smoke runs and tests)."""
    return compute_fid_base_parent(opts, 'fid_base_parent_tiny', num_gen=opts.tiny_num_items)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('clip', CLIP_ERROR_MODEL))
def clip_error_tiny(opts):
    """Expansion: per-domain CLIP error with tiny_num_items images (smoke runs and tests)."""
    return compute_clip_errors(opts, 'clip_error_tiny', num_images=opts.tiny_num_items)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('lpips', 'alex'))
def lpips_diversity_tiny(opts):
    """Expansion: intra-cluster LPIPS diversity, tiny_num_items images, 3 clusters (smoke runs, tests)."""
    return compute_lpips_diversity(opts, 'lpips_diversity_tiny', num_images=opts.tiny_num_items, num_clusters=3)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('clip', CLIP_ERROR_MODEL))
def clip_compose_tiny(opts):
    """Expansion: composition CLIP errors with tiny_num_items images (smoke runs and tests)."""
    return compute_composition(opts, 'clip_compose_tiny', num_images=opts.tiny_num_items)


@_metric
@metric_utils.without_real_images
@metric_utils.needs_weights(('clip', SEMANTIC_MODEL))
def semantic_diversity_tiny(opts):
    """Expansion: Semantic-Score / Diversity with tiny_num_items images (smoke runs and tests)."""
    return compute_semantic_diversity(opts, 'semantic_diversity_tiny', num_images=opts.tiny_num_items)

# ---------------------------------------------------------------------------------------------


for _fn in METRICS:
    metric_main.register_metric(_fn)
