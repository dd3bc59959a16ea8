"""The StyleGAN2-ADA training loop (spec section 6), driven by the resolved options of train.py.

One call of `training_loop(options, rank, world_size, device)` runs one process of a run:
setup (loop_setup.py), then steps until `total_kimg`, ending a progress tick every
`kimg_per_tick`. A tick end prints a status line, collects the statistics of the tick
(training_stats) into the sinks (log.txt, stats.jsonl, TensorBoard, W&B), writes image grids and
network snapshots on their schedules and evaluates metrics after each snapshot.

Step semantics:
- Every step consumes `batch_size` real images (all ranks together), split into accumulation
  rounds of `batch_gpu`. Latents and labels of the fakes are drawn for the whole global batch from
  a generator seeded by (seed, step) and each rank takes its slice, so they do not depend on the
  number of processes. Randomness inside the loss (style mixing, noise, augmentation) comes from
  the per-rank global RNG, seeded by (seed, rank).
- Gradients are the mean over the global batch (sum over rounds of loss.mean() / rounds, then the
  average over ranks). The official loop sums over rounds instead; Adam makes the two nearly
  equivalent, and ours does not depend on how the batch is split.
- A non-finite gradient stops the run at once (NonFiniteError naming the phase and the last good
  snapshot); a non-finite loss statistic stops it at the end of the tick. Nothing is zeroed.
"""

import copy
import dataclasses
import os
import time

import numpy as np
import torch

import dnnlib
from torch_utils import distributed
from torch_utils import image_utils
from torch_utils import misc
from torch_utils import training_stats
from training import logging_sinks
from training import loop_setup
from training import loop_snapshot
from training import loop_state
from training import lr_schedule
from training.dataset import DatasetError
from training.loop_snapshot import Progress


class NonFiniteError(RuntimeError):
    """Training produced nan/inf; the message names the phase or statistic and the last good snapshot."""


@dataclasses.dataclass
class Context:
    """Everything the step and tick functions share (one per process)."""
    opts: dnnlib.EasyDict
    rank: int
    world_size: int
    device: torch.device
    log: logging_sinks.RunLog
    training_set: object
    data_iter: object
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    augment_pipe: object
    ada_stats: object
    loss: object
    phases: list
    optimizers: dict
    params: dict
    progress: Progress
    grid: tuple
    continued: bool
    stats_collector: training_stats.Collector = None
    sinks: list = dataclasses.field(default_factory=list)
    last_snapshot: str | None = None
    start_time: float = 0.0
    tick_start_time: float = 0.0
    maintenance_time: float = 0.0

    @property
    def fractional_kimg(self) -> bool:
        # Sub-kimg ticks need file names with kimg decimals (loop_state.kimg_label).
        return self.opts.kimg_per_tick < 1

# ---------------------------------------------------------------------------------------------


def training_loop(options: dict, rank: int = 0, world_size: int = 1, device: torch.device | str = 'cpu',
                  continue_pkl: str | None = None) -> dict:
    """Train one process of a run.

    Args:
        options:      resolved options (train.py `training_options.json`); `options['run_dir']` exists.
        rank:         this process's rank; torch.distributed is initialised when world_size > 1.
        world_size:   number of processes (GPUs).
        device:       this process's device.
        continue_pkl: a snapshot of this run to continue exactly (counters, optimizers, RNG, ...);
                      None = start from scratch, or from `options['resume_pkl']` weights.
    Returns:
        dict(run_dir, last_snapshot, cur_nimg, cur_tick, batch_idx).
    """
    ctx = setup(options, rank, world_size, torch.device(device), continue_pkl)
    try:
        total_nimg = int(ctx.opts.total_kimg * 1000)
        if ctx.progress.cur_nimg >= total_nimg:
            ctx.log(f'Nothing to do: the run is already at {ctx.progress.cur_nimg / 1000:g} kimg of {ctx.opts.total_kimg:g}')
        else:
            run(ctx, total_nimg)
    finally:
        for sink in ctx.sinks:
            sink.close()
        ctx.log.close()
    return dict(run_dir=ctx.opts.run_dir, last_snapshot=ctx.last_snapshot, **dataclasses.asdict(ctx.progress))


