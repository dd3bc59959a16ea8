"""Acceptance check of the official-format export against real official checkouts.

    python -m scripts.check_official_export --official-repo ~/src/stylegan2-ada-pytorch \\
        --network network-snapshot.pkl [--aligned-repo ~/src/domain-expansion] [--seeds 0-3] [--device cpu]

Exports `--network` with `scripts.convert_snapshot --format official` into a temporary folder,
then, in a separate Python process whose import path is the checkout alone (so its own
`dnnlib`, `torch_utils` and `legacy` are used):

1. the checkout's `legacy.load_network_pkl` opens the export and renders `G_ema` for each seed
   (z = RandomState(seed).randn, noise_mode='const'), as loaded and with `force_fp16=True`
   (rebuilt from the stored constructor arguments); compared with our renders (float, 1e-4);
2. the checkout's `generate.py` (stylegan2-ada-pytorch) or `gen_images.py` (stylegan3) writes
   `seedNNNN.png` for the seeds; compared with our uint8 images (at most 1 level per pixel);
3. with `--aligned-repo` (an expanded snapshot), domain-expansion's `generate_aligned.py`
   renders base and per-dimension edits (its image writer is replaced by one that records the
   tensors, since it writes JPEG through a torchvision argument newer versions removed; its RNG
   is seeded with the first seed); compared with our projection and renders (1e-4).

The official tools hard-code `torch.device('cuda')`; with `--device cpu` the child process maps
that to the CPU. Not run by the test suite (it needs the checkouts): tests/ecosystem emulates
the official loader instead. Exit status 0 when every comparison passes.
"""

import os
import subprocess
import sys
import tempfile

import click
import numpy as np
import torch

import dnnlib

IMAGE_ATOL = 1e-4   # float renders, official ops vs ours (the fixtures' parity tolerance)
UINT8_MAX_DIFF = 1  # PNG levels

# Runs inside the official checkout. argv: mode, pickle, output folder, seeds (comma list), device.
_CHILD = r'''
import sys
import numpy as np
import torch
mode, pkl, outdir, seeds, device = sys.argv[1:6]
seeds = [int(s) for s in seeds.split(',')]
if device == 'cpu':
    real_device = torch.device
    class _DeviceMeta(type):
        def __instancecheck__(cls, obj):
            return isinstance(obj, real_device)
    class _CpuOnly(metaclass=_DeviceMeta):
        def __new__(cls, *args, **kwargs):
            return real_device('cpu')
    torch.device = _CpuOnly
import dnnlib, legacy
from torch_utils import persistence
print('official code:', legacy.__file__, dnnlib.__file__, persistence.__file__)
if mode == 'generate':
    import os
    for force_fp16 in (False, True):
        with dnnlib.util.open_url(pkl) as f:
            G = legacy.load_network_pkl(f, force_fp16=force_fp16)['G_ema'].to(torch.device('cuda'))
        print('G_ema class:', type(G).__mro__[1].__module__ + '.' + type(G).__name__, 'force_fp16', force_fp16)
        images = []
        with torch.no_grad():
            for seed in seeds:
                z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(torch.device('cuda'))
                c = torch.zeros([1, G.c_dim], device=z.device)
                images.append(G(z, c, truncation_psi=1, noise_mode='const').float().cpu().numpy())
        np.save(outdir + f'/legacy_images{"_fp16" if force_fp16 else ""}.npy', np.concatenate(images))
    # stylegan2-ada-pytorch: generate.py; stylegan3: gen_images.py (same flags and file names).
    tool = 'generate' if os.path.isfile('generate.py') else 'gen_images' if os.path.isfile('gen_images.py') else None
    print('image tool:', tool)
    if tool is not None:
        __import__(tool).generate_images.main(['--network', pkl, '--seeds', ','.join(map(str, seeds)), '--trunc', '1',
                                               '--noise-mode', 'const', '--outdir', outdir], standalone_mode=False)
else:
    import generate_aligned
    recorded = {}
    def record(frames, output_path, *args, **kwargs):
        recorded[output_path.parent.name + '/' + output_path.name] = frames.detach().cpu().numpy()
    generate_aligned.io_utils.save_images = record
    torch.manual_seed(seeds[0])
    with torch.no_grad():
        generate_aligned.generate_images(pkl, outdir, len(seeds), 1.0)
    np.savez(outdir + '/aligned.npz', **recorded)
'''


def _run_child(repo: str, mode: str, pkl: str, outdir: str, seeds: list[int], device: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(repo))
    result = subprocess.run([sys.executable, '-c', _CHILD, mode, pkl, outdir, ','.join(map(str, seeds)), device],
                            cwd=repo, env=env, capture_output=True, text=True)
    print(result.stdout, end='')
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        raise click.ClickException(f'the official code in {repo} failed on the export ({mode}); see its output above')


def _our_images(G, seeds: list[int]) -> torch.Tensor:
    with torch.no_grad():
        z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s in seeds])).float()
        return torch.cat([G(z[i:i + 1], torch.zeros([1, G.c_dim]), noise_mode='const') for i in range(len(seeds))])


def _report(name: str, diff: float, limit: float) -> bool:
    ok = diff <= limit
    print(f'{"PASS" if ok else "FAIL"}  {name}: max |difference| {diff:.3g} (limit {limit:g})')
    return ok


