"""Benchmark: expansion step time with 1, 10 and 100 domains (issue: many domains must scale).

    python -m scripts.bench_expansion_domains [--steps 10] [--batch 8] [--device cpu]

Builds a small random 32x32 generator with w_dim 128, gives it 1, 10 and 100 `Transform`
domains, and times the expansion phase ('G_expand_and_recon' + optimizer step; no D, no LPIPS,
so the figure isolates what grows with the number of domains). Prints seconds per step and the
ratio to the 1-domain case.
"""

import time

import click
import torch

from training.expansion.loss import DomainExpansionLoss
from training.networks import Generator
from training.expansion.tasks.shared_models import SharedModels

TRANSFORMS = ['grayscale', 'negative', 'hflip', 'vflip', 'hue_shift', 'edges']


def make_config(num_domains: int) -> dict:
    return {'tasks': [{'type': 'Transform', 'args': {'transform': TRANSFORMS[i % len(TRANSFORMS)], 'name': f'd{i}'}}
                      for i in range(num_domains)]}


def time_steps(num_domains: int, steps: int, batch: int, device: torch.device) -> float:
    """Mean seconds per expansion step (after one warm-up step)."""
    torch.manual_seed(0)
    G = Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=64)).train().to(device)
    G.requires_grad_(False)
    options = dict(lambda_src=0, lambda_recon_lpips=0)
    loss = DomainExpansionLoss(device, G.mapping, G.synthesis, None, expansion_cfg=make_config(num_domains),
                               batch_gpu=batch, shared_models=SharedModels(device), **options,
                               **DomainExpansionLoss.resolve_inputs(options, G=G, G_ema=G, snapshot=None))
    params = loss.trainable_params('G', G)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=0.001, betas=(0.0, 0.99))
    c = torch.zeros([batch, 0], device=device)
    elapsed = 0.0
    for step in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('G_expand_and_recon', None, None, torch.randn([batch, 128], device=device), c, 1.0, 0)
        opt.step()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        if step > 0:
            elapsed += time.perf_counter() - start
    return elapsed / steps


@click.command()
@click.option('--steps', type=int, default=10, show_default=True)
@click.option('--batch', type=int, default=8, show_default=True)
@click.option('--device', default='cpu', show_default=True)
def main(steps, batch, device):
    """Print the step time with 1, 10 and 100 domains."""
    device = torch.device(device)
    base = None
    print(f'{"domains":>8} {"sec/step":>10} {"ratio":>7}')
    for num_domains in (1, 10, 100):
        sec = time_steps(num_domains, steps, batch, device)
        base = base or sec
        print(f'{num_domains:>8d} {sec:>10.4f} {sec / base:>7.2f}')


if __name__ == '__main__':
    main()
