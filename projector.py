"""Project real images into a generator's latent space (W or W+), e.g. to make MyStyle anchors.

    python projector.py --network net.pkl --target photos/ --outdir anchors/ [--num-steps 1000]
    python projector.py --network expanded.pkl --target face.png --outdir out/ --expanded

For every target image `STEM.png` (a file, or every image in a folder) this writes:

- `OUTDIR/STEM.pt`: the latent, `torch.save` of a float32 tensor: `[w_dim]` (W) or
  `[num_ws, w_dim]` (`--w-plus`). This is the anchors format MyStyle reads (`anchors_dir`,
  paired with the photo by stem); MyStyle needs W latents (a W+ latent with differing rows is
  refused there).
- `OUTDIR/STEM_target.png` (the target as optimised, after `--resize`) and `OUTDIR/STEM_proj.png`
  (the latent rendered with the generator's constant noise).
- the official projector's outputs: `OUTDIR/projected_w.npz` (key `w`, float32
  `[1, num_ws, w_dim]`, what `generate.py --projected-w` reads), `OUTDIR/proj.png`,
  `OUTDIR/target.png` and, with `--save-video`, `OUTDIR/proj.mp4` (target beside the
  projection, one frame per step, 10 fps). With several targets these carry the stem:
  `STEM_projected_w.npz`, `STEM_proj.mp4` (`STEM_proj.png` and `STEM_target.png` exist already).
- with `--expanded` (a domain-expansion snapshot): the optimisation is constrained to the base
  subspace (every latent it renders is projected with the stored basis and mean `w_avg`, paper
  Eq. 1), so `STEM.pt` is a base-subspace latent; the photo is then shown in every domain:
  `OUTDIR/STEM/base.png`, `OUTDIR/STEM/dimDDD_<task>.png` and a labelled row `OUTDIR/STEM_domains.png`.

The optimisation follows stylegan2-ada's projector (see training/projection.py). `--metric lpips`
(default) uses LPIPS-VGG, whose backbone torchvision downloads once; offline, use `--metric l2`
(pixel MSE) or `--random-lpips-backbone` (a smoke test only: not the real LPIPS).
"""

import os

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import image_utils
from training import projection
from training.cli_helpers import check_output_dir, load_generator, make_label, parse_device, save_image
from training.expansion.tasks.image_files import IMAGE_EXTENSIONS, files_by_stem
from traverse import check_video_path

# ---------------------------------------------------------------------------------------------


def list_targets(target: str) -> dict[str, str]:
    """`{stem: path}` of `--target` (one image file, or the images of a folder)."""
    if os.path.isdir(target):
        files, duplicates = files_by_stem(target, IMAGE_EXTENSIONS)
        if duplicates:
            stems = ', '.join(sorted(set(duplicates)))
            raise dnnlib.util.UserError(f'--target {target}: several images share the stem(s) {stems}; '
                                        f'keep one per stem (outputs are named by stem)')
        if not files:
            raise dnnlib.util.UserError(f'--target {target}: no images ({", ".join(IMAGE_EXTENSIONS)}) in this folder')
        return files
    if os.path.isfile(target):
        stem, ext = os.path.splitext(os.path.basename(target))
        if ext.lower() not in IMAGE_EXTENSIONS:
            raise dnnlib.util.UserError(f'--target {target}: not an image file ({", ".join(IMAGE_EXTENSIONS)})')
        return {stem: target}
    raise dnnlib.util.UserError(f'--target {target}: no such file or folder')


def load_target(path: str, resolution: int, channels: int, resize: bool) -> np.ndarray:
    """uint8 `[C, H, W]` target; with `resize`, center-cropped to a square and resized (Lanczos)."""
    try:
        with PIL.Image.open(path) as img:
            img = img.convert('RGB' if channels == 3 else 'L')
    except (OSError, PIL.UnidentifiedImageError) as e:
        raise dnnlib.util.UserError(f'--target {path}: cannot be read as an image ({e})') from None
    if img.size != (resolution, resolution):
        if not resize:
            raise dnnlib.util.UserError(f'--target {path}: the image is {img.size[0]}x{img.size[1]} but the generator makes '
                                        f'{resolution}x{resolution}; resize it, or pass --resize (center crop + Lanczos)')
        w, h = img.size
        side = min(w, h)
        img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        img = img.resize((resolution, resolution), PIL.Image.LANCZOS)
    array = np.asarray(img, dtype=np.uint8)
    array = array[:, :, np.newaxis] if array.ndim == 2 else array
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def load_networks(network_pkl: str, expanded: bool, device: torch.device, allow_task_import: bool = False):
    """`(G, expanded_generator_or_None)`; UserError naming --network. `allow_task_import`: the
    user's --allow-task-import (import dotted task types named in the snapshot)."""
    if expanded:
        from training.expansion.expanded_generator import load_expanded_generator
        eg = load_expanded_generator(network_pkl, device, flag='--network', allow_task_import=allow_task_import)
        return eg.G, eg
    return load_generator(network_pkl, device), None


