"""Text editing of sampled latents with CLIP (paper Sec. 4.3, Eq. 7, following StyleCLIP's
latent optimisation): starting from a sampled W+ latent w_s, minimise

    L(w) = D_CLIP(G(w), t) + lambda ||w - w_s||^2,      lambda = 0.005, Adam lr 0.1,

with G frozen; only the latent is optimised. D_CLIP is 1 - cos(E_I(G(w)), E_T(t)) (the paper's
"cosine similarity distance" between the image and the prompt), or, when a source prompt is
given, the directional form 1 - cos(E_I(G(w)) - E_I(G(w_s)), E_T(t) - E_T(t_source)) (the edit
moves the image the way the text moves; StyleGAN-NADA's direction).

`clip` is any object with `encode_images([-1, 1] images) -> unit [N, D]` and
`encode_texts(list of str) -> unit [T, D]` (the expansion tasks' ClipEncoder; tests use a small
stand-in). The ||.||^2 is summed over the latent's entries, per sample.
"""

import torch
import torch.nn.functional as F

from torch_utils import misc

#----------------------------------------------------------------------------

EDIT_LAMBDA = 0.005     # Weight of the latent L2 term (Eq. 7).
EDIT_LR = 0.1           # Adam learning rate (Eq. 7).
EDIT_STEPS = 100        # Optimisation steps (not given in the paper; StyleCLIP's default is 300).

def edit_loss(clip, images: torch.Tensor, ws: torch.Tensor, ws_start: torch.Tensor, text_emb: torch.Tensor,
        direction_from=None, lam: float = EDIT_LAMBDA) -> torch.Tensor:
    """Eq. 7 per sample `[N]`. `direction_from`: None (global D_CLIP), or a pair (start image
    embeddings `[N, D]`, source text embedding `[1, D]`) for the directional form."""
    image_emb = clip.encode_images(images)                                   # [N, D]
    if direction_from is None:
        d_clip = 1 - F.cosine_similarity(image_emb, text_emb.expand_as(image_emb), dim=1)
    else:
        start_emb, source_emb = direction_from
        d_clip = 1 - F.cosine_similarity(image_emb - start_emb, (text_emb - source_emb).expand_as(image_emb), dim=1)
    return d_clip + lam * (ws - ws_start).square().flatten(1).sum(dim=1)    # Eq. 7

def edit_latents(G, ws_start: torch.Tensor, clip, text: str, source_text: str = None, num_steps: int = EDIT_STEPS,
        lam: float = EDIT_LAMBDA, lr: float = EDIT_LR) -> tuple:
    """Edit W+ latents `[N, num_ws, w_dim]` towards `text`; returns (edited latents, per-step mean loss list).

    Args:
        G:           the frozen generator (its synthesis renders with constant noise).
        ws_start:    sampled latents w_s.
        clip:        encoder with encode_images / encode_texts (see the module docstring).
        text:        the target prompt t.
        source_text: describes the unedited images; given: directional D_CLIP.
        num_steps:   Adam steps.
        lam:         lambda of Eq. 7.
        lr:          Adam learning rate.
    """
    misc.assert_shape(ws_start, [None, G.synthesis.num_ws, G.w_dim])
    G = G.eval().requires_grad_(False)
    ws_start = ws_start.detach()
    text_emb = clip.encode_texts([text])                                     # [1, D]
    direction_from = None
    if source_text is not None:
        with torch.no_grad():
            start_emb = clip.encode_images(G.synthesis(ws_start, noise_mode='const'))
        direction_from = (start_emb, clip.encode_texts([source_text]))
    ws = ws_start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([ws], lr=lr)
    history = []
    for _ in range(num_steps):
        images = G.synthesis(ws, noise_mode='const')
        loss = edit_loss(clip, images, ws, ws_start, text_emb, direction_from, lam).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()) / ws.shape[0])
    return ws.detach(), history

#----------------------------------------------------------------------------
