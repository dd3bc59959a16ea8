"""Resolving train.py's flags into one nested training-options dict (STYLE.md principle 1).

`setup_training_options(**flags)` validates every flag, reads the dataset's image headers and the
`--resume` pickle (for its architecture and to check it against the data) and returns the
options that `training.launch.launch_training` saves as training_options.json and trains with.
Each `*_kwargs` entry names its `class_name`. Nothing is created here; every problem is an
`OptionError` with a one-line message that names the flag and the fix.
"""

import json
import os
import re

import torch

import dnnlib
from torch_utils import distributed
from training import logging_sinks
from training import loop_state
from training import presets

RESUME_NONE = ('noresume', '', None)  # --resume values that mean "train from scratch".
# --resume NAME: the official stylegan2-ada-pytorch transfer-learning sources (downloaded once and
# cached like every URL; offline, the usual one-line download error naming the URL and cache path).
_SOURCE_NETS = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/'
RESUME_SPECS = {
    'ffhq256': _SOURCE_NETS + 'ffhq-res256-mirror-paper256-noaug.pkl',
    'ffhq512': _SOURCE_NETS + 'ffhq-res512-mirror-stylegan2-noaug.pkl',
    'ffhq1024': _SOURCE_NETS + 'ffhq-res1024-mirror-stylegan2-noaug.pkl',
    'celebahq256': _SOURCE_NETS + 'celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl',
    'lsundog256': _SOURCE_NETS + 'lsundog-res256-paper256-kimg100000-noaug.pkl',
}


STYLEGAN3_G = 'training.networks_stylegan3.Generator'


class OptionError(dnnlib.util.UserError, ValueError):
    """A flag (or a file it names) is wrong; the message names it and the fix."""

# ---------------------------------------------------------------------------------------------
# Resolving the flags into training options.