def make_distance(metric: str, random_backbone: bool, device: torch.device):
    """The projection distance; UserError naming --metric when LPIPS weights are unavailable."""
    if metric not in projection.METRICS:
        raise dnnlib.util.UserError(f"--metric {metric}: choose one of {', '.join(projection.METRICS)}")
    from training.expansion.tasks.shared_models import PretrainedWeightsError, SharedModels
    try:
        return projection.make_distance(metric, SharedModels(device, lpips_random_backbone=random_backbone))
    except PretrainedWeightsError as e:
        raise dnnlib.util.UserError(f'--metric lpips: {e}; or use --metric l2 (pixel MSE, no download)') from None


def _save_domains(eg, latent: torch.Tensor, outdir: str, stem: str) -> list[str]:
    """Render a base-subspace latent on the base subspace and every domain; returns written paths."""
    ws = latent.reshape(1, *latent.shape).to(eg.device)                    # [1, w_dim] or [1, num_ws, w_dim]
    base_img, edit_imgs = eg.render_aligned(ws)
    folder = os.path.join(outdir, stem)
    paths = [os.path.join(folder, 'base.png')] + [os.path.join(folder, f'{eg.folder_name(k)}.png')
                                                   for k in range(eg.num_domains)]
    for image, path in zip([base_img] + edit_imgs, paths):
        save_image(image, path)
    row = image_utils.to_uint8(torch.cat([base_img] + edit_imgs))
    grid = image_utils.make_grid([row[i : i + 1] for i in range(row.shape[0])],
                                 row_labels=['base'] + [f'{d}: {n}' for d, n in zip(eg.dims, eg.names)])
    paths.append(os.path.join(outdir, f'{stem}_domains.png'))
    image_utils.save_png_atomic(grid, paths[-1])
    return paths


