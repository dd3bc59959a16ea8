"""The embedded demo: expand the small generator shipped in demo/ on the CPU and measure it.

    python demo.py --outdir demo_out

Four new domains are added to `demo/source_generator.pkl` (a 32x32 StyleGAN2 pretrained by us on
the procedural 'shapes' data set, see demo/README.md): three `Transform` domains (grayscale,
negative, hue shift: ground truth that needs no pretrained network) and one `MyStyle` domain
whose "personal photos" are generated here from four anchor latents. The expansion runs through
train.py's own library code (training.run_options, training.launch); so does a plain fine-tuning
baseline with the same tasks and steps but no base-subspace regularisation, and the paper's
class-conditional baseline (Appendix B; class 0 = source, one class per task). metrics.json
(interfaces.md section 5) then shows (a) how well the base subspace is preserved compared with
both baselines, (b) each domain's task error and R^2 before and after, and (c) whether a domain
leaks into another's subspace (or class). `--tasks hflip,edges` picks other Transform domains,
`--no-mystyle` drops the MyStyle one, `--steps` sets the training length of every run.
`--generator sg3` runs the same demo on demo/source_generator_sg3.pkl, a small StyleGAN3 (config
T) trained by us on the same data, without the class-conditional baseline (its graft needs a
StyleGAN2 mapping; metrics.json says so under `class_conditional_note`).

Every run trains with DEMO_SETTINGS, which go beyond the official code (README, "The demo": chosen
with scripts.bench_demo_quality and expansion-only runs); `--official` trains with the official
settings instead (the `tiny` preset's optimizer, s = 20, the GAN term, replay weights 10).
"""

import glob
import json
import os
import time

import click
import numpy as np
import torch

import dnnlib
import legacy
from torch_utils import image_utils
from training import launch, run_options
from training.expansion import evaluation
from training.expansion.render import render
from training.image_transforms import get_transform
from training.expansion.subspaces import LatentSubspaces
from training.synthetic_data import make_synthetic_dataset
from training.expansion.tasks.base import build_tasks
from training.expansion.config import parse_expansion_config
from training.class_conditional import evaluation as cc_evaluation
from training.class_conditional.graft import grafted_copy
from training.expansion.tasks.shared_models import PretrainedWeightsError, SharedModels

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
SOURCE_PKL = os.path.join(REPO_ROOT, 'demo', 'source_generator.pkl')
DATA_SEED = 123            # the seed the shipped generator's training data was drawn with
DATA_STYLE = 'shapes'      # ... and its procedural style (training/synthetic_data.py)
MYSTYLE_SEEDS = [11, 12, 13, 14]
EVAL_SEED = 2024           # evaluation latents, disjoint from training draws
DEFAULT_TRANSFORMS = ('grayscale', 'negative', 'hue_shift')
HUE_DEGREES = 120          # the demo's hue_shift angle
# --generator -> the shipped source pickle, whether the class-conditional baseline can graft onto it, and the
# default steps per run (a StyleGAN3 step costs several times a StyleGAN2 one on the CPU: alias-free layers).
GENERATORS = {
    'sg2': dict(pkl=SOURCE_PKL, class_conditional=True, steps=1000),
    'sg3': dict(pkl=os.path.join(REPO_ROOT, 'demo', 'source_generator_sg3.pkl'), class_conditional=False, steps=400),
}
SG3_NOTE = ('class-conditional baseline skipped: it grafts a one-hot class embedding onto a StyleGAN2 mapping '
            '(training.class_conditional.graft); StyleGAN3 generators are not supported there yet')