def setup_training_options(
    data=None, gpus=1, batch=None, kimg=None, snap=None, metrics=None, seed=0, cond=False, mirror=False,
    cfg='auto', gamma=None, aug='ada', p=None, target=None, augpipe=None, resume=None, freezed=0, fp32=False,
    nhwc=False, allow_tf32=False, nobench=False, workers=3, tick=None, wandb='disabled', wandb_project=None,
    wandb_name=None, wandb_tags=None, expansion_cfg_file=None, latent_factors_path=None, subspace_distance=None,
    lambda_src=None, lambda_expand=None, lambda_recon_l2=None, lambda_recon_lpips=None, replay_noise=None,
    outdir=None, subset=None, class_conditional=False, glr=None, g_beta1=None, affine_lr_mult=None,
    glr_decay=None, resume_from_ema=False,
) -> dnnlib.EasyDict:
    """Validate the train.py flags and resolve them into the training options (no run_dir yet).

    Reads the dataset's image headers and the --resume pickle (for its architecture and to check
    it against the data); creates nothing. Raises OptionError/ValueError with a one-line message.
    """
    resume = RESUME_SPECS.get(resume, resume)  # official source-network names -> their URLs
    if subset is not None and (subset < 1 or data is None):
        raise OptionError(f'--subset={subset} needs --data and a positive number of images')
    _check_flag_consistency(**locals())
    _check_generator_optimizer_flags(glr, g_beta1, affine_lr_mult, glr_decay)
    expansion = expansion_cfg_file is not None
    resume_data, resume_source = _load_resume_networks(resume, outdir)
    # The whole expansion config, against the --resume generator, before the data is read
    # (interfaces.md section 2).
    expansion_cfg = _load_expansion_config(expansion_cfg_file, resume_data['G']) if expansion else None
    data_info = _dataset_info(data, cond, mirror, seed)
    _apply_subset(data_info, subset)
    arch = _architecture_info(data_info, resume_data, resume_source)
    try:
        spec = presets.resolve_preset(cfg, arch['img_resolution'], gpus, expansion=expansion, batch=batch, gamma=gamma)
    except ValueError as e:
        raise OptionError(str(e)) from None

    opts = dnnlib.EasyDict()
    opts.num_gpus = gpus
    opts.random_seed = seed
    opts.batch_size, opts.batch_gpu = _batch_sizes(spec, batch, gpus)
    opts.total_kimg = kimg if kimg is not None else spec['kimg']
    opts.kimg_per_tick = tick if tick is not None else (opts.batch_gpu if expansion else spec['kimg_per_tick'])
    opts.image_snapshot_ticks = opts.network_snapshot_ticks = snap if snap is not None else 50
    opts.metrics = _metric_list(metrics, data)
    opts.training_set_kwargs = data_info['kwargs'] if data_info else None
    opts.data_loader_kwargs = dict(class_name='torch.utils.data.DataLoader', pin_memory=True, num_workers=workers,
                                   prefetch_factor=2)
    opts.G_kwargs, opts.D_kwargs, opts.architecture_source = _network_kwargs(spec, arch, resume_data, resume_source,
                                                                             cfg, fp32, nhwc, freezed)
    _check_mbstd(opts)
    D_lrate = spec['lrate'] if spec['D_lrate'] is None else spec['D_lrate']
    opts.G_opt_kwargs = dict(class_name='torch.optim.Adam', lr=spec['lrate'], betas=list(spec['betas']), eps=spec['eps'])
    _override_generator_optimizer(opts.G_opt_kwargs, glr, g_beta1, affine_lr_mult, glr_decay)
    opts.D_opt_kwargs = dict(class_name='torch.optim.Adam', lr=D_lrate, betas=list(spec['betas']), eps=spec['eps'])
    opts.G_reg_interval = spec['G_reg_interval']
    opts.D_reg_interval = spec['D_reg_interval']
    opts.loss_kwargs = dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=gamma if gamma is not None else spec['gamma'],
                            style_mixing_prob=spec['style_mixing_prob'], pl_weight=spec['pl_weight'])
    if opts.G_kwargs['class_name'] == STYLEGAN3_G and not expansion:
        opts.loss_kwargs.update(_stylegan3_loss_kwargs(spec, from_scratch=resume in RESUME_NONE))
    if expansion:
        opts.loss_kwargs.update(_expansion_loss_kwargs(expansion_cfg, latent_factors_path, subspace_distance,
                                                       lambda_src, lambda_expand, lambda_recon_l2, lambda_recon_lpips,
                                                       opts.G_kwargs, resume, replay_noise))
        if class_conditional:
            _switch_to_class_conditional(opts, expansion_cfg, latent_factors_path, subspace_distance, replay_noise)
    # Transfer learning from a pickle adapts ADA faster and skips the EMA ramp-up (official);
    # `--resume latest` continues a run and keeps its settings.
    from_pickle = resume not in RESUME_NONE and resume != 'latest'
    opts.update(_augment_options(aug, p, target, augpipe, from_pickle=from_pickle))
    opts.ema_kimg = spec['ema']
    opts.ema_rampup = None if from_pickle else spec['ramp']
    opts.resume_pkl = None if resume in RESUME_NONE else resume
    if resume_from_ema:                     # not official; only stored when on (old runs still match)
        if not from_pickle:
            raise OptionError('--resume_from_ema needs --resume PKL: it starts the trained G from that pickle\'s '
                              'G_ema (a continued run keeps its own G)')
        opts.resume_from_ema = True
    opts.cudnn_benchmark = not nobench
    opts.allow_tf32 = bool(allow_tf32)
    opts.grid_size = list(spec['grid_size'] or presets.default_grid_size(arch['img_resolution']))
    # console_module_tables: print the G/D tables on the console too (always in log.txt).
    opts.logging = dict(tensorboard=True, console_module_tables=True,
                        wandb=dict(mode=wandb, project=wandb_project, name=wandb_name, tags=_split_tags(wandb_tags)))
    opts.desc = _run_description(data_info, cfg, cond, mirror, gamma, kimg, batch, aug, p, target, augpipe, resume,
                                 freezed, expansion_cfg_file) + (f'-subset{subset}' if subset is not None else '')
    _check_hardware(gpus)
    return opts


