"""How fast Transform domains become the transform *of the same content*: R^2 against steps.

    python -m scripts.bench_demo_quality [--network demo/source_generator.pkl] [--steps 2000]
                                         [--settings official,tuned] [--eval-every 400]

The issue-10 protocol, reduced to what decides the demo's picture: three Transform domains
(grayscale, negative, hue 120 deg) on the three lowest SeFA directions of the source G_ema, each
trained with its own loss (interfaces.md section 1) on its repurposed subspace, plus replay L2
against the frozen source on the base subspace; no GAN term (the demo's R^2 hardly depends on
it), so one step costs a fraction of a train.py step and several settings fit in minutes.
R^2 (interfaces.md section 5) is measured on 64 held-out latents (seed 2024), base and domain
rendered by the trained network, every `--eval-every` steps.

Settings (`--settings`, comma-separated):
  official  what an expansion run of the demo uses today: Adam lr 0.0025 (the `tiny` preset),
            betas (0, 0.99), s = 20, every synthesis parameter at the same learning rate.
  tuned     lr 0.01, beta1 0.9, the affine (style) layers at 10x the learning rate, s = 10.
  demo      demo.py's DEMO_SETTINGS: as tuned with lr 0.005 (replay L2 weight 1, as here).
  Any other setting is `name:lr=..,beta1=..,affine=..,distance=..,replay=..,ema=..,decay=..`:
  `ema=H` evaluates an exponential moving average of the weights with a half-life of H steps
  (0: the trained weights), `decay=F` decays the learning rate linearly to 0 over the last
  fraction F of the steps (0: constant).
"""

import copy
import time

import click
import numpy as np
import torch

import dnnlib
from training import snapshot_io
from training.expansion.basis import factorize
from training.expansion.render import broadcast_ws, render
from training.expansion.subspaces import LatentSubspaces
from training.image_transforms import get_transform

DOMAINS = (('grayscale', None), ('negative', None), ('hue_shift', 120.0))
EVAL_SEED = 2024
SETTINGS = {
    'official': dict(lr=0.0025, beta1=0.0, affine=1.0, distance=20.0, replay=1.0, ema=0.0, decay=0.0),
    'tuned': dict(lr=0.01, beta1=0.9, affine=10.0, distance=10.0, replay=1.0, ema=0.0, decay=0.0),
    'demo': dict(lr=0.005, beta1=0.9, affine=10.0, distance=10.0, replay=1.0, ema=0.0, decay=0.0),
}


def parse_setting(text: str) -> tuple[str, dict]:
    """`official`, `tuned` or `name:key=value,...` (keys of SETTINGS['official'])."""
    if text in SETTINGS:
        return text, dict(SETTINGS[text])
    name, _, spec = text.partition(':')
    values = dict(SETTINGS['official'])
    for item in filter(None, spec.split(',')):
        key, _, value = item.partition('=')
        if key not in values:
            raise dnnlib.util.UserError(f'--settings {text}: unknown key {key!r}; keys: {", ".join(values)}')
        values[key] = float(value)
    return name, values


def r2_score(domain: torch.Tensor, target: torch.Tensor) -> float:
    """1 - sum (domain - target)^2 / sum (target - its per-image, per-channel mean)^2 (interfaces.md 5)."""
    deviation = target - target.mean(dim=[2, 3], keepdim=True)
    return float(1 - (domain - target).square().sum() / deviation.square().sum())


@torch.no_grad()
def evaluate(G_synthesis, subspaces: LatentSubspaces, w_eval: torch.Tensor, source: torch.Tensor,
             transforms: list) -> dict:
    """Base drift (mean squared difference to the source) and R^2 of every domain."""
    base = render(G_synthesis, w_eval)
    row = {'drift_l2': float((base - source).square().mean())}
    for k, (name, transform) in enumerate(transforms):
        row[name] = r2_score(render(G_synthesis, subspaces.edit(w_eval, k)), transform(base))
    return row


