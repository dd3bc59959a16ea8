"""The geometry-preserving loss L_geom (paper Eq. 3-5; construction after Geom-SGAN, Liang,
Turaga, Srivastava et al.): the tangent spaces of a batch seen in latent space and in image space
should relate to each other in the same way.

For a batch of B points p_1..p_B of one space (latents, or images), flattened to vectors:
  Eq. 3  tangent vectors at p_a: v_ab = (p_b - p_a) / ||p_b - p_a||, for every b != a;
         the columns V_a `[D, B-1]`.
         T_a `[D, k]`: an orthonormal basis of the dominant k-dimensional subspace of V_a
         (its top-k left singular vectors), computed stably from the small Gram matrix:
         V_a^T V_a + eps I = U diag(lam) U^T (eigh), T_a = V_a U_k diag(lam_k)^(-1/2).
  Eq. 4  subspace similarity S_ab = ||T_a^T T_b||_F (in [0, sqrt(k)]), a `[B, B]` matrix per space;
         the dissimilarity of the two spaces at a is d_a = cos(S^latent_a, S^image_a), the cosine
         between the rows a of the two matrices.
  Eq. 5  L_geom = MSE(d, 1) = mean_a (d_a - 1)^2.

Choices the text leaves open (ours): tangent vectors are unit-normalised differences (the
"pairwise L2 distance" of Eq. 3 divides them); the rows compared by the cosine include the
diagonal S_aa = sqrt(k); eps = 1e-6 times the Gram matrix's mean diagonal; k <= B - 1 is required.
An orthogonal map (or a uniform scaling) from latents to images gives L_geom = 0 exactly.
"""

import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

DEFAULT_K = 5           # Dimension of the tangent subspaces (the paper's default; Table 6).
GRAM_EPS = 1e-6         # Relative ridge added to the Gram matrices before eigh.

def tangent_subspaces(points: torch.Tensor, k: int = DEFAULT_K, eps: float = GRAM_EPS) -> torch.Tensor:
    """Orthonormal bases `[B, D, k]` of the top-k tangent subspaces at each of `points` `[B, ...]` (Eq. 3)."""
    B = points.shape[0]
    if not 1 <= k <= B - 1:
        raise ValueError(f'tangent_subspaces: k={k} needs 1 <= k <= batch size - 1 = {B - 1}')
    p = points.reshape(B, -1).to(torch.float32)
    diff = p[None, :, :] - p[:, None, :]                                    # [B(a), B(b), D]: p_b - p_a
    others = ~torch.eye(B, dtype=torch.bool, device=p.device)
    V = diff[others].reshape(B, B - 1, -1)                                  # [B, B-1, D]
    V = V / V.norm(dim=2, keepdim=True).clamp(min=1e-12)                    # Eq. 3: unit tangent vectors
    gram = V @ V.transpose(1, 2)                                            # [B, B-1, B-1]
    ridge = eps * gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp(min=1e-12)
    gram = gram + ridge[:, None, None] * torch.eye(B - 1, device=p.device)
    lam, U = torch.linalg.eigh(gram)                                        # ascending eigenvalues
    lam_k, U_k = lam[:, -k:], U[:, :, -k:]                                  # [B, k], [B, B-1, k]
    return V.transpose(1, 2) @ U_k / lam_k.sqrt()[:, None, :]               # [B, D, k]

def subspace_similarity(T: torch.Tensor) -> torch.Tensor:
    """S_ab = ||T_a^T T_b||_F `[B, B]` for bases `[B, D, k]` (Eq. 4)."""
    cross = torch.einsum('adk,bdl->abkl', T, T)                             # [B, B, k, k]
    return cross.square().sum(dim=(2, 3)).clamp(min=1e-12).sqrt()

def geometry_loss(latents: torch.Tensor, images: torch.Tensor, k: int = DEFAULT_K, eps: float = GRAM_EPS) -> torch.Tensor:
    """L_geom (Eq. 5) between a batch's latents `[B, ...]` and its images `[B, ...]` (same B)."""
    if latents.shape[0] != images.shape[0]:
        raise ValueError(f'geometry_loss: {latents.shape[0]} latents but {images.shape[0]} images')
    S_latent = subspace_similarity(tangent_subspaces(latents, k, eps))
    S_image = subspace_similarity(tangent_subspaces(images, k, eps))
    d = F.cosine_similarity(S_latent, S_image, dim=1)                       # Eq. 4: [B]
    return (d - 1).square().mean()                                          # Eq. 5

#----------------------------------------------------------------------------