def _check_generator_optimizer_flags(glr, g_beta1, affine_lr_mult, glr_decay=None) -> None:
    """--glr, --g_beta1, --affine_lr_mult, --glr_decay: in range (None = not given)."""
    if glr is not None and not glr > 0:
        raise OptionError(f'--glr must be a positive learning rate, got {glr}')
    if g_beta1 is not None and not 0 <= g_beta1 < 1:
        raise OptionError(f'--g_beta1 must be in [0, 1), got {g_beta1}')
    if affine_lr_mult is not None and not affine_lr_mult > 0:
        raise OptionError(f'--affine_lr_mult must be positive, got {affine_lr_mult}')
    if glr_decay is not None and not 0 <= glr_decay <= 1:
        raise OptionError(f'--glr_decay must be a fraction of the run in [0, 1], got {glr_decay}')


def _override_generator_optimizer(G_opt_kwargs: dict, glr, g_beta1, affine_lr_mult, glr_decay=None) -> None:
    """Not official (each off by default, leaving the preset's G optimizer as it is): G's Adam lr
    (--glr), its beta1 (--g_beta1), and a learning-rate multiplier of G's affine (style) layers
    (--affine_lr_mult, applied by training.loop_setup.build_optimizers), and the fraction of the
    run over which its rate decays linearly to 0 (--glr_decay, training.lr_schedule)."""
    if glr is not None:
        G_opt_kwargs['lr'] = float(glr)
    if g_beta1 is not None:
        G_opt_kwargs['betas'] = [float(g_beta1), G_opt_kwargs['betas'][1]]
    if affine_lr_mult is not None:
        G_opt_kwargs['affine_lr_mult'] = float(affine_lr_mult)
    if glr_decay:                                             # 0 = the official constant rate
        G_opt_kwargs['lr_decay'] = float(glr_decay)


def _apply_subset(data_info: dict | None, subset: int | None) -> None:
    """--subset N (official): train on a random N-image subset of --data, drawn with --seed."""
    if subset is None:
        return
    size = data_info['kwargs']['max_size']
    if subset > size:
        raise OptionError(f'--subset={subset} is larger than --data ({size} images); use at most {size}')
    data_info['kwargs']['max_size'] = subset


def _check_flag_consistency(gpus, batch, kimg, snap, tick, seed, cfg, aug, p, target, augpipe, metrics, wandb, workers,
                            data, resume, expansion_cfg_file, latent_factors_path, subspace_distance, lambda_src,
                            lambda_expand, lambda_recon_l2, lambda_recon_lpips, outdir, replay_noise=None,
                            class_conditional=False, **_ignored) -> None:
    """Checks that need no files: values, ranges and flag combinations."""
    from training import augment
    from metrics import metric_main
    if gpus is None or gpus < 1:
        raise OptionError(f'--gpus must be at least 1, got {gpus}')
    if batch is not None and (batch < 1 or batch % gpus != 0):
        raise OptionError(f'--batch={batch} must be a positive multiple of --gpus={gpus}')
    for flag, value in (('--kimg', kimg), ('--tick', tick)):
        if value is not None and value <= 0:
            raise OptionError(f'{flag} must be positive, got {value}')
    if snap is not None and snap < 1:
        raise OptionError(f'--snap must be at least 1 tick, got {snap}')
    if seed < 0 or workers < 0:
        raise OptionError(f'--seed and --workers must be >= 0, got {seed} and {workers}')
    if cfg not in presets.PRESETS:
        raise OptionError(f"--cfg: unknown preset '{cfg}'; choose one of {', '.join(presets.preset_names())}")
    if aug not in ('noaug', 'ada', 'fixed'):
        raise OptionError(f"--aug: unknown mode '{aug}'; choose one of noaug, ada, fixed")
    if augpipe is not None:
        if augpipe not in augment.AUGPIPE_SPECS:
            raise OptionError(f"--augpipe: unknown preset '{augpipe}'; choose one of {', '.join(augment.AUGPIPE_SPECS)}")
        if aug == 'noaug':
            raise OptionError('--augpipe cannot be used with --aug=noaug; drop one of them')
    if p is not None and (aug != 'fixed' or not 0 <= p <= 1):
        raise OptionError(f'--p={p} needs --aug=fixed and a value in [0, 1]')
    if aug == 'fixed' and p is None:
        raise OptionError('--aug=fixed needs --p (the fixed augmentation probability)')
    if target is not None and (aug != 'ada' or not 0 <= target <= 1):
        raise OptionError(f'--target={target} needs --aug=ada and a value in [0, 1]')
    try:
        metric_main.parse_metric_list(metrics)
        logging_sinks.check_wandb_ready(wandb)
    except ValueError as e:
        raise OptionError(str(e)) from None
    if outdir is None and resume == 'latest':
        raise OptionError('--resume latest needs --outdir (the folder whose newest run continues)')
    expansion_flags = dict(latent_factors_path=latent_factors_path, subspace_distance=subspace_distance,
                           lambda_src=lambda_src, lambda_expand=lambda_expand, lambda_recon_l2=lambda_recon_l2,
                           lambda_recon_lpips=lambda_recon_lpips, replay_noise=replay_noise)
    if expansion_cfg_file is None:
        given = [f'--{k}' for k, v in expansion_flags.items() if v is not None]
        if given:
            raise OptionError(f'{", ".join(given)}: domain-expansion option(s); add --expansion_cfg_file CFG or drop them')
    elif resume in RESUME_NONE:
        raise OptionError('--expansion_cfg_file needs --resume PKL: the generator to expand')
    if class_conditional and expansion_cfg_file is None:
        raise OptionError('--class_conditional 1 trains the config\'s tasks as classes: add --expansion_cfg_file CFG')
    if data is None and not (expansion_cfg_file is not None and lambda_src == 0):
        raise OptionError('--data is required (a folder or .zip of images); only expansion runs with '
                          '--lambda_src=0 train without data')