def train_curve(G_src, setting: dict, steps: int, eval_every: int, batch: int, seed: int) -> list[dict]:
    """R^2 rows at step 0, eval_every, ... for one setting."""
    torch.manual_seed(seed)
    w_dim = G_src.w_dim
    subspaces = LatentSubspaces(factorize(G_src), [w_dim - 1 - k for k in range(len(DOMAINS))], setting['distance'])
    transforms = [(name, get_transform(name, degrees)) for name, degrees in DOMAINS]
    synthesis = copy.deepcopy(G_src.synthesis).train().requires_grad_(True)
    affine = [p for n, p in synthesis.named_parameters() if '.affine.' in n]
    others = [p for n, p in synthesis.named_parameters() if '.affine.' not in n]
    opt = torch.optim.Adam([{'params': others, 'lr': setting['lr']},
                            {'params': affine, 'lr': setting['lr'] * setting['affine']}],
                           betas=(setting['beta1'], 0.99), eps=1e-8)
    base_lrs = [group['lr'] for group in opt.param_groups]
    averaged = copy.deepcopy(synthesis).eval().requires_grad_(False) if setting['ema'] > 0 else synthesis
    ema_beta = 0.5 ** (1 / setting['ema']) if setting['ema'] > 0 else 0.0
    w_avg = G_src.mapping.w_avg
    with torch.no_grad():
        z_eval = torch.from_numpy(np.random.RandomState(EVAL_SEED).randn(64, G_src.z_dim)).float()
        w_eval = subspaces.project_base(G_src.mapping(z_eval, None, skip_w_avg_update=True)[:, 0], w_avg)
        source_eval = render(G_src.synthesis, w_eval)
    rows = [dict(step=0, seconds=0.0, **evaluate(averaged, subspaces, w_eval, source_eval, transforms))]
    rng = np.random.RandomState(seed)
    domain_of = torch.arange(batch) % len(DOMAINS)          # Batch split evenly over the domains.
    start = time.time()
    for step in range(1, steps + 1):
        with torch.no_grad():
            z = torch.from_numpy(rng.randn(batch, G_src.z_dim)).float()
            w = subspaces.project_base(G_src.mapping(z, None, skip_w_avg_update=True)[:, 0], w_avg)  # Eq. 1
            source = G_src.synthesis(broadcast_ws(w, G_src.num_ws), noise_mode='const')
            edits = torch.cat([subspaces.edit(w[i:i + 1], int(domain_of[i])) for i in range(batch)])  # Eq. 2
        images = synthesis(broadcast_ws(torch.cat([w, edits]), G_src.num_ws), noise_mode='const')
        base, edit = images[:batch], images[batch:]
        target = torch.cat([transforms[int(domain_of[i])][1](base[i:i + 1].detach()) for i in range(batch)])
        task_loss = (edit - target).square().mean(dim=[1, 2, 3]).sum() / batch
        replay_loss = (base - source).square().mean(dim=[1, 2, 3]).sum() / batch
        opt.zero_grad(set_to_none=True)
        (task_loss + setting['replay'] * replay_loss).backward()
        scale = min(1.0, (steps - step + 1) / (setting['decay'] * steps)) if setting['decay'] > 0 else 1.0
        for group, lr in zip(opt.param_groups, base_lrs):
            group['lr'] = lr * scale
        opt.step()
        if averaged is not synthesis:
            with torch.no_grad():
                for p_avg, p in zip(averaged.parameters(), synthesis.parameters()):
                    p_avg.lerp_(p, 1 - ema_beta)
        if step % eval_every == 0 or step == steps:
            rows.append(dict(step=step, seconds=time.time() - start,
                             **evaluate(averaged, subspaces, w_eval, source_eval, transforms)))
    return rows


def print_table(name: str, setting: dict, rows: list[dict]) -> None:
    print(f'\n{name}: ' + ', '.join(f'{k}={v:g}' for k, v in setting.items()))
    names = [d for d, _ in DOMAINS]
    print('| step | seconds | ' + ' | '.join(f'R2 {n}' for n in names) + ' | base drift L2 |')
    print('|---:|---:|' + '---:|' * len(names) + '---:|')
    for row in rows:
        print(f'| {row["step"]} | {row["seconds"]:.0f} | ' + ' | '.join(f'{row[n]:.3f}' for n in names)
              + f' | {row["drift_l2"]:.4f} |')


@click.command()
@click.option('--network', default='demo/source_generator.pkl', show_default=True, help='Source generator pickle.')
@click.option('--steps', type=click.IntRange(min=1), default=2000, show_default=True, help='Training steps per setting.')
@click.option('--eval-every', type=click.IntRange(min=1), default=400, show_default=True, help='Steps between R^2 rows.')
@click.option('--batch', type=click.IntRange(min=len(DOMAINS)), default=8, show_default=True, help='Batch size.')
@click.option('--settings', default='official,tuned', show_default=True, help='Comma-separated settings (see --help).')
@click.option('--seed', type=int, default=0, show_default=True, help='Training seed.')
@click.option('--threads', type=click.IntRange(min=1), default=1, show_default=True, help='torch CPU threads.')
def main(network, steps, eval_every, batch, settings, seed, threads):
    """Print R^2 per Transform domain against training steps, per setting."""
    torch.set_num_threads(threads)
    parsed = [parse_setting(text) for text in settings.split(';' if ':' in settings else ',')]
    G_src = snapshot_io.load_network_pkl(network)['G_ema'].eval().requires_grad_(False)
    for name, setting in parsed:
        print_table(name, setting, train_curve(G_src, setting, steps, eval_every, batch, seed))


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
