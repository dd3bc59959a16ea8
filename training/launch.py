"""Starting a training run from resolved options: where it goes, continuation, and processes.

    options = training.run_options.setup_training_options(data=..., cfg='tiny', ...)
    training.launch.launch_training(options, outdir)

`plan_run` decides the run folder: re-running the same command (the same resolved options) into
the same --outdir continues the newest matching run from its newest snapshot, exactly (counters,
optimizer and ADA state, RNG streams, data position); `resume_pkl='latest'` continues the newest
run under --outdir that has a snapshot, with the new options; anything else starts a new
numbered folder. `launch_training` prints and saves the options (training_options.json) and
trains in this process, in `num_gpus` spawned processes, or as one torchrun rank.

A user-input error found only once training runs (e.g. pretrained weights missing offline) is
re-raised in the launching process as a `dnnlib.util.UserError`, and a run folder this launch
created is removed again, so bad input leaves nothing behind (interfaces.md section 4).
"""

import copy
import json
import os
import shutil
import sys
import tempfile

import torch

import dnnlib
from torch_utils import distributed
from training import loop_state
from training.run_options import OptionError

USER_ERROR_FILE_PREFIX = 'user-error-rank'  # Spawned processes report input errors to the parent in these files.

# ---------------------------------------------------------------------------------------------
# The run folder.


def plan_run(options: dict, outdir: str) -> dict:
    """Where the run goes: dict(run_dir, continue_pkl, mode) with mode 'new' (a fresh numbered
    folder) or 'continue' (the newest matching run folder, from its newest snapshot continue_pkl)."""
    if options.get('resume_pkl') == 'latest':
        run_dir = loop_state.find_latest_run_with_snapshot(outdir)
        if run_dir is None:
            raise OptionError(f'--resume latest: no run with a network snapshot under --outdir {outdir}')
        return dict(run_dir=run_dir, continue_pkl=loop_state.latest_snapshot(run_dir), mode='continue')
    run_dir = loop_state.find_matching_run(outdir, options)
    snapshot = loop_state.latest_snapshot(run_dir) if run_dir is not None else None
    if snapshot is not None:
        return dict(run_dir=run_dir, continue_pkl=snapshot, mode='continue')
    # A matching run without a snapshot is never started over in place: its stats.jsonl and
    # metric files stay as they are, and the new attempt gets the next numbered folder.
    return dict(run_dir=loop_state.next_run_dir(outdir, options['desc']), continue_pkl=None, mode='new')


def prepare_run_dir(options: dict, plan: dict, command: str | None = None) -> None:
    """Create or tidy the run folder and write training_options.json.

    Args:
        options: the resolved options, with `run_dir` set.
        plan:    `plan_run`'s answer.
        command: the command line recorded in log.txt [default: this process's argv].
    """
    run_dir = plan['run_dir']
    os.makedirs(run_dir, exist_ok=True)
    loop_state.remove_temp_files(run_dir)
    saved = loop_state.read_options(run_dir)
    notes = []
    if plan['mode'] == 'continue':
        # Statistics and metrics written after that snapshot belong to the lost part of the run;
        # everything up to and including the snapshot's own tick is kept (exact image counts).
        label = loop_state.SNAPSHOT_RE.match(os.path.basename(plan['continue_pkl'])).group(1)
        loop_state.truncate_jsonl(os.path.join(run_dir, 'stats.jsonl'),
                                  lambda r: loop_state.stats_record_at_or_before(r, label))
        for name in os.listdir(run_dir):
            if name.startswith('metric-') and name.endswith('.jsonl'):
                loop_state.truncate_jsonl(os.path.join(run_dir, name),
                                          lambda r: loop_state.metric_record_at_or_before(r, label))
        if saved is not None:
            notes = loop_state.options_diff(saved, options)
    dnnlib.util.write_json_atomic(os.path.join(run_dir, loop_state.OPTIONS_FILE), options)
    command = command if command is not None else ' '.join(sys.argv)
    log_path = os.path.join(run_dir, 'log.txt')
    dnnlib.util.append_line(log_path, f'--- {plan["mode"]}: {dnnlib.util.one_line(command)}')
    for line in notes:
        dnnlib.util.append_line(log_path, f'Changed option {dnnlib.util.one_line(line)}')


