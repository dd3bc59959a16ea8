"""Find the dormant latent directions of a generator (paper App. C.1, Fig. 12).

    python analyze_dormancy.py --network net.pkl --num 64 --step 20 --lpips alex --out dormancy/
    python analyze_dormancy.py --from-json dormancy/dormancy.json --write-config-dims 4

Writes `OUT/dormancy.json` ({"w_dim", "step", "num_latents", "metric", "effects": [...],
"suggested_dormant": {"start", "stop"}, ...}) and `OUT/dormancy.png` (effect per direction,
sorted by singular value, the suggested range shaded). The expansion config format is unchanged:
pick each task's `"dimension"` from the suggested range; `--write-config-dims K` prints K such
dims (the last ones first, as the paper does) as a JSON list.

The basis is the snapshot's stored `latent_basis` when it has one (an expanded generator), else
`--latent_factors_path`, else the SeFA factorization of G_ema. `--lpips l2` uses the pixel MSE
instead of LPIPS (nothing to download); `--random-lpips-backbone` builds LPIPS with a random
backbone for offline smoke runs (its numbers are not the published LPIPS).
"""

import os

import click
import torch

import dnnlib
from training.cli_helpers import check_output_dir, load_network, parse_device
from training.expansion import dormancy
from training.expansion.basis import resolve_latent_basis
from training.expansion.constants import SUBSPACE_DISTANCE

METRICS = ('alex', 'vgg', 'l2')
MIN_LPIPS_RESOLUTION = 32   # LPIPS-AlexNet's pooling stack needs >= 32 px (smaller inputs fail inside lpips).

# ---------------------------------------------------------------------------------------------


def load_snapshot(network_pkl: str, device: torch.device) -> dict:
    """The snapshot dict with `G_ema` in eval mode on `device`; UserError naming --network."""
    data = load_network(network_pkl)
    data['G_ema'] = data['G_ema'].eval().requires_grad_(False).to(device)
    return data


def make_perceptual(metric: str, random_backbone: bool, device: torch.device):
    """`(x, y) -> [N]` for --lpips: pixel MSE for 'l2', else LPIPS with that backbone."""
    if metric == 'l2':
        return dormancy.pixel_l2
    from training.expansion.tasks.shared_models import PretrainedWeightsError, SharedModels
    try:
        return SharedModels(device, lpips_random_backbone=random_backbone).perceptual(metric)
    except PretrainedWeightsError as e:
        raise dnnlib.util.UserError(f'--lpips {metric}: {e}; or use --lpips l2 (pixel MSE) or '
                                    f'--random-lpips-backbone') from None


def analyze(network_pkl: str, outdir: str, num_latents: int = 64, step: float = SUBSPACE_DISTANCE, metric: str = 'alex',
            random_backbone: bool = False, latent_factors_path: str | None = None, class_idx: int | None = None,
            threshold_fraction: float = dormancy.DEFAULT_THRESHOLD_FRACTION, batch_size: int = 16,
            seed: int = 0, config_count: int | None = None, device: torch.device = torch.device('cpu')) -> dict:
    """Measure every direction's effect and write dormancy.json / dormancy.png; returns the record.

    `config_count` (--write-config-dims) is only checked here (against w_dim), before any work.
    """
    if num_latents < 1:
        raise dnnlib.util.UserError(f'--num must be >= 1, got {num_latents}')
    if batch_size < 1:
        raise dnnlib.util.UserError(f'--batch must be >= 1, got {batch_size}')
    if not 0 < threshold_fraction < 1:
        raise dnnlib.util.UserError(f'--threshold must lie in (0, 1), got {threshold_fraction}')
    if metric not in METRICS:
        raise dnnlib.util.UserError(f"--lpips {metric}: choose one of {', '.join(METRICS)}")
    data = load_snapshot(network_pkl, device)
    G = data['G_ema']
    if G.c_dim > 0 and class_idx is not None and not 0 <= class_idx < G.c_dim:
        raise dnnlib.util.UserError(f'--class={class_idx} is out of range for {G.c_dim} classes')
    if config_count is not None and config_count > G.w_dim:
        raise dnnlib.util.UserError(f'--write-config-dims {config_count}: the generator has only w_dim {G.w_dim} directions')
    if metric == 'alex' and G.img_resolution < MIN_LPIPS_RESOLUTION:
        raise dnnlib.util.UserError(f'--lpips {metric}: LPIPS-AlexNet needs images of at least {MIN_LPIPS_RESOLUTION} '
                                    f'px, the generator makes {G.img_resolution} px; use --lpips vgg or l2')
    try:
        basis, basis_source = resolve_latent_basis(G, G.w_dim, data.get('latent_basis'), latent_factors_path)
    except ValueError as e:
        raise dnnlib.util.UserError(str(e)) from None
    perceptual = make_perceptual(metric, random_backbone, device)
    print(f'Basis: {basis_source}')

    def progress(done, total):
        print(f'  {done}/{total} latents x {G.w_dim} directions')
    effects = dormancy.direction_effects(G, basis, num_latents=num_latents, step=step, perceptual=perceptual,
                                         batch_size=batch_size, seed=seed, class_idx=class_idx, progress=progress)
    dormant = dormancy.suggest_dormant_range(effects, threshold_fraction)
    name = 'l2 (pixel MSE)' if metric == 'l2' else f'lpips-{metric}' + (' (random backbone)' if random_backbone else '')
    record = dormancy.dormancy_record(effects, step, num_latents, name, dormant, threshold_fraction, basis_source)
    os.makedirs(outdir, exist_ok=True)
    dormancy.save_dormancy_json(record, os.path.join(outdir, 'dormancy.json'))
    dormancy.plot_dormancy(effects, dormant, os.path.join(outdir, 'dormancy.png'), metric=name, step=step,
                           threshold_fraction=threshold_fraction)
    print(f'Suggested dormant directions: [{dormant[0]}, {dormant[1]}) '
          f'(effect < {threshold_fraction:g} x max, from the last index backwards)')
    print(f'Wrote {os.path.join(outdir, "dormancy.json")} and dormancy.png')
    return record


