"""Compute quality metrics of a trained generator and append them to the run directory.

Examples:
    python calc_metrics.py --list
    python calc_metrics.py --metrics fid50k_full,pr50k3_full --network runs/00000-x/network-snapshot-000400.pkl
    python calc_metrics.py --metrics fid50k_full --network net.pkl --data ~/datasets/ffhq.zip --mirror 1
    python calc_metrics.py --metrics prdc_tiny --network net.pkl --features w --data real_ws.npy [--sampler sampler-snapshot.pt]

Without --data the dataset recorded in the pickle (`training_set_kwargs`) is used. Results are
printed as JSON lines and, when --network is a local file, appended to
`metric-<name>.jsonl` next to it. `--gpus N` runs N processes (one per CUDA device; gloo
processes on a CPU-only machine). With `--features w` the prdc* metrics compare latents: --data
is a .npy/.npz file of real W `[N, w_dim]` or W+ `[N, num_ws, w_dim]` latents, the generated ones
are the mapping network's, or a black-box sampler's (`--sampler`, the latents generate_blackbox.py
renders for seeds SEED ..).
"""

import os
import pickle
import tempfile

import click
import torch

import dnnlib
import legacy
import training.networks  # noqa: F401 (registers the persistent classes that --gpus > 1 children unpickle G with)
from metrics import feature_networks
from metrics import metric_main
from metrics import prdc
from training.blackbox import pipeline as blackbox_pipeline
from training.blackbox import sampler as blackbox_sampler
from training.expansion import evaluation as _expansion_evaluation  # noqa: F401 (registers its metrics)

# ---------------------------------------------------------------------------------------------


def load_network(network_pkl: str, flag: str = '--network') -> dict:
    """The snapshot dict of `network_pkl` (path or URL) via the safe legacy loader."""
    if not dnnlib.util.is_url(network_pkl, allow_file_urls=True) and not os.path.isfile(network_pkl):
        raise click.UsageError(f"{flag}: file not found: '{network_pkl}'")
    with dnnlib.util.open_url(network_pkl) as f:
        return legacy.load_network_pkl(f)


# The dataset class a snapshot's `training_set_kwargs` may name (ours and the official
# repositories' name for it), and the recorded keys taken over. Data names nothing we execute:
# any other class name is refused, and the class built is always ours.
RECORDED_DATASET_CLASS = 'training.dataset.ImageFolderDataset'
RECORDED_DATASET_KEYS = dict(path=(str,), max_size=(int, type(None)), xflip=(bool,), random_seed=(int,))


def resolve_dataset_kwargs(network_dict: dict, data: str | None, mirror: bool | None) -> dnnlib.EasyDict | None:
    """Dataset options for the real images: --data, else the dataset recorded in the pickle's
    training_set_kwargs (its path and subset options only); resolution and labels follow G_ema.
    None when neither is available."""
    G = network_dict['G_ema']
    if data is not None:
        dataset_kwargs = dnnlib.EasyDict(class_name=RECORDED_DATASET_CLASS, path=data)
    elif network_dict.get('training_set_kwargs'):
        dataset_kwargs = _recorded_dataset_kwargs(network_dict['training_set_kwargs'])
        if not os.path.exists(dataset_kwargs.path):
            raise click.UsageError(f"--data: not given, and the dataset recorded in the network pickle "
                                   f"('{dnnlib.util.one_line(dataset_kwargs.path)}') does not exist here; "
                                   f"pass --data DIR_OR_ZIP")
    else:
        return None
    dataset_kwargs.update(resolution=G.img_resolution, use_labels=G.c_dim != 0)
    if mirror is not None:
        dataset_kwargs.xflip = mirror
    return dataset_kwargs


