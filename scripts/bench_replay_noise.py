"""Measure replay alignment with independent (official) vs shared noise on the official toy protocol.

    python -m scripts.bench_replay_noise --network tiny32_snapshot.pkl [--steps 300] [--seed 0]

Protocol of ../shared/fixtures/expansion_fidelity (grayscale / negative / hflip on the three most
dormant directions, batch 8, lambda_recon_l2 10, no LPIPS, no D, Adam lr 0.0008, betas
(0, 0.99 ** 0.8)). Prints, per replay-noise mode, the base drift mse(G(base), G_src(base)) and
each domain's own error, evaluated with constant noise on 64 fixed latents.
"""

import copy

import click
import numpy as np
import torch

import legacy
from training.expansion import evaluation
from training.expansion.render import render
from training.expansion.loss import DomainExpansionLoss
from training.expansion.tasks.shared_models import SharedModels

TASKS = {'tasks': [{'type': 'Transform', 'dimension': 31, 'args': {'transform': 'grayscale'}},
                   {'type': 'Transform', 'dimension': 30, 'args': {'transform': 'negative'}},
                   {'type': 'Transform', 'dimension': 29, 'args': {'transform': 'hflip'}}]}


def run(G_src, replay_noise: str, steps: int, seed: int) -> tuple[float, np.ndarray]:
    """(base drift, own errors) after `steps` steps."""
    G = copy.deepcopy(G_src).train()
    torch.manual_seed(seed)
    options = dict(lambda_src=0, lambda_recon_lpips=0)
    loss = DomainExpansionLoss('cpu', G.mapping, G.synthesis, None, expansion_cfg=TASKS, batch_gpu=8, **options,
                               replay_noise=replay_noise, shared_models=SharedModels('cpu'),
                               **DomainExpansionLoss.resolve_inputs(options, G=G, G_ema=G_src, snapshot=None))
    G.synthesis.requires_grad_(True)
    opt = torch.optim.Adam(loss.trainable_params('G', G), lr=0.0008, betas=(0.0, 0.99 ** 0.8), eps=1e-8)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('G_expand_and_recon', None, None, torch.randn([8, G.z_dim]),
                                  torch.zeros([8, G.c_dim]), 1.0, 0)
        opt.step()
    G.eval()
    z = torch.from_numpy(np.random.RandomState(1234).randn(64, G.z_dim).astype(np.float32))
    with torch.no_grad():
        w = G_src.mapping(z, None)[:, 0]
    base_w = loss.subspaces.project_base(w, G_src.mapping.w_avg)
    drift = float((render(G.synthesis, base_w) - render(G_src.synthesis, base_w))
                  .square().mean(dim=[1, 2, 3]).mean())
    E = evaluation.error_matrix(G.synthesis, G_src.mapping, loss.subspaces, loss.tasks, G_src.mapping.w_avg,
                                    n=64, seed=1234)
    return drift, np.diag(E)


@click.command()
@click.option('--network', required=True, help='tiny32_snapshot.pkl of the shared fixtures (its G_ema is used).')
@click.option('--steps', type=int, default=300, show_default=True)
@click.option('--seed', type=int, default=0, show_default=True)
def main(network, steps, seed):
    """Compare base drift and own errors for both replay-noise modes."""
    with open(network, 'rb') as f:
        G_src = legacy.load_network_pkl(f)['G_ema']
    print(f'{"replay_noise":>12} {"base_drift":>10}  own errors (grayscale, negative, hflip)')
    for mode in ('independent', 'shared'):
        drift, own = run(G_src, mode, steps, seed)
        print(f'{mode:>12} {drift:>10.4f}  ' + ' '.join(f'{e:.2f}' for e in own))


if __name__ == '__main__':
    main()
