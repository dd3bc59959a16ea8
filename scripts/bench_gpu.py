"""Benchmark: full-size StyleGAN2 training and domain-expansion steps on one GPU.

    python -m scripts.bench_gpu                                   # the official sizes, on cuda
    python -m scripts.bench_gpu --configs tiny --device cpu       # a seconds-long dry run on CPU

For random-weight networks built as the `--cfg` presets build them (`paper256` at 256^2 and
`stylegan2` at 1024^2, batch per GPU = preset batch / preset GPUs), it times

- the plain training step: one accumulation round of `batch_gpu` images for every phase of the
  official schedule (Gmain, Dmain every step; Greg every 4, Dreg every 16 steps), optimizer steps
  included; a timed run is 16 consecutive steps, so lazy regularisation is amortised as in
  training (no augmentation, no G_ema update, no data loading);
- the expansion step: the same for `DomainExpansionLoss` (G_expand_and_recon, G_adv, G_reg,
  D_adv, D_reg) with N NADA domains, a stand-in CLIP of the real architecture with random
  weights (open_clip ViT-B/32 and ViT-B/16, the NADA default pair, built with pretrained=None)
  and replay L2 + LPIPS with a random-init AlexNet backbone; also the G_expand_and_recon phase
  alone (the part that grows with the number of domains).

Each variant switches one thing: `tf32` (TF32 matmuls and convolutions; `plain` turns both off,
as the official train.py does), `bf16` (bfloat16 autocast around the CLIP and LPIPS passes:
G and D keep their own fp16 layers, whose blocks pin their dtypes), `channels_last` (the
official `--nhwc`: channels-last fp16 layers), `compile` (torch.compile of the synthesis
network(s) and D for the phases without double backward), `fused_adam` (Adam(fused=True)).

It reports ms/step, images/s, s/kimg (= ms per image), peak memory, the step's FLOPs (counted
with torch.utils.flop_counter.FlopCounterMode: convolutions and matrix products, forward and
backward; the custom bias_act / upfirdn2d kernels are not counted) and MFU against the GPU's
peak, and the FLOPs of one forward pass of G, D, CLIP and LPIPS at batch_gpu. Results go to
`--out` as JSON lines (written as they come) and a markdown table; `--profile` saves the
torch.profiler top-ops table of the expansion step there too.
"""

import contextlib
import copy
import json
import os
import time
import traceback

import click
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import dnnlib
from training import presets
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator

# Dense peak rates of one H200 SXM (the H100's arithmetic), TFLOP/s: datasheet, and the bf16
# matrix product measured on this workplace's H200s (device notes: 769-798 on random data).
# MFU is reported against the 16-bit peak: most FLOPs of G and D run in their fp16 layers
# (num_fp16_res=4 covers every resolution from 128 up), the rest in fp32 or TF32.
PEAK_TFLOPS = {'fp32': 67.0, 'tf32': 495.0, 'bf16': 989.0}
MEASURED_BF16_TFLOPS = 790.0
# Reference point (stylegan2-ada-pytorch README): 1024^2, --cfg stylegan2, one V100.
V100_REFERENCE = '154-162 s/kimg, 8.1 GB'

CONFIGS = {  # name -> (preset, resolution); `tiny` is the CPU dry run.
    'paper256': ('paper256', 256),
    'stylegan2': ('stylegan2', 1024),
    'tiny': ('tiny', 32),
}
VARIANTS = ('plain', 'tf32', 'bf16', 'channels_last', 'compile', 'fused_adam')
NADA_CLIP_MODELS = ('ViT-B/32', 'ViT-B/16')
STEPS_PER_CYCLE = 16  # lcm of the reg intervals (4, 16): a cycle holds 4 Greg and 1 Dreg
_FLOP_CACHE = {}      # (config, kind, domains) -> FLOPs of one cycle

# ---------------------------------------------------------------------------------------------
# Networks and losses.