def _recorded_dataset_kwargs(recorded) -> dnnlib.EasyDict:
    """Our dataset kwargs from a snapshot's training_set_kwargs, checked; never its class."""
    fix = 'pass --data DIR_OR_ZIP'
    if not isinstance(recorded, dict):
        raise click.UsageError(f'--data: not given, and the training_set_kwargs recorded in the network pickle '
                               f'are not a dict; {fix}')
    class_name = recorded.get('class_name', RECORDED_DATASET_CLASS)
    if class_name != RECORDED_DATASET_CLASS:
        raise click.UsageError(f"--data: not given, and the network pickle records the dataset class "
                               f"'{dnnlib.util.one_line(class_name, 200)}', which is not ours "
                               f"({RECORDED_DATASET_CLASS}); {fix}")
    kwargs = dnnlib.EasyDict(class_name=RECORDED_DATASET_CLASS)
    for key, types in RECORDED_DATASET_KEYS.items():
        if key not in recorded:
            continue
        if not isinstance(recorded[key], types) or (bool not in types and isinstance(recorded[key], bool)):
            raise click.UsageError(f'--data: not given, and the training_set_kwargs.{key} recorded in the network '
                                   f'pickle has the wrong type ({type(recorded[key]).__name__}); {fix}')
        kwargs[key] = recorded[key]
    if 'path' not in kwargs:
        raise click.UsageError(f'--data: not given, and the network pickle records no dataset path; {fix}')
    return kwargs


def expansion_extra(network_dict: dict, parent_pkl: str | None) -> dict:
    """Inputs of the expansion metrics: the snapshot's domain-expansion keys and the parent G."""
    extra = {}
    if network_dict.get('latent_basis') is not None:
        extra['expansion'] = {key: network_dict.get(key) for key in
                              ('latent_basis', 'repurposed_dims', 'subspace_distance', 'expansion_cfg')}
    if parent_pkl is not None:
        extra['parent_G'] = load_network(parent_pkl, flag='--parent')['G_ema']
    return extra


def check_latent_options(metric_list: list, data: str | None, sampler_pkl: str | None, features: str, gpus: int) -> None:
    """UsageError for --features w / --sampler combinations that cannot work (before any work)."""
    if sampler_pkl is not None and features != 'w':
        raise click.UsageError('--sampler: only used with --features w (PRDC of the sampler\'s latents); '
                               'for images, render them with generate_blackbox.py')
    if features != 'w':
        return
    others = [m for m in metric_list if not m.startswith('prdc')]
    if others:
        raise click.UsageError(f"--features w: only the prdc* metrics compare latents, not {', '.join(others)}; "
                               f"compute those in a separate call without --features w")
    if data is None:
        raise click.UsageError('--features w: pass --data LATENTS.npy (real W [N, w_dim] or W+ [N, num_ws, w_dim] latents)')
    if gpus != 1:
        raise click.UsageError('--features w: latent PRDC runs in one process; drop --gpus')
    if sampler_pkl is not None and not os.path.isfile(sampler_pkl):
        raise click.UsageError(f"--sampler: file not found: '{sampler_pkl}'")


def latent_extra(network_dict: dict, network_pkl: str, data: str, sampler_pkl: str | None) -> dict:
    """Inputs of the prdc* metrics with --features w: the real latents (checked against G_ema)
    and, with --sampler, the sampler's latent source (checked to fit the network)."""
    G = network_dict['G_ema']
    real = prdc.load_latents(data)
    prdc.check_latents(real, G.synthesis.num_ws, G.w_dim)
    extra = dict(prdc_real_latents=real)
    if sampler_pkl is not None:
        if real.ndim != 3:
            raise click.UsageError('--data: the sampler draws W+ latents; pass real W+ latents [N, num_ws, w_dim]')
        if not os.path.isfile(network_pkl):
            raise click.UsageError('--sampler: needs --network as a local file (its SHA-256 must match the sampler\'s source)')
        sampler, info = blackbox_sampler.load_sampler_snapshot(sampler_pkl)
        blackbox_sampler.check_fits_generator(info, G, dnnlib.util.file_sha256(network_pkl))
        extra['prdc_fake_latents'] = blackbox_pipeline.metric_latent_source(sampler, info)
    return extra