def _dataset_info(data, cond, mirror, seed) -> dict | None:
    """Dataset kwargs and shape facts of --data, after every header check; None without data."""
    if data is None:
        return None
    from training.dataset import ImageFolderDataset
    path = os.path.abspath(data)
    probe = ImageFolderDataset(path=path, use_labels=cond, xflip=False)  # DatasetError names --data and the fix.
    try:
        if cond and not probe.has_labels:
            raise OptionError(f'--cond=1 requires labels, but --data {data} has none; drop --cond or add dataset.json labels')
        kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=path, use_labels=bool(cond),
                      max_size=len(probe), xflip=bool(mirror), resolution=probe.resolution, random_seed=seed)
        return dict(kwargs=kwargs, name=probe.name, img_resolution=probe.resolution, img_channels=probe.num_channels,
                    c_dim=probe.label_dim if cond else 0)
    finally:
        probe.close()


def _load_resume_networks(resume, outdir):
    """(snapshot dict, source) of --resume (a file/URL, or 'latest' = newest snapshot under --outdir)."""
    if resume in RESUME_NONE:
        return None, None
    from training import snapshot_io
    if resume == 'latest':
        run_dir = loop_state.find_latest_run_with_snapshot(outdir) if outdir is not None else None
        if run_dir is None:
            raise OptionError(f'--resume latest: no run with a network snapshot under --outdir {outdir}')
        source = loop_state.latest_snapshot(run_dir)
    else:
        source = resume
    try:
        with dnnlib.util.open_url(source) as f:
            return snapshot_io.load_network_pkl(f), source
    except (OSError, ValueError) as e:
        raise OptionError(f'--resume {resume}: {e}') from None


def _architecture_info(data_info, resume_data, resume_source) -> dict:
    """Resolution, channels and label width the networks must have; a pickle that disagrees with
    the data is an error (interfaces.md section 3)."""
    if resume_data is None:
        return dict(img_resolution=data_info['img_resolution'], img_channels=data_info['img_channels'],
                    c_dim=data_info['c_dim'])
    G = resume_data['G']
    found = dict(img_resolution=G.img_resolution, img_channels=G.img_channels, c_dim=G.c_dim)
    if data_info is not None:
        for key, hint in (('img_resolution', 'resize the data with dataset_tool.py --resolution'),
                          ('img_channels', 'convert the data to the same channel count'),
                          ('c_dim', 'set --cond to match the pickle (conditional iff c_dim > 0) and use the same labels')):
            if found[key] != data_info[key]:
                raise OptionError(f'--resume {resume_source}: the pickle has {key}={found[key]} but --data has '
                                  f'{key}={data_info[key]}; {hint}')
    return found