def preset_spec(config: str) -> dict:
    cfg, resolution = CONFIGS[config]
    spec = presets.resolve_preset(cfg, resolution, gpus=1)
    spec['resolution'] = resolution
    spec['batch_gpu'] = spec['mb'] // spec['ref_gpus']
    return spec


def build_networks(spec: dict, channels_last: bool, device: torch.device, seed: int = 0):
    """G and D as train.py builds them from a preset (random weights, training mode)."""
    torch.manual_seed(seed)
    G = Generator(z_dim=spec['z_dim'], c_dim=0, w_dim=spec['w_dim'], img_resolution=spec['resolution'],
                  img_channels=3, mapping_kwargs=dict(num_layers=spec['map']),
                  synthesis_kwargs=dict(channel_base=spec['channel_base'], channel_max=spec['channel_max'],
                                        num_fp16_res=spec['num_fp16_res'], conv_clamp=spec['conv_clamp'],
                                        fp16_channels_last=channels_last))
    D = Discriminator(c_dim=0, img_resolution=spec['resolution'], img_channels=3,
                      architecture=spec['D_architecture'], channel_base=spec['channel_base'],
                      channel_max=spec['channel_max'], num_fp16_res=spec['num_fp16_res'],
                      conv_clamp=spec['conv_clamp'], block_kwargs=dict(fp16_channels_last=channels_last),
                      mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=spec['mbstd']))
    return G.train().to(device), D.train().to(device)


class _AutocastModel:
    """Runs a CLIP model's encoders under autocast (the `bf16` variant)."""

    def __init__(self, model, device_type: str, dtype: torch.dtype):
        self.model, self.device_type, self.dtype = model, device_type, dtype

    def encode_image(self, x):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model.encode_image(x)

    def encode_text(self, tokens):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model.encode_text(tokens)


def random_clip(name: str, device: torch.device, tiny: bool):
    """A ClipEncoder of open_clip architecture `name` with random weights (pretrained=None).
    `tiny` shrinks the towers for the CPU dry run (same code path, tokenizer and preprocessing)."""
    import open_clip
    from training.expansion.tasks.shared_models import ClipEncoder, open_clip_spec
    arch, _tag = open_clip_spec(name)
    overrides = {}
    if tiny:
        overrides = dict(embed_dim=32, vision_cfg=dict(image_size=224, layers=1, width=64, patch_size=32),
                         text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=1))
    torch.manual_seed(1)
    model = open_clip.create_model(arch, pretrained=None, device=device, **overrides)
    model = model.eval().requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    encoder = ClipEncoder(model, open_clip.get_tokenizer(arch), size, open_clip.OPENAI_DATASET_MEAN,
                          open_clip.OPENAI_DATASET_STD, device=device, name=f'{name} (random weights)')
    return encoder


def shared_models(device: torch.device, clips: dict, bf16: bool):
    """SharedModels holding the random CLIPs and a random-backbone LPIPS; bf16 wraps their passes."""
    from training.expansion.tasks.shared_models import ClipEncoder, SharedModels, load_lpips
    models = SharedModels(device, lpips_random_backbone=True)
    for name, encoder in clips.items():
        if bf16:
            encoder = ClipEncoder(_AutocastModel(encoder.model, device.type, torch.bfloat16), encoder.tokenize,
                                  encoder.image_size, encoder.mean.flatten().tolist(), encoder.std.flatten().tolist(),
                                  device=device, name=encoder.name + ' bf16')
        models.register_clip(name, encoder)
    distance = load_lpips('alex', device, random_backbone=True)
    if bf16:
        plain_distance = distance

        def distance(x, y):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return plain_distance(x, y).float()
    models.register_perceptual('alex', distance)
    return models


def nada_config(num_domains: int, clip_models) -> dict:
    return {'tasks': [{'type': 'NADA', 'args': {'source_text': 'photo', 'target_text': f'style number {i}'}}
                      for i in range(num_domains)],
            'tasks_losses': {'NADA': {'clip_models': list(clip_models)}}}