def _process(rank: int, args: dnnlib.EasyDict, temp_dir: str) -> list:
    # One process per device; rank 0 reports.
    use_cuda = torch.cuda.is_available()
    device = torch.device('cuda', rank) if use_cuda else torch.device('cpu')
    if args.num_gpus > 1:
        init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
        torch.distributed.init_process_group(backend='nccl' if use_cuda else 'gloo', init_method=f'file://{init_file}',
                                             rank=rank, world_size=args.num_gpus)
    if use_cuda:
        torch.cuda.set_device(device)
    elif args.num_gpus > 1:
        # CPU processes share the cores; more threads than cores only adds contention.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.num_gpus))
    try:
        results = []
        for metric in args.metrics:
            if rank == 0 and args.verbose:
                print(f'Calculating {metric}...', flush=True)
            result = metric_main.calc_metric(metric=metric, G=args.G, dataset_kwargs=args.dataset_kwargs,
                                             num_gpus=args.num_gpus, rank=rank, device=device, progress=args.verbose,
                                             cache=args.cache, detector_dir=args.detector_dir, seed=args.seed,
                                             num_workers=args.num_workers, tiny_num_items=args.tiny_items,
                                             extra=args.extra)
            if rank == 0:
                metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)
            results.append(result)
        return results
    finally:
        if args.num_gpus > 1:
            torch.distributed.destroy_process_group()


def calc_metrics(network_pkl: str, metrics: str = 'fid50k_full', data: str | None = None, mirror: bool | None = None,
                 gpus: int = 1, verbose: bool = True, detector_dir: str | None = None, cache: bool = True,
                 seed: int = 0, num_workers: int = 3, tiny_items: int = 256, parent_pkl: str | None = None,
                 features: str = 'inception', sampler_pkl: str | None = None, allow_task_import: bool = False) -> list:
    """Compute `metrics` (comma-separated names, or 'none') for the G_ema of `network_pkl`.

    `features`: what the prdc* metrics compare (metrics/prdc.py); with 'w', `data` is a file of
    real latents and `sampler_pkl` (optional) a black-box sampler snapshot whose latents are compared.

    `allow_task_import`: the user's --allow-task-import; without it the expansion metrics resolve
    only registered task types from the snapshot's expansion_cfg (a dotted path is refused).

    Returns the result dicts (single process), or [] with --gpus > 1 (the processes report).
    Raises click.UsageError / ValueError with a one-line message for bad input, before any work.
    """
    metric_list = metric_main.parse_metric_list(metrics)
    if gpus < 1:
        raise click.UsageError(f'--gpus: must be at least 1, got {gpus}')
    if torch.cuda.is_available() and gpus > torch.cuda.device_count():
        raise click.UsageError(f'--gpus: {gpus} requested but only {torch.cuda.device_count()} CUDA devices are visible')
    if data is not None and not os.path.exists(data):
        raise click.UsageError(f"--data: no such file or directory: '{data}'")
    if parent_pkl is not None and not dnnlib.util.is_url(parent_pkl) and not os.path.isfile(parent_pkl):
        raise click.UsageError(f"--parent: file not found: '{parent_pkl}'")
    if detector_dir is not None and not os.path.isdir(detector_dir):
        raise click.UsageError(f"--detector-dir: no such directory: '{detector_dir}'")
    check_latent_options(metric_list, data, sampler_pkl, features, gpus)
    if not metric_list:
        if verbose:
            print('No metrics requested (--metrics none).')
        return []

    network_dict = load_network(network_pkl)
    latents_extra = latent_extra(network_dict, network_pkl, data, sampler_pkl) if features == 'w' else {}
    dataset_kwargs = resolve_dataset_kwargs(network_dict, data, mirror) if features != 'w' else None
    needs_data = [m for m in metric_list if metric_main.metric_needs_real_images(m)]
    if dataset_kwargs is None and needs_data and features != 'w':
        raise click.UsageError(f"--data: required for {', '.join(needs_data)} (the network pickle records no "
                               f"training dataset); pass --data DIR_OR_ZIP")

    extra = expansion_extra(network_dict, parent_pkl)
    extra['prdc_features'] = features  # What the prdc* metrics compare (metrics/prdc.py).
    extra.update(latents_extra)
    extra['allow_task_import'] = bool(allow_task_import)  # training/expansion/evaluation.py
    args = dnnlib.EasyDict(metrics=metric_list, G=network_dict['G_ema'], dataset_kwargs=dataset_kwargs or {}, extra=extra,
                           num_gpus=gpus, verbose=verbose, detector_dir=detector_dir, cache=cache, seed=seed,
                           num_workers=num_workers, tiny_items=tiny_items, network_pkl=network_pkl,
                           run_dir=os.path.dirname(os.path.abspath(network_pkl)) if os.path.isfile(network_pkl) else None)
    if verbose:
        print(f'Network: {network_pkl}')
        print(f'Dataset: {dict(args.dataset_kwargs) if args.dataset_kwargs else (data if features == "w" else "(none)")}')
        print(f'Processes: {gpus} ({"CUDA" if torch.cuda.is_available() else "CPU, gloo"})')
    with tempfile.TemporaryDirectory() as temp_dir:
        if gpus == 1:
            return _process(0, args, temp_dir)
        torch.multiprocessing.spawn(fn=_process, args=(args, temp_dir), nprocs=gpus)
    return []