# Not official (README, "The demo"): train.py options of every demo run, measured with
# scripts.bench_demo_quality; the class-conditional run has no subspaces, so no subspace_distance.
DEMO_SETTINGS = dict(
    glr=0.005,                 # G's Adam learning rate (the `tiny` preset: 0.0025)
    g_beta1=0.9,               # G's Adam beta1 (official: 0)
    affine_lr_mult=10.0,       # learning-rate multiplier of G's affine (style) layers (official: 1)
    subspace_distance=10.0,    # s, Eq. 2 (official: 20)
    lambda_src=0.0,            # source GAN loss, Eq. 5 (official: 1): with G's beta1 0.9 it diverges
    lambda_recon_l2=1.0,       # replay alignment weights, Eq. 6 (official: 10 and 10); the fine-tune
    lambda_recon_lpips=1.0,    # baseline keeps them at 0
    replay_noise='shared',     # the frozen replay render draws the trained render's noise (official: its own)
    resume_from_ema=True,      # every run starts from the source's G_ema, the network the metrics compare to
)                              # (official: its G; the two differ by L2 0.067, the old drift floor)

# ---------------------------------------------------------------------------------------------


def load_source(path: str = SOURCE_PKL) -> dict:
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f)


def personal_style(images: torch.Tensor) -> torch.Tensor:
    """The demo's 'person': warm sepia tones with a dark vignette, on images in [-1, 1]."""
    gray = images.mean(dim=1, keepdim=True)
    sepia = torch.cat([gray * 0.9 + 0.25, gray * 0.8 + 0.05, gray * 0.6 - 0.2], dim=1)
    H, W = images.shape[2:]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing='ij')
    vignette = 1 - 0.6 * (xx ** 2 + yy ** 2).clamp(max=1)
    return (sepia * vignette - (1 - vignette)).clamp(-1, 1)


@torch.no_grad()
def make_mystyle_data(G, folder: str) -> tuple[str, str]:
    """Photos (PNG) and their anchors (W latents, .pt) for the MyStyle domain."""
    images_dir, anchors_dir = os.path.join(folder, 'images'), os.path.join(folder, 'anchors')
    os.makedirs(images_dir, exist_ok=True)
    os.makedirs(anchors_dir, exist_ok=True)
    for seed in MYSTYLE_SEEDS:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
        w = G.mapping(z, None, truncation_psi=0.7)[:, 0]                                 # [1, w_dim]
        photo = personal_style(render(G.synthesis, w))
        image_utils.save_png_atomic(image_utils.to_pil(image_utils.to_uint8(photo)[0]),
                                    os.path.join(images_dir, f'person{seed:02d}.png'))
        with dnnlib.util.atomic_write_path(os.path.join(anchors_dir, f'person{seed:02d}.pt')) as tmp:
            torch.save(w[0].clone(), tmp)
    return images_dir, anchors_dir


def parse_transforms(text: str) -> list[str]:
    """`--tasks grayscale,edges` -> the transform names, each checked (one-line error otherwise)."""
    from training.image_transforms import TRANSFORMS
    names = [name.strip() for name in text.split(',') if name.strip()]
    unknown = [name for name in names if name not in TRANSFORMS]
    if not names or unknown or len(set(names)) != len(names):
        raise dnnlib.util.UserError(f'--tasks {text}: give distinct transform names, comma-separated'
                                    f'{f" (unknown: {unknown})" if unknown else ""}; known: {", ".join(TRANSFORMS)}')
    return names


def expansion_config(images_dir: str | None, anchors_dir: str | None,
                     transforms=DEFAULT_TRANSFORMS) -> dict:
    """One Transform task per name (hue_shift at HUE_DEGREES), then MyStyle unless images_dir is None."""
    tasks = [{'type': 'Transform', 'args': {'transform': name, **({'degrees': HUE_DEGREES} if name == 'hue_shift' else {})}}
             for name in transforms]
    if images_dir is None:
        return {'tasks': tasks}
    tasks.append({'type': 'MyStyle', 'args': {'person_name': 'sepia_person', 'images_dir': images_dir,
                                              'anchors_dir': anchors_dir}})
    return {'tasks': tasks, 'tasks_losses': {'MyStyle': {'l2_weight': 1.0}}}


