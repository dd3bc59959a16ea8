"""Train a StyleGAN2-ADA generator, or expand one (--expansion_cfg_file).

    python train.py --outdir=runs --data=data.zip --gpus=1 --cfg=auto
    python train.py --outdir=runs --data=data.zip --cfg=tiny --kimg=1 --metrics=none   # CPU smoke run

Thin command line (STYLE.md principle 1): `setup_training_options()` validates the flags and
resolves them into one nested options dict (each *_kwargs names its class_name);
`launch_training()` picks the run directory, prints the options, saves them as
training_options.json and starts the training processes. `--dry-run` prints and creates nothing.

Continuing a run: re-running the same command (same resolved options) into the same --outdir
continues the newest matching run from its newest snapshot, exactly (counters, optimizer and
ADA state, RNG streams, data position); `--resume latest` continues the newest run under
--outdir that has a snapshot, with the new options. `--resume PKL` starts a new run from the
networks of PKL, built from the pickle's own constructor arguments (see training/loop_state.py).
"""

import copy
import json
import os
import re
import shutil
import sys
import tempfile

import click
import torch

import dnnlib
from torch_utils import distributed
from training import logging_sinks
from training import loop_state
from training import presets

RESUME_NONE = ('noresume', '', None)
USER_ERROR_FILE_PREFIX = 'user-error-rank'  # Spawned processes report input errors to the parent in these files.


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
    outdir=None,
) -> dnnlib.EasyDict:
    """Validate the train.py flags and resolve them into the training options (no run_dir yet).

    Reads the dataset's image headers and the --resume pickle (for its architecture and to check
    it against the data); creates nothing. Raises OptionError/ValueError with a one-line message.
    """
    _check_flag_consistency(**locals())
    expansion = expansion_cfg_file is not None
    resume_data, resume_source = _load_resume_networks(resume, outdir)
    # The whole expansion config, against the --resume generator, before the data is read
    # (interfaces.md section 2).
    expansion_cfg = _load_expansion_config(expansion_cfg_file, resume_data['G']) if expansion else None
    data_info = _dataset_info(data, cond, mirror, seed)
    arch = _architecture_info(data_info, resume_data, resume_source)
    spec = presets.resolve_preset(cfg, arch['img_resolution'], gpus, expansion=expansion)

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
    opts.G_opt_kwargs = dict(class_name='torch.optim.Adam', lr=spec['lrate'], betas=list(spec['betas']), eps=spec['eps'])
    opts.D_opt_kwargs = dict(class_name='torch.optim.Adam', lr=spec['lrate'], betas=list(spec['betas']), eps=spec['eps'])
    opts.G_reg_interval = spec['G_reg_interval']
    opts.D_reg_interval = spec['D_reg_interval']
    opts.loss_kwargs = dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=gamma if gamma is not None else spec['gamma'],
                            style_mixing_prob=spec['style_mixing_prob'], pl_weight=spec['pl_weight'])
    if expansion:
        opts.loss_kwargs.update(_expansion_loss_kwargs(expansion_cfg, latent_factors_path, subspace_distance,
                                                       lambda_src, lambda_expand, lambda_recon_l2, lambda_recon_lpips,
                                                       opts.G_kwargs, resume, replay_noise))
    # Transfer learning from a pickle adapts ADA faster and skips the EMA ramp-up (official);
    # `--resume latest` continues a run and keeps its settings.
    from_pickle = resume not in RESUME_NONE and resume != 'latest'
    opts.update(_augment_options(aug, p, target, augpipe, from_pickle=from_pickle))
    opts.ema_kimg = spec['ema']
    opts.ema_rampup = None if from_pickle else spec['ramp']
    opts.resume_pkl = None if resume in RESUME_NONE else resume
    opts.cudnn_benchmark = not nobench
    opts.allow_tf32 = bool(allow_tf32)
    opts.grid_size = list(spec['grid_size'] or presets.default_grid_size(arch['img_resolution']))
    opts.logging = dict(tensorboard=True, wandb=dict(mode=wandb, project=wandb_project, name=wandb_name,
                                                     tags=_split_tags(wandb_tags)))
    opts.desc = _run_description(data_info, cfg, cond, mirror, gamma, kimg, batch, aug, p, target, augpipe, resume,
                                 freezed, expansion_cfg_file)
    _check_hardware(gpus)
    return opts