# ---------------------------------------------------------------------------------------------


# Mistakes a user can fix: reported as one line, no traceback.
_USER_ERRORS = (dnnlib.util.UserError, ValueError, OSError, pickle.UnpicklingError)


@click.command()
@click.option('--network', 'network_pkl', help='Network pickle (path or URL)', metavar='PATH')
@click.option('--metrics', help='Comma-separated metric names, or none  [default: fid50k_full]',
              default='fid50k_full', show_default=False, metavar='LIST')
@click.option('--data', help='Dataset folder or zip  [default: the one recorded in the pickle]; with --features w, '
              'a .npy/.npz of real W [N, w_dim] or W+ [N, num_ws, w_dim] latents', metavar='PATH')
@click.option('--mirror', help='Whether the dataset was x-flipped in training  [default: as recorded]',
              type=bool, is_flag=False, flag_value=True, default=None, metavar='BOOL')
@click.option('--gpus', help='Number of processes (CUDA devices)', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--verbose', help='Print options and progress', type=bool, is_flag=False, flag_value=True,
              default=True, show_default=True, metavar='BOOL')
@click.option('--detector-dir', help=f'Offline folder holding inception-2015-12-05.pt / vgg16.pt  '
              f'[default: ${feature_networks.DETECTOR_DIR_ENV} or download]', metavar='DIR')
@click.option('--cache', help='Cache real-image statistics', type=bool, default=True, show_default=True, metavar='BOOL')
@click.option('--seed', help='Seed of the generated latents', type=int, default=0, show_default=True)
@click.option('--workers', 'num_workers', help='Data loader worker processes', type=click.IntRange(min=0),
              default=3, show_default=True)
@click.option('--tiny-items', 'tiny_items', help='Image count of the *_tiny metrics', type=click.IntRange(min=2),
              default=256, show_default=True)
@click.option('--parent', 'parent_pkl', help='Parent (source) network pickle, for the base-vs-parent FID of an '
              'expanded network', metavar='PATH')
@click.option('--features', type=click.Choice(prdc.FEATURE_KINDS), default='inception', show_default=True,
              help='Features of the prdc* metrics: Inception pool features, raw pixels (toy data), or latents (w)')
@click.option('--sampler', 'sampler_pkl', metavar='PT', help='With --features w: a black-box sampler snapshot '
              '(adapt_blackbox.py) whose latents are compared instead of the mapping network\'s')
@click.option('--allow-task-import', is_flag=True, help='Import task classes named by dotted paths in the '
              "snapshot's expansion_cfg (only for snapshots you trust; default: registered types only)")
@click.option('--list', 'list_metrics', help='List the available metrics and exit', is_flag=True)
def main(network_pkl, metrics, data, mirror, gpus, verbose, detector_dir, cache, seed, num_workers, tiny_items,
         parent_pkl, features, sampler_pkl, allow_task_import, list_metrics):
    """Compute quality metrics (FID, KID, precision/recall, IS, PPL, ...) of a network pickle."""
    if list_metrics:
        for name in metric_main.list_valid_metrics():
            print(f'{name:24s} {metric_main.describe_metric(name)}')
        return
    if network_pkl is None:
        raise click.UsageError('--network: required (a network pickle path or URL); see --list for the metrics')
    try:
        calc_metrics(network_pkl=network_pkl, metrics=metrics, data=data, mirror=mirror, gpus=gpus, verbose=verbose,
                     detector_dir=detector_dir, cache=cache, seed=seed, num_workers=num_workers, tiny_items=tiny_items,
                     parent_pkl=parent_pkl, features=features, sampler_pkl=sampler_pkl,
                     allow_task_import=allow_task_import)
    except click.ClickException:
        raise
    except _USER_ERRORS as e:
        raise click.ClickException(str(e)) from None

# ---------------------------------------------------------------------------------------------


if __name__ == '__main__':
    main()
