"""`NADA`: StyleGAN-NADA's CLIP directional loss (paper Eq. 8), restricted to one subspace.

Text-guided (official): for each CLIP model m,
    t_m      = normalize(mean_templates E_T(target) - mean_templates E_T(source))
    d_m(i)   = normalize(E_I(edit_i) - E_I(base_i))
    loss(i)  = sum_m weight_m * (1 - cos(d_m(i), t_m))
Text embeddings are unit vectors averaged over the 80 ImageNet templates (the mean is not
renormalized before the difference, as in StyleGAN-NADA). Image embeddings are unit vectors.
Following the domain-expansion paper (App. D.2), the source image is the current generator's
base-subspace image, detached, rather than a frozen source generator's image.

Image-guided (our variant, `target_images_dir` instead of `target_text`): the target is the
mean unit embedding of the folder's images (computed once); the source is the mean unit
embedding of the batch's detached base images (the expanded generator keeps the source domain
on the base subspace), so `t_m = normalize(mean E_I(targets) - mean_batch E_I(base))`.
`source_text` is rejected in this mode: mixing a text source with image targets would mostly
measure the gap between CLIP's text and image embeddings.
"""

import inspect
import os

import torch

from training.expansion.tasks import arg_checks, image_files
from training.expansion.tasks.base import BaseTask, register_task
from training.expansion.tasks.clip_templates import IMAGENET_TEMPLATES
from training.expansion.tasks.shared_models import open_clip_spec

#----------------------------------------------------------------------------

def template_embedding(encoder, text: str) -> torch.Tensor:
    """Mean of the unit text embeddings of `text` in every ImageNet template, [D]."""
    return encoder.encode_texts([template.format(text) for template in IMAGENET_TEMPLATES]).mean(dim=0)

def unit(x: torch.Tensor) -> torch.Tensor:
    """Normalize along the last axis (eps keeps a zero direction at zero instead of NaN)."""
    return torch.nn.functional.normalize(x, dim=-1, eps=1e-7)

def directional_loss(encoder, base_embedding: torch.Tensor, edit_img: torch.Tensor, target_dir: torch.Tensor) -> torch.Tensor:
    """Per-image `1 - cos(E(edit) - E(base), target_dir)`, [N].

    Args:
        encoder:        ClipEncoder.
        base_embedding: [N, D] unit embeddings of the detached base images.
        edit_img:       [N, 3, H, W] edit images in [-1, 1] (gradients flow into them).
        target_dir:     [D] unit target direction.
    """
    edit_dir = unit(encoder.encode_images(edit_img) - base_embedding)
    return 1 - (edit_dir * target_dir).sum(dim=-1)                  # Eq. 8

#----------------------------------------------------------------------------

