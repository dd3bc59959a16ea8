"""Building what the training loop runs on, from the resolved options (train.py): runtime flags,
custom-op warm-up, data, networks, augmentation, loss, optimizers and the image-snapshot grid.

Each function does one thing and takes explicit arguments, so tests can call them alone.
"""

import copy

import numpy as np
import torch

import dnnlib
from torch_utils import distributed
from torch_utils import misc
from torch_utils import training_stats
from training import loop_state
from training import lr_schedule
from training.loss import Loss, Phase

# ---------------------------------------------------------------------------------------------
# Runtime.


def set_runtime_flags(device: torch.device, cudnn_benchmark: bool, allow_tf32: bool) -> None:
    """The one place that sets cuDNN benchmarking and TF32 (STYLE.md principle 11)."""
    if torch.device(device).type == 'cuda':
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
        torch.backends.cuda.matmul.allow_tf32 = bool(allow_tf32)
        torch.backends.cudnn.allow_tf32 = bool(allow_tf32)


def seed_all(seed: int) -> None:
    """Seed torch (all devices), numpy and python."""
    import random
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def warm_up_custom_ops(device: torch.device, rank: int) -> None:
    """Build/load the CUDA plugins once: rank 0 first (it compiles, custom_ops caches the build),
    the other ranks after a barrier (they then only load it). No-op on CPU."""
    def run():
        from torch_utils.ops import bias_act, upfirdn2d
        x = torch.zeros([1, 1, 8, 8], device=device)
        bias_act.bias_act(x, act='lrelu', impl='cuda')
        upfirdn2d.upfirdn2d(x, upfirdn2d.setup_filter([1, 3, 3, 1], device=device), impl='cuda')
    if torch.device(device).type != 'cuda':
        return
    if rank == 0:
        run()
    distributed.barrier()
    if rank != 0:
        run()

# ---------------------------------------------------------------------------------------------
# Data.


def build_dataset(training_set_kwargs: dict | None):
    """The training set, or None for runs without data."""
    if training_set_kwargs is None:
        return None
    return dnnlib.util.construct_class_by_name(**training_set_kwargs)


def check_dataset_matches(training_set, G_kwargs: dict) -> None:
    """The networks' resolution, channels and label width must be those of the data."""
    if training_set is None:
        return
    found = dict(img_resolution=training_set.resolution, img_channels=training_set.num_channels)
    if training_set.has_labels or G_kwargs['c_dim'] == 0:
        found['c_dim'] = training_set.label_dim  # unlabelled data + conditional G: the loss draws the labels
    for key, value in found.items():
        if G_kwargs[key] != value:
            raise ValueError(f'--data {training_set.name}: the data has {key}={value}, but the networks are built '
                             f'with {key}={G_kwargs[key]}')


def build_data_iterator(training_set, loader_kwargs: dict, rank: int, world_size: int, batch_per_rank: int,
                        seed: int, position: int, device: torch.device):
    """Endless iterator of (uint8 images [B, C, H, W], labels [B, c_dim]) batches for this rank,
    starting after this rank's first `position` images (exact resume)."""
    from training.dataset import InfiniteSampler
    sampler = InfiniteSampler(training_set, rank=rank, num_replicas=world_size, seed=seed, start_index=position)
    kwargs = {k: v for k, v in loader_kwargs.items() if k != 'class_name'}
    kwargs['pin_memory'] = bool(kwargs.get('pin_memory', False)) and torch.device(device).type == 'cuda'
    if kwargs.get('num_workers', 0) == 0:
        kwargs.pop('prefetch_factor', None)  # DataLoader rejects it without workers.
    loader = dnnlib.util.construct_class_by_name(class_name=loader_kwargs.get('class_name', 'torch.utils.data.DataLoader'),
                                                 dataset=training_set, sampler=sampler, batch_size=batch_per_rank,
                                                 **kwargs)
    return iter(loader)

# ---------------------------------------------------------------------------------------------
# Networks.


