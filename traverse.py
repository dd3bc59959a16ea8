"""Traverse a repurposed direction, or compose several domains, of an expanded generator.

Traversal (paper Sec. 4.2): walk from the base projection (step 0) along one domain's direction,
to the subspace distance s and beyond:

    python traverse.py --network expanded.pkl --seeds 0-3 --domain sketch --steps 0:30:7 --outdir out [--video out/walk.gif]

writes `out/traverse_dimDDD_<name>.png` (rows: seeds, columns: steps) and optionally an
animation (one frame per step, the seeds side by side; GIF needs only Pillow, MP4 needs the
imageio-ffmpeg package). A parameterised domain (trained as theta, named by its task name) is
traversed by scaling theta from the identity: steps are strengths (0 = source, 1 = the domain,
default 0:1:7) and the grid is `out/traverse_theta_<name>.png`.

Composition (paper Sec. 4.4): base + the weighted sum of several directions:

    python traverse.py --network expanded.pkl --seeds 0-3 --compose sketch=20,statue=20 --outdir out

writes `out/compose/seed0000.png` (the composition), `out/compose_grid.png` (rows: seeds;
columns: base, each domain alone at its weight, the composition) and, for every pair of the
listed domains A, B, `out/pair_<A>__<B>/seed0000.png` (rows: A's weight from 0 to its value,
columns: B's weight from 0 to its value, `--pair-steps` each); `out/compose.json` records the
weights of every row and column. All renders use noise_mode='const'.
"""

import importlib.util
import itertools
import os

import click
import numpy as np
import torch

import dnnlib
from torch_utils import image_utils
from training.cli_helpers import check_output_dir, make_label, parse_device, parse_seeds, seed_to_z
from training.expansion.expanded_generator import ExpandedGenerator, load_expanded_generator

VIDEO_EXTENSIONS = ('.gif', '.mp4')

# ---------------------------------------------------------------------------------------------
# Option parsing


def parse_steps(text: str | None, subspace_distance: float, end_name: str = 's') -> np.ndarray:
    """'start:stop:count' -> `count` evenly spaced distances; None = 0 to s in 7 steps.

    `end_name`: what the domain's end point is called in messages ('s', or 'strength' for theta).
    """
    if text is None:
        return np.linspace(0, subspace_distance, 7)
    parts = str(text).split(':')
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise dnnlib.util.UserError(f"--steps: cannot parse '{text}'; use start:stop:count, e.g. "
                                    f"0:{subspace_distance:g}:7 (stop may exceed {end_name} = {subspace_distance:g})") from None
    if count < 1:
        raise dnnlib.util.UserError(f"--steps: count must be at least 1 in '{text}'")
    return np.linspace(start, stop, count)


def parse_compose(text: str, eg: ExpandedGenerator) -> dict[int, float]:
    """'NAME=W,NAME=W' (NAME or dim; a bare NAME means weight s) -> {task index: weight}, in order."""
    weights: dict[int, float] = {}
    for part in str(text).split(','):
        name, sep, value = part.rpartition('=') if '=' in part else (part, '', '')
        k = eg.domain_index(name, '--compose')
        try:
            weights_k = float(value) if sep else eg.subspace_distance
        except ValueError:
            raise dnnlib.util.UserError(f"--compose: weight '{value}' of '{name.strip()}' is not a number; "
                                        f"use NAME=W, e.g. '{name.strip()}={eg.subspace_distance:g}'") from None
        if k in weights:
            raise dnnlib.util.UserError(f"--compose: domain '{name.strip()}' is listed twice")
        weights[k] = weights_k
    return weights


def check_video_path(video: str | None) -> None:
    """Fail before any work when the animation cannot be written."""
    if video is None:
        return
    ext = os.path.splitext(video)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise dnnlib.util.UserError(f"--video: '{video}' must end in {' or '.join(VIDEO_EXTENSIONS)}")
    if ext == '.mp4' and importlib.util.find_spec('imageio_ffmpeg') is None:
        raise dnnlib.util.UserError(f"--video: writing MP4 needs the imageio-ffmpeg package (pip install "
                                    f"imageio-ffmpeg); or write a GIF instead, e.g. --video "
                                    f"{os.path.splitext(video)[0]}.gif")


def seeds_to_ws(eg: ExpandedGenerator, seeds: list[int], c: torch.Tensor, truncation_psi: float) -> torch.Tensor:
    """W+ [len(seeds), num_ws, w_dim], each seed mapped on its own (as generate_aligned does)."""
    return torch.cat([eg.map(torch.from_numpy(seed_to_z(seed, eg.G.z_dim)), c, truncation_psi) for seed in seeds])


def _load(network_pkl: str, seeds: list[int], class_idx: int | None, device: torch.device,
          allow_task_import: bool = False):
    if not seeds:
        raise dnnlib.util.UserError('--seeds: no seeds given')
    eg = load_expanded_generator(network_pkl, device, allow_task_import=allow_task_import)
    if eg.names_note:
        print(f'note: {eg.names_note}')
    return eg, make_label(eg.G, class_idx, device)

# ---------------------------------------------------------------------------------------------
# Traversal