def build_loss(kind: str, spec: dict, G, D, device, num_domains: int = 0, models=None, clip_models=()):
    common = dict(augment_pipe=None, batch_gpu=spec['batch_gpu'], style_mixing_prob=spec['style_mixing_prob'],
                  r1_gamma=spec['gamma'], pl_weight=spec['pl_weight'])
    if kind == 'train':
        return StyleGAN2Loss(device, G.mapping, G.synthesis, D, **common)
    from training.expansion.loss import DomainExpansionLoss
    w_dim = spec['w_dim']
    basis = torch.linalg.qr(torch.randn([w_dim, w_dim], generator=torch.Generator().manual_seed(2)))[0]
    frozen = copy.deepcopy(G.synthesis).eval().requires_grad_(False)  # the replay target (Eq. 6)
    return DomainExpansionLoss(device, G.mapping, G.synthesis, D, nada_config(num_domains, clip_models),
                               latent_basis=basis, G_synthesis_frozen=frozen, shared_models=models, **common)


def make_optimizers(loss, G, D, lrate: float, fused: bool) -> dict:
    """One Adam per network with the lazy-regularisation rescaling of the training loop."""
    opts = {}
    for name, module, interval in (('G', G, 4), ('D', D, 16)):
        ratio = interval / (interval + 1)
        params = loss.trainable_params(name, module)
        kwargs = dict(fused=True) if fused else {}
        opts[name] = torch.optim.Adam(params, lr=lrate * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8, **kwargs)
    return opts


def _network_holders(loss) -> list:
    """The loss and the plain objects it holds (e.g. its GAN loss and that one's fake-image
    renderer): whatever may keep a reference to G_synthesis, D or the frozen replay target."""
    found, queue = [], [loss]
    while queue:
        obj = queue.pop()
        if any(obj is f for f in found):
            continue
        found.append(obj)
        queue += [v for v in vars(obj).values() if hasattr(v, '__dict__') and not isinstance(v, (torch.nn.Module, type))
                  and type(v).__module__.startswith('training.')]
    return found


@contextlib.contextmanager
def compiled(loss, enabled: bool):
    """Swap the loss's networks for torch.compile'd ones (phases without double backward only)."""
    if not enabled:
        yield
        return
    saved = [(h, name, getattr(h, name)) for h in _network_holders(loss)
             for name in ('G_synthesis', 'D', 'G_synthesis_frozen')
             if isinstance(getattr(h, name, None), torch.nn.Module)]
    cache = loss.__dict__.setdefault('_bench_compiled', {})
    try:
        for holder, name, module in saved:
            setattr(holder, name, cache.setdefault(id(module), torch.compile(module)))
        yield
    finally:
        for holder, name, module in saved:
            setattr(holder, name, module)

# ---------------------------------------------------------------------------------------------
# One training step.


class Stepper:
    """Runs steps of the official phase schedule for a loss, one accumulation round per phase."""

    def __init__(self, loss, G, D, spec, device, fused_adam=False, compile_nets=False, phases=None):
        self.loss, self.G, self.D, self.spec, self.device = loss, G, D, spec, device
        self.opts = make_optimizers(loss, G, D, spec['lrate'], fused_adam)
        self.phases = phases if phases is not None else loss.get_phases(4, 16)
        self.compile_nets = compile_nets
        self.batch = spec['batch_gpu']
        self.real = torch.rand([self.batch, 3, spec['resolution'], spec['resolution']], device=device) * 2 - 1
        self.c = torch.zeros([self.batch, 0], device=device)
        self.index = 0

    def step(self):
        for phase in self.phases:
            if self.index % phase.interval != 0:
                continue
            opt = self.opts[phase.module]
            params = opt.param_groups[0]['params']
            for p in params:
                p.requires_grad_(True)
            opt.zero_grad(set_to_none=True)
            z = torch.randn([self.batch, self.spec['z_dim']], device=self.device)
            double_backward = phase.name in ('Greg', 'Dreg', 'G_reg', 'D_reg', 'Gboth', 'Dboth', 'G_all', 'D_all')
            with compiled(self.loss, self.compile_nets and not double_backward):
                self.loss.accumulate_gradients(phase.name, self.real, self.c, z, self.c, float(phase.interval), 0)
            for p in params:
                p.requires_grad_(False)
            # As the training loop: all gradients in one tensor, checked for nan/inf (a host sync).
            grads = [p.grad.flatten() for p in params if p.grad is not None]
            if grads and not bool(torch.isfinite(torch.cat(grads)).all()):
                raise FloatingPointError(f'non-finite gradient in phase {phase.name}')
            opt.step()
        self.index += 1


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_steps(run_step, device, warmup: int, steps: int) -> float:
    """Mean seconds per call of `run_step` after `warmup` calls."""
    for _ in range(warmup):
        run_step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run_step()
    sync(device)
    return (time.perf_counter() - start) / steps