def _check_generate(ours: dict, repo: str, pkl: str, work: str, seeds: list[int], device: str) -> list[bool]:
    from PIL import Image
    _run_child(repo, 'generate', pkl, work, seeds, device)
    mine = _our_images(ours['G_ema'], seeds)
    theirs = torch.from_numpy(np.load(os.path.join(work, 'legacy_images.npy'))).float()
    results = [_report('legacy.load_network_pkl + G_ema', float((mine - theirs).abs().max()), IMAGE_ATOL)]
    # force_fp16 rebuilds from init_kwargs; on CPU the fp16 blocks compute in float32 (clamp 256 only).
    fp16 = torch.from_numpy(np.load(os.path.join(work, 'legacy_images_fp16.npy'))).float()
    results.append(_report('legacy.load_network_pkl(force_fp16=True) + G_ema', float((mine - fp16).abs().max()),
                           IMAGE_ATOL if device == 'cpu' else 0.05))
    if not os.path.isfile(os.path.join(work, f'seed{seeds[0]:04d}.png')):
        print(f'SKIP  generate.py / gen_images.py: {repo} has neither')
        return results
    mine_uint8 = (mine.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    worst = 0
    for i, seed in enumerate(seeds):
        png = np.asarray(Image.open(os.path.join(work, f'seed{seed:04d}.png')))
        worst = max(worst, int(np.abs(png.astype(np.int16).reshape(mine_uint8[i].shape) - mine_uint8[i]).max()))
    results.append(_report('generate.py / gen_images.py seedNNNN.png', worst, UINT8_MAX_DIFF))
    return results


def _check_aligned(ours: dict, repo: str, pkl: str, work: str, seeds: list[int], device: str) -> list[bool]:
    from training.expansion.subspaces import project_to_subspaces
    from training.expansion.render import broadcast_ws
    _run_child(repo, 'aligned', pkl, work, seeds, device)
    recorded = np.load(os.path.join(work, 'aligned.npz'))
    G, dims = ours['G_ema'], ours['repurposed_dims'].cpu()
    torch.manual_seed(seeds[0])
    worst = 0.0
    with torch.no_grad():
        for i in range(len(seeds)):
            w = G.mapping(torch.randn((1, G.z_dim)), None)
            base_w, edit_ws = project_to_subspaces(w, ours['latent_basis'], dims,
                                                   step_size=ours['subspace_distance'], mean=G.mapping.w_avg)
            pairs = [('base', base_w)] + [(f'dim_{d}', e) for d, e in zip(dims, edit_ws[0])]
            for folder, ws in pairs:
                img = G.synthesis(ws if ws.ndim == 3 else broadcast_ws(ws, G.num_ws), noise_mode='const')
                theirs = torch.from_numpy(recorded[f'{folder}/{i:05d}'])
                worst = max(worst, float((img - theirs).abs().max()))
    return [_report('generate_aligned.py base and edits', worst, IMAGE_ATOL)]


def check_official_export(official_repo: str, network_pkl: str, aligned_repo: str | None, seeds: list[int],
                          device: str) -> bool:
    """Export, run the official tools on the export, compare; True when every comparison passes."""
    from scripts.convert_snapshot import convert_snapshot
    from training import snapshot_io
    for flag, repo, needed in (('--official-repo', official_repo, 'legacy.py'),
                               ('--aligned-repo', aligned_repo, 'generate_aligned.py')):
        if repo is not None and not os.path.isfile(os.path.join(repo, needed)):
            raise click.BadParameter(f'{repo} has no {needed}; give the root of a checkout', param_hint=flag)
    ours = snapshot_io.load_network_pkl(network_pkl)
    if aligned_repo is not None and 'latent_basis' not in ours:
        raise click.BadParameter(f'{network_pkl} is not an expanded snapshot (no latent_basis)', param_hint='--network')
    with tempfile.TemporaryDirectory(prefix='check_official_export_') as work:
        pkl = os.path.join(work, 'official.pkl')
        convert_snapshot(network_pkl, pkl, pkl_format='official', lite=True)
        results = _check_generate(ours, official_repo, pkl, work, seeds, device)
        if aligned_repo is not None:
            results += _check_aligned(ours, aligned_repo, pkl, work, seeds, device)
    return all(results)


@click.command()
@click.option('--official-repo', required=True, metavar='DIR', help='Checkout of NVlabs/stylegan2-ada-pytorch.')
@click.option('--network', 'network_pkl', required=True, type=click.Path(exists=True, dir_okay=False),
              help='Our snapshot to export and check.')
@click.option('--aligned-repo', default=None, metavar='DIR',
              help='Checkout of adobe-research/domain-expansion (expanded snapshots).')
@click.option('--seeds', default='0-3', show_default=True, help="Seeds, e.g. '0-3' or '1,5'.")
@click.option('--device', type=click.Choice(['cpu', 'cuda']), default='cpu', show_default=True,
              help='Where the official tools run (they hard-code cuda; cpu maps it to the CPU).')
def main(official_repo, network_pkl, aligned_repo, seeds, device):
    """Open an exported snapshot with the official loaders and tools and compare their images with ours."""
    from training.cli_helpers import parse_seeds
    if not check_official_export(official_repo, network_pkl, aligned_repo, parse_seeds(seeds), device):
        raise click.ClickException('the official tools render the export differently; see FAIL above')
    print('All official-tool comparisons passed.')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