def _remove_failed_run(run_dir: str, new_outdir: str | None = None) -> None:
    """Delete a run folder this launch created (and --outdir, when this launch created it and it
    is left empty); kept when it holds a network snapshot."""
    for _root, _dirs, files in os.walk(run_dir):
        if any(loop_state.SNAPSHOT_RE.match(name) for name in files):
            return
    shutil.rmtree(run_dir, ignore_errors=True)
    if new_outdir is not None and os.path.isdir(new_outdir) and not os.listdir(new_outdir):
        os.rmdir(new_outdir)

# ---------------------------------------------------------------------------------------------
# Launching.


def launch_training(options: dict, outdir: str, dry_run: bool = False, print_options: bool = True) -> dict | None:
    """Pick the run dir, print the options, save them, and train (in this process, in --gpus
    spawned processes, or as this torchrun rank). Returns the training summary (rank 0) or None
    for --dry-run. `print_options=False` is a brief console: one summary line instead of the full
    options (saved in the run folder's training_options.json either way), and the network tables
    only in log.txt."""
    options = copy.deepcopy(dict(options))
    if not print_options:
        options['logging'] = dict(options.get('logging') or {}, console_module_tables=False)
    info = distributed.torchrun_info()
    rank = info.rank if info is not None else 0
    plan = plan_run(options, outdir) if rank == 0 else None
    if dry_run:
        if rank == 0:
            options['run_dir'] = plan['run_dir']
            print(json.dumps(options, indent=2))
            action = 'start the new run' if plan['mode'] == 'new' else 'continue the run'
            print(f'Dry run: would {action} {plan["run_dir"]}'
                  + (f' from {plan["continue_pkl"]}' if plan['continue_pkl'] else '') + '; nothing was created.')
        return None
    # Offline without a needed file: fail now, before any folder exists (each torchrun rank checks
    # for itself, as it would load the files for itself).
    check_pretrained_weights(options)
    if info is not None:
        return _run_torchrun_rank(options, plan, info)
    options['run_dir'] = plan['run_dir']
    print(json.dumps(options, indent=2) if print_options else options_summary(options))
    run_dir_is_new, outdir_is_new = not os.path.exists(plan['run_dir']), not os.path.exists(outdir)
    prepare_run_dir(options, plan)
    print(f'Run directory: {plan["run_dir"]} ({plan["mode"]})')
    try:
        return _run_local_processes(options, plan)
    except dnnlib.util.UserError:
        # Found only once training started: leave no half-made run behind.
        if run_dir_is_new:
            _remove_failed_run(plan['run_dir'], outdir if outdir_is_new else None)
        raise


def pretrained_weights(options: dict) -> tuple:
    """Every pretrained file a run with these options will load, as (kind, name) pairs (kinds:
    'detector' URL, 'clip' model name, 'lpips' backbone): those of its --metrics
    (`metric_main.pretrained_weights`) and of its loss class (`pretrained_weights(loss_kwargs)`,
    when the class declares it, e.g. DomainExpansionLoss: CLIP models of NADA tasks, LPIPS)."""
    from metrics import metric_main
    weights = []
    for metric in options.get('metrics') or []:
        if metric_main.is_valid_metric(metric):
            weights += metric_main.pretrained_weights(metric)
    loss_kwargs = options.get('loss_kwargs') or {}
    if loss_kwargs.get('class_name'):  # The command line's loss class (never a name from a snapshot).
        declared = getattr(dnnlib.util.get_obj_by_name(loss_kwargs['class_name']), 'pretrained_weights', None)
        weights += declared(loss_kwargs) if declared is not None else ()
    return tuple(dict.fromkeys(weights))