class FlopCount(TorchDispatchMode):
    """Counts the FLOPs of every op that has a formula in torch.utils.flop_counter (convolutions,
    matrix products, attention; forward and backward), as FlopCounterMode does, but without its
    module tracking, whose autograd hooks break the double backward of R1 and path length."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_flops(fn) -> int:
    """Floating-point operations of `fn()` (see FlopCount)."""
    with FlopCount() as counter:
        fn()
    return counter.total


def forward_flops(G, D, spec, device, models, clip_models) -> dict:
    """FLOPs of one forward pass of each network at batch_gpu (no gradient)."""
    n, res = spec['batch_gpu'], spec['resolution']
    z = torch.randn([n, spec['z_dim']], device=device)
    c = torch.zeros([n, 0], device=device)
    img = torch.rand([n, 3, res, res], device=device) * 2 - 1
    out = {}
    with torch.no_grad():
        ws = G.mapping(z, c, skip_w_avg_update=True)
        out['G_mapping'] = count_flops(lambda: G.mapping(z, c, skip_w_avg_update=True))
        out['G_synthesis'] = count_flops(lambda: G.synthesis(ws))
        out['D'] = count_flops(lambda: D(img, c))
        for name in clip_models:
            out[f'CLIP {name} image'] = count_flops(lambda: models.clip(name).encode_images(img))
        if models is not None:
            out['LPIPS alex'] = count_flops(lambda: models.perceptual('alex')(img, img))
    return out

# ---------------------------------------------------------------------------------------------
# Variants and the table.


@contextlib.contextmanager
def precision_flags(device, tf32: bool):
    """TF32 on or off for matmuls and cuDNN convolutions; cudnn.benchmark on, as the loop sets it."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = device.type == 'cuda'
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = saved


