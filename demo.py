"""The embedded demo: expand the small generator shipped in demo/ on the CPU and measure it.

    python demo.py --outdir demo_out

Four new domains are added to `demo/source_generator.pkl` (a 32x32 StyleGAN2 pretrained by us on
the procedural 'blobs' data set, see demo/README.md): three `Transform` domains (grayscale,
negative, hue shift: ground truth that needs no pretrained network) and one `MyStyle` domain
whose "personal photos" are generated here from four anchor latents. The expansion runs through
train.py's own library code (training.run_options, training.launch); so does a plain fine-tuning
baseline with the same tasks and steps but no base-subspace regularisation. metrics.json
(interfaces.md section 5) then shows (a) how well the base subspace is preserved compared with
the baseline, (b) each domain's task error before and after, and (c) that no domain leaks into
another's subspace.
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
from training.expansion.tasks.shared_models import PretrainedWeightsError, SharedModels

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
SOURCE_PKL = os.path.join(REPO_ROOT, 'demo', 'source_generator.pkl')
DATA_SEED = 123            # the seed the shipped generator's training data was drawn with
MYSTYLE_SEEDS = [11, 12, 13, 14]
EVAL_SEED = 2024           # evaluation latents, disjoint from training draws

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
        torch.save(w[0].clone(), os.path.join(anchors_dir, f'person{seed:02d}.pt'))
    return images_dir, anchors_dir


def expansion_config(images_dir: str, anchors_dir: str) -> dict:
    return {'tasks': [
        {'type': 'Transform', 'args': {'transform': 'grayscale'}},
        {'type': 'Transform', 'args': {'transform': 'negative'}},
        {'type': 'Transform', 'args': {'transform': 'hue_shift', 'degrees': 120}},
        {'type': 'MyStyle', 'args': {'person_name': 'sepia_person', 'images_dir': images_dir,
                                     'anchors_dir': anchors_dir}},
    ], 'tasks_losses': {'MyStyle': {'l2_weight': 1.0}}}


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
                  baseline: bool, lpips_random_backbone: bool) -> str:
    """Train through train.py's own functions; returns the final snapshot path."""
    lambdas = dict(lambda_src=0, lambda_recon_l2=0, lambda_recon_lpips=0) if baseline else {}
    options = run_options.setup_training_options(
        outdir=outdir, data=data_zip, resume=SOURCE_PKL, expansion_cfg_file=cfg_path, cfg='tiny', batch=batch,
        kimg=steps * batch / 1000, tick=steps * batch / 1000, snap=1, metrics='none', seed=seed, aug='noaug',
        workers=0, **lambdas)
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


def evaluate(G_src, G_exp, G_base, tasks, subspaces, models, num_latents: int) -> dict:
    """metrics.json's 'base' and 'domains' sections (interfaces.md section 5)."""
    z = torch.from_numpy(np.random.RandomState(EVAL_SEED).randn(num_latents, G_src.z_dim)).float()
    with torch.no_grad():
        w = G_src.mapping(z, None)[:, 0]
    base_w = subspaces.project_base(w, G_src.mapping.w_avg)   # the source's stored average
    source = render(G_src.synthesis, base_w)
    base = {'expanded': image_distances(models, render(G_exp.synthesis, base_w), source),
            'finetune_baseline': image_distances(models, render(G_base.synthesis, base_w), source)}
    before = evaluation.error_matrix(G_src.synthesis, G_src.mapping, subspaces, tasks, G_src.mapping.w_avg,
                                         n=num_latents, seed=EVAL_SEED)
    after = evaluation.error_matrix(G_exp.synthesis, G_src.mapping, subspaces, tasks, G_src.mapping.w_avg,
                                        n=num_latents, seed=EVAL_SEED)
    domains = {}
    for k, task in enumerate(tasks):
        others = {other.name: {'before': float(before[k, j]), 'after': float(after[k, j])}
                  for j, other in enumerate(tasks) if j != k}
        domains[task.name] = {'type': type(task).__name__, 'dimension': task.dimension,
                              'error_before': float(before[k, k]), 'error_after': float(after[k, k]),
                              'on_other_subspaces': others}
    return {'base': base, 'domains': domains}


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


