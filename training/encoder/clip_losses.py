"""The text's CLIP losses for training the domain encoder (Korolev, Sec. II; StyleGAN-NADA,
HyperDomainNet), in their image-guided form: a domain is given by reference pairs
(reference image, its source image), not by text.

Notation per training step: B domains b, m target latents w_bj each, E the CLIP image tower
(unit-norm embeddings), G the frozen source synthesis, G_b = G with the encoder's theta_b.

    direction (Eq. 3, image-guided):  d_b   = mean_k E(ref_bk) - E(src_bk)          (the target direction)
                                      dI_bj = E(G_b(w_bj)) - E(G(w_bj))
                                      L_direction = mean_bj 1 - cos(dI_bj, d_b)
    inter-domain direction (tt):      g_b = mean_j dI_bj; for pairs a != b the direction from domain
                                      b to a, g_a - g_b, should follow d_a - d_b:
                                      L_tt = mean_{a<b} 1 - cos(g_a - g_b, d_a - d_b)
    in-domain angle (Eq. 11):         L_angle = mean_b mean_{i<j} (<E(G(w_bi)), E(G(w_bj))>
                                                                   - <E(G_b(w_bi)), E(G_b(w_bj))>)^2
    domain norm:                      L_norm = mean (theta_b - theta_id)^2

Ours, where the text leaves room: the text's tt-direction compares text directions between target
domains at the same latent; with image references, and different latents per domain, we compare
the domains' mean source-relative directions (content cancels out of both sides). The text's
domain norm is ||D(E(t)) - 1||^2 for a multiplicative d (identity 1); with any parameterisation it
is the distance to theta_id. Eq. 11 is a sum; we take the mean over pairs so that its weight does
not depend on m. The weights (`ClipLossWeights`) are ours.
"""

import dataclasses

import torch

from torch_utils import misc

#----------------------------------------------------------------------------

def _cos_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos along the last axis."""
    return 1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)

def direction_loss(gen_emb: torch.Tensor, src_emb: torch.Tensor, ref_direction: torch.Tensor) -> torch.Tensor:
    """Eq. 3, image-guided: mean over b, j of 1 - cos(E(G_b(w_bj)) - E(G(w_bj)), d_b).

    Args:
        gen_emb:       `[B, m, D]` embeddings of the domain renders.
        src_emb:       `[B, m, D]` embeddings of the source renders of the same latents.
        ref_direction: `[B, D]` target directions d_b.
    """
    misc.assert_shape(src_emb, list(gen_emb.shape))
    misc.assert_shape(ref_direction, [gen_emb.shape[0], gen_emb.shape[2]])
    return _cos_distance(gen_emb - src_emb, ref_direction[:, None]).mean()

def tt_direction_loss(gen_direction: torch.Tensor, ref_direction: torch.Tensor) -> torch.Tensor:
    """Inter-domain direction loss: mean over pairs a < b of 1 - cos(g_a - g_b, d_a - d_b).

    Args:
        gen_direction: `[B, D]` mean generated directions g_b; B >= 2.
        ref_direction: `[B, D]` target directions d_b.
    """
    misc.assert_shape(ref_direction, list(gen_direction.shape))
    B = gen_direction.shape[0]
    if B < 2:
        raise ValueError(f'tt_direction_loss needs at least 2 domains per step, got {B}')
    a, b = torch.triu_indices(B, B, offset=1)
    return _cos_distance(gen_direction[a] - gen_direction[b], ref_direction[a] - ref_direction[b]).mean()

def indomain_angle_loss(src_emb: torch.Tensor, gen_emb: torch.Tensor) -> torch.Tensor:
    """Eq. 11, as a mean over domains b and pairs i < j of the squared change of <E(x_i), E(x_j)>
    from the source renders to the domain renders. `[B, m, D]` each, m >= 2."""
    misc.assert_shape(gen_emb, list(src_emb.shape))
    m = src_emb.shape[1]
    if m < 2:
        raise ValueError(f'indomain_angle_loss needs at least 2 latents per domain, got {m}')
    i, j = torch.triu_indices(m, m, offset=1)
    src_gram = src_emb @ src_emb.transpose(1, 2)                       # [B, m, m]
    gen_gram = gen_emb @ gen_emb.transpose(1, 2)
    return (src_gram[:, i, j] - gen_gram[:, i, j]).square().mean()

def domain_norm_loss(theta: torch.Tensor, theta_identity: torch.Tensor) -> torch.Tensor:
    """mean (theta - theta_id)^2 for theta `[B, P]` (the text's ||D(E) - 1||^2, any identity)."""
    return (theta - theta_identity).square().mean()

#----------------------------------------------------------------------------

@dataclasses.dataclass
class ClipLossWeights:
    direction:  float = 1.0     # Eq. 3, image-guided.
    tt:         float = 1.0     # Inter-domain direction.
    angle:      float = 1.0     # Eq. 11.
    norm:       float = 1e-3    # Domain norm (the CPU recipe's reg_weight, same role).

def clip_objective(clip, pred: torch.Tensor, target_sources: torch.Tensor, references: torch.Tensor,
                   reference_sources: torch.Tensor, theta: torch.Tensor, theta_identity: torch.Tensor,
                   weights: ClipLossWeights) -> tuple:
    """The weighted sum of the four losses and `{name: value}` of each, for one training step.

    Args:
        clip:              ClipEncoder (frozen; gradients reach `pred` only).
        pred:              `[B*m, C, H, W]` domain renders (differentiable in theta).
        target_sources:    `[B*m, C, H, W]` source renders of the same latents.
        references:        `[B, K, C, H, W]` reference images.
        reference_sources: `[B, K, C, H, W]` their source images.
        theta:             `[B, P]` the encoder's predictions; theta_identity `[P]`.
    """
    B, K = references.shape[:2]
    misc.assert_shape(reference_sources, list(references.shape))
    misc.assert_shape(target_sources, list(pred.shape))
    with torch.no_grad():
        ref_emb = clip.encode_images(references.flatten(0, 1)).unflatten(0, [B, K])
        ref_src_emb = clip.encode_images(reference_sources.flatten(0, 1)).unflatten(0, [B, K])
        ref_direction = (ref_emb - ref_src_emb).mean(dim=1)                          # d_b [B, D]
        src_emb = clip.encode_images(target_sources).unflatten(0, [B, -1])           # [B, m, D]
    gen_emb = clip.encode_images(pred).unflatten(0, [B, -1])                         # [B, m, D]
    parts = dict(direction=direction_loss(gen_emb, src_emb, ref_direction),
                 tt=tt_direction_loss((gen_emb - src_emb).mean(dim=1), ref_direction),
                 angle=indomain_angle_loss(src_emb, gen_emb),
                 norm=domain_norm_loss(theta, theta_identity))
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}

#----------------------------------------------------------------------------