def lpips_models(device) -> SharedModels:
    """LPIPS with the real AlexNet backbone when its weights are cached, else a random-init one."""
    models = SharedModels(device)
    try:
        models.perceptual('alex')
    except PretrainedWeightsError as e:
        print(f'Note: LPIPS uses a random-init AlexNet backbone (so its numbers are not the published LPIPS): {e}',
              flush=True)
        models = SharedModels(device, lpips_random_backbone=True)
    return models

# ---------------------------------------------------------------------------------------------


def run_expansion(outdir: str, cfg_path: str, data_zip: str, steps: int, batch: int, seed: int,
                  baseline: bool, lpips_random_backbone: bool, class_conditional: bool = False,
                  source_pkl: str = SOURCE_PKL,
                  settings: dict | None = None) -> str:
    """Train through train.py's own functions; returns the final snapshot path.

    `settings`: extra train.py options (DEMO_SETTINGS; None or {} = the official ones).
    """
    lambdas = dict(lambda_src=0, lambda_recon_l2=0, lambda_recon_lpips=0) if baseline else {}
    extra = {k: v for k, v in (settings or {}).items() if not (class_conditional and k == 'subspace_distance')}
    options = run_options.setup_training_options(
        outdir=outdir, data=data_zip, resume=source_pkl, expansion_cfg_file=cfg_path, cfg='tiny', batch=batch,
        kimg=steps * batch / 1000, tick=steps * batch / 1000, snap=1, metrics='none', seed=seed, aug='noaug',
        workers=0, class_conditional=class_conditional, **{**extra, **lambdas})
    options.loss_kwargs['lpips_random_backbone'] = lpips_random_backbone
    options.logging['tensorboard'] = False
    launch.launch_training(options, outdir, print_options=False)  # full options: training_options.json
    return sorted(glob.glob(os.path.join(outdir, '*', 'network-snapshot-*.pkl')))[-1]


def image_distances(models: SharedModels, a: torch.Tensor, b: torch.Tensor) -> dict:
    """Mean over images of the per-image mean squared difference, and mean LPIPS."""
    l2 = (a - b).square().mean(dim=[1, 2, 3]).mean()
    with torch.no_grad():
        lp = torch.cat([models.perceptual('alex')(x, y) for x, y in zip(a.split(16), b.split(16))]).mean()
    return {'l2': float(l2), 'lpips': float(lp)}


def evaluate(G_src, G_exp, G_base, G_cc, tasks, subspaces, models, num_latents: int) -> dict:
    """metrics.json's 'base', 'domains' and 'class_conditional' sections (interfaces.md section 5)."""
    z = torch.from_numpy(np.random.RandomState(EVAL_SEED).randn(num_latents, G_src.z_dim)).float()
    with torch.no_grad():
        w = G_src.mapping(z, None)[:, 0]
    base_w = subspaces.project_base(w, G_src.mapping.w_avg)   # the source's stored average
    source = render(G_src.synthesis, base_w)
    base = {'expanded': image_distances(models, render(G_exp.synthesis, base_w), source),
            'finetune_baseline': image_distances(models, render(G_base.synthesis, base_w), source)}
    # Class 0 of the class-conditional baseline against the source, same z (it has no subspaces).
    with torch.no_grad():
        if G_cc is not None:
            base['class_conditional'] = image_distances(models, render(G_cc.synthesis, cc_evaluation.class_w(
                G_cc.mapping, z, 0)), render(G_src.synthesis, w))
    before = evaluation.error_matrix(G_src.synthesis, G_src.mapping, subspaces, tasks, G_src.mapping.w_avg,
                                         n=num_latents, seed=EVAL_SEED)
    after = evaluation.error_matrix(G_exp.synthesis, G_src.mapping, subspaces, tasks, G_src.mapping.w_avg,
                                        n=num_latents, seed=EVAL_SEED)
    r2_before = evaluation.transform_r2(G_src.synthesis, G_src.mapping, subspaces, tasks, G_src.mapping.w_avg,
                                        n=num_latents, seed=EVAL_SEED)
    r2_after = evaluation.transform_r2(G_exp.synthesis, G_src.mapping, subspaces, tasks, G_src.mapping.w_avg,
                                       n=num_latents, seed=EVAL_SEED)
    domains = {}
    for k, task in enumerate(tasks):
        others = {other.name: {'before': float(before[k, j]), 'after': float(after[k, j])}
                  for j, other in enumerate(tasks) if j != k}
        domains[task.name] = {'type': type(task).__name__, 'dimension': task.dimension,
                              'error_before': float(before[k, k]), 'error_after': float(after[k, k]),
                              **({'r2_before': r2_before[task.name], 'r2_after': r2_after[task.name]}
                                 if task.name in r2_after else {}),
                              'on_other_subspaces': others}
    return {'base': base, 'domains': domains,
            'class_conditional': (evaluate_class_conditional(G_src, G_cc, tasks, num_latents)
                                  if G_cc is not None else None)}