def run_demo(outdir: str = 'demo_out', steps: int = 1000, batch: int = 8, seed: int = 0,
             num_eval_latents: int = 32) -> str:
    """Expand the shipped generator, train the baseline, evaluate; returns the metrics.json path.

    Everything goes to a new numbered folder under `outdir` (demo_out/00000, demo_out/00001, ...).
    """
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise dnnlib.util.UserError(f'--outdir {outdir}: exists and is not a folder; choose another path')
    outdir = next_run_dir(os.path.abspath(outdir))
    src = load_source()
    G_src = src['G_ema'].eval()
    os.makedirs(outdir, exist_ok=True)

    data_zip = os.path.join(outdir, 'blobs32.zip')
    if not os.path.exists(data_zip):
        make_synthetic_dataset(data_zip, 500, G_src.img_resolution, seed=DATA_SEED)
    images_dir, anchors_dir = make_mystyle_data(G_src, os.path.join(outdir, 'mystyle'))
    cfg = expansion_config(images_dir, anchors_dir)
    cfg_path = os.path.join(outdir, 'expansion.json')
    with open(cfg_path, 'w') as f:
        json.dump(cfg, f, indent=2)
    models = lpips_models(torch.device('cpu'))

    start = time.time()
    exp_pkl = run_expansion(os.path.join(outdir, 'expanded'), cfg_path, data_zip, steps, batch, seed,
                            baseline=False, lpips_random_backbone=models.lpips_random_backbone)
    base_pkl = run_expansion(os.path.join(outdir, 'finetune_baseline'), cfg_path, None, steps, batch, seed,
                             baseline=True, lpips_random_backbone=models.lpips_random_backbone)
    seconds = time.time() - start

    exp = load_source(exp_pkl)
    G_exp, G_base = exp['G_ema'].eval(), load_source(base_pkl)['G_ema'].eval()
    subspaces = LatentSubspaces(exp['latent_basis'], exp['repurposed_dims'].tolist(), exp['subspace_distance'])
    config = parse_expansion_config(exp['expansion_cfg'], w_dim=G_src.w_dim, img_resolution=G_src.img_resolution)
    tasks = build_tasks(config, 'cpu', models, z_dim=G_src.z_dim, img_resolution=G_src.img_resolution)
    metrics = {'generator': 'demo/source_generator.pkl: 32x32 StyleGAN2 (w_dim 32) trained on procedural blobs',
               'steps': steps, 'batch': batch, 'seconds': seconds,
               'lpips_backbone': models.lpips_backbone('alex'),
               **evaluate(G_src, G_exp, G_base, tasks, subspaces, models, num_eval_latents)}
    save_demo_grid(G_src, G_exp, subspaces, [t.name for t in tasks], os.path.join(outdir, 'aligned_grid.png'))
    path = os.path.join(outdir, 'metrics.json')
    with open(path + '.tmp', 'w') as f:
        json.dump(metrics, f, indent=2)
    os.replace(path + '.tmp', path)
    return path

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--outdir', default='demo_out', show_default=True, help='Where the demo writes everything.')
@click.option('--steps', type=click.IntRange(min=1), default=1000, show_default=True, help='Training steps per run.')
@click.option('--batch', type=click.IntRange(min=4), default=8, show_default=True, help='Batch size.')
@click.option('--seed', type=int, default=0, show_default=True, help='Training seed.')
def main(outdir, steps, batch, seed):
    """Expand the shipped demo generator and write metrics.json (its path is the last line)."""
    path = run_demo(outdir, steps=steps, batch=batch, seed=seed)
    with open(path) as f:
        print(f.read())
    print(path)


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