def _batch_sizes(spec: dict, batch, gpus: int) -> tuple[int, int]:
    """(global batch, batch per accumulation round), official rules."""
    batch_size = batch if batch is not None else spec['mb']
    batch_gpu = batch_size // gpus if batch is not None else spec['mb'] // spec['ref_gpus']
    if batch_size % gpus != 0:
        raise OptionError(f'--batch={batch_size} (from --cfg when not given) must be a multiple of --gpus={gpus}')
    if batch_gpu < 1 or batch_size % (gpus * batch_gpu) != 0:
        raise OptionError(f'--batch={batch_size} must be a multiple of --gpus={gpus} times the per-GPU batch {batch_gpu}')
    return batch_size, batch_gpu


def _metric_list(metrics, data) -> list:
    from metrics import metric_main
    if metrics is None:
        return ['fid50k_full'] if data is not None else []
    names = metric_main.parse_metric_list(metrics)
    if names and data is None:
        raise OptionError(f'--metrics {metrics} needs --data (real images); use --metrics none')
    return names


def _network_kwargs(spec, arch, resume_data, resume_source, cfg, fp32, nhwc, freezed):
    """G_kwargs, D_kwargs and a note saying where the architecture comes from."""
    if resume_data is not None:
        G_kwargs = _kwargs_of(resume_data['G'], 'G', resume_source)
        D_kwargs = _kwargs_of(resume_data['D'], 'D', resume_source)
        source = f"{resume_source} (the pickle's own constructor arguments; --cfg {cfg} sets only hyperparameters)"
    else:
        common = dict(c_dim=arch['c_dim'], img_resolution=arch['img_resolution'], img_channels=arch['img_channels'])
        G_kwargs = _stylegan3_G_kwargs(spec, common) if spec['generator'] == 'stylegan3' else dict(
            class_name='training.networks.Generator', z_dim=spec['z_dim'], w_dim=spec['w_dim'], **common,
            mapping_kwargs=dict(num_layers=spec['map']),
            synthesis_kwargs=dict(channel_base=spec['channel_base'], channel_max=spec['channel_max'],
                                  num_fp16_res=spec['num_fp16_res'], conv_clamp=spec['conv_clamp']))
        epilogue_kwargs = dict(mbstd_group_size=spec['mbstd'])
        if spec['mbstd_num_channels'] != 1:
            epilogue_kwargs['mbstd_num_channels'] = spec['mbstd_num_channels']
        D_kwargs = dict(class_name='training.networks.Discriminator', **common, architecture=spec['D_architecture'],
                        channel_base=spec['channel_base'], channel_max=spec['channel_max'],
                        num_fp16_res=spec['num_fp16_res'], conv_clamp=spec['conv_clamp'], block_kwargs={},
                        mapping_kwargs={}, epilogue_kwargs=epilogue_kwargs)
        source = f'--cfg {cfg}'
    # Precision, memory layout and frozen D layers are training choices that keep every tensor name.
    # A StyleGAN3 Generator takes its synthesis arguments flat, at the top level.
    stylegan3 = G_kwargs['class_name'] == STYLEGAN3_G
    if nhwc and stylegan3:
        raise OptionError('--nhwc: StyleGAN3 generators have no channels-last option; leave --nhwc out')
    if fp32 or nhwc:
        G_synthesis_kwargs = G_kwargs if stylegan3 else G_kwargs.setdefault('synthesis_kwargs', {})
    if fp32:
        G_synthesis_kwargs['num_fp16_res'] = 0
        D_kwargs['num_fp16_res'] = 0
        if resume_data is None:
            G_synthesis_kwargs['conv_clamp'] = D_kwargs['conv_clamp'] = None
    if nhwc:
        G_synthesis_kwargs['fp16_channels_last'] = True
        D_kwargs.setdefault('block_kwargs', {})['fp16_channels_last'] = True
    if freezed:
        D_kwargs.setdefault('block_kwargs', {})['freeze_layers'] = freezed
    return G_kwargs, D_kwargs, source