def evaluate_class_conditional(G_src, G_cc, tasks, num_latents: int) -> dict:
    """The baseline's per-domain numbers: own error, R^2, errors on the other classes (leakage);
    'before' = the parent grafted at step 0 (every class renders the parent's image)."""
    G_init = grafted_copy(G_src, len(tasks) + 1)
    before = cc_evaluation.error_matrix(G_init, tasks, n=num_latents, seed=EVAL_SEED)
    after = cc_evaluation.error_matrix(G_cc, tasks, n=num_latents, seed=EVAL_SEED)
    r2_before = cc_evaluation.transform_r2(G_init, tasks, n=num_latents, seed=EVAL_SEED)
    r2_after = cc_evaluation.transform_r2(G_cc, tasks, n=num_latents, seed=EVAL_SEED)
    domains = {}
    for k, task in enumerate(tasks):
        domains[task.name] = {
            'type': type(task).__name__, 'class': k + 1,
            'error_before': float(before[k, k]), 'error_after': float(after[k, k]),
            **({'r2_before': r2_before[task.name], 'r2_after': r2_after[task.name]} if task.name in r2_after else {}),
            'on_other_classes': {other.name: {'before': float(before[k, j]), 'after': float(after[k, j])}
                                 for j, other in enumerate(tasks) if j != k}}
    return {'domains': domains}


def save_demo_grid(G_src, G_exp, subspaces, names, path: str, num_columns: int = 8) -> None:
    """Rows: the source generator, then the expanded one on the base subspace and each domain."""
    z = torch.from_numpy(np.random.RandomState(EVAL_SEED).randn(num_columns, G_src.z_dim)).float()
    with torch.no_grad():
        w = G_src.mapping(z, None)[:, 0]
    rows = evaluation.aligned_rows(G_exp.synthesis, subspaces, w, G_src.mapping.w_avg)
    source = render(G_src.synthesis, subspaces.project_base(w, G_src.mapping.w_avg))
    grid = image_utils.make_grid([image_utils.to_uint8(r) for r in [source] + rows],
                                 row_labels=['source', 'base'] + list(names))
    image_utils.save_png_atomic(grid, path)


def next_run_dir(root: str) -> str:
    """`root/NNNNN`, one past the highest existing number: re-running never touches earlier results."""
    existing = [int(name) for name in (os.listdir(root) if os.path.isdir(root) else []) if name.isdigit()]
    return os.path.join(root, f'{max(existing, default=-1) + 1:05d}')


