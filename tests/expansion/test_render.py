"""training/expansion/render.py: the one W -> W+ broadcast and the chunked render."""

import pytest
import torch

from image_compare import assert_images_close
from tiny_nets import tiny_generator
from training.expansion.render import broadcast_ws, render


def test_broadcast_gives_every_layer_the_same_latent_and_keeps_gradients():
    w = torch.randn([3, 16], requires_grad=True)
    ws = broadcast_ws(w, 5)
    assert ws.shape == (3, 5, 16)
    for layer in range(5):
        assert torch.equal(ws[:, layer], w)
    ws.sum().backward()
    torch.testing.assert_close(w.grad, torch.full_like(w, 5.0))
    assert broadcast_ws(ws, 5) is ws                          # W+ passes through
    with pytest.raises(AssertionError):
        broadcast_ws(ws, 4)                                   # a W+ with another layer count is a bug


def test_chunked_render_matches_one_batch():
    torch.manual_seed(0)
    G = tiny_generator(16).eval()
    w = G.mapping(torch.randn([5, G.z_dim]), None)[:, 0]
    whole = G.synthesis(w.unsqueeze(1).repeat(1, G.synthesis.num_ws, 1), noise_mode='const')
    assert_images_close(render(G.synthesis, w, batch_size=2), whole)          # other batch split
    assert torch.equal(render(G.synthesis, w, batch_size=5), render(G.synthesis, w, batch_size=5))
