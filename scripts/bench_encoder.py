"""Evidence for the one-pass domain encoder (training/encoder/) on the 32 px demo generator, printed
as markdown tables (README, "One-pass domain adaptation"). Nothing is downloaded.

    python -m scripts.bench_encoder --part fit-table                 # R^2 per parameterisation x transform (150-step fits)
    python -m scripts.bench_encoder --part held-out --encoder PT      # e_id / e_fit / e_enc per held-out domain
    python -m scripts.bench_encoder --part held-out --encoder PT --grid docs/encoder_domains.png

Held-out table, per domain: e_id (no adaptation), e_fit (a 300-step Adam fit of the same
parameterisation), e_enc (one encoder pass from one reference pair), the ratio
(e_id - e_enc) / (e_id - e_fit), R^2 of the encoded and fitted domains, the ratio and R^2 with
K = 8 reference pairs, and the time of one encoder pass against the fit. Then the negative-control
matrix: the ratio of each held-out domain (row) when the encoder is given the reference of every
other held-out domain (column) instead of its own, and the same matrix with the column domain's
fitted theta (a perfect encoder's answer: the part of a pair's ratio that the domains share).
Errors: mean squared error in [-1, 1] over 64 evaluation latents.
"""

import argparse
import time

import torch

from torch_utils import image_utils
from training import cli_helpers, image_transforms
from training.encoder import domains, fit
from training.encoder.encoder import load_encoder_snapshot
from training.encoder.parameterizations import PARAMETERIZATIONS, get_parameterization

NETWORK = 'demo/source_generator.pkl'
TABLE_TRANSFORMS = {
    'grayscale': image_transforms.grayscale,
    'hue 45': image_transforms.get_transform('hue_shift', 45),
    'hue 90': image_transforms.get_transform('hue_shift', 90),
    'negative': image_transforms.negative,
    'hflip': image_transforms.hflip,
}

# ---------------------------------------------------------------------------------------------


def latents(G, seed: int, num: int = 64) -> torch.Tensor:
    return fit.source_latents(G.mapping, num, seed, G.synthesis.num_ws)


def fit_table(G, steps: int) -> None:
    """R^2 (64 evaluation latents) of a per-domain fit, every parameterisation x transform."""
    ws_train, ws_eval = latents(G, 1), latents(G, 2)
    print(f'| parameterisation | P | ' + ' | '.join(TABLE_TRANSFORMS) + ' |')
    print('|---|---|' + '---|' * len(TABLE_TRANSFORMS))
    for name in PARAMETERIZATIONS:
        param = get_parameterization(name, G.synthesis)
        src_train, src_eval = fit.render_source(param, ws_train), fit.render_source(param, ws_eval)
        cells = []
        for T in TABLE_TRANSFORMS.values():
            result = fit.fit_domain(param, ws_train, src_train, T, steps=steps, lr=0.05)
            cells.append(f'{fit.evaluate_theta(param, result.theta, ws_eval, src_eval, T)["r2"]:.2f}')
        print(f'| `{name}` | {param.num_params} | ' + ' | '.join(cells) + ' |', flush=True)


def _upscale(images: torch.Tensor, factor: int = 3) -> torch.Tensor:
    """Nearest-neighbour enlargement so 32 px renders are visible in the README grid."""
    return torch.nn.functional.interpolate(images, scale_factor=factor, mode='nearest')


def _encode(encoder, domain, src_ref: torch.Tensor) -> tuple:
    """(theta, seconds) of one encoder pass over the references (domain(src_ref), src_ref)."""
    start = time.perf_counter()
    with torch.no_grad():
        theta = encoder(domain(src_ref)[None], src_ref[None])[0]
    return theta, time.perf_counter() - start


def _control_matrix(param, held: list, thetas: dict, gains: dict, e_ids: dict, ws_eval, src_eval,
                    title: str = 'the encoder is given the column domain\'s reference') -> None:
    """Ratio of every held-out domain (row) under the theta of every other held-out domain (column)."""
    print(f'\nNegative control: ratio of the row domain when {title}\n')
    print('| domain \\ reference | ' + ' | '.join(d.name for d in held) + ' |')
    print('|---|' + '---|' * len(held))
    for domain in held:
        cells = []
        for other in held:
            if other is domain:
                cells.append('—')
                continue
            error = fit.evaluate_theta(param, thetas[other.name], ws_eval, src_eval, domain)['error']
            cells.append(f'{(e_ids[domain.name] - error) / gains[domain.name]:.2f}')
        print(f'| {domain.name} | ' + ' | '.join(cells) + ' |', flush=True)


