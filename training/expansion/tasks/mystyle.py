"""`MyStyle`: a personalized prior from a few photos of one person (paper Eq. 9).

Inputs: `images_dir` with the person's aligned photos at the generator's resolution, and
`anchors_dir` with each photo's inverted latent ("anchor"), matched by file stem
(`images_dir/0003.png` <-> `anchors_dir/0003.pt`). An anchor is a W latent `[w_dim]` or
`[1, w_dim]`, or a W+ latent `[num_ws, w_dim]` / `[1, num_ws, w_dim]` whose rows are all equal
(a W+ with distinct rows cannot be projected as one W latent). Files: `.pt` / `.pth`
(`torch.save` of a tensor) or `.npy`.

Training samples are anchors (with their photos as context); the anchors are projected like
any latent, so the edit image is the anchor's image in the repurposed subspace and is pulled
towards the photo: per image `LPIPS(edit, photo) + l2_weight * mean_CHW (edit - photo)^2`.
Works with any number of photos, including fewer than the 9 of a default grid.
"""

import os

import numpy as np
import torch

from torch_utils import misc
from training.expansion.tasks import arg_checks, image_files
from training.expansion.tasks.base import BaseTask, TaskBatch, register_task

ANCHOR_EXTENSIONS = ('.pt', '.pth', '.npy')

#----------------------------------------------------------------------------

def load_anchor(path: str, w_dim: int) -> torch.Tensor:
    """Read one anchor file and return its W latent as float32 [w_dim]; ValueError naming the file."""
    try:
        if path.lower().endswith('.npy'):
            value = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            value = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err: # numpy/torch raise several types for unreadable files.
        raise ValueError(f'anchor {path}: cannot be read ({misc.load_error_summary(err)})') from err
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise ValueError(f'anchor {path}: expected a floating-point tensor, got {type(value).__name__}')
    latent = value.detach().to(torch.float32)
    if latent.ndim == 3 and latent.shape[0] == 1:
        latent = latent[0]                                  # [1, num_ws, w_dim] -> [num_ws, w_dim]
    if latent.ndim == 1:
        latent = latent.unsqueeze(0)
    if latent.ndim != 2 or latent.shape[-1] != w_dim:
        raise ValueError(f'anchor {path}: shape {list(value.shape)} is not a W latent [{w_dim}] / [1, {w_dim}] '
            f'or a W+ latent [num_ws, {w_dim}] of this generator (w_dim {w_dim})')
    spread = (latent - latent[:1]).abs().max().item()
    if spread > 1e-5:
        raise ValueError(f'anchor {path}: W+ latent with rows that differ (by up to {spread:.3g}); MyStyle needs a W '
            f'latent or a constant W+ (the same w in every row); invert the photo in W')
    return latent[0]

#----------------------------------------------------------------------------

def match_photos_and_anchors(images_dir: str, anchors_dir: str) -> tuple:
    """Pair photos and anchors by file stem.

    Returns:
        `(pairs, problems)`: `pairs` a list of (stem, image path, anchor path) sorted by stem;
        `problems` a list of `(argument name, message)`.
    """
    problems = [(key, msg) for key, msg in [('images_dir', arg_checks.check_dir(images_dir)),
        ('anchors_dir', arg_checks.check_dir(anchors_dir))] if msg]
    if problems:
        return [], problems
    images, dup_images = image_files.files_by_stem(images_dir, image_files.IMAGE_EXTENSIONS)
    anchors, dup_anchors = image_files.files_by_stem(anchors_dir, ANCHOR_EXTENSIONS)
    if not images:
        problems.append(('images_dir', f'no images ({", ".join(image_files.IMAGE_EXTENSIONS)}) in {images_dir}'))
    if not anchors:
        problems.append(('anchors_dir', f'no anchors ({", ".join(ANCHOR_EXTENSIONS)}) in {anchors_dir}'))
    if dup_images:
        problems.append(('images_dir', f'several images share the stem(s) {", ".join(sorted(set(dup_images)))}; keep one per stem'))
    if dup_anchors:
        problems.append(('anchors_dir', f'several anchors share the stem(s) {", ".join(sorted(set(dup_anchors)))}; keep one per stem'))
    no_anchor = sorted(set(images) - set(anchors))
    no_image = sorted(set(anchors) - set(images))
    if images and anchors and no_anchor:
        problems.append(('anchors_dir', f'no anchor for image(s) {_short_list(no_anchor)} of {images_dir}; '
            f'anchors are matched to images by file stem'))
    if images and anchors and no_image:
        problems.append(('images_dir', f'no image for anchor(s) {_short_list(no_image)} of {anchors_dir}; '
            f'anchors are matched to images by file stem'))
    if problems:
        return [], problems
    return [(stem, images[stem], anchors[stem]) for stem in images], []

def _short_list(items, limit: int = 5) -> str:
    shown = ', '.join(items[:limit])
    return shown + (f' (+{len(items) - limit} more)' if len(items) > limit else '')

def _first_and_count(messages: list) -> str:
    """The first message, plus how many more files have problems (one line per argument)."""
    more = len(messages) - 1
    return messages[0] + (f' ({more} more file(s) with problems)' if more else '')