def _stylegan3_G_kwargs(spec: dict, common: dict) -> dict:
    """A fresh StyleGAN3 generator of the preset (official stylegan3 train.py: synthesis arguments
    flat; config R doubles the channels and adds its layer options)."""
    mult = spec['G_channel_mult']
    layers = {} if spec['G_num_layers'] is None else dict(num_layers=spec['G_num_layers'])
    return dict(class_name=STYLEGAN3_G, z_dim=spec['z_dim'], w_dim=spec['w_dim'], **common,
                mapping_kwargs=dict(num_layers=spec['map']), channel_base=spec['channel_base'] * mult,
                channel_max=spec['channel_max'] * mult, num_fp16_res=spec['num_fp16_res'],
                conv_clamp=spec['conv_clamp'], magnitude_ema_beta=spec['magnitude_ema_beta'],
                **layers, **spec['G_layer_kwargs'])


def _stylegan3_loss_kwargs(spec: dict, from_scratch: bool) -> dict:
    """Loss options of a StyleGAN3 G (official StyleGAN3 loss): only D-fake renders move its EMAs;
    config R blurs D's inputs at the start of a fresh run (a resumed run starts without blur)."""
    kwargs = dict(update_emas_in_D_fakes=True)
    if from_scratch and spec['blur_init_sigma'] > 0:
        kwargs.update(blur_init_sigma=spec['blur_init_sigma'], blur_fade_kimg=spec['blur_fade_kimg'])
    return kwargs


def _kwargs_of(module, key: str, source: str) -> dict:
    if not hasattr(module, 'init_kwargs'):
        raise OptionError(f'--resume {source}: {key} carries no constructor arguments, so it cannot be rebuilt')
    kwargs = json.loads(json.dumps(module.init_kwargs))  # Plain JSON-able copy (EasyDicts become dicts).
    return dict(class_name=f'{type(module).__module__}.{type(module).__qualname__}', **kwargs)


def _check_mbstd(opts) -> None:
    group = (opts.D_kwargs.get('epilogue_kwargs') or {}).get('mbstd_group_size', 4)
    if group is not None and opts.batch_gpu > group and opts.batch_gpu % group != 0:
        raise OptionError(f'--batch: the per-GPU batch {opts.batch_gpu} must be a multiple of the minibatch-stddev '
                          f'group size {group}')


def _load_expansion_config(cfg_file: str, G):
    """The --expansion_cfg_file config, checked completely against the generator it expands."""
    from training.expansion.config import load_expansion_config
    return load_expansion_config(cfg_file, w_dim=G.w_dim, img_resolution=G.img_resolution, img_channels=G.img_channels)


def _expansion_loss_kwargs(cfg, latent_factors_path, subspace_distance, lambda_src, lambda_expand,
                           lambda_recon_l2, lambda_recon_lpips, G_kwargs, resume_pkl, replay_noise=None) -> dict:
    """Loss kwargs of a domain-expansion run, from its checked config (see _load_expansion_config)."""
    if latent_factors_path is not None:
        # Read and check the basis now (small): a bad file must fail before the run directory exists.
        from training.expansion.basis import load_latent_basis
        load_latent_basis(latent_factors_path, G_kwargs['w_dim'])
    # resume_pkl: a snapshot's stored latent_basis is authoritative (spec section 7).
    from training.expansion import constants
    values = dict(subspace_distance=(subspace_distance, constants.SUBSPACE_DISTANCE),
                  lambda_src=(lambda_src, constants.LAMBDA_SRC), lambda_expand=(lambda_expand, constants.LAMBDA_EXPAND),
                  lambda_recon_l2=(lambda_recon_l2, constants.LAMBDA_RECON_L2),
                  lambda_recon_lpips=(lambda_recon_lpips, constants.LAMBDA_RECON_LPIPS))
    # The old module path (an alias of training.expansion.loss): run folders written before the
    # package existed store this name, and re-running their command must match their options.
    kwargs = dict(class_name='training.expansion_loss.DomainExpansionLoss', expansion_cfg=cfg.to_dict(),
                  latent_factors_path=os.path.abspath(latent_factors_path) if latent_factors_path else None,
                  resume_pkl=resume_pkl, replay_noise=replay_noise or 'independent')
    for name, (value, default) in values.items():
        value = default if value is None else float(value)
        if value < 0:
            raise OptionError(f'--{name} must be >= 0, got {value}')
        kwargs[name] = value
    return kwargs


