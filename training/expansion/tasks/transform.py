"""`Transform`: a new domain defined as a known image transform T of the source domain.

Spec: interfaces.md section 1. Per sample, the loss is the mean over C*H*W of
`(edit - T(base.detach()))^2`; `loss()` sums it over the batch. No pretrained network is
involved, so the domain's error can be computed exactly: tests and the demo use it as ground
truth that expansion learns a domain without leaking into the others.
"""

import torch

from training import image_transforms
from training.expansion.tasks import arg_checks
from training.expansion.tasks.base import BaseTask, register_task

#----------------------------------------------------------------------------

@register_task
class Transform(BaseTask):
    """Edit images should equal T(base image) for a fixed image transform T."""

    def __init__(self,
        transform,          # Name of T: one of training.image_transforms.TRANSFORMS.
        degrees = None,     # hue_shift only: rotation angle in degrees (None = 90).
        name = None,        # Label for logs, grids and folders; None = the transform name.
        *,
        dimension,          # Injected: the basis column this task repurposes.
        runtime,            # Injected: TaskRuntime.
    ):
        super().__init__(name=self.resolve_name(dict(transform=transform, name=name)), dimension=dimension, runtime=runtime)
        self.transform_name = transform
        self.degrees = degrees
        self.T = image_transforms.get_transform(transform, degrees)

    @classmethod
    def default_name(cls, kwargs: dict) -> str:
        return kwargs['transform']

    @classmethod
    def check_config(cls, kwargs: dict, ctx) -> list:
        problems = []
        transform, degrees, name = kwargs.get('transform'), kwargs.get('degrees'), kwargs.get('name')
        if not isinstance(transform, str) or transform not in image_transforms.TRANSFORMS:
            problems.append(('transform', f'unknown transform {transform!r}; known transforms: '
                f'{", ".join(image_transforms.TRANSFORMS)}'))
        elif degrees is not None and transform not in image_transforms.TRANSFORMS_WITH_DEGREES:
            problems.append(('degrees', f'only applies to transform '
                f'{" / ".join(image_transforms.TRANSFORMS_WITH_DEGREES)}, not {transform!r}; remove it'))
        elif degrees is not None and (msg := arg_checks.check_number(degrees)):
            problems.append(('degrees', msg))
        if name is not None and (msg := arg_checks.check_text(name)):
            problems.append(('name', msg))
        return problems

    def __repr__(self):
        return f'Transform(name={self.name!r}, transform={self.transform_name!r}, dimension={self.dimension})'

    def target(self, base_img: torch.Tensor) -> torch.Tensor:
        """T applied to the detached base images: what the edit images should look like."""
        return self.T(base_img.detach())

    def error(self, context, base_img: torch.Tensor, edit_img: torch.Tensor) -> torch.Tensor:
        """Mean over C*H*W of (edit - T(base))^2 per image, [N]; gradients reach edit_img only."""
        return (edit_img - self.target(base_img)).square().mean(dim=[1, 2, 3])

#----------------------------------------------------------------------------