def write_video(frames: np.ndarray, path: str, fps: float) -> None:
    """uint8 frames [T, H, W, C] -> GIF (Pillow) or MP4 (imageio-ffmpeg)."""
    import imageio
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    if path.lower().endswith('.gif'):
        imageio.v3.imwrite(path, frames, extension='.gif', duration=1000.0 / fps, loop=0)  # Pillow; ms per frame
    else:
        imageio.v2.mimwrite(path, frames, format='FFMPEG', fps=fps)  # imageio-ffmpeg (checked up front)


def traverse(network_pkl: str, seeds: list[int], domain, outdir: str, steps: str | None = None,
             truncation_psi: float = 1.0, class_idx: int | None = None, video: str | None = None,
             fps: float = 8.0, device: torch.device = torch.device('cpu'), allow_task_import: bool = False) -> dict:
    """Render each seed along one domain's direction (or theta's strength) and write the grid (and animation).

    Args:
        network_pkl:    expanded snapshot (path or URL).
        seeds:          z = np.random.RandomState(seed).randn(1, z_dim) per seed.
        domain:         task name or repurposed dim; or the task name of a parameterised domain.
        outdir:         output folder (created after every option is validated).
        steps:          'start:stop:count' distances; None = 0:s:7 (theta strengths: 0:1:7).
        truncation_psi: truncation of the mapping (1 = none).
        class_idx:      class of a conditional network.
        video:          path of an animation (.gif or .mp4), or None.
        fps:            animation frames per second.
        device:         torch device.
        allow_task_import: import dotted task types named in the snapshot (--allow-task-import).

    Returns:
        {'grid': path, 'video': path or None, 'steps': [S], 'images': uint8 [len(seeds), S, H, W, C]}.
    """
    check_video_path(video)
    if fps <= 0:
        raise dnnlib.util.UserError(f'--fps: must be positive, got {fps}')
    eg, c = _load(network_pkl, seeds, class_idx, device, allow_task_import)
    ks, js = eg.select_domains(domain, '--domain')
    if len(ks) + len(js) != 1:
        raise dnnlib.util.UserError(f"--domain: give one domain, got '{domain}'")
    ws = seeds_to_ws(eg, seeds, c, truncation_psi)
    if js:                                                                  # theta from identity to the domain
        distances = parse_steps(steps, 1.0, 'strength')
        images = torch.stack([eg.render_theta(ws, js[0], float(a)) for a in distances])  # [S, N, C, H, W]
        folder = eg.theta_folder_name(js[0])
    else:
        distances = parse_steps(steps, eg.subspace_distance)
        images = eg.render_traverse(ws, ks[0], distances)                   # [S, N, C, H, W]
        folder = eg.folder_name(ks[0])
    pixels = np.stack([image_utils.to_uint8(step_images) for step_images in images], axis=1)  # [N, S, H, W, C]
    os.makedirs(outdir, exist_ok=True)
    grid_path = os.path.join(outdir, f'traverse_{folder}.png')
    image_utils.save_png_atomic(image_utils.make_grid(list(pixels), row_labels=[f'seed {s}' for s in seeds]), grid_path)
    if video is not None:
        frames = np.stack([np.asarray(image_utils.make_grid([pixels[:, t]], pad=0)) for t in range(len(distances))])
        write_video(frames, video, fps)
    return dict(grid=grid_path, video=video, steps=distances.tolist(), images=pixels)

# ---------------------------------------------------------------------------------------------
# Composition


def compose(network_pkl: str, seeds: list[int], weights: str, outdir: str, truncation_psi: float = 1.0,
            class_idx: int | None = None, pair_steps: int = 5, device: torch.device = torch.device('cpu'),
            allow_task_import: bool = False) -> dict:
    """Render base + a weighted sum of directions per seed, with comparison and pair grids.

    Args:
        weights:    'NAME=W,NAME=W' (task names or dims; a bare NAME means weight s).
        pair_steps: rows and columns of each pair grid (weights from 0 to the given values).
        (other arguments as in `traverse`)

    Returns:
        {'compose': [paths], 'grid': path, 'pairs': {(a, b): [paths]}, 'weights': {k: w},
         'images': uint8 [len(seeds), 2 + len(weights), H, W, C] (base, singles, composition)}.
    """
    if pair_steps < 2:
        raise dnnlib.util.UserError(f'--pair-steps: must be at least 2, got {pair_steps}')
    eg, c = _load(network_pkl, seeds, class_idx, device, allow_task_import)
    mix = parse_compose(weights, eg)
    ws = seeds_to_ws(eg, seeds, c, truncation_psi)
    columns = [eg.render_compose(ws, {})]                                   # base (all weights 0)
    columns += [eg.render_compose(ws, {k: w}) for k, w in mix.items()]      # each domain alone
    columns.append(eg.render_compose(ws, mix))                              # Sec. 4.4 composition
    pixels = np.stack([image_utils.to_uint8(col) for col in columns], axis=1)  # [N, 2 + n, H, W, C]
    os.makedirs(outdir, exist_ok=True)
    result = dict(compose=[], pairs={}, weights=mix, images=pixels)
    for seed, seed_pixels in zip(seeds, pixels):
        result['compose'].append(os.path.join(outdir, 'compose', f'seed{seed:04d}.png'))
        image_utils.save_png_atomic(image_utils.to_pil(seed_pixels[-1]), result['compose'][-1])
    result['grid'] = os.path.join(outdir, 'compose_grid.png')
    image_utils.save_png_atomic(image_utils.make_grid(list(pixels), row_labels=[f'seed {s}' for s in seeds]), result['grid'])
    record = dict(network=network_pkl, seeds=seeds, truncation_psi=truncation_psi,
                  weights={eg.names[k]: w for k, w in mix.items()},
                  compose_grid_columns=['base'] + [f'{eg.names[k]}={w:g}' for k, w in mix.items()] + ['composition'],
                  pair_grids=[])
    for a, b in itertools.combinations(mix, 2):
        paths, axes = _pair_grids(eg, ws, seeds, a, mix[a], b, mix[b], pair_steps, outdir)
        result['pairs'][(a, b)] = paths
        record['pair_grids'].append(axes)
    dnnlib.util.write_json_atomic(os.path.join(outdir, 'compose.json'), record)
    return result