def _switch_to_class_conditional(opts, cfg, latent_factors_path, subspace_distance, replay_noise) -> None:
    """--class_conditional 1: the paper's Appendix B baseline instead of expansion. G gains a
    one-hot class input (class 0 = source, class k + 1 = task k); same tasks and lambdas."""
    given = [flag for flag, value in (('--latent_factors_path', latent_factors_path),
                                      ('--subspace_distance', subspace_distance)) if value is not None]
    if given:
        raise OptionError(f'{", ".join(given)}: subspace option(s) of domain expansion; the class-conditional '
                          f'baseline has no subspaces, drop them or --class_conditional')
    from training.class_conditional import graft
    try:
        opts.G_kwargs = graft.conditional_G_kwargs(opts.G_kwargs, len(cfg.tasks) + 1)
    except ValueError as e:
        raise OptionError(f'--class_conditional: {e}') from None
    keep = ('expansion_cfg', 'resume_pkl', 'lambda_src', 'lambda_expand', 'lambda_recon_l2', 'lambda_recon_lpips',
            'replay_noise')
    opts.loss_kwargs = dict(class_name='training.class_conditional.loss.ClassConditionalLoss',
                            **{k: v for k, v in opts.loss_kwargs.items() if k in keep or k in (
                                'r1_gamma', 'style_mixing_prob', 'pl_weight')})
    if opts.loss_kwargs.get('replay_noise') == 'independent':
        del opts.loss_kwargs['replay_noise']     # the loss's default: earlier runs' options still match


def _augment_options(aug, p, target, augpipe, from_pickle: bool) -> dict:
    from training import augment
    out = dict(augment_kwargs=None, augment_p=0.0, ada_target=None, ada_interval=4, ada_kimg=100 if from_pickle else 500)
    if aug != 'noaug':
        out['augment_kwargs'] = dict(class_name='training.augment.AugmentPipe', **augment.augpipe_kwargs(augpipe or 'bgc'))
    if aug == 'ada':
        out['ada_target'] = target if target is not None else 0.6
    if aug == 'fixed':
        out['augment_p'] = float(p)
    return out


def _split_tags(tags) -> list:
    if tags is None:
        return []
    if isinstance(tags, str):
        return [t.strip() for t in tags.split(',') if t.strip()]
    return list(tags)


def _run_description(data_info, cfg, cond, mirror, gamma, kimg, batch, aug, p, target, augpipe, resume, freezed,
                     expansion_cfg_file) -> str:
    """Run directory suffix, as the official one: dataset and the flags that were given."""
    desc = data_info['name'] if data_info else 'nodata'
    if expansion_cfg_file:
        desc += '-expand-' + os.path.splitext(os.path.basename(expansion_cfg_file))[0]
    desc += '-cond' if cond else ''
    desc += '-mirror' if mirror else ''
    desc += f'-{cfg}'
    desc += f'-gamma{gamma:g}' if gamma is not None else ''
    desc += f'-kimg{kimg:g}' if kimg is not None else ''
    desc += f'-batch{batch}' if batch is not None else ''
    desc += f'-{aug}'
    desc += f'-p{p:g}' if p is not None else ''
    desc += f'-target{target:g}' if target is not None else ''
    desc += f'-{augpipe}' if augpipe is not None else ''
    if resume not in RESUME_NONE:
        desc += '-resume' + ('latest' if resume == 'latest' else os.path.splitext(os.path.basename(resume))[0])
    desc += f'-freezed{freezed}' if freezed else ''
    return re.sub(r'[^0-9a-zA-Z._+-]+', '_', desc)


def _check_hardware(gpus: int) -> None:
    """After the consistency checks: enough CUDA devices (CPU runs start `gpus` CPU processes)."""
    info = distributed.torchrun_info()
    if info is not None:
        if info.world_size != gpus:
            raise OptionError(f'--gpus={gpus} but torchrun started {info.world_size} processes; pass --gpus={info.world_size}')
        return
    if torch.cuda.is_available() and gpus > torch.cuda.device_count():
        raise OptionError(f'--gpus={gpus}, but only {torch.cuda.device_count()} CUDA device(s) are visible')