def check_pretrained_weights(options: dict) -> None:
    """Check every pretrained file the run needs before it starts (cached, local, or downloaded
    now): offline without one, its one-line `UserError` comes in seconds, not after tick 0."""
    from metrics import feature_networks
    for kind, name in pretrained_weights(options):
        if kind == 'detector':
            feature_networks.check_detector(name, options.get('detector_dir'))
        else:
            from training.expansion.tasks import shared_models  # Only expansion runs name CLIP / LPIPS.
            if kind == 'clip':
                shared_models.check_clip_weights(name)
            else:
                shared_models.check_lpips_weights(name)


def options_summary(options: dict) -> str:
    """One line with the options a reader checks first; the rest is in training_options.json."""
    loss = str(options.get('loss_kwargs', {}).get('class_name', '?')).rsplit('.', 1)[-1]
    data = options.get('training_set_kwargs') or {}
    return (f"Training {loss}: {options['total_kimg']:g} kimg, batch {options['batch_size']}, "
            f"{options.get('num_gpus', 1)} process(es), data {data.get('path', 'none')}, "
            f"resume {options.get('resume_pkl') or 'none'} (all options: training_options.json in the run folder)")


def _run_local_processes(options: dict, plan: dict) -> dict:
    """Train in this process (num_gpus == 1) or in num_gpus spawned ones; a user-input error of a
    spawned process is raised here as a `UserError` with its message."""
    gpus = options['num_gpus']
    if gpus == 1:
        return train_process(0, options, plan['continue_pkl'], None, 1)
    if not torch.cuda.is_available():
        print(f'No CUDA device: starting {gpus} CPU processes (gloo)')
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.abspath(os.path.join(tmp, '.torch_distributed_init'))
        try:
            torch.multiprocessing.spawn(fn=train_process, args=(options, plan['continue_pkl'], init_file, gpus),
                                        nprocs=gpus)
        except torch.multiprocessing.ProcessRaisedException:
            message = _spawned_user_error(tmp)
            if message is None:
                raise
            raise dnnlib.util.UserError(message) from None
    return dict(run_dir=plan['run_dir'])


def _spawned_user_error(tmp_dir: str) -> str | None:
    """The message of a user-input error raised in a spawned training process (see train_process)."""
    for name in sorted(os.listdir(tmp_dir)):
        if name.startswith(USER_ERROR_FILE_PREFIX):
            with open(os.path.join(tmp_dir, name)) as f:
                return f.read()
    return None


def _device_for(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device('cuda', local_rank)
    return torch.device('cpu')


def train_process(rank: int, options: dict, continue_pkl: str | None, init_file: str | None,
                  world_size: int) -> dict:
    """One training process: the only one, or one spawned by `torch.multiprocessing.spawn`
    (a module-level function, so spawn can pickle it).

    Args:
        rank:         this process's rank (and local CUDA device index).
        options:      resolved options with `run_dir` set.
        continue_pkl: snapshot to continue from exactly, or None.
        init_file:    file for the process-group rendezvous of spawned processes; None for one process.
        world_size:   number of processes.
    """
    device = _device_for(rank)
    info = distributed.ProcessInfo(rank=rank, world_size=world_size, local_rank=rank)
    init_method = f'file://{init_file}' if init_file else None
    distributed.init_process_group(info, device, init_method=init_method)
    try:
        return _training_loop()(options, rank=rank, world_size=world_size, device=device, continue_pkl=continue_pkl)
    except dnnlib.util.UserError as e:
        if init_file is not None:  # Spawned: the parent only sees a traceback text, so leave it the message.
            dnnlib.util.write_text_atomic(os.path.join(os.path.dirname(init_file), f'{USER_ERROR_FILE_PREFIX}{rank}.txt'),
                                          str(e))
        raise
    finally:
        distributed.shutdown()


def _run_torchrun_rank(options: dict, plan: dict | None, info: distributed.ProcessInfo) -> dict | None:
    """This process is one rank of a torchrun launch: rank 0 prepares the run folder, all train."""
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
    # Imported on first use: resolving options (and --help, --dry-run) need not load the loop.
    from training.training_loop import training_loop
    return training_loop