def run_case(config, kind, variant, num_domains, device, warmup, steps, clips, profile_dir=None, flops=True):
    """Build, warm up and time one (config, kind, variant[, domains]); returns the result row."""
    spec = preset_spec(config)
    G, D = build_networks(spec, channels_last=(variant == 'channels_last'), device=device)
    models = None
    clip_models = tuple(clips) if kind == 'expand' else ()
    if kind == 'expand':
        models = shared_models(device, clips, bf16=(variant == 'bf16'))
    loss = build_loss('train' if kind == 'train' else 'expand', spec, G, D, device, num_domains, models, clip_models)
    row = dict(config=config, kind=kind, variant=variant, domains=num_domains if kind == 'expand' else None,
               resolution=spec['resolution'], batch_gpu=spec['batch_gpu'])
    with precision_flags(device, tf32=(variant == 'tf32')):
        stepper = Stepper(loss, G, D, spec, device, fused_adam=(variant == 'fused_adam'),
                          compile_nets=(variant == 'compile'))
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(warmup):  # warm-up starts at step 0: every phase (and its cudnn autotuning) runs
            stepper.step()
        sync(device)
        row['warmup_s'] = time.perf_counter() - start
        sec = time_steps(stepper.step, device, 0, steps)
        row['ms_per_step'] = sec * 1e3
        row['img_per_s'] = spec['batch_gpu'] / sec
        row['s_per_kimg'] = sec / spec['batch_gpu'] * 1e3
        if device.type == 'cuda':
            row['peak_mem_gib'] = torch.cuda.max_memory_allocated(device) / 2**30
            row['peak_reserved_gib'] = torch.cuda.max_memory_reserved(device) / 2**30
        if kind == 'expand':  # the expansion phase alone
            phase = [p for p in stepper.phases if p.name == 'G_expand_and_recon']
            only = Stepper(loss, G, D, spec, device, fused_adam=(variant == 'fused_adam'),
                           compile_nets=(variant == 'compile'), phases=phase)
            row['expand_phase_ms'] = time_steps(only.step, device, 1, max(steps // 4, 1)) * 1e3
        if flops:  # the count depends only on the ops: once per (config, kind, domains), reused
            key = (config, kind, num_domains)
            if key not in _FLOP_CACHE:
                stepper.index = 0
                _FLOP_CACHE[key] = count_flops(lambda: [stepper.step() for _ in range(STEPS_PER_CYCLE)])
                row['forward_gflop'] = {k: v / 1e9 for k, v in
                                        forward_flops(G, D, spec, device, models, clip_models).items()}
            row['gflop_per_step'] = _FLOP_CACHE[key] / STEPS_PER_CYCLE / 1e9  # reg phases amortised
            row['tflops'] = row['gflop_per_step'] / sec / 1e3
            row['mfu_spec'] = row['tflops'] / PEAK_TFLOPS['bf16']
            row['mfu_measured'] = row['tflops'] / MEASURED_BF16_TFLOPS
        if profile_dir is not None:
            row['profile'] = profile_step(stepper, device, profile_dir, f'{config}_{kind}_{num_domains}_{variant}')
    return row


def profile_step(stepper, device, out_dir, label, steps=STEPS_PER_CYCLE) -> dict:
    """torch.profiler over one cycle of steps: top ops table saved as profile_<label>.txt."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    stepper.index = 0
    sync(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            stepper.step()
        sync(device)
    events = prof.key_averages()
    sort_key = 'self_device_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    table = events.table(sort_by=sort_key, row_limit=30)
    path = os.path.join(out_dir, f'profile_{label}.txt')
    dnnlib.util.write_text_atomic(path, table + '\n')
    # Host syncs: the CUDA runtime's synchronisations (item(), nonzero(), unique() and explicit ones).
    sync_keys = ('cudaStreamSynchronize', 'cudaDeviceSynchronize') if device.type == 'cuda' else \
        ('aten::_local_scalar_dense', 'aten::nonzero')
    syncs = sum(e.count for e in events if e.key in sync_keys)
    top = sorted(events, key=lambda e: getattr(e, sort_key), reverse=True)[:12]
    return dict(table=path, host_sync_events_per_step=syncs / steps,
                top=[(e.key, getattr(e, sort_key) / steps / 1e3) for e in top])  # ms per step

# ---------------------------------------------------------------------------------------------


def pass_flops(config: str, clip_names, tiny_clip: bool = False) -> dict:
    """Forward FLOPs of one pass of G (mapping, synthesis), D, each CLIP image tower and LPIPS at
    the config's batch_gpu, counted on the meta device: shapes only, no GPU and no arithmetic, so
    the full-size networks take seconds on any machine."""
    from training.expansion.tasks.shared_models import SharedModels, load_lpips
    meta = torch.device('meta')
    spec = preset_spec(config)
    G, D = build_networks(spec, channels_last=False, device=torch.device('cpu'))
    G, D = G.to(meta), D.to(meta)
    models = SharedModels(meta, lpips_random_backbone=True)
    for name in clip_names:
        encoder = random_clip(name, torch.device('cpu'), tiny_clip)
        encoder.model.to(meta)
        encoder.device = meta
        models.register_clip(name, encoder)
    models.register_perceptual('alex', load_lpips('alex', meta, random_backbone=True))
    gflop = {k: v / 1e9 for k, v in forward_flops(G, D, spec, meta, models, tuple(clip_names)).items()}
    return dict(config=config, resolution=spec['resolution'], batch_gpu=spec['batch_gpu'], forward_gflop=gflop)


def pass_flops_table(rows) -> str:
    names = list(rows[0]['forward_gflop'])
    lines = ['| config | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]
    for r in rows:
        lines.append(f"| {r['config']} {r['resolution']}² b{r['batch_gpu']} | "
                     + ' | '.join(f"{r['forward_gflop'][n]:.1f}" for n in names) + ' |')
    return '\n'.join(lines)


def markdown_table(rows) -> str:
    lines = ['| config | step | variant | ms/step | img/s | s/kimg | peak GiB | GFLOP/step | TFLOP/s | MFU (989 spec) | MFU (790 measured) |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f"| {r['config']} | {r['kind']} | {r['variant']} | error: {r['error'][:80]} |||||||||")
            continue
        step = 'train' if r['kind'] == 'train' else f"expand, {r['domains']} NADA (phase alone {r['expand_phase_ms']:.0f} ms)"
        fmt = lambda key, f: format(r[key], f) if r.get(key) is not None else '-'  # noqa: E731
        lines.append(f"| {r['config']} {r['resolution']}² b{r['batch_gpu']} | {step} | {r['variant']} | "
                     f"{fmt('ms_per_step', '.1f')} | {fmt('img_per_s', '.1f')} | {fmt('s_per_kimg', '.1f')} | "
                     f"{fmt('peak_mem_gib', '.2f')} | {fmt('gflop_per_step', '.0f')} | {fmt('tflops', '.1f')} | "
                     f"{fmt('mfu_spec', '.1%')} | {fmt('mfu_measured', '.1%')} |")
    return '\n'.join(lines)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(',') if v.strip()]


@click.command()
@click.option('--device', default='cuda', show_default=True, help='torch device')
@click.option('--configs', default='paper256,stylegan2', show_default=True, help=f'of {", ".join(CONFIGS)}')
@click.option('--kinds', default='train,expand', show_default=True, help='train and/or expand')
@click.option('--variants', default='plain,tf32,bf16,channels_last,fused_adam', show_default=True,
              help=f'of {", ".join(VARIANTS)}')
@click.option('--domains', default='3,100', show_default=True, help='NADA domain counts of the expansion step')
@click.option('--domain-variants', default='plain', show_default=True,
              help='variants also run with the larger domain counts (the first count gets all of --variants)')
@click.option('--clip-models', default=','.join(NADA_CLIP_MODELS), show_default=True)
@click.option('--tiny-clip', is_flag=True, help='shrunk CLIP towers (CPU dry run)')
@click.option('--steps', type=int, default=STEPS_PER_CYCLE, show_default=True, help='timed steps per case')
@click.option('--warmup', type=int, default=1, show_default=True, help='untimed steps first (from step 0: every phase)')
@click.option('--no-flops', is_flag=True, help='skip the FLOP count')
@click.option('--profile', 'profile_case', default=None, help='CONFIG:DOMAINS: profile that expansion step (plain)')
@click.option('--out', 'out_dir', default='bench_gpu_out', show_default=True, help='results folder')
@click.option('--pass-flops', 'pass_flops_only', is_flag=True, help='only count the forward FLOPs of each network pass (meta device, no GPU)')
def main(device, configs, kinds, variants, domains, domain_variants, clip_models, tiny_clip, steps, warmup,
         no_flops, profile_case, out_dir, pass_flops_only):
    """Time training and expansion steps at full size; print a markdown table."""
    import dnnlib
    device = torch.device(device)
    configs, kinds, variants = _csv(configs), _csv(kinds), _csv(variants)
    domain_counts = [int(d) for d in _csv(domains)]
    for name in configs:
        if name not in CONFIGS:
            raise dnnlib.util.UserError(f'--configs: unknown config {name!r}; choose from {", ".join(CONFIGS)}')
    for name in variants + _csv(domain_variants):
        if name not in VARIANTS:
            raise dnnlib.util.UserError(f'--variants: unknown variant {name!r}; choose from {", ".join(VARIANTS)}')
    if profile_case:
        profile_config, _, profile_domains = profile_case.partition(':')
        if profile_config not in CONFIGS or not profile_domains.isdigit():
            raise dnnlib.util.UserError(f'--profile: expected CONFIG:DOMAINS with CONFIG one of {", ".join(CONFIGS)}, '
                                        f'e.g. stylegan2:3; got {profile_case!r}')
        profile_domains = int(profile_domains)
    os.makedirs(out_dir, exist_ok=True)
    if pass_flops_only:
        rows = [pass_flops(config, _csv(clip_models), tiny_clip) for config in configs]
        table = pass_flops_table(rows)
        dnnlib.util.write_text_atomic(os.path.join(out_dir, 'pass_flops.md'), table + '\n')
        print('forward GFLOP per pass at batch_gpu (backward costs about twice the forward):')
        print(table)
        return
    results_path = os.path.join(out_dir, 'bench_gpu.jsonl')
    clips = {}
    if 'expand' in kinds or profile_case:
        clips = {name: random_clip(name, device, tiny_clip) for name in _csv(clip_models)}
    info = dict(device=str(device), torch=torch.__version__,
                gpu=torch.cuda.get_device_name(device) if device.type == 'cuda' else None)
    print(json.dumps(info), flush=True)
    rows = []

    def record(row):
        rows.append(row)
        dnnlib.util.append_line(results_path, json.dumps(row))
        print(json.dumps({k: v for k, v in row.items() if k not in ('forward_gflop', 'profile')}), flush=True)

    if profile_case:  # first: the expansion profile is what section 3 of the issue needs most
        try:
            row = run_case(profile_config, 'expand', 'plain', profile_domains, device, warmup, 2, clips,
                           profile_dir=out_dir, flops=False)
            row['variant'] = 'plain (profiled run)'
            print(f'profile of the {profile_config} expansion step, {profile_domains} domains '
                  f'(ms per step, by self CUDA/CPU time):')
            for key, ms in row['profile']['top']:
                print(f'  {ms:9.2f}  {key}')
            print(f"host-sync events per step: {row['profile']['host_sync_events_per_step']:.1f}", flush=True)
        except Exception as err:
            traceback.print_exc()
            row = dict(config=profile_config, kind='expand', variant='plain (profiled run)', domains=profile_domains,
                       error=f'{type(err).__name__}: {err}')
        record(row)
    cases = []
    for config in configs:
        if 'train' in kinds:  # bf16 touches only CLIP and LPIPS, which plain training does not run
            cases += [(config, 'train', v, 0) for v in variants if v != 'bf16']
        if 'expand' in kinds:
            for i, n in enumerate(domain_counts):
                cases += [(config, 'expand', v, n) for v in (variants if i == 0 else _csv(domain_variants))]
    # Plain cases first, so that a time limit leaves the baseline of every step kind.
    cases.sort(key=lambda case: case[2] != 'plain')
    for config, kind, variant, n in cases:
        try:
            row = run_case(config, kind, variant, n, device, warmup, steps, clips, flops=not no_flops)
        except Exception as err:  # a variant that fails (e.g. compile) is reported, the rest still run
            traceback.print_exc()
            row = dict(config=config, kind=kind, variant=variant, domains=n, error=f'{type(err).__name__}: {err}')
        record(row)
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    # The table of every row in the results file: runs into the same --out accumulate.
    with open(results_path) as f:
        table = markdown_table([json.loads(line) for line in f if line.strip()])
    dnnlib.util.write_text_atomic(os.path.join(out_dir, 'bench_gpu.md'), table + '\n')
    print(table)


if __name__ == '__main__':
    import dnnlib
    dnnlib.util.run_cli(main)