def check_photo_size(path: str, resolution: int):
    """Message when the photo is not resolution x resolution, else None."""
    width, height = image_files.image_size(path)
    if (width, height) != (resolution, resolution):
        return (f'image {path} is {width}x{height}, but the generator makes {resolution}x{resolution} images; '
            f'align and resize the photos to {resolution}x{resolution}')
    return None

#----------------------------------------------------------------------------

@register_task
class MyStyle(BaseTask):
    """Reconstruct a person's photos from their anchors, inside the task's repurposed subspace."""

    def __init__(self,
        images_dir,         # Folder of the person's aligned photos, at the generator's resolution.
        anchors_dir,        # Folder of their inverted latents, one per photo, same file stem.
        person_name = None, # Who it is; the default task name. None = the images_dir folder name.
        l2_weight = 1.0,    # Weight of the pixel L2 term next to LPIPS (Eq. 9); 1 as in MyStyle/PTI.
        name = None,        # Label for logs/grids/folders; None = person_name.
        *,
        dimension,          # Injected: the basis column this task repurposes.
        runtime,            # Injected: TaskRuntime (device, resolution, shared LPIPS).
    ):
        kwargs = dict(images_dir=images_dir, person_name=person_name, name=name)
        super().__init__(name=self.resolve_name(kwargs), dimension=dimension, runtime=runtime)
        self.images_dir, self.anchors_dir, self.person_name = images_dir, anchors_dir, person_name
        self.l2_weight = float(l2_weight)
        pairs, problems = match_photos_and_anchors(images_dir, anchors_dir)
        for _stem, image_path, _anchor_path in pairs:
            if (msg := check_photo_size(image_path, runtime.img_resolution)):
                problems.append(('images_dir', msg))
        if problems:
            raise ValueError(f'MyStyle {self.name!r}: ' + '; '.join(f'{key}: {msg}' for key, msg in problems))
        self.stems = [stem for stem, _, _ in pairs]
        self.anchors = torch.stack([load_anchor(path, runtime.w_dim) for _, _, path in pairs]).to(runtime.device) # [M, w_dim]
        self.photos = torch.stack([image_files.load_image(path, runtime.img_channels) for _, path, _ in pairs]).to(runtime.device) # [M, C, H, W]
        self.perceptual = runtime.models.perceptual('alex')

    @classmethod
    def pretrained_weights(cls, kwargs: dict) -> tuple:
        return (('lpips', 'alex'),)  # Eq. 9's perceptual term.

    @classmethod
    def default_name(cls, kwargs: dict) -> str:
        if kwargs.get('person_name') is not None:
            return kwargs['person_name']
        return os.path.basename(os.path.normpath(kwargs['images_dir']))

    @classmethod
    def check_config(cls, kwargs: dict, ctx) -> list:
        problems = [(key, msg) for key in ('person_name', 'name')
            if (msg := arg_checks.check_text(kwargs.get(key), required=False))]
        if (msg := arg_checks.check_number(kwargs.get('l2_weight'), minimum=0)):
            problems.append(('l2_weight', msg))
        if not ctx.check_resources:
            return problems + [(key, msg) for key in ('images_dir', 'anchors_dir')
                if (msg := arg_checks.check_text(kwargs.get(key)))]
        pairs, pair_problems = match_photos_and_anchors(kwargs.get('images_dir'), kwargs.get('anchors_dir'))
        problems += pair_problems
        anchor_errors, size_errors = [], []
        for _stem, image_path, anchor_path in pairs:
            try:
                load_anchor(anchor_path, ctx.w_dim)
            except ValueError as err:
                anchor_errors.append(str(err))
            if ctx.img_resolution is not None and (msg := check_photo_size(image_path, ctx.img_resolution)):
                size_errors.append(msg)
        problems += [(key, _first_and_count(errors)) for key, errors in [('anchors_dir', anchor_errors),
            ('images_dir', size_errors)] if errors]
        return problems

    def __repr__(self):
        return f'MyStyle(name={self.name!r}, photos={len(self.stems)}, l2_weight={self.l2_weight:g}, dimension={self.dimension})'

    def sample(self, batch_size: int, device, generator: torch.Generator = None) -> TaskBatch:
        """Anchors drawn uniformly with replacement; context = their photos [n, C, H, W]."""
        gen_device = generator.device if generator is not None else device
        index = torch.randint(len(self.stems), [batch_size], generator=generator, device=gen_device).to(self.anchors.device)
        return TaskBatch(w=self.anchors[index].to(device), context=self.photos[index].to(device))

    def eval_latents(self, n: int, seed: int = 0) -> TaskBatch:
        """The first min(n, number of photos) anchors in stem order (deterministic; `seed` unused)."""
        count = min(n, len(self.stems))
        return TaskBatch(w=self.anchors[:count], context=self.photos[:count])

    def error(self, context, base_img: torch.Tensor, edit_img: torch.Tensor) -> torch.Tensor:
        """LPIPS(edit, photo) + l2_weight * mean over C*H*W of (edit - photo)^2, per image [N] (Eq. 9)."""
        photos = context
        misc.assert_shape(photos, list(edit_img.shape))
        l2 = (edit_img - photos).square().mean(dim=[1, 2, 3])
        return self.perceptual(edit_img, photos) + self.l2_weight * l2  # Eq. 9

#----------------------------------------------------------------------------
