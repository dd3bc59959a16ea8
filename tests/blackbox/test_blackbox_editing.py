"""Text editing of sampled latents (training/blackbox/editing.py, paper Eq. 7) with a small
stand-in CLIP: the loss falls, the lambda term holds the latent near its start, only the latent
is optimised, and render_seeds (what generate() renders) applies the edit."""

import pytest
import torch
import torch.nn.functional as F

from tiny_nets import tiny_generator
from training.blackbox import editing

pytestmark = pytest.mark.usefixtures('one_thread')


class ColourClip:
    """'CLIP' whose image embedding is the mean colour and whose texts name colours."""

    TEXTS = {'red': [1.0, 0.0, 0.0], 'blue': [0.0, 0.0, 1.0], 'gray': [1.0, 1.0, 1.0]}

    def encode_images(self, images):
        return F.normalize(images.mean(dim=(2, 3)) + 1.0, dim=1)             # [N, 3], positive colours

    def encode_texts(self, texts):
        return F.normalize(torch.tensor([self.TEXTS[t] for t in texts]), dim=1)


def _setup():
    G = tiny_generator(8, resolution=16, seed=0).eval().requires_grad_(False)
    ws = G.mapping(torch.randn(3, 8), None).detach()
    return G, ws


@pytest.mark.parametrize('source_text', [None, 'gray'])
def test_edit_moves_images_towards_the_prompt(source_text):
    G, ws = _setup()
    clip = ColourClip()
    edited, history = editing.edit_latents(G, ws, clip, 'red', source_text=source_text, num_steps=25)
    assert history[-1] < history[0]
    red = clip.encode_texts(['red'])

    def redness(w):
        with torch.no_grad():
            return F.cosine_similarity(clip.encode_images(G.synthesis(w, noise_mode='const')), red.expand(3, 3)).mean()
    assert redness(edited) > redness(ws)
    assert all(p.grad is None for p in G.parameters())


def test_lambda_term_holds_the_latent():
    G, ws = _setup()
    clip = ColourClip()
    loose, _ = editing.edit_latents(G, ws, clip, 'blue', num_steps=20, lam=0.0)
    tight, _ = editing.edit_latents(G, ws, clip, 'blue', num_steps=20, lam=100.0)
    assert (tight - ws).norm() < 0.5 * (loose - ws).norm()
    # Eq. 7 at the start: D_CLIP only (the L2 term is 0).
    with torch.no_grad():
        images = G.synthesis(ws, noise_mode='const')
        loss = editing.edit_loss(clip, images, ws, ws, clip.encode_texts(['blue']))
        d_clip = 1 - F.cosine_similarity(clip.encode_images(images), clip.encode_texts(['blue']).expand(3, 3))
    torch.testing.assert_close(loss, d_clip)


def test_render_seeds_applies_the_edit():
    from training.blackbox import pipeline
    from training.blackbox.sampler import LatentSampler
    G, ws = _setup()
    sampler = LatentSampler(dict(num_ws=G.synthesis.num_ws, w_dim=8, base_channels=8, channel_mults=(1, 2)),
                            dict(num_timesteps=4))
    sampler.normalizer.fit(ws + 0.1 * torch.randn_like(ws))                  # ws: [3, num_ws, 8]
    clip = ColourClip()
    plain = pipeline.render_seeds(G, sampler, [0, 1], 0.1, 2)
    edited = pipeline.render_seeds(G, sampler, [0, 1], 0.1, 2, edit=dict(clip=clip, text='red', num_steps=15))
    red = clip.encode_texts(['red']).expand(2, 3)
    assert F.cosine_similarity(clip.encode_images(edited), red).mean() > F.cosine_similarity(clip.encode_images(plain), red).mean()
