"""TargetCLIP (Chefer et al., "Image-based CLIP-guided essence transfer"; text Eq. 6-9) as an
expansion task: the repurposed subspace should move every image by the same CLIP direction
(consistency, Eq. 7) towards the target image (similarity, Eq. 8).

In TargetCLIP the edit is a global latent direction b (Eq. 9: b* = argmin L_similarity +
lambda_1 L_consistency + lambda_2 ||b||_2). In domain expansion the edit is the task's repurposed
direction and the base subspace is kept by the expansion objective itself, so the task carries
only the two CLIP terms; the ||b|| penalty has no counterpart here.

    {"type": "training.encoder.target_clip.TargetCLIP", "args": {"target_image": "ariel.png"}}

Needs CLIP weights (the same open_clip loading as the NADA task; offline it fails with the
message naming the missing file).
"""

import os

import torch

from training.expansion.tasks import arg_checks, image_files
from training.expansion.tasks.base import BaseTask
from training.expansion.tasks.shared_models import open_clip_spec

#----------------------------------------------------------------------------

def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)

def consistency_terms(delta: torch.Tensor) -> torch.Tensor:
    """Per sample i, the mean over j != i of 1 - cos(delta_i, delta_j), `[N]` (Eq. 7).

    Their mean over i equals Eq. 7's mean over the N(N-1)/2 unordered pairs. N = 1: zeros.
    """
    N = delta.shape[0]
    if N < 2:
        return delta.new_zeros([N])
    unit = torch.nn.functional.normalize(delta, dim=-1)
    distance = 1 - unit @ unit.t()                                     # [N, N], zero diagonal up to rounding
    return (distance.sum(dim=1) - distance.diagonal()) / (N - 1)

def similarity_terms(edit_embedding: torch.Tensor, target_embedding: torch.Tensor) -> torch.Tensor:
    """Per sample, 1 - cos(E(G(z + b)), E(I_t)), `[N]` (Eq. 8)."""
    return _cosine_distance(edit_embedding, target_embedding.reshape(1, -1))

# Not registered: configs name it by dotted path, so importing this module never changes the
# registry that the expansion tools list (and a snapshot can name only registered types).
class TargetCLIP(BaseTask):
    """Edits share one CLIP direction (Eq. 7) that points at the target image (Eq. 8)."""

    def __init__(self,
        target_image,                   # Path of the target image I_t.
        clip_model = 'ViT-B/32',        # CLIP image tower E (TargetCLIP's).
        consistency_weight = 1.0,       # lambda_1 of Eq. 9.
        name = None,                    # Label; None = the target file's stem.
        *,
        dimension,                      # Injected: the basis column this task repurposes.
        runtime,                        # Injected: TaskRuntime (device, shared models).
    ):
        super().__init__(name=self.resolve_name(dict(target_image=target_image, name=name)), dimension=dimension, runtime=runtime)
        self.consistency_weight = float(consistency_weight)
        self.encoder = runtime.models.clip(clip_model)
        target = image_files.load_image(target_image)[None].to(runtime.device)
        with torch.no_grad():
            self.target_embedding = self.encoder.encode_images(target)[0]     # [D], E(I_t)

    @classmethod
    def default_name(cls, kwargs: dict) -> str:
        return os.path.splitext(os.path.basename(str(kwargs['target_image'])))[0]

    @classmethod
    def pretrained_weights(cls, kwargs: dict) -> tuple:
        return (('clip', kwargs.get('clip_model', 'ViT-B/32')),)

    @classmethod
    def check_config(cls, kwargs: dict, ctx) -> list:
        problems = []
        path = kwargs.get('target_image')
        if (msg := arg_checks.check_text(path)):
            problems.append(('target_image', msg))
        elif ctx.check_resources and not os.path.isfile(path):
            problems.append(('target_image', f'file not found: {path}'))
        try:
            open_clip_spec(kwargs.get('clip_model'))
        except (ValueError, TypeError) as err:
            problems.append(('clip_model', str(err)))
        if (msg := arg_checks.check_number(kwargs.get('consistency_weight'), minimum=0)):
            problems.append(('consistency_weight', msg))
        if kwargs.get('name') is not None and (msg := arg_checks.check_text(kwargs['name'])):
            problems.append(('name', msg))
        return problems

    def error(self, context, base_img: torch.Tensor, edit_img: torch.Tensor) -> torch.Tensor:
        """Per image: Eq. 8's term + lambda_1 * its share of Eq. 7, `[N]`; the batch mean is Eq. 9 without ||b||."""
        with torch.no_grad():
            base_embedding = self.encoder.encode_images(base_img.detach())         # E(G(z)), fixed
        edit_embedding = self.encoder.encode_images(edit_img)                      # E(G(z + b))
        delta = edit_embedding - base_embedding                                    # Delta i
        return similarity_terms(edit_embedding, self.target_embedding) + self.consistency_weight * consistency_terms(delta)

#----------------------------------------------------------------------------