def run_demo(outdir: str = 'demo_out', steps: int | None = None, batch: int = 8, seed: int = 0,
             num_eval_latents: int = 32, transforms=DEFAULT_TRANSFORMS, mystyle: bool = True, generator: str = 'sg2',
             official: bool = False) -> str:
    """Expand the shipped generator, train the baseline, evaluate; returns the metrics.json path.

    Everything goes to a new numbered folder under `outdir` (demo_out/00000, demo_out/00001, ...).
    `official=True` trains without DEMO_SETTINGS (chosen on the StyleGAN2 generator; on the
    StyleGAN3 one they also beat the official settings, README).
    """
    settings = {} if official else dict(DEMO_SETTINGS)
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise dnnlib.util.UserError(f'--outdir {outdir}: exists and is not a folder; choose another path')
    outdir = next_run_dir(os.path.abspath(outdir))
    if generator not in GENERATORS:
        raise dnnlib.util.UserError(f"--generator {generator}: choose one of {', '.join(GENERATORS)}")
    source_pkl = GENERATORS[generator]['pkl']
    steps = GENERATORS[generator]['steps'] if steps is None else steps
    src = load_source(source_pkl)
    G_src = src['G_ema'].eval()
    os.makedirs(outdir, exist_ok=True)

    data_zip = os.path.join(outdir, f'{DATA_STYLE}32.zip')
    if not os.path.exists(data_zip):
        make_synthetic_dataset(data_zip, 500, G_src.img_resolution, seed=DATA_SEED, style=DATA_STYLE)
    images_dir, anchors_dir = make_mystyle_data(G_src, os.path.join(outdir, 'mystyle')) if mystyle else (None, None)
    cfg = expansion_config(images_dir, anchors_dir, transforms)
    cfg_path = os.path.join(outdir, 'expansion.json')
    dnnlib.util.write_json_atomic(cfg_path, cfg)
    models = lpips_models(torch.device('cpu'))

    seconds, pkls = {}, {}
    for run, data, baseline, class_conditional in (('expanded', data_zip, False, False),
                                                   ('finetune_baseline', None, True, False),
                                                   ('class_conditional', data_zip, False, True)):
        if class_conditional and not GENERATORS[generator]['class_conditional']:
            print(f'Note: {SG3_NOTE}', flush=True)
            continue
        start = time.time()
        pkls[run] = run_expansion(os.path.join(outdir, run), cfg_path, data, steps, batch, seed, baseline=baseline,
                                  lpips_random_backbone=models.lpips_random_backbone, source_pkl=source_pkl,
                                  class_conditional=class_conditional, settings=settings)
        seconds[run] = time.time() - start
    exp_pkl, base_pkl = pkls['expanded'], pkls['finetune_baseline']

    exp = load_source(exp_pkl)
    G_exp, G_base = exp['G_ema'].eval(), load_source(base_pkl)['G_ema'].eval()
    G_cc = load_source(pkls['class_conditional'])['G_ema'].eval() if 'class_conditional' in pkls else None
    subspaces = LatentSubspaces(exp['latent_basis'], exp['repurposed_dims'].tolist(), exp['subspace_distance'])
    config = parse_expansion_config(exp['expansion_cfg'], w_dim=G_src.w_dim, img_resolution=G_src.img_resolution)
    tasks = build_tasks(config, 'cpu', models, z_dim=G_src.z_dim, img_resolution=G_src.img_resolution)
    metrics = {'generator': f'demo/source_generator.pkl: {G_src.img_resolution}x{G_src.img_resolution} StyleGAN2 '
                            f'(w_dim {G_src.w_dim}) trained on procedural {DATA_STYLE}',
               'steps': steps, 'batch': batch, 'settings': settings or 'official', 'seconds': sum(seconds.values()), 'seconds_by_run': seconds,
               'lpips_backbone': models.lpips_backbone('alex'),
               'expanded_snapshot': os.path.abspath(exp_pkl), 'expansion_cfg': cfg_path,
               'class_conditional_snapshot': os.path.abspath(pkls['class_conditional']) if G_cc is not None else None,
               **evaluate(G_src, G_exp, G_base, G_cc, tasks, subspaces, models, num_eval_latents)}
    if generator == 'sg3':
        metrics.update(generator=f'demo/source_generator_sg3.pkl: {G_src.img_resolution}x{G_src.img_resolution} '
                                 f'StyleGAN3 config T (w_dim {G_src.w_dim}), trained by us on the same procedural data',
                       class_conditional_note=SG3_NOTE)
    save_demo_grid(G_src, G_exp, subspaces, [t.name for t in tasks], os.path.join(outdir, 'aligned_grid.png'))
    path = os.path.join(outdir, 'metrics.json')
    dnnlib.util.write_json_atomic(path, metrics)
    return path

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--outdir', default='demo_out', show_default=True, help='Where the demo writes everything.')
@click.option('--steps', type=click.IntRange(min=1), default=None,
              help='Training steps per run [default: 1000; 400 with --generator sg3].')