def build_networks(G_kwargs: dict, D_kwargs: dict, device: torch.device):
    """G (training mode), D, and G_ema = a copy of G in eval mode; all with requires_grad off
    (the loop enables it per phase)."""
    G = dnnlib.util.construct_class_by_name(**G_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    return G, D, G_ema


def load_networks_from(data: dict, G, D, G_ema, source: str) -> None:
    """Copy G, D, G_ema from a loaded snapshot, every tensor by name (no partial copies)."""
    for name, module in (('G', G), ('D', D), ('G_ema', G_ema)):
        try:
            misc.copy_params_and_buffers(data[name], module, require_all=True)
        except ValueError as e:
            raise ValueError(f'{source}: {name} does not fit the network built from the options ({e})') from None


def build_augment_pipe(augment_kwargs: dict | None, augment_p: float, ada_target: float | None,
                       device: torch.device):
    """The augmentation pipe (None when augmentation is off) with p = augment_p."""
    if augment_kwargs is None or (augment_p == 0 and ada_target is None):
        return None
    pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
    pipe.p.copy_(torch.as_tensor(augment_p))
    return pipe


def ada_collector(augment_pipe, ada_target: float | None, device: torch.device):
    """Collector of `Loss/signs/real` that drives ADA, or None without ADA."""
    if augment_pipe is None or ada_target is None:
        return None
    sync_device = device if torch.device(device).type == 'cuda' else None
    # keep_previous=False: an interval without D(real) values must not re-apply the old r_t.
    return training_stats.Collector(regex='Loss/signs/real', keep_previous=False, sync_device=sync_device)

# ---------------------------------------------------------------------------------------------
# Loss and optimizers.


def build_loss(loss_kwargs: dict, G, D, G_ema, augment_pipe, batch_gpu: int, device: torch.device,
               snapshot: dict | None = None) -> Loss:
    """The loss named by loss_kwargs.class_name, given the networks, the other loss kwargs and
    what the loss class resolves once from the starting networks (`Loss.resolve_inputs`; called
    after the resume/continue weights are loaded, `snapshot` = that loaded dict or None)."""
    kwargs = dict(loss_kwargs)
    loss_class = dnnlib.util.get_obj_by_name(kwargs.pop('class_name'))
    resolve = getattr(loss_class, 'resolve_inputs', None)
    resolved = resolve(kwargs, G=G, G_ema=G_ema, snapshot=snapshot) if resolve is not None else {}
    return loss_class(device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=augment_pipe,
                      batch_gpu=batch_gpu, **kwargs, **resolved)


def build_optimizers(loss: Loss, G, D, G_opt_kwargs: dict, D_opt_kwargs: dict,
                     G_reg_interval: int | None, D_reg_interval: int | None) -> tuple[dict, dict]:
    """One optimizer per network over `loss.trainable_params`, with the lazy-regularisation
    rescaling lr * k/(k+1), beta ** (k/(k+1)) when that network has reg interval k.

    An `affine_lr_mult` entry of the optimizer kwargs (not official; absent = 1) is no optimizer
    argument: it puts that network's affine (style) layers in a second parameter group whose
    learning rate is the (rescaled) lr times it. Nor is `lr_decay` (not official; absent = 0):
    the fraction of the run over which training.lr_schedule decays every group's rate to 0.
    Returns ({'G': opt, 'D': opt}, {'G': params, 'D': params}).
    """
    optimizers, params = {}, {}
    for name, module, opt_kwargs, reg_interval in (('G', G, G_opt_kwargs, G_reg_interval),
                                                   ('D', D, D_opt_kwargs, D_reg_interval)):
        kwargs = dict(opt_kwargs)
        affine_lr_mult = float(kwargs.pop('affine_lr_mult', 1))
        lr_decay = float(kwargs.pop('lr_decay', 0))
        if 'betas' in kwargs:
            kwargs['betas'] = [float(beta) for beta in kwargs['betas']]  # Adam rejects mixed int/float.
        if reg_interval:
            ratio = reg_interval / (reg_interval + 1)
            kwargs['lr'] = kwargs['lr'] * ratio
            kwargs['betas'] = [beta ** ratio for beta in kwargs['betas']]
        trainable = list(loss.trainable_params(name, module))
        if not trainable:
            raise ValueError(f'{type(loss).__name__}.trainable_params({name!r}) returned no parameters')
        groups = trainable if affine_lr_mult == 1 else _affine_param_groups(name, module, trainable,
                                                                            kwargs['lr'] * affine_lr_mult)
        optimizers[name] = dnnlib.util.construct_class_by_name(groups, **kwargs)
        lr_schedule.mark_groups(optimizers[name], lr_decay)
        params[name] = trainable
    return optimizers, params


def _affine_param_groups(name: str, module, trainable: list, affine_lr: float) -> list[dict]:
    """[{the other params}, {the affine (style) layers' params, lr=affine_lr}], in `trainable` order."""
    affine_ids = {id(p) for n, p in module.named_parameters() if '.affine.' in f'.{n}'}
    affine = [p for p in trainable if id(p) in affine_ids]
    if not affine:
        raise ValueError(f'affine_lr_mult: {name} has no trainable affine (style) layers; leave --affine_lr_mult out')
    return [{'params': [p for p in trainable if id(p) not in affine_ids]}, {'params': affine, 'lr': affine_lr}]


def check_phases(phases: list[Phase]) -> list[Phase]:
    if not phases or not all(isinstance(p, Phase) for p in phases):
        raise ValueError('loss.get_phases() must return a non-empty list of training.loss.Phase')
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ValueError(f'loss.get_phases() returned duplicate phase names: {names}')
    return phases

# ---------------------------------------------------------------------------------------------
# Image-snapshot grid.


def grid_indices(training_set, grid_size: tuple[int, int], seed: int) -> list[int]:
    """Dataset items shown in reals.png: random, and for labelled data one label per row."""
    gw, gh = grid_size
    rnd = np.random.RandomState(seed)
    order = rnd.permutation(len(training_set)).tolist()
    if not training_set.has_labels:
        return [order[i % len(order)] for i in range(gw * gh)]
    by_label: dict = {}
    for idx in order:
        by_label.setdefault(tuple(training_set.get_label(idx).tolist()), []).append(idx)
    labels = sorted(by_label)
    indices = []
    for row in range(gh):
        group = by_label[labels[row % len(labels)]]
        indices += [group[i % len(group)] for i in range(gw)]
    return indices


def grid_inputs(training_set, G, grid_size: tuple[int, int], seed: int, device: torch.device):
    """(reals uint8 [n, C, H, W] or None, z [n, z_dim], c [n, c_dim]) for the image snapshots.
    z comes from its own generator, so drawing it never touches the training RNG."""
    gw, gh = grid_size
    n = gw * gh
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(loop_state.derive_seed(seed, 7)))
    if training_set is None or (G.c_dim > 0 and not training_set.has_labels):
        reals = None if training_set is None else torch.from_numpy(np.stack(
            [training_set[i][0] for i in grid_indices(training_set, grid_size, seed)]))
        return reals, z.to(device), torch.zeros([n, G.c_dim], device=device)
    indices = grid_indices(training_set, grid_size, seed)
    reals = np.stack([training_set[i][0] for i in indices])
    labels = np.stack([training_set.get_label(i) for i in indices]).reshape(n, -1)
    return torch.from_numpy(reals), z.to(device), torch.from_numpy(labels).to(device)


@torch.no_grad()
def render_grid(G_ema, z: torch.Tensor, c: torch.Tensor, batch_gpu: int) -> torch.Tensor:
    """G_ema images for the grid latents, float [-1, 1] on CPU, constant noise."""
    images = [G_ema(z=zz, c=cc, noise_mode='const').cpu() for zz, cc in zip(z.split(batch_gpu), c.split(batch_gpu))]
    return torch.cat(images)
