"""Domain expansion of a StyleGAN3 generator: the SeFA basis over its affines, and an end-to-end
train.py run (--resume sg3.pkl --expansion_cfg_file) on the CPU whose snapshot the tools and the
viewer render."""

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch

import generate_aligned
import legacy
import sg3_fixture
import traverse
from training import launch
from training import run_options
from training.expansion import basis as basis_module

pytestmark = pytest.mark.usefixtures('one_thread')


def _pixels(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path)).astype(int)


def test_sefa_basis_uses_the_input_and_layer_affines_but_not_torgb():
    G = sg3_fixture.tiny_sg3_generator(seed=1)
    names = [name for name, _ in basis_module.sefa_weights(G)]
    layers = G.synthesis.layer_names
    assert names == ['synthesis.input.affine.weight'] + [f'synthesis.{n}.affine.weight' for n in layers[:-1]]
    basis = basis_module.factorize(G)
    torch.testing.assert_close(basis.T @ basis, torch.eye(G.w_dim), atol=1e-5, rtol=0)
    # Columns are right singular vectors in decreasing order: ||A b_i|| falls with i.
    A = torch.cat([p for _, p in basis_module.sefa_weights(G)])
    gains = (A @ basis).norm(dim=0)
    assert torch.all(gains[:-1] >= gains[1:] - 1e-5)
    # The ToRGB affine does not take part; the first layer's does.
    torgb = getattr(G.synthesis, layers[-1]).affine.weight
    torgb.add_(torch.randn_like(torgb))
    assert torch.equal(basis_module.factorize(G), basis)
    getattr(G.synthesis, layers[0]).affine.weight.mul_(3)
    assert not torch.allclose(basis_module.factorize(G).abs(), basis.abs(), atol=1e-3)


def test_official_stylegan3_pickle_resolves_into_expansion_options(tmp_path):
    """--resume with an official StyleGAN3 pickle: the architecture is the pickle's own StyleGAN3 class."""
    cfg = tmp_path / 'cfg.json'
    cfg.write_text(json.dumps({'tasks': [{'type': 'Transform', 'args': {'transform': 'negative'}}]}))
    opts = run_options.setup_training_options(resume=str(sg3_fixture.path('t', 'snapshot.pkl')),
                                              expansion_cfg_file=str(cfg), lambda_src=0, aug='noaug',
                                              outdir=str(tmp_path / 'out'), fp32=True)
    assert opts.G_kwargs['class_name'] == 'training.networks_stylegan3.Generator'
    assert opts.G_kwargs['num_fp16_res'] == 0 and 'synthesis_kwargs' not in opts.G_kwargs  # --fp32, flat kwargs
    assert opts.loss_kwargs['expansion_cfg']['tasks'][0]['dimension'] == 31


def test_expansion_trains_and_the_tools_render_it(tmp_path):
    pkl = sg3_fixture.save_tiny_sg3_snapshot(tmp_path / 'sg3.pkl')
    cfg = tmp_path / 'cfg.json'
    cfg.write_text(json.dumps({'tasks': [{'type': 'Transform', 'args': {'transform': 'negative'}},
                                         {'type': 'Transform', 'args': {'transform': 'hflip'}}]}))
    opts = run_options.setup_training_options(resume=pkl, expansion_cfg_file=str(cfg), lambda_src=0,
                                              lambda_recon_lpips=0, kimg=0.008, batch=4, tick=0.004, aug='noaug',
                                              metrics='none', snap=2, workers=0, outdir=str(tmp_path / 'out'))
    opts.grid_size = [2, 2]  # keep the snapshot grids small
    result = launch.launch_training(opts, str(tmp_path / 'out'))
    snapshot = sorted(f for f in os.listdir(result['run_dir']) if f.startswith('network-snapshot'))[-1]
    snapshot = os.path.join(result['run_dir'], snapshot)

    source, expanded = legacy.load_network_pkl(pkl), legacy.load_network_pkl(snapshot)
    assert type(expanded['G_ema']) is type(source['G_ema'])
    assert expanded['repurposed_dims'].tolist() == [15, 14]
    torch.testing.assert_close(expanded['latent_basis'], basis_module.factorize(source['G_ema']), atol=1e-6, rtol=0)
    changed = [n for n, p in expanded['G'].synthesis.named_parameters()
               if not torch.equal(p, dict(source['G'].synthesis.named_parameters())[n])]
    assert changed, 'training changed no synthesis weight'

    aligned = generate_aligned.generate_aligned(snapshot, [0, 1], str(tmp_path / 'aligned'), progress=False)
    assert os.path.isfile(tmp_path / 'aligned' / 'grid.png')
    assert sorted(os.listdir(tmp_path / 'aligned')) == ['base', 'dim014_hflip', 'dim015_negative', 'grid.png'], aligned
    traverse.traverse(snapshot, [0], 'negative', str(tmp_path / 'trav'), steps='0:20:3')
    assert os.listdir(tmp_path / 'trav') == ['traverse_dim015_negative.png']

    # The viewer renders it too: the base image at strength 0 equals generate_aligned's base PNG.
    from viewer_app.model import load_viewer_model
    model = load_viewer_model(snapshot)
    base = model.render(model.parse_request({'seed': ['0'], 'domains': ['negative:0']}))
    edit = model.render(model.parse_request({'seed': ['0'], 'domains': ['negative:1']}))
    assert base.shape == (16, 16, 3)
    assert (np.abs(base.astype(int) - _pixels(tmp_path / 'aligned' / 'base' / 'seed0000.png'))).max() <= 1
    assert np.abs(edit.astype(int) - base.astype(int)).mean() > 1
