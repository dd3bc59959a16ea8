"""`EncodedDomain`: an expansion task whose domain is given by one encoder pass (issue 14).

The encoder (train_encoder.py) reads the reference pairs once, when the task is built, and
predicts theta; the task then asks the repurposed subspace for the images the encoded domain
renders: `target = G_theta(w)` for the base latent w. For `rgb_affine` encoders theta acts on the
output image only, so `G_theta(w) = M G(w) + b` is computed from the base image the loss already
has; other parameterisations would need the generator inside the task and are refused.

Config (a dotted type: the task is not one of the expansion wing's built-ins):

    {"type": "training.encoder.tasks.EncodedDomain",
     "args": {"encoder": "out/enc/encoder-snapshot.pt", "references": "refs/", "sources": "refs_src/"}}

Loss per sample, like `Transform`: the mean over C*H*W of `(edit - G_theta(base.detach()))^2`.
The snapshot's source hash is not checked here (the task never sees the generator's file): give
the encoder trained for the generator being expanded.
"""

import os

import torch

from training.encoder.encoder import EncoderSnapshotError, load_encoder_snapshot
from training.encoder.parameterizations import apply_rgb_affine
from training.expansion.tasks import arg_checks, image_files
from training.expansion.tasks.base import BaseTask

#----------------------------------------------------------------------------

SUPPORTED_PARAMETERIZATIONS = ('rgb_affine',)

def reference_pairs(references: str, sources: str) -> tuple:
    """(pairs [(stem, reference path, source path)], problems [(argument, message)])."""
    refs, ref_dups = image_files.files_by_stem(references, image_files.IMAGE_EXTENSIONS)
    srcs, src_dups = image_files.files_by_stem(sources, image_files.IMAGE_EXTENSIONS)
    problems = [(key, f'{stem!r} has several image files; keep one') for key, dups in
                (('references', ref_dups), ('sources', src_dups)) for stem in dups]
    if not refs:
        problems.append(('references', f'no images in {references!r}'))
    missing = [stem for stem in refs if stem not in srcs]
    if missing:
        problems.append(('sources', f'no source image for reference {missing[0]!r} in {sources!r}; '
                                    f'every reference needs a source image of the same name'))
    return [(stem, refs[stem], srcs[stem]) for stem in refs if stem in srcs], problems

# Not registered: configs name it by dotted path, so importing this module never changes the
# registry that the expansion tools list (and a snapshot can name only registered types).
class EncodedDomain(BaseTask):
    """Edit images should equal the encoded domain's render of the same latent."""

    def __init__(self,
        encoder,            # encoder-snapshot.pt written by train_encoder.py (rgb_affine).
        references,         # Folder of reference images of the target domain.
        sources,            # Folder of their source images (same file names).
        name = None,        # Label for logs, grids and folders; None = 'encoded-<references folder>'.
        *,
        dimension,          # Injected: the basis column this task repurposes.
        runtime,            # Injected: TaskRuntime.
    ):
        super().__init__(name=self.resolve_name(dict(references=references, name=name)), dimension=dimension, runtime=runtime)
        net, info = load_encoder_snapshot(encoder, flag=f'{self.name}: args.encoder', clip_provider=runtime.models.clip)
        pairs, problems = reference_pairs(references, sources)
        if problems:
            raise ValueError(f'{self.name}: args.{problems[0][0]}: {problems[0][1]}')
        refs = torch.stack([image_files.load_image(ref) for _, ref, _ in pairs])[None]    # [1, K, C, H, W]
        srcs = torch.stack([image_files.load_image(src) for _, _, src in pairs])[None]
        with torch.no_grad():
            self.theta = net(refs, srcs)[0].to(runtime.device)                               # one encoder pass
        self.parameterization = info['parameterization']
        if self.parameterization not in SUPPORTED_PARAMETERIZATIONS:
            raise ValueError(f'{self.name}: args.encoder: EncodedDomain supports {", ".join(SUPPORTED_PARAMETERIZATIONS)} encoders, got {self.parameterization}')

    @classmethod
    def default_name(cls, kwargs: dict) -> str:
        return 'encoded-' + os.path.basename(os.path.normpath(str(kwargs['references'])))

    @classmethod
    def check_config(cls, kwargs: dict, ctx) -> list:
        problems = [(key, msg) for key in ('encoder', 'references', 'sources') if (msg := arg_checks.check_text(kwargs.get(key)))]
        if kwargs.get('name') is not None and (msg := arg_checks.check_text(kwargs['name'])):
            problems.append(('name', msg))
        if problems or not ctx.check_resources:
            return problems
        for key in ('references', 'sources'):
            if (msg := arg_checks.check_dir(kwargs[key])):
                problems.append((key, msg))
        try:
            _, info = load_encoder_snapshot(kwargs['encoder'], flag='encoder')
            if info['parameterization'] not in SUPPORTED_PARAMETERIZATIONS:
                problems.append(('encoder', f"is a {info['parameterization']} encoder; EncodedDomain supports "
                                            f'{", ".join(SUPPORTED_PARAMETERIZATIONS)} encoders (train_encoder.py --parameterization rgb_affine)'))
        except EncoderSnapshotError as err:
            problems.append(('encoder', str(err).split(': ', 1)[-1]))
        if not problems:
            problems += reference_pairs(kwargs['references'], kwargs['sources'])[1]
            sizes = {image_files.image_size(path) for _, ref, src in reference_pairs(kwargs['references'], kwargs['sources'])[0]
                     for path in (ref, src)}
            if ctx.img_resolution is not None and sizes - {(ctx.img_resolution, ctx.img_resolution)}:
                problems.append(('references', f'images must be {ctx.img_resolution}x{ctx.img_resolution} (the generator), '
                                               f'found {sorted(sizes)}; resize them'))
        return problems

    def target(self, base_img: torch.Tensor) -> torch.Tensor:
        """The encoded domain's render of the detached base images: M base + b."""
        return apply_rgb_affine(base_img.detach(), self.theta.to(base_img.device))

    def error(self, context, base_img: torch.Tensor, edit_img: torch.Tensor) -> torch.Tensor:
        """Mean over C*H*W of (edit - G_theta(base))^2 per image, [N]."""
        return (edit_img - self.target(base_img)).square().mean(dim=[1, 2, 3])

#----------------------------------------------------------------------------