def config_dims(record: dict, count: int, source: str) -> list[int]:
    """`count` dims from a record's suggested range; UserError naming --write-config-dims."""
    rng = record['suggested_dormant']
    try:
        return dormancy.dims_from_range(rng['start'], rng['stop'], count)
    except ValueError as e:
        raise dnnlib.util.UserError(f'--write-config-dims {count}: {e} (range from {source})') from None

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', help='Network pickle: local path or URL.', metavar='PKL')
@click.option('--from-json', 'from_json', help='Reuse a dormancy.json instead of measuring (with --write-config-dims).',
              metavar='PATH')
@click.option('--out', 'outdir', help='Where to write dormancy.json and dormancy.png.', metavar='DIR')
@click.option('--num', 'num_latents', type=int, default=64, show_default=True, help='Latents averaged per direction.')
@click.option('--step', type=float, default=SUBSPACE_DISTANCE, show_default=True, help='Step length s along each direction.')
@click.option('--lpips', 'metric', type=click.Choice(METRICS), default='alex', show_default=True,
              help="Distance: LPIPS backbone, or 'l2' = pixel MSE (no download).")
@click.option('--random-lpips-backbone', 'random_backbone', is_flag=True,
              help='LPIPS with a random backbone (offline; not the real LPIPS).')
@click.option('--latent_factors_path', help='Basis file (torch.save of [w_dim, w_dim]); a snapshot basis wins.',
              metavar='PATH')
@click.option('--class', 'class_idx', type=int, default=None, help='Class (conditional nets); default: random per latent.')
@click.option('--threshold', 'threshold_fraction', type=float, default=dormancy.DEFAULT_THRESHOLD_FRACTION,
              show_default=True, help='Dormant = effect below this fraction of the largest effect.')
@click.option('--write-config-dims', 'config_count', type=int, default=None, metavar='K',
              help='Print K dims from the suggested range (most dormant first) for the expansion config.')
@click.option('--batch', 'batch_size', type=int, default=16, show_default=True, help='Latents rendered at once.')
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the latents (np.random.RandomState).')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
def main(network_pkl, from_json, outdir, num_latents, step, metric, random_backbone, latent_factors_path, class_idx,
         threshold_fraction, config_count, batch_size, seed, device):
    """Measure how much each latent direction changes the image and suggest the dormant ones."""
    if outdir is not None:
        check_output_dir(outdir, '--out')
    if config_count is not None and config_count < 1:
        raise dnnlib.util.UserError(f'--write-config-dims must be >= 1, got {config_count}')
    if from_json is not None:
        if network_pkl is not None or outdir is not None:
            raise dnnlib.util.UserError('--from-json reads an existing analysis: drop --network and --out')
        if config_count is None:
            raise dnnlib.util.UserError('--from-json needs --write-config-dims K (what to print)')
        try:
            record = dormancy.load_dormancy_json(from_json)
        except ValueError as e:
            raise dnnlib.util.UserError(f'--from-json {e}') from None
        print(config_dims(record, config_count, from_json))
        return
    if network_pkl is None or outdir is None:
        raise dnnlib.util.UserError('--network PKL and --out DIR are required (or --from-json PATH --write-config-dims K)')
    record = analyze(network_pkl, outdir, num_latents=num_latents, step=step, metric=metric,
                     random_backbone=random_backbone, latent_factors_path=latent_factors_path, class_idx=class_idx,
                     threshold_fraction=threshold_fraction, batch_size=batch_size, seed=seed,
                     config_count=config_count, device=parse_device(device))
    if config_count is not None:
        print(config_dims(record, config_count, os.path.join(outdir, 'dormancy.json')))


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