@click.option('--batch', type=click.IntRange(min=4), default=8, show_default=True, help='Batch size.')
@click.option('--seed', type=int, default=0, show_default=True, help='Training seed.')
@click.option('--tasks', default=','.join(DEFAULT_TRANSFORMS), show_default=True,
              help='Transform domains, comma-separated (e.g. hflip,edges).')
@click.option('--mystyle/--no-mystyle', default=True, show_default=True, help='Also add the MyStyle domain.')
@click.option('--generator', type=click.Choice(list(GENERATORS)), default='sg2', show_default=True,
              help='Source generator: the StyleGAN2 or the StyleGAN3 (config T) one in demo/.')
@click.option('--official', is_flag=True, help='Train with the official settings instead of the demo\'s (README).')
def main(outdir, steps, batch, seed, tasks, mystyle, generator, official):
    """Expand the shipped demo generator, train both baselines, write metrics.json (its path is the last line)."""
    transforms = parse_transforms(tasks)  # before any work
    path = run_demo(outdir, steps=steps, batch=batch, seed=seed, transforms=transforms, mystyle=mystyle, generator=generator,
                    official=official)
    with open(path) as f:
        print(summary_table(json.load(f)))
    print(path)


def summary_table(metrics: dict) -> str:
    """The headline numbers as a few Markdown tables (base drift; each domain's error, R^2, leakage)."""
    base = metrics['base']
    settings = metrics.get('settings', 'official')
    settings = (', '.join(f'{k} {v:g}' if isinstance(v, float) else f'{k} {v}' for k, v in settings.items())
                if isinstance(settings, dict) else settings)
    lines = [f"{metrics['steps']} steps, batch {metrics['batch']}, {metrics['seconds']:.0f} s of training; "
             f"settings: {settings}; LPIPS backbone: {metrics['lpips_backbone']}", '',
             '| base drift vs source | expansion | fine-tune | class-conditional |', '|---|---:|---:|---:|']
    for key in ('l2', 'lpips'):
        lines.append(f'| {key} | ' + ' | '.join(f"{base[run][key]:.4f}" if run in base else '-' for run in
                                               ('expanded', 'finetune_baseline', 'class_conditional')) + ' |')
    lines += ['', '| domain | error before -> after | R^2 before -> after | leaks | class-cond. error | '
              'class-cond. R^2 | class-cond. leaks |', '|---|---:|---:|:---:|---:|---:|:---:|']
    cc = (metrics['class_conditional'] or {}).get('domains', {})
    for name, d in metrics['domains'].items():
        c = cc.get(name)
        r2 = lambda e: f"{e['r2_before']:.2f} -> {e['r2_after']:.2f}" if 'r2_after' in e else '-'
        leaks = lambda e, key: 'yes' if any(o['after'] <= e['error_after'] for o in e[key].values()) else 'no'
        cc_cells = (f"{c['error_after']:.4f} | {r2(c)} | {leaks(c, 'on_other_classes')}" if c is not None
                    else '- | - | -')                                       # no class-conditional run (sg3)
        lines.append(f"| {name} | {d['error_before']:.4f} -> {d['error_after']:.4f} | {r2(d)} | "
                     f"{leaks(d, 'on_other_subspaces')} | {cc_cells} |")
    lines.append(f"\nGrid: {os.path.join(os.path.dirname(metrics['expansion_cfg']), 'aligned_grid.png')}")
    return '\n'.join(lines)


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