def setup(options: dict, rank: int, world_size: int, device: torch.device, continue_pkl: str | None) -> Context:
    """Build data, networks, loss and optimizers; load a snapshot to continue or resume from."""
    opts = dnnlib.EasyDict(copy.deepcopy(options))
    log = logging_sinks.RunLog(os.path.join(opts.run_dir, 'log.txt'), enabled=(rank == 0))
    training_stats.reset_all()
    loop_setup.set_runtime_flags(device, opts.cudnn_benchmark, opts.allow_tf32)
    loop_setup.warm_up_custom_ops(device, rank)
    loop_setup.seed_all(opts.random_seed)  # Same on every rank: identical initial networks.

    training_set = loop_setup.build_dataset(opts.training_set_kwargs)
    loop_setup.check_dataset_matches(training_set, opts.G_kwargs)
    G, D, G_ema = loop_setup.build_networks(opts.G_kwargs, opts.D_kwargs, device)
    augment_pipe = loop_setup.build_augment_pipe(opts.augment_kwargs, opts.augment_p, opts.ada_target, device)
    resume_state, start_snapshot = _load_initial_weights(opts, continue_pkl, G, D, G_ema, log)
    for module in (G, D, G_ema):
        distributed.broadcast_module_(module)

    loss = loop_setup.build_loss(opts.loss_kwargs, G, D, G_ema, augment_pipe, opts.batch_gpu, device,
                                 snapshot=start_snapshot)
    del start_snapshot  # Its networks are copied into G, D, G_ema; the loss took what it needs.
    phases = loop_setup.check_phases(loss.get_phases(opts.G_reg_interval, opts.D_reg_interval))
    optimizers, params = loop_setup.build_optimizers(loss, G, D, opts.G_opt_kwargs, opts.D_opt_kwargs,
                                                     opts.G_reg_interval, opts.D_reg_interval)
    ada_stats = loop_setup.ada_collector(augment_pipe, opts.ada_target, device)
    progress = Progress()
    if resume_state is not None:
        for name, opt in optimizers.items():
            opt.load_state_dict(resume_state['optimizers'][name])
        progress = Progress(**resume_state['progress'])
        if augment_pipe is not None and resume_state['augment_p'] is not None:
            augment_pipe.p.copy_(torch.as_tensor(resume_state['augment_p']))

    data_iter = None
    if training_set is not None:
        position = resume_state['sampler_nimg'] // world_size if resume_state is not None else 0
        data_iter = loop_setup.build_data_iterator(training_set, opts.data_loader_kwargs, rank, world_size,
                                                   opts.batch_size // world_size, opts.random_seed, position, device)
    grid = loop_setup.grid_inputs(training_set, G, tuple(opts.grid_size), opts.random_seed, device)
    ctx = Context(opts=opts, rank=rank, world_size=world_size, device=device, log=log, training_set=training_set,
                  data_iter=data_iter, G=G, D=D, G_ema=G_ema, augment_pipe=augment_pipe, ada_stats=ada_stats,
                  loss=loss, phases=phases, optimizers=optimizers, params=params, progress=progress, grid=grid,
                  continued=resume_state is not None, last_snapshot=continue_pkl)
    _describe(ctx)

    # Last: the RNG streams of the training steps (exact resume restores them).
    if resume_state is not None:
        loop_snapshot.restore_rank_state(resume_state, rank, world_size, device, loss, ada_stats, G,
                                         opts.random_seed, log)
    else:
        loop_setup.seed_all(loop_state.derive_seed(opts.random_seed, rank))
    return ctx


def _load_initial_weights(opts, continue_pkl, G, D, G_ema, log) -> tuple[dict | None, dict | None]:
    """Load the snapshot to continue or the --resume weights into G, D, G_ema.

    Returns `(resume_state, snapshot)`: the continued snapshot's resume_state (None for --resume
    weights or a fresh start) and the loaded snapshot dict (None for a fresh start), read once.
    """
    from training import snapshot_io
    if continue_pkl is not None:
        data = snapshot_io.load_network_pkl(continue_pkl)
        loop_setup.load_networks_from(data, G, D, G_ema, continue_pkl)
        state = loop_snapshot.load_resume_state(data, continue_pkl)
        log(f'Continuing from {continue_pkl} at {state["progress"]["cur_nimg"] / 1000:g} kimg')
        return state, data
    if opts.resume_pkl == 'latest':
        raise ValueError("resume_pkl='latest' names no file: training.launch resolves it into continue_pkl")
    if opts.resume_pkl:
        with dnnlib.util.open_url(opts.resume_pkl) as f:
            data = snapshot_io.load_network_pkl(f)
        # A loss may bring its own loader of the --resume networks (the class-conditional
        # baseline grafts an unconditional parent); else every tensor is copied by name.
        loss_class = dnnlib.util.get_obj_by_name(opts.loss_kwargs['class_name'])
        load = getattr(loss_class, 'load_resume_networks', loop_setup.load_networks_from)
        load(data, G, D, G_ema, opts.resume_pkl)
        if opts.get('resume_from_ema'):
            # Not official (--resume_from_ema): the trained G starts as the pickle's G_ema, the network
            # users render, so the loss's frozen replay copy (made from G after this) is G_ema too.
            misc.copy_params_and_buffers(G_ema, G, require_all=True)
        log(f'Resuming weights from {opts.resume_pkl}{" (G from its G_ema)" if opts.get("resume_from_ema") else ""} '
            f'(counters, optimizer state and ADA p start fresh; '
            f're-run the same command or use --resume latest to continue a run exactly)')
        return None, data
    return None, None


def _describe(ctx: Context) -> None:
    if ctx.rank != 0:
        return
    z = torch.zeros([ctx.opts.batch_gpu, ctx.G.z_dim], device=ctx.device)
    c = torch.zeros([ctx.opts.batch_gpu, ctx.G.c_dim], device=ctx.device)
    # The network tables always go to log.txt; the console shows them unless the launcher asked
    # for a brief console (launch_training(print_options=False), e.g. the demo).
    write = ctx.log if (ctx.opts.get('logging') or {}).get('console_module_tables', True) else ctx.log.to_file
    with torch.no_grad():
        img = misc.print_module_summary(ctx.G_ema, [z, c], print_fn=write)
        misc.print_module_summary(ctx.D, [img, c], print_fn=write)
    ctx.log(f'Architecture: {ctx.opts.architecture_source}')
    ctx.log(f'Phases: {", ".join(f"{p.name}(every {p.interval})" for p in ctx.phases)}; '
            f'{ctx.world_size} process(es) on {ctx.device}; batch {ctx.opts.batch_size} '
            f'({ctx.opts.batch_gpu} per accumulation round)')

# ---------------------------------------------------------------------------------------------


def run(ctx: Context, total_nimg: int) -> None:
    """Steps and tick ends until total_nimg."""
    ctx.stats_collector = training_stats.Collector(regex='.*', sync_device=_sync_device(ctx.device))
    if ctx.rank == 0:
        _start_files(ctx)
    ctx.start_time = ctx.tick_start_time = time.time()
    ctx.log(f'Training for {ctx.opts.total_kimg:g} kimg...')
    progress = ctx.progress
    while True:
        training_step(ctx)
        done = progress.cur_nimg >= total_nimg
        tick_end_nimg = progress.tick_start_nimg + ctx.opts.kimg_per_tick * 1000
        if not done and progress.cur_tick != 0 and progress.cur_nimg < tick_end_nimg:
            continue
        end_tick(ctx, done)
        if done:
            break
    ctx.log('Exiting...')


def _sync_device(device: torch.device):
    return device if device.type == 'cuda' else None


def _start_files(ctx: Context) -> None:
    """Rank 0: sinks, and for a fresh run the reals/fakes_init grids."""
    opts = ctx.opts
    ctx.sinks = logging_sinks.make_sinks(opts.run_dir, opts.logging, dict(opts), time.time(),
                                         ctx.fractional_kimg, ctx.log)
    if ctx.continued:
        return
    reals, z, c = ctx.grid
    if reals is not None:
        image_utils.save_image_grid(reals.float() / 127.5 - 1, os.path.join(opts.run_dir, 'reals.png'), opts.grid_size)
    images = loop_setup.render_grid(ctx.G_ema, z, c, opts.batch_gpu)
    image_utils.save_image_grid(images, os.path.join(opts.run_dir, 'fakes_init.png'), opts.grid_size)

# ---------------------------------------------------------------------------------------------
# One training step.


def training_step(ctx: Context) -> None:
    """Run every phase due at this step, update G_ema, counters and ADA."""
    opts, progress = ctx.opts, ctx.progress
    rounds = opts.batch_size // (opts.batch_gpu * ctx.world_size)
    real_img, real_c = _next_reals(ctx, rounds)
    all_z, all_c = _draw_latents(ctx)
    for phase_idx, phase in enumerate(ctx.phases):
        if progress.batch_idx % phase.interval != 0:
            continue
        gen_z = all_z[phase_idx].split(opts.batch_gpu)
        gen_c = all_c[phase_idx].split(opts.batch_gpu)
        run_phase(ctx, phase, real_img, real_c, gen_z, gen_c, rounds)

    _update_ema(ctx)
    progress.cur_nimg += opts.batch_size
    progress.batch_idx += 1
    if ctx.ada_stats is not None and progress.batch_idx % opts.ada_interval == 0:
        _adjust_ada(ctx)


def _next_reals(ctx: Context, rounds: int):
    if ctx.data_iter is None:
        return [None] * rounds, [None] * rounds
    try:
        img, c = next(ctx.data_iter)
    except DatasetError as e:  # A bad item met mid-run; the snapshots written so far are untouched.
        raise DatasetError(f'{e}. Training stopped at {ctx.progress.cur_nimg / 1000:g} kimg; the last snapshot '
                           f'({ctx.last_snapshot or "none yet"}) is intact: fix or remove the file (python '
                           f'dataset_tool.py --check DATA lists every bad item), then re-run the same command '
                           f'to continue from it') from None
    img = (img.to(ctx.device).to(torch.float32) / 127.5 - 1).split(ctx.opts.batch_gpu)  # uint8 -> [-1, 1]
    c = c.to(ctx.device).to(torch.float32).split(ctx.opts.batch_gpu)
    return img, c


def _draw_latents(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """z [phases, batch_per_rank, z_dim] and c [phases, batch_per_rank, c_dim] of this rank's
    slice of the global batch, from a generator seeded by (seed, step)."""
    opts = ctx.opts
    num_phases = len(ctx.phases)
    per_rank = opts.batch_size // ctx.world_size
    lo = ctx.rank * per_rank
    gen = torch.Generator().manual_seed(loop_state.derive_seed(opts.random_seed, 2, ctx.progress.batch_idx))
    z = torch.randn([num_phases, opts.batch_size, ctx.G.z_dim], generator=gen)[:, lo:lo + per_rank]
    if ctx.G.c_dim == 0 or ctx.training_set is None or not ctx.training_set.has_labels:
        c = torch.zeros([num_phases, per_rank, ctx.G.c_dim])  # labels, if any, come from the loss
    else:
        idx = torch.randint(len(ctx.training_set), [num_phases, opts.batch_size], generator=gen)[:, lo:lo + per_rank]
        labels = [ctx.training_set.get_label(int(i)) for i in idx.flatten()]
        c = torch.from_numpy(np.stack(labels)).reshape(num_phases, per_rank, ctx.G.c_dim)
    return z.to(ctx.device), c.to(ctx.device)


def run_phase(ctx: Context, phase, real_img, real_c, gen_z, gen_c, rounds: int) -> None:
    """Accumulate one phase's gradients over the rounds, average them over ranks, check, step."""
    params = ctx.params[phase.module]
    optimizer = ctx.optimizers[phase.module]
    for param in params:
        param.requires_grad_(True)
    optimizer.zero_grad(set_to_none=True)
    for r in range(rounds):
        ctx.loss.accumulate_gradients(phase=phase.name, real_img=real_img[r], real_c=real_c[r], gen_z=gen_z[r],
                                      gen_c=gen_c[r], gain=phase.interval / rounds, cur_nimg=ctx.progress.cur_nimg)
    for param in params:
        param.requires_grad_(False)
    _reduce_and_check_gradients(ctx, phase, params)
    lr_schedule.set_learning_rates(optimizer, ctx.progress.cur_nimg, int(ctx.opts.total_kimg * 1000))
    optimizer.step()


def _reduce_and_check_gradients(ctx: Context, phase, params: list) -> None:
    # Parameters without a gradient are left out, as the optimizer skips them; every rank runs
    # the same phases on the same networks, so the set is the same on all ranks.
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    flat = torch.cat([p.grad.flatten() for p in with_grad])
    if ctx.world_size > 1:
        torch.distributed.all_reduce(flat)
        flat /= ctx.world_size
        for param, grad in zip(with_grad, flat.split([p.numel() for p in with_grad])):
            param.grad.copy_(grad.view_as(param))
    if not bool(torch.isfinite(flat).all()):
        raise NonFiniteError(f"Non-finite gradient in phase '{phase.name}' at step {ctx.progress.batch_idx} "
                             f'({ctx.progress.cur_nimg / 1000:g} kimg); stopping. Last good snapshot: '
                             f'{ctx.last_snapshot or "none yet"}')


@torch.no_grad()
def _update_ema(ctx: Context) -> None:
    """G_ema <- G + beta (G_ema - G) with beta = 0.5 ** (batch / ema_nimg); buffers copied (spec 6)."""
    opts = ctx.opts
    ema_nimg = opts.ema_kimg * 1000
    if opts.ema_rampup is not None:
        ema_nimg = min(ema_nimg, ctx.progress.cur_nimg * opts.ema_rampup)
    ema_beta = 0.5 ** (opts.batch_size / max(ema_nimg, 1e-8))
    for p_ema, p in zip(ctx.G_ema.parameters(), ctx.G.parameters()):
        p_ema.copy_(p.lerp(p_ema, ema_beta))
    for b_ema, b in zip(ctx.G_ema.buffers(), ctx.G.buffers()):
        b_ema.copy_(b)


def _adjust_ada(ctx: Context) -> None:
    """ADA (Karras et al. 2020, section 3): p += sign(E[sign(D(real))] - target) * batch * interval
    / (ada_kimg * 1000), floored at 0."""
    opts = ctx.opts
    ctx.ada_stats.update()
    if ctx.ada_stats.num('Loss/signs/real') == 0:
        return
    rt = ctx.ada_stats['Loss/signs/real']
    adjust = np.sign(rt - opts.ada_target) * (opts.batch_size * opts.ada_interval) / (opts.ada_kimg * 1000)
    p = ctx.augment_pipe.p
    p.copy_((p + adjust).clamp(min=0))

# ---------------------------------------------------------------------------------------------
# Tick end.


def end_tick(ctx: Context, done: bool) -> None:
    """Status line, statistics, image grid, snapshot, metrics, sinks; then start the next tick."""
    opts, progress = ctx.opts, ctx.progress
    tick_end_time = time.time()
    tick = progress.cur_tick
    tick_kimg = (progress.cur_nimg - progress.tick_start_nimg) / 1000
    _report_tick(ctx, tick_end_time, tick_kimg)
    ctx.stats_collector.update()
    stats = ctx.stats_collector.as_dict()
    _check_finite_stats(ctx, stats, tick)

    # The state saved below is that of the start of the next tick.
    progress.cur_tick += 1
    progress.tick_start_nimg = progress.cur_nimg
    nimg = progress.cur_nimg
    if ctx.rank == 0 and opts.image_snapshot_ticks and (done or tick % opts.image_snapshot_ticks == 0):
        with loop_state.preserved_rng(ctx.device):
            _, z, c = ctx.grid
            images = loop_setup.render_grid(ctx.G_ema, z, c, opts.batch_gpu)
        name = f'fakes{loop_state.kimg_label(nimg, ctx.fractional_kimg)}.png'
        image_utils.save_image_grid(images, os.path.join(opts.run_dir, name), opts.grid_size)

    metric_stats = {}
    if opts.network_snapshot_ticks and (done or tick % opts.network_snapshot_ticks == 0):
        snapshot_pkl = _save_network_snapshot(ctx)
        metric_stats = _evaluate_metrics(ctx, snapshot_pkl)
        if ctx.rank == 0:
            with loop_state.preserved_rng(ctx.device):
                label = loop_state.kimg_label(nimg, ctx.fractional_kimg)
                for key, value in ctx.loss.on_snapshot(ctx.G_ema, opts.run_dir, label).items():
                    metric_stats[key] = dnnlib.EasyDict(num=1, mean=float(value), std=0.0)

    if ctx.rank == 0:
        timestamp = time.time()
        for sink in ctx.sinks:
            sink.write({**stats, **metric_stats}, nimg, timestamp)
    ctx.tick_start_time = time.time()
    ctx.maintenance_time = ctx.tick_start_time - tick_end_time


def _report_tick(ctx: Context, tick_end_time: float, tick_kimg: float) -> None:
    """Status line (rank 0) and the Progress/Timing/Resources statistics."""
    progress = ctx.progress
    tick_sec = tick_end_time - ctx.tick_start_time
    total_sec = tick_end_time - ctx.start_time
    sec_per_kimg = tick_sec / max(tick_kimg, 1e-8)
    # Time left at this tick's pace (maintenance excluded: snapshots and metrics come on top).
    eta_sec = max(ctx.opts.total_kimg * 1000 - progress.cur_nimg, 0) / 1000 * sec_per_kimg
    cpu_mem_gb = _cpu_mem_gb()
    fields = [
        f'tick {training_stats.report0("Progress/tick", progress.cur_tick):<5d}',
        f'kimg {training_stats.report0("Progress/kimg", np.float64(progress.cur_nimg / 1000)):<8.{3 if ctx.fractional_kimg else 1}f}',
        f'time {dnnlib.util.format_time(training_stats.report0("Timing/total_sec", total_sec)):<12s}',
        f'eta {dnnlib.util.format_time(eta_sec):<12s}',
        f'sec/tick {training_stats.report0("Timing/sec_per_tick", tick_sec):<7.1f}',
        f'sec/kimg {training_stats.report0("Timing/sec_per_kimg", sec_per_kimg):<7.2f}',
        f'maintenance {training_stats.report0("Timing/maintenance_sec", ctx.maintenance_time):<6.1f}',
        f'cpumem {training_stats.report0("Resources/cpu_mem_gb", cpu_mem_gb):<6.2f}',
    ]
    if ctx.device.type == 'cuda':
        peak_gb = torch.cuda.max_memory_allocated(ctx.device) / 2**30
        reserved_gb = torch.cuda.max_memory_reserved(ctx.device) / 2**30
        fields.append(f'gpumem {training_stats.report0("Resources/peak_gpu_mem_gb", peak_gb):<6.2f}')
        fields.append(f'reserved {training_stats.report0("Resources/peak_gpu_mem_reserved_gb", reserved_gb):<6.2f}')
        torch.cuda.reset_peak_memory_stats(ctx.device)
    p = float(ctx.augment_pipe.p) if ctx.augment_pipe is not None else 0.0
    fields.append(f'augment {training_stats.report0("Progress/augment", p):.3f}')
    training_stats.report0('Timing/total_hours', total_sec / (60 * 60))
    training_stats.report0('Timing/total_days', total_sec / (24 * 60 * 60))
    ctx.log(' '.join(fields))


def _cpu_mem_gb() -> float:
    """Resident set size of this process in GiB (Linux /proc; elsewhere the peak RSS)."""
    try:
        with open('/proc/self/statm', 'rt') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _check_finite_stats(ctx: Context, stats: dict, tick: int) -> None:
    for name, value in stats.items():
        if name.startswith('Loss/') and not np.isfinite(value['mean']):
            network = {'G': 'G phases', 'D': 'D phases'}.get(name.split('/')[1], 'a loss phase')
            raise NonFiniteError(f"Non-finite loss statistic '{name}' ({network}) in tick {tick} "
                                 f'(up to {ctx.progress.cur_nimg / 1000:g} kimg); stopping. Last good snapshot: '
                                 f'{ctx.last_snapshot or "none yet"}')


def _save_network_snapshot(ctx: Context) -> str:
    """Write network-snapshot-<kimg>.pkl (rank 0) with everything needed to continue exactly."""
    per_rank = loop_snapshot.gather_rank_states(ctx.device, ctx.loss, ctx.ada_stats, ctx.G)
    path = loop_state.snapshot_path(ctx.opts.run_dir, ctx.progress.cur_nimg, ctx.fractional_kimg)
    if ctx.world_size > 1:
        for module in (ctx.G, ctx.D, ctx.G_ema):
            misc.check_ddp_consistency(module, ignore_regex=r'.*\.w_avg')
    if ctx.rank == 0:
        resume_state = loop_snapshot.make_resume_state(ctx.progress, ctx.opts.batch_size, ctx.optimizers,
                                                       ctx.augment_pipe, per_rank, ctx.loss.shared_state_dict())
        snapshot = loop_snapshot.make_snapshot(ctx.opts.training_set_kwargs, ctx.G, ctx.D, ctx.G_ema,
                                               ctx.augment_pipe, ctx.loss.snapshot_extras(), resume_state)
        loop_snapshot.save_snapshot(snapshot, path)
    distributed.barrier()  # The snapshot exists for every rank from here on.
    ctx.last_snapshot = path
    return path


def _evaluate_metrics(ctx: Context, snapshot_pkl: str) -> dict:
    """Evaluate opts.metrics on G_ema (all ranks); returns {'Metrics/<name>': stats entry}."""
    if not ctx.opts.metrics:
        return {}
    from metrics import metric_main
    ctx.log('Evaluating metrics...')
    out = {}
    # Expansion metrics read the basis, dims, distance and config that the snapshot stores.
    expansion = ctx.loss.snapshot_extras()
    extra = dict(expansion=expansion) if 'latent_basis' in expansion else {}
    with loop_state.preserved_rng(ctx.device):
        for metric in ctx.opts.metrics:
            result = metric_main.calc_metric(metric=metric, G=ctx.G_ema, extra=extra,
                                             dataset_kwargs=ctx.opts.training_set_kwargs,
                                             num_gpus=ctx.world_size, rank=ctx.rank, device=ctx.device,
                                             progress=(ctx.rank == 0), num_workers=ctx.opts.data_loader_kwargs.get('num_workers', 0))
            if ctx.rank == 0:
                metric_main.report_metric(result, run_dir=ctx.opts.run_dir, snapshot_pkl=snapshot_pkl)
            for key, value in result.results.items():
                out[f'Metrics/{key}'] = dnnlib.EasyDict(num=1, mean=float(value), std=0.0)
    return out