def _check_flag_consistency(gpus, batch, kimg, snap, tick, seed, cfg, aug, p, target, augpipe, metrics, wandb, workers,
                            data, resume, expansion_cfg_file, latent_factors_path, subspace_distance, lambda_src,
                            lambda_expand, lambda_recon_l2, lambda_recon_lpips, outdir, replay_noise=None, **_ignored) -> None:
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
    import legacy
    if resume == 'latest':
        run_dir = loop_state.find_latest_run_with_snapshot(outdir) if outdir is not None else None
        if run_dir is None:
            raise OptionError(f'--resume latest: no run with a network snapshot under --outdir {outdir}')
        source = loop_state.latest_snapshot(run_dir)
    else:
        source = resume
    try:
        with dnnlib.util.open_url(source) as f:
            return legacy.load_network_pkl(f), source
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
        G_kwargs = dict(class_name='training.networks.Generator', z_dim=spec['z_dim'], w_dim=spec['w_dim'], **common,
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
    if fp32:
        G_kwargs.setdefault('synthesis_kwargs', {})['num_fp16_res'] = 0
        D_kwargs['num_fp16_res'] = 0
        if resume_data is None:
            G_kwargs['synthesis_kwargs']['conv_clamp'] = D_kwargs['conv_clamp'] = None
    if nhwc:
        G_kwargs.setdefault('synthesis_kwargs', {})['fp16_channels_last'] = True
        D_kwargs.setdefault('block_kwargs', {})['fp16_channels_last'] = True
    if freezed:
        D_kwargs.setdefault('block_kwargs', {})['freeze_layers'] = freezed
    return G_kwargs, D_kwargs, source


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
    from training.expansion_config import load_expansion_config
    return load_expansion_config(cfg_file, w_dim=G.w_dim, img_resolution=G.img_resolution, img_channels=G.img_channels)


def _expansion_loss_kwargs(cfg, latent_factors_path, subspace_distance, lambda_src, lambda_expand,
                           lambda_recon_l2, lambda_recon_lpips, G_kwargs, resume_pkl, replay_noise=None) -> dict:
    """Loss kwargs of a domain-expansion run, from its checked config (see _load_expansion_config)."""
    if latent_factors_path is not None:
        # Read and check the basis now (small): a bad file must fail before the run directory exists.
        from training.latent_basis import load_latent_basis
        load_latent_basis(latent_factors_path, G_kwargs['w_dim'])
    # resume_pkl: a snapshot's stored latent_basis is authoritative (spec section 7).
    values = dict(subspace_distance=(subspace_distance, 20.0), lambda_src=(lambda_src, 1.0),
                  lambda_expand=(lambda_expand, 1.0), lambda_recon_l2=(lambda_recon_l2, 10.0),
                  lambda_recon_lpips=(lambda_recon_lpips, 10.0))
    kwargs = dict(class_name='training.expansion_loss.DomainExpansionLoss', expansion_cfg=cfg.to_dict(),
                  latent_factors_path=os.path.abspath(latent_factors_path) if latent_factors_path else None,
                  resume_pkl=resume_pkl, replay_noise=replay_noise or 'independent')
    for name, (value, default) in values.items():
        value = default if value is None else float(value)
        if value < 0:
            raise OptionError(f'--{name} must be >= 0, got {value}')
        kwargs[name] = value
    return kwargs


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

# ---------------------------------------------------------------------------------------------
# Run directory and launch.


def plan_run(options: dict, outdir: str) -> dict:
    """Where the run goes: dict(run_dir, continue_pkl, mode) with mode 'new' (fresh folder),
    'continue' (from continue_pkl) or 'restart' (matching folder without snapshots)."""
    if options.get('resume_pkl') == 'latest':
        run_dir = loop_state.find_latest_run_with_snapshot(outdir)
        if run_dir is None:
            raise OptionError(f'--resume latest: no run with a network snapshot under --outdir {outdir}')
        return dict(run_dir=run_dir, continue_pkl=loop_state.latest_snapshot(run_dir), mode='continue')
    run_dir = loop_state.find_matching_run(outdir, options)
    if run_dir is not None:
        snapshot = loop_state.latest_snapshot(run_dir)
        return dict(run_dir=run_dir, continue_pkl=snapshot, mode='continue' if snapshot else 'restart')
    return dict(run_dir=loop_state.next_run_dir(outdir, options['desc']), continue_pkl=None, mode='new')


def prepare_run_dir(options: dict, plan: dict) -> None:
    """Create or tidy the run folder and write training_options.json."""
    run_dir = plan['run_dir']
    os.makedirs(run_dir, exist_ok=True)
    loop_state.remove_temp_files(run_dir)
    saved = loop_state.read_options(run_dir)
    notes = []
    if plan['mode'] == 'continue':
        kimg = float(loop_state.SNAPSHOT_RE.match(os.path.basename(plan['continue_pkl'])).group(1))
        # Statistics and metrics written after that snapshot belong to the lost part of the run.
        loop_state.truncate_jsonl(os.path.join(run_dir, 'stats.jsonl'),
                                  lambda r: r.get('Progress/kimg', {}).get('mean', 0) <= kimg + 1e-9)
        for name in os.listdir(run_dir):
            if name.startswith('metric-') and name.endswith('.jsonl'):
                loop_state.truncate_jsonl(os.path.join(run_dir, name), lambda r: _metric_kimg(r) <= kimg + 1e-9)
        if saved is not None:
            notes = loop_state.options_diff(saved, options)
    elif plan['mode'] == 'restart':
        for name in os.listdir(run_dir):
            if name == 'stats.jsonl' or (name.startswith('metric-') and name.endswith('.jsonl')):
                os.remove(os.path.join(run_dir, name))
    with open(os.path.join(run_dir, loop_state.OPTIONS_FILE), 'wt') as f:
        json.dump(options, f, indent=2)
    with open(os.path.join(run_dir, 'log.txt'), 'at') as f:
        f.write(f'--- {plan["mode"]}: {" ".join(sys.argv)}\n')
        for line in notes:
            f.write(f'Changed option {line}\n')


def _metric_kimg(record: dict) -> float:
    match = loop_state.SNAPSHOT_RE.match(os.path.basename(record.get('snapshot_pkl') or ''))
    return float(match.group(1)) if match else 0.0


def launch_training(options: dict, outdir: str, dry_run: bool = False) -> dict | None:
    """Pick the run dir, print the options, save them, and train (in this process, in --gpus
    spawned processes, or as this torchrun rank). Returns the training summary (rank 0) or None
    for --dry-run."""
    options = copy.deepcopy(dict(options))
    info = distributed.torchrun_info()
    rank = info.rank if info is not None else 0
    plan = plan_run(options, outdir) if rank == 0 else None
    if dry_run:
        if rank == 0:
            options['run_dir'] = plan['run_dir']
            print(json.dumps(options, indent=2))
            print(f'Dry run: would {plan["mode"]} {plan["run_dir"]}'
                  + (f' from {plan["continue_pkl"]}' if plan['continue_pkl'] else '') + '; nothing was created.')
        return None
    if info is not None:
        return _run_torchrun_rank(options, plan, info)
    options['run_dir'] = plan['run_dir']
    print(json.dumps(options, indent=2))
    run_dir_is_new, outdir_is_new = not os.path.exists(plan['run_dir']), not os.path.exists(outdir)
    prepare_run_dir(options, plan)
    print(f'Run directory: {plan["run_dir"]} ({plan["mode"]})')
    gpus = options['num_gpus']
    if gpus == 1:
        try:
            return _train_process(0, options, plan['continue_pkl'], None, 1)
        except dnnlib.util.UserError:
            # Found only once training starts (e.g. pretrained weights unavailable offline): leave no
            # half-made run behind, so a bad input creates nothing (interfaces.md section 4).
            if run_dir_is_new:
                _remove_failed_run(plan['run_dir'], outdir if outdir_is_new else None)
            raise
    if not torch.cuda.is_available():
        print(f'No CUDA device: starting {gpus} CPU processes (gloo)')
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.abspath(os.path.join(tmp, '.torch_distributed_init'))
        try:
            torch.multiprocessing.spawn(fn=_train_process, args=(options, plan['continue_pkl'], init_file, gpus),
                                        nprocs=gpus)
        except torch.multiprocessing.ProcessRaisedException:
            message = _spawned_user_error(tmp)
            if message is None:
                raise
            if run_dir_is_new:
                _remove_failed_run(plan['run_dir'], outdir if outdir_is_new else None)
            raise dnnlib.util.UserError(message) from None
    return dict(run_dir=plan['run_dir'])


def _spawned_user_error(tmp_dir: str) -> str | None:
    """The message of a user-input error raised in a spawned training process (see _train_process)."""
    for name in sorted(os.listdir(tmp_dir)):
        if name.startswith(USER_ERROR_FILE_PREFIX):
            with open(os.path.join(tmp_dir, name)) as f:
                return f.read()
    return None


def _remove_failed_run(run_dir: str, new_outdir: str | None = None) -> None:
    """Delete a run folder this launch created (and --outdir, when this launch created it and it
    is left empty); kept when it holds a network snapshot."""
    for _root, _dirs, files in os.walk(run_dir):
        if any(loop_state.SNAPSHOT_RE.match(name) for name in files):
            return
    shutil.rmtree(run_dir, ignore_errors=True)
    if new_outdir is not None and os.path.isdir(new_outdir) and not os.listdir(new_outdir):
        os.rmdir(new_outdir)


def _device_for(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device('cuda', local_rank)
    return torch.device('cpu')


def _train_process(rank: int, options: dict, continue_pkl, init_file, world_size: int) -> dict:
    """One spawned (or the only) training process."""
    device = _device_for(rank)
    info = distributed.ProcessInfo(rank=rank, world_size=world_size, local_rank=rank)
    init_method = f'file://{init_file}' if init_file else None
    distributed.init_process_group(info, device, init_method=init_method)
    try:
        return _training_loop()(options, rank=rank, world_size=world_size, device=device, continue_pkl=continue_pkl)
    except dnnlib.util.UserError as e:
        if init_file is not None:  # Spawned: the parent only sees a traceback text, so leave it the message.
            with open(os.path.join(os.path.dirname(init_file), f'{USER_ERROR_FILE_PREFIX}{rank}.txt'), 'w') as f:
                f.write(str(e))
        raise
    finally:
        distributed.shutdown()


def _run_torchrun_rank(options: dict, plan: dict | None, info: distributed.ProcessInfo) -> dict:
    device = _device_for(info.local_rank)
    distributed.init_process_group(info, device)
    try:
        if info.rank == 0:
            options['run_dir'] = plan['run_dir']
            print(json.dumps(options, indent=2))
            prepare_run_dir(options, plan)
        plan = distributed.broadcast_object(plan)
        options['run_dir'] = plan['run_dir']
        distributed.barrier()
        result = _training_loop()(options, rank=info.rank, world_size=info.world_size, device=device,
                                  continue_pkl=plan['continue_pkl'])
        return result if info.rank == 0 else None
    finally:
        distributed.shutdown()


def _training_loop():
    from training.training_loop import training_loop
    return training_loop

# ---------------------------------------------------------------------------------------------
# Command line.


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
# General.
@click.option('--outdir', help='Where to save the results', metavar='DIR', required=True)
@click.option('--gpus', help='Number of GPUs (processes) [default: 1; torchrun: its world size]', type=int, metavar='INT')
@click.option('--snap', help='Snapshot interval in ticks [default: 50]', type=int, metavar='INT')
@click.option('--metrics', help="Comma-separated metrics or 'none' [default: fid50k_full with --data]", metavar='LIST')
@click.option('--seed', help='Random seed [default: 0]', type=int, default=0, metavar='INT')
@click.option('--dry-run', help='Print the resolved options and exit; creates nothing', is_flag=True)
# Dataset.
@click.option('--data', help='Training data (directory or zip)', metavar='PATH')
@click.option('--cond', help='Train a conditional model from dataset.json labels [default: false]', type=bool, default=False, metavar='BOOL')
@click.option('--mirror', help='Enable dataset x-flips [default: false]', type=bool, default=False, metavar='BOOL')
# Base configuration.
@click.option('--cfg', help=f'Preset: {", ".join(presets.PRESETS)} [default: auto]', default='auto', metavar='NAME')
@click.option('--gamma', help='Override R1 gamma', type=float, metavar='FLOAT')
@click.option('--kimg', help='Override training duration (kimg)', type=float, metavar='FLOAT')
@click.option('--batch', help='Override batch size', type=int, metavar='INT')
@click.option('--tick', help='Progress tick length in kimg [default: from --cfg, 4 for official presets]', type=float, metavar='FLOAT')
# Discriminator augmentation.
@click.option('--aug', help='Augmentation mode: noaug, ada, fixed [default: ada]', default='ada', metavar='MODE')
@click.option('--p', help='Augmentation probability for --aug=fixed', type=float, metavar='FLOAT')
@click.option('--target', help='ADA target value for --aug=ada [default: 0.6]', type=float, metavar='FLOAT')
@click.option('--augpipe', help='Augmentation pipeline [default: bgc]', metavar='NAME')
# Transfer learning and continuation.
@click.option('--resume', help="Network pickle (path or URL) to start from, 'latest' to continue the newest run "
              "in --outdir, or noresume [default: noresume]", metavar='PKL')
@click.option('--freezed', help='Freeze-D: number of frozen discriminator layers [default: 0]', type=int, default=0, metavar='INT')
# Performance.
@click.option('--fp32', help='Disable mixed-precision training', type=bool, default=False, metavar='BOOL')
@click.option('--nhwc', help='Use NHWC memory format with FP16', type=bool, default=False, metavar='BOOL')
@click.option('--allow-tf32', help='Allow TF32 for matmul and convolutions', type=bool, default=False, metavar='BOOL')
@click.option('--nobench', help='Disable cuDNN benchmarking', type=bool, default=False, metavar='BOOL')
@click.option('--workers', help='DataLoader worker processes [default: 3]', type=int, default=3, metavar='INT')
# Logging.
@click.option('--wandb', 'wandb_mode', help='Weights & Biases: online, offline or disabled [default: disabled]', default='disabled', metavar='MODE')
@click.option('--wandb-project', help='W&B project', metavar='NAME')
@click.option('--wandb-name', help='W&B run name [default: the run directory name]', metavar='NAME')
@click.option('--wandb-tags', help='Comma-separated W&B tags', metavar='LIST')
# Domain expansion.
@click.option('--expansion_cfg_file', help='Expansion config (JSON): train a domain-expansion run', metavar='CFG')
@click.option('--latent_factors_path', help='Saved latent basis (torch.save) [default: factorize G_ema]', metavar='PATH')
@click.option('--subspace_distance', help='Step along a repurposed direction [default: 20]', type=float, metavar='FLOAT')
@click.option('--lambda_src', help='Source-domain GAN loss on/off (0 = off; then --data is optional) [default: 1]', type=float, metavar='FLOAT')
@click.option('--lambda_expand', help='Weight of the expansion (task) losses [default: 1]', type=float, metavar='FLOAT')
@click.option('--lambda_recon_l2', help='Weight of the base-subspace L2 reconstruction [default: 10]', type=float, metavar='FLOAT')
@click.option('--lambda_recon_lpips', help='Weight of the base-subspace LPIPS reconstruction [default: 10]', type=float, metavar='FLOAT')
@click.option('--replay_noise', help='Noise of the frozen replay render: independent (official) or shared with the '
              'trained render (less base drift) [default: independent]', type=click.Choice(['independent', 'shared']))
def main(outdir, dry_run, gpus, wandb_mode, **flags):
    """Train a StyleGAN2-ADA network (or expand one with --expansion_cfg_file).

    Re-running the same command into the same --outdir continues the newest run whose
    training_options.json equals the new resolved options (ignoring run_dir), from its newest
    snapshot; --resume latest continues the newest run in --outdir with the new options.
    """
    info = distributed.torchrun_info()
    if gpus is None:
        gpus = info.world_size if info is not None else 1
    try:
        # Every user-input problem surfaces here, before anything is created.
        options = setup_training_options(outdir=outdir, gpus=gpus, wandb=wandb_mode, **flags)
    except (dnnlib.util.UserError, ValueError, FileNotFoundError) as e:
        raise click.ClickException(_one_line(e)) from None
    try:
        result = launch_training(options, outdir, dry_run=dry_run)
    except (dnnlib.util.UserError, _non_finite_error()) as e:
        raise click.ClickException(_one_line(e)) from None
    if result is not None and result.get('last_snapshot'):
        print(f'Last snapshot: {result["last_snapshot"]}')


def _non_finite_error():
    from training.training_loop import NonFiniteError
    return NonFiniteError


def _one_line(error: Exception) -> str:
    """The message of a user-input error; multi-line messages (e.g. config problems) keep their lines."""
    return str(error).strip() or type(error).__name__


if __name__ == '__main__':
    main()