def held_out(G, encoder_pt: str, fit_steps: int, grid_path: str = None) -> None:
    encoder, info = load_encoder_snapshot(encoder_pt)
    param = get_parameterization(info['parameterization'], G.synthesis)
    ws_train, ws_eval, ws_ref = latents(G, 1), latents(G, 2), latents(G, 3, num=8)
    src_train, src_eval, src_ref = (fit.render_source(param, ws) for ws in (ws_train, ws_eval, ws_ref))
    held = domains.held_out_domains()
    print(f'Encoder {encoder_pt} ({info["parameterization"]}, {param.num_params} parameters), '
          f'one reference pair, {fit_steps}-step fit, 64 evaluation latents\n')
    print('| domain | e_id | e_fit | e_enc | ratio | R² enc | R² fit | ratio, R² with K=8 | encoder pass | fit |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    grid_rows, labels, thetas, fitted_thetas, gains, e_ids = [], [], {}, {}, {}, {}
    for domain in held:
        e_id = fit.evaluate_theta(param, param.identity(), ws_eval, src_eval, domain)['error']
        result = fit.fit_domain(param, ws_train, src_train, domain, steps=fit_steps, lr=0.05)
        fitted = fit.evaluate_theta(param, result.theta, ws_eval, src_eval, domain)
        theta, encode_seconds = _encode(encoder, domain, src_ref[:1])
        encoded = fit.evaluate_theta(param, theta, ws_eval, src_eval, domain)
        encoded_k8 = fit.evaluate_theta(param, _encode(encoder, domain, src_ref)[0], ws_eval, src_eval, domain)
        gain = e_id - fitted['error']
        thetas[domain.name], gains[domain.name], e_ids[domain.name] = theta, gain, e_id
        fitted_thetas[domain.name] = result.theta
        print(f'| {domain.name} | {e_id:.4f} | {fitted["error"]:.4f} | {encoded["error"]:.4f} | '
              f'{(e_id - encoded["error"]) / gain:.2f} | {encoded["r2"]:.3f} | {fitted["r2"]:.3f} | '
              f'{(e_id - encoded_k8["error"]) / gain:.2f}, {encoded_k8["r2"]:.3f} | '
              f'{encode_seconds * 1e3:.1f} ms | {result.seconds:.1f} s ({result.seconds / encode_seconds:.0f}x) |', flush=True)
        if grid_path is not None:
            with torch.no_grad():
                renders = param.render(ws_eval[:6], theta)
            grid_rows.append(image_utils.to_uint8(_upscale(torch.cat([src_ref[:1], domain(src_ref[:1]), renders]))))
            labels.append(domain.name)
    _control_matrix(param, held, thetas, gains, e_ids, ws_eval, src_eval)
    # The same pairs with the column domain's own fitted theta, i.e. what a perfect encoder would
    # answer: where this is above 0.2 the overlap is the two domains', not the encoder's.
    _control_matrix(param, held, fitted_thetas, gains, e_ids, ws_eval, src_eval,
                    title='the column domain\'s fitted theta is used (a perfect encoder\'s answer)')
    if grid_path is not None:
        grid_rows.insert(0, image_utils.to_uint8(_upscale(torch.cat([src_ref[:1], src_ref[:1], src_eval[:6]]))))
        labels.insert(0, 'source')
        image_utils.save_png_atomic(image_utils.make_grid(grid_rows, row_labels=labels), grid_path)
        print(f'\nGrid: {grid_path} (per row: reference source image, reference, six encoded renders; top row: source)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--part', choices=['fit-table', 'held-out'], required=True)
    parser.add_argument('--network', default=NETWORK)
    parser.add_argument('--encoder', help='encoder-snapshot.pt of train_encoder.py (held-out part)')
    parser.add_argument('--fit-steps', type=int, default=None, help='default: 150 (fit-table), 300 (held-out)')
    parser.add_argument('--grid', default=None, help='write the reference -> encoded renders grid here')
    args = parser.parse_args()
    torch.set_num_threads(1)
    G = cli_helpers.load_generator(args.network, torch.device('cpu'))
    if args.part == 'fit-table':
        fit_table(G, args.fit_steps or 150)
    else:
        if args.encoder is None:
            parser.error('--part held-out needs --encoder')
        held_out(G, args.encoder, args.fit_steps or 300, args.grid)


if __name__ == '__main__':
    main()