def _pair_grids(eg: ExpandedGenerator, ws: torch.Tensor, seeds: list[int], a: int, weight_a: float, b: int,
                weight_b: float, count: int, outdir: str) -> tuple[list[str], dict]:
    """One grid per seed: rows A's weight 0..weight_a, columns B's weight 0..weight_b."""
    rows_w, cols_w = np.linspace(0, weight_a, count), np.linspace(0, weight_b, count)
    cells = [[image_utils.to_uint8(eg.render_compose(ws, {a: wa, b: wb})) for wb in cols_w] for wa in rows_w]
    folder = os.path.join(outdir, f'pair_{eg.folder_name(a)}__{eg.folder_name(b)}')
    labels = [f'{eg.names[a]}={wa:.3g}' for wa in rows_w]
    paths = []
    for n, seed in enumerate(seeds):
        rows = [np.stack([cell[n] for cell in row]) for row in cells]      # [count, H, W, C] per row
        paths.append(os.path.join(folder, f'seed{seed:04d}.png'))
        image_utils.save_png_atomic(image_utils.make_grid(rows, row_labels=labels), paths[-1])
    axes = dict(folder=os.path.basename(folder), rows={eg.names[a]: rows_w.tolist()}, columns={eg.names[b]: cols_w.tolist()})
    return paths, axes

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, help='Expanded network pickle: local path or URL.')
@click.option('--seeds', required=True, help="Seeds, e.g. '0-7' or '1,5,9-12'.")
@click.option('--domain', default=None, metavar='NAME_OR_DIM', help='Traverse this domain\'s direction (or a theta domain\'s strength).')
@click.option('--steps', default=None, metavar='START:STOP:COUNT',
              help='Traversal distances  [default: 0:s:7; theta domains: strengths 0:1:7]')
@click.option('--video', default=None, metavar='FILE', help='Also write the traversal as .gif or .mp4.')
@click.option('--fps', type=float, default=8.0, show_default=True, help='Animation frames per second.')
@click.option('--compose', 'compose_weights', default=None, metavar='NAME=W,...',
              help='Compose domains with these weights (instead of --domain).')
@click.option('--pair-steps', type=int, default=5, show_default=True, help='Rows/columns of each pair grid.')
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True, help='Truncation psi (1 = none).')
@click.option('--class', 'class_idx', type=int, default=None, help='Class index (conditional networks).')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the grids.')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
@click.option('--allow-task-import', is_flag=True, help='Import task classes named by dotted paths in the '
              "snapshot's expansion_cfg (only for snapshots you trust; default: registered types only).")
def main(network_pkl, seeds, domain, steps, video, fps, compose_weights, pair_steps, truncation_psi, class_idx,
         outdir, device, allow_task_import):
    """Traversal grids/animations along a repurposed direction, or composition grids."""
    check_output_dir(outdir, '--outdir')
    if (domain is None) == (compose_weights is None):
        raise dnnlib.util.UserError('give exactly one of --domain (traversal) or --compose (composition)')
    if compose_weights is not None and (steps is not None or video is not None):
        raise dnnlib.util.UserError('--steps and --video apply to traversals (--domain), not to --compose')
    seed_list = parse_seeds(seeds)
    if domain is not None:
        result = traverse(network_pkl, seed_list, domain, outdir, steps=steps, truncation_psi=truncation_psi,
                          class_idx=class_idx, video=video, fps=fps, device=parse_device(device),
                          allow_task_import=allow_task_import)
        print(f'Wrote {result["grid"]}' + (f' and {result["video"]}' if result['video'] else ''))
    else:
        result = compose(network_pkl, seed_list, compose_weights, outdir, truncation_psi=truncation_psi,
                         class_idx=class_idx, pair_steps=pair_steps, device=parse_device(device),
                         allow_task_import=allow_task_import)
        print(f'Wrote {result["grid"]}, {len(result["compose"])} compositions and {len(result["pairs"])} pair grid set(s)')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