def project_images(network_pkl: str, target: str, outdir: str, num_steps: int = projection.NUM_STEPS, seed: int = 303,
                   w_plus: bool = False, metric: str = 'lpips', expanded: bool = False, resize: bool = False,
                   class_idx: int | None = None, random_backbone: bool = False,
                   device: torch.device = torch.device('cpu'), allow_task_import: bool = False,
                   save_video: bool = False) -> dict[str, list[str]]:
    """Project every target and write its latent and images (module docstring); returns
    `{stem: [written paths]}`. Every input is checked before `outdir` is created."""
    if num_steps < 1:
        raise dnnlib.util.UserError(f'--num-steps must be >= 1, got {num_steps}')
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise dnnlib.util.UserError(f'--outdir {outdir}: exists and is not a folder')
    files = list_targets(target)
    if save_video:
        check_video_path('proj.mp4')  # imageio-ffmpeg present: fail before any work
    G, eg = load_networks(network_pkl, expanded, device, allow_task_import)
    if expanded and eg.names_note:
        print(f'note: {eg.names_note}')
    c = make_label(G, class_idx, device)
    targets = {stem: load_target(path, G.img_resolution, G.img_channels, resize) for stem, path in files.items()}
    distance = make_distance(metric, random_backbone, device)
    os.makedirs(outdir, exist_ok=True)
    written = {}
    for stem, target_uint8 in targets.items():
        def progress(step, total, dist, stem=stem):
            if step == total or step % max(1, total // 10) == 0:
                print(f'{stem}: step {step:>5d}/{total} dist {dist:.5f}')
        result = projection.project(G, torch.from_numpy(target_uint8), num_steps=num_steps, w_plus=w_plus,
                                    distance=distance, c=c, seed=seed,
                                    subspaces=eg.subspaces if expanded else None,
                                    base_mean=eg.w_avg if expanded else None, progress=progress)
        latent = result.latent.cpu().contiguous()
        paths = [os.path.join(outdir, f'{stem}.pt'), os.path.join(outdir, f'{stem}_target.png'),
                 os.path.join(outdir, f'{stem}_proj.png')]
        with dnnlib.util.atomic_write_path(paths[0]) as tmp:
            torch.save(latent, tmp)
        image_utils.save_png_atomic(image_utils.to_pil(target_uint8.transpose(1, 2, 0)), paths[1])
        save_image(projection.render_latent(G.synthesis, latent), paths[2])
        if expanded:
            paths += _save_domains(eg, latent, outdir, stem)
        paths += save_official_outputs(G.synthesis, result, target_uint8, outdir,
                                       prefix='' if len(targets) == 1 else f'{stem}_', save_video=save_video)
        written[stem] = paths
    return written


def save_official_outputs(G_synthesis, result, target_uint8: np.ndarray, outdir: str, prefix: str,
                          save_video: bool) -> list[str]:
    """The official projector's files (module docstring) for one target; returns their paths.
    `prefix` is '' for a single target (the official names) or 'STEM_'."""
    ws = result.w_steps                                                     # [num_steps, num_ws, w_dim]
    paths = [os.path.join(outdir, f'{prefix}projected_w.npz')]
    with dnnlib.util.atomic_write_path(paths[0]) as tmp, open(tmp, 'wb') as f:
        np.savez(f, w=ws[-1:].numpy().astype(np.float32))
    if not prefix:
        paths += [os.path.join(outdir, 'proj.png'), os.path.join(outdir, 'target.png')]
        save_image(projection.render_latent(G_synthesis, result.latent), paths[1])
        image_utils.save_png_atomic(image_utils.to_pil(target_uint8.transpose(1, 2, 0)), paths[2])
    if save_video:
        from traverse import write_video
        device = next(G_synthesis.parameters()).device
        target_hwc = target_uint8.transpose(1, 2, 0)
        frames = []
        with torch.no_grad():
            for w in ws:
                synth = image_utils.to_uint8(G_synthesis(w[None].to(device), noise_mode='const'))[0]
                frames.append(np.concatenate([target_hwc, synth], axis=1))   # target | projection
        paths.append(os.path.join(outdir, f'{prefix}proj.mp4'))
        write_video(np.stack(frames), paths[-1], fps=10)
    return paths

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, help='Network pickle: local path or URL.', metavar='PKL')
@click.option('--target', required=True, help='Target image, or a folder of images.', metavar='IMG_OR_DIR')
@click.option('--outdir', required=True, help='Where to write STEM.pt and the images.', metavar='DIR')
@click.option('--num-steps', type=int, default=projection.NUM_STEPS, show_default=True, help='Optimisation steps.')
@click.option('--seed', type=int, default=303, show_default=True, help='Seed of the noise draws.')
@click.option('--w-plus', is_flag=True, help='Optimise W+ (one latent per layer) instead of W.')
@click.option('--metric', type=click.Choice(projection.METRICS), default='lpips', show_default=True,
              help="'lpips' = LPIPS-VGG; 'l2' = pixel MSE (no download).")
@click.option('--random-lpips-backbone', 'random_backbone', is_flag=True,
              help='LPIPS with a random VGG (offline smoke test; not the real LPIPS).')
@click.option('--expanded', is_flag=True, help='Expanded snapshot: stay in the base subspace, render every domain.')
@click.option('--resize', is_flag=True, help='Center-crop and resize targets to the generator resolution.')
@click.option('--class', 'class_idx', type=int, default=None, help='Class index (conditional networks).')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
@click.option('--allow-task-import', is_flag=True, help='Import task classes named by dotted paths in the '
              "snapshot's expansion_cfg (only for snapshots you trust; default: registered types only).")
@click.option('--save-video', type=bool, is_flag=False, flag_value=True, default=False, metavar='[BOOL]',
              help='Also write proj.mp4: target and projection at every step (10 fps). A bare flag, or the '
                   "official tool's --save-video=BOOL (whose default is on; here it is off).")
def main(network_pkl, target, outdir, num_steps, seed, w_plus, metric, random_backbone, expanded, resize, class_idx,
         device, allow_task_import, save_video):
    """Project images into W (or W+) of a generator; write MyStyle-ready latents."""
    check_output_dir(outdir, '--outdir')
    written = project_images(network_pkl, target, outdir, num_steps=num_steps, seed=seed, w_plus=w_plus, metric=metric,
                             expanded=expanded, resize=resize, class_idx=class_idx, random_backbone=random_backbone,
                             device=parse_device(device), allow_task_import=allow_task_import, save_video=save_video)
    print(f'Wrote {len(written)} latent(s) and images to {outdir}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