@register_task
class NADA(BaseTask):
    """Move images along a CLIP direction, from source_text to target_text (or target images)."""

    def __init__(self,
        source_text = None,                     # Source-domain text, e.g. 'photo' (text-guided mode).
        target_text = None,                     # New-domain text, e.g. 'sketch'.
        target_images_dir = None,               # Image-guided mode: folder of target-domain images.
        clip_models = ('ViT-B/32', 'ViT-B/16'), # CLIP models whose losses are added (StyleGAN-NADA's pair).
        clip_model_weights = None,              # One weight per CLIP model; None = 1.0 each.
        name = None,                            # Label; None = target_text or the target folder's name.
        *,
        dimension,                              # Injected: the basis column this task repurposes.
        runtime,                                # Injected: TaskRuntime (device, shared models).
    ):
        kwargs = dict(source_text=source_text, target_text=target_text, target_images_dir=target_images_dir, name=name)
        super().__init__(name=self.resolve_name(kwargs), dimension=dimension, runtime=runtime)
        self.source_text = source_text
        self.target_text = target_text
        self.target_images_dir = target_images_dir
        self.clip_model_names = list(clip_models)
        weights = [1.0] * len(self.clip_model_names) if clip_model_weights is None else list(clip_model_weights)
        if len(weights) != len(self.clip_model_names):
            raise ValueError(f'NADA {self.name!r}: {len(weights)} clip_model_weights for {len(self.clip_model_names)} clip_models')
        self.clip_model_weights = [float(weight) for weight in weights]
        self.encoders = [runtime.models.clip(model_name) for model_name in self.clip_model_names]
        if target_images_dir is None:
            self.text_directions = [self._text_direction(encoder) for encoder in self.encoders] # [D] each
        else:
            targets = self._load_target_images(target_images_dir)
            self.target_means = [self._mean_image_embedding(encoder, targets) for encoder in self.encoders]

    @classmethod
    def default_name(cls, kwargs: dict) -> str:
        if kwargs.get('target_text') is not None:
            return kwargs['target_text']
        return os.path.basename(os.path.normpath(kwargs['target_images_dir']))

    @classmethod
    def pretrained_weights(cls, kwargs: dict) -> tuple:
        default = inspect.signature(cls.__init__).parameters['clip_models'].default
        return tuple(('clip', name) for name in kwargs.get('clip_models', default))

    @classmethod
    def check_config(cls, kwargs: dict, ctx) -> list:
        problems = []
        source, target, target_dir = kwargs.get('source_text'), kwargs.get('target_text'), kwargs.get('target_images_dir')
        if (target is None) == (target_dir is None):
            problems.append((None, 'give exactly one of args.target_text (text-guided) and args.target_images_dir (image-guided)'))
        elif target is not None:
            problems += [(key, msg) for key, msg in [('source_text', arg_checks.check_text(source)),
                ('target_text', arg_checks.check_text(target))] if msg]
        else:
            if source is not None:
                problems.append(('source_text', 'is not used with target_images_dir (the source is the generator\'s own '
                    'base images); remove it, or use target_text'))
            if ctx.check_resources:
                problems += cls._check_target_dir(target_dir)
            elif (msg := arg_checks.check_text(target_dir)):
                problems.append(('target_images_dir', msg))
        models, weights = kwargs.get('clip_models', ()), kwargs.get('clip_model_weights')
        msg = arg_checks.check_string_list(models)
        if msg:
            problems.append(('clip_models', msg))
        else:
            for model_name in models:
                try:
                    open_clip_spec(model_name)
                except ValueError as err:
                    problems.append(('clip_models', str(err)))
            if weights is not None and (msg := arg_checks.check_number_list(weights, len(models), 'clip_models')):
                problems.append(('clip_model_weights', msg))
        if kwargs.get('name') is not None and (msg := arg_checks.check_text(kwargs['name'])):
            problems.append(('name', msg))
        return problems

    @staticmethod
    def _check_target_dir(target_dir) -> list:
        msg = arg_checks.check_dir(target_dir)
        if msg:
            return [('target_images_dir', msg)]
        if not image_files.files_by_stem(target_dir, image_files.IMAGE_EXTENSIONS)[0]:
            return [('target_images_dir', f'no images ({", ".join(image_files.IMAGE_EXTENSIONS)}) in {target_dir}')]
        return []

    def __repr__(self):
        what = f'{self.source_text!r} -> {self.target_text!r}' if self.target_images_dir is None else f'images {self.target_images_dir!r}'
        return f'NADA(name={self.name!r}, {what}, clip_models={self.clip_model_names}, dimension={self.dimension})'

    def _text_direction(self, encoder) -> torch.Tensor:
        return unit(template_embedding(encoder, self.target_text) - template_embedding(encoder, self.source_text))

    def _load_target_images(self, folder: str) -> list:
        paths = image_files.files_by_stem(folder, image_files.IMAGE_EXTENSIONS)[0].values()
        if not paths:
            raise ValueError(f'NADA {self.name!r}: no images in target_images_dir {folder}')
        return [image_files.load_image(path, 3).unsqueeze(0) for path in paths] # Sizes may differ.

    @torch.no_grad()
    def _mean_image_embedding(self, encoder, images: list) -> torch.Tensor:
        return torch.cat([encoder.encode_images(img.to(self.runtime.device)) for img in images]).mean(dim=0)

    def error(self, context, base_img: torch.Tensor, edit_img: torch.Tensor) -> torch.Tensor:
        """Weighted sum over CLIP models of 1 - cos(image direction, target direction), [N]."""
        return self.batched_errors([(self, context, base_img, edit_img)])[0]

    def target_direction(self, m: int, base_embedding: torch.Tensor) -> torch.Tensor:
        """Unit target direction [D] for CLIP model m: the text direction, or (image-guided) the
        mean target-image embedding minus the mean embedding of this batch's base images."""
        if self.target_images_dir is None:
            return self.text_directions[m]
        return unit(self.target_means[m] - base_embedding.mean(dim=0))

    @classmethod
    def batched_errors(cls, items: list) -> list:
        """Errors of several NADA tasks with one CLIP pass per model over all their images.

        Tasks sharing the same CLIP models (the usual case: `tasks_losses.NADA`) are encoded
        together: two image batches per model, whatever the number of domains.
        """
        out = [None] * len(items)
        by_models = {}
        for i, (task, _context, _base, _edit) in enumerate(items):
            key = (tuple(task.clip_model_names), tuple(task.clip_model_weights))
            by_models.setdefault(key, []).append(i)
        for (_names, weights), indices in by_models.items():
            tasks = [items[i][0] for i in indices]
            sizes = [items[i][2].shape[0] for i in indices]
            base = torch.cat([items[i][2] for i in indices]).detach()
            edit = torch.cat([items[i][3] for i in indices])
            totals = [0] * len(indices)
            for m, weight in enumerate(weights):
                encoder = tasks[0].encoders[m]                          # shared by every task of the group
                with torch.no_grad():
                    base_embedding = encoder.encode_images(base)        # [N, D], a fixed source
                edit_embedding = encoder.encode_images(edit)            # [N, D]
                pieces = zip(tasks, base_embedding.split(sizes), edit_embedding.split(sizes))
                for j, (task, base_e, edit_e) in enumerate(pieces):
                    cos = (unit(edit_e - base_e) * task.target_direction(m, base_e)).sum(dim=-1)
                    totals[j] = totals[j] + weight * (1 - cos)          # Eq. 8
            for j, i in enumerate(indices):
                out[i] = totals[j]
        return out

#----------------------------------------------------------------------------
