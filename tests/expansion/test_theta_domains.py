"""Parameterised domains inside expansion configs (training/expansion/theta_domains.py, issue 14):
config validation, identity at step 0, gradients that reach theta only, the snapshot round trip,
resume, generate_aligned rows, traverse.py's strength walk and a short training run that fits a theta domain."""

import copy

import numpy as np
import pytest
import torch

import dnnlib
from generate_aligned import generate_aligned
from traverse import traverse
from image_compare import assert_images_close
from tiny_nets import tiny_discriminator, tiny_generator
from training.expansion import evaluation
from training.expansion.config import ExpansionConfigError, parse_expansion_config
from training.expansion.expanded_generator import ExpandedGenerator, load_expanded_generator
from training.expansion.loss import DomainExpansionLoss
from training.expansion.parameterizations import PARAMETERIZATIONS
from training.expansion.render import render
from training.expansion.tasks.shared_models import SharedModels
from training.expansion.theta_domains import SNAPSHOT_KEY, ThetaDomainsError
from training.snapshot_io import load_network_pkl, save_network_pkl

W_DIM = 8


def mixed_cfg(parameterization='rgb_affine') -> dict:
    """One repurposed-direction domain (negative) and one theta domain (grayscale)."""
    return {'tasks': [{'type': 'Transform', 'args': {'transform': 'negative'}},
                      {'type': 'Transform', 'parameterization': parameterization, 'args': {'transform': 'grayscale'}}]}


def make_loss(G, cfg, snapshot=None, **kwargs):
    kwargs = {'lambda_src': 0, 'lambda_recon_lpips': 0, 'lambda_recon_l2': 1, **kwargs}
    kwargs = {**DomainExpansionLoss.resolve_inputs(kwargs, G=G, G_ema=G, snapshot=snapshot), **kwargs}
    return DomainExpansionLoss(torch.device('cpu'), G.mapping, G.synthesis, None, expansion_cfg=cfg,
                               batch_gpu=8, shared_models=SharedModels('cpu'), **kwargs)


@pytest.fixture(scope='module')
def G():
    return tiny_generator(W_DIM, channel_base=64, channel_max=8, seed=0).eval()


def base_latents(loss, G, n=4, seed=0):
    z = torch.from_numpy(np.random.RandomState(seed).randn(n, W_DIM).astype(np.float32))
    with torch.no_grad():
        w = G.mapping(z, torch.zeros([n, 0]), skip_w_avg_update=True)[:, 0]
    return loss.subspaces.project_base(w, G.mapping.w_avg)                     # Eq. 1

#----------------------------------------------------------------------------
# Config.


def test_config_accepts_parameterization_and_round_trips():
    cfg = parse_expansion_config(mixed_cfg('channel_scale'), W_DIM)
    assert cfg.repurposed_dims == [7]                        # the theta task consumes no dormant direction
    assert [t.parameterization for t in cfg.tasks] == [None, 'channel_scale']
    assert cfg.tasks[1].dimension is None
    assert cfg.domain_slots == [('direction', 0), ('theta', 0)]
    saved = cfg.to_dict()
    assert 'dimension' not in saved['tasks'][1] and saved['tasks'][1]['parameterization'] == 'channel_scale'
    again = parse_expansion_config(saved, W_DIM)
    assert again.to_dict() == saved and again.repurposed_dims == [7]


def test_config_example_parses():
    from conftest import REPO_ROOT
    from training.expansion.config import load_expansion_config
    cfg = load_expansion_config(str(REPO_ROOT / 'config_examples' / 'theta.json'), 32, check_resources=False)
    assert cfg.repurposed_dims == [31] and [t.parameterization for t in cfg.tasks] == [None, 'rgb_affine', 'channel_scale']


def test_theta_tasks_do_not_count_against_w_dim():
    raw = {'tasks': [{'type': 'Transform', 'parameterization': 'style_offset', 'args': {'transform': 'hflip',
                      'name': f'd{i}'}} for i in range(10)]}
    assert parse_expansion_config(raw, 4).repurposed_dims == []


def test_config_rejects_dimension_with_parameterization():
    raw = {'tasks': [{'type': 'Transform', 'dimension': 3, 'parameterization': 'rgb_affine',
                      'args': {'transform': 'grayscale'}}]}
    with pytest.raises(ExpansionConfigError) as info:
        parse_expansion_config(raw, W_DIM)
    assert info.value.problems == [info.value.problems[0]]
    assert 'tasks[0].dimension' in str(info.value) and 'remove "dimension"' in str(info.value)


def test_config_rejects_unknown_parameterization_listing_valid_ones():
    raw = {'tasks': [{'type': 'Transform', 'parameterization': 'lora', 'args': {'transform': 'grayscale'}}]}
    with pytest.raises(ExpansionConfigError) as info:
        parse_expansion_config(raw, W_DIM)
    message = str(info.value)
    assert len(info.value.problems) == 1 and "tasks[0].parameterization: unknown parameterization 'lora'" in message
    assert all(name in message for name in PARAMETERIZATIONS)

#----------------------------------------------------------------------------
# Rendering and gradients.


@pytest.mark.parametrize('parameterization', list(PARAMETERIZATIONS))
def test_theta_starts_at_identity_and_renders_the_base_image(G, parameterization):
    loss = make_loss(G, mixed_cfg(parameterization))
    base_w = base_latents(loss, G)
    base_img = render(G.synthesis, base_w)
    assert torch.equal(loss.domains.render(G.synthesis, base_w, 1), base_img)   # same path, identity theta: exact
    # The training render of a mixed batch: direction samples are edits (Eq. 2), theta samples the base.
    task_index = torch.tensor([1, 0, 1, 0])
    with torch.no_grad():
        mixed = loss.domains.render_training(G.synthesis, base_w, task_index, noise_mode='const')
    edit_img = render(G.synthesis, loss.subspaces.edit(base_w, 0))
    assert_images_close(mixed[task_index == 1], base_img[task_index == 1])
    assert_images_close(mixed[task_index == 0], edit_img[task_index == 0])


def test_theta_task_gradients_reach_theta_only(G):
    G = copy.deepcopy(G)
    loss = make_loss(G, mixed_cfg('channel_scale'))
    theta = loss.theta_domains.thetas[0]
    assert any(p is theta for p in loss.trainable_params('G', G))             # trained by G's optimizer
    G.synthesis.requires_grad_(True)
    base_w = base_latents(loss, G)
    task_index = torch.ones([4], dtype=torch.int64)                             # every sample: the theta task
    edit_img = loss.domains.render_training(G.synthesis, base_w, task_index)
    base_img = render(G.synthesis, base_w)
    loss.tasks[1].loss(None, base_img, edit_img).backward()
    assert theta.grad is not None and bool(torch.isfinite(theta.grad).all()) and theta.grad.abs().sum() > 0
    assert all(p.grad is None for p in G.synthesis.parameters())               # G's weights entered detached

#----------------------------------------------------------------------------
# Snapshots, resume, generate_aligned.


def _expanded_snapshot(G, loss, path):
    data = dict(training_set_kwargs=None, **loss.snapshot_extras(), G=G, D=tiny_discriminator(channel_base=64, channel_max=8),
                G_ema=copy.deepcopy(G), augment_pipe=None)
    save_network_pkl(data, path)
    return str(path)


def test_snapshot_round_trip_restores_theta_and_resume_continues_it(G, tmp_path):
    loss = make_loss(G, mixed_cfg('rgb_affine'))
    with torch.no_grad():
        loss.theta_domains.thetas[0].add_(torch.randn(12) * 0.1)
    trained = loss.theta_domains.thetas[0].detach().clone()
    data = load_network_pkl(_expanded_snapshot(G, loss, tmp_path / 'expanded.pkl'))
    [entry] = data[SNAPSHOT_KEY]
    assert entry['name'] == 'grayscale' and entry['parameterization'] == 'rgb_affine'
    assert torch.equal(entry['theta'], trained)
    eg = ExpandedGenerator.from_snapshot(data)
    assert eg.theta_names == ['grayscale'] and eg.names == ['negative']
    assert torch.equal(eg.theta_domains.thetas[0], trained)
    resumed = make_loss(copy.deepcopy(G), data['expansion_cfg'], snapshot=data)   # as the loop set-up resolves it
    assert torch.equal(resumed.theta_domains.thetas[0].detach(), trained)


def test_stored_theta_of_wrong_size_is_one_line_error(G, tmp_path):
    loss = make_loss(G, mixed_cfg('rgb_affine'))
    data = load_network_pkl(_expanded_snapshot(G, loss, tmp_path / 'expanded.pkl'))
    data[SNAPSHOT_KEY][0]['theta'] = torch.ones([5])
    with pytest.raises(ThetaDomainsError) as info:
        make_loss(G, data['expansion_cfg'], snapshot=data)
    assert '\n' not in str(info.value) and 'grayscale' in str(info.value) and '12' in str(info.value)


def test_generate_aligned_renders_theta_domain_rows(G, tmp_path):
    loss = make_loss(G, mixed_cfg('rgb_affine'))
    with torch.no_grad():
        loss.theta_domains.thetas[0].copy_(torch.tensor([0, 0, 1, 0, 1, 0, 1, 0, 0, 0.1, 0, -0.1]))  # swap R, B
    pkl = _expanded_snapshot(G, loss, tmp_path / 'expanded.pkl')
    paths = generate_aligned(pkl, [0, 1], str(tmp_path / 'out'), progress=False)
    assert set(paths) == {'base', 'dim007_negative', 'theta_grayscale', 'grid'}
    only = generate_aligned(pkl, [0], str(tmp_path / 'only'), domains='grayscale', grid=False, progress=False)
    assert set(only) == {'base', 'theta_grayscale', 'grid'}
    eg = load_expanded_generator(pkl)
    for seed, path in zip([0, 1], paths['theta_grayscale']):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, W_DIM))
        base = render(eg.G.synthesis, eg.project_base(eg.map(z, torch.zeros([1, 0]))))
        expected = torch.stack([base[:, 2], base[:, 1], base[:, 0]], dim=1) + torch.tensor([0.1, 0, -0.1]).reshape(1, 3, 1, 1)
        assert_images_close(path, ((expected * 127.5 + 128).clamp(0, 255)).to(torch.uint8)[0].permute(1, 2, 0).numpy())

def test_traverse_walks_theta_strength_from_source_to_domain(G, tmp_path):
    loss = make_loss(G, mixed_cfg('rgb_affine'))
    with torch.no_grad():
        loss.theta_domains.thetas[0].copy_(torch.tensor([0, 0, 1, 0, 1, 0, 1, 0, 0, 0.1, 0, -0.1]))  # swap R, B
    pkl = _expanded_snapshot(G, loss, tmp_path / 'expanded.pkl')
    eg = load_expanded_generator(pkl)
    ws = torch.cat([eg.map(torch.from_numpy(np.random.RandomState(s).randn(1, W_DIM)), torch.zeros([1, 0])) for s in [0, 1]])
    source, half, domain = (eg.render_theta(ws, 0, a) for a in (0.0, 0.5, 1.0))
    torch.testing.assert_close(source, render(eg.G.synthesis, eg.project_base(ws)), rtol=0, atol=1e-6)
    assert (domain - source).abs().max() > 0.1                              # the domain really differs
    torch.testing.assert_close(half, (source + domain) / 2, rtol=0, atol=1e-5)  # rgb_affine is affine in theta

    result = traverse(pkl, [0, 1], 'grayscale', str(tmp_path / 'walk'), steps='0:1:3')
    assert result['grid'].endswith('traverse_theta_grayscale.png') and result['steps'] == [0.0, 0.5, 1.0]
    assert result['images'].shape == (2, 3, G.img_resolution, G.img_resolution, 3)   # [seeds, steps, H, W, C]
    aligned = generate_aligned(pkl, [0, 1], str(tmp_path / 'aligned'), grid=False, progress=False)
    for n in range(2):
        assert_images_close(aligned['base'][n], result['images'][n, 0])
        assert_images_close(aligned['theta_grayscale'][n], result['images'][n, 2])
    direction = traverse(pkl, [0], 'negative', str(tmp_path / 'dir'), steps='0:20:2')
    assert direction['grid'].endswith('traverse_dim007_negative.png')
    with pytest.raises(dnnlib.util.UserError, match='--domain: give one domain'):
        traverse(pkl, [0], 'grayscale,negative', str(tmp_path / 'two'))
    with pytest.raises(dnnlib.util.UserError, match='strength = 1'):
        traverse(pkl, [0], 'grayscale', str(tmp_path / 'bad'), steps='0:1')

#----------------------------------------------------------------------------
# Training.


def test_short_run_trains_direction_and_theta_domains_together(G):
    G_src = G
    G = copy.deepcopy(G_src).train()
    torch.manual_seed(0)
    loss = make_loss(G, mixed_cfg('rgb_affine'))
    before = evaluation.error_matrix(G.synthesis, G_src.mapping, loss.subspaces, loss.tasks, G_src.mapping.w_avg,
                                     n=16, seed=1, domains=loss.domains)
    G.synthesis.requires_grad_(True)
    opt = torch.optim.Adam(loss.trainable_params('G', G), lr=0.01, betas=(0.0, 0.99))
    for _ in range(25):
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('G_expand_and_recon', None, None, torch.randn([8, W_DIM]), torch.zeros([8, 0]), 1.0, 0)
        opt.step()
    after = evaluation.error_matrix(G.synthesis, G_src.mapping, loss.subspaces, loss.tasks, G_src.mapping.w_avg,
                                    n=16, seed=1, domains=loss.domains)
    assert after[1, 1] < 0.5 * before[1, 1], (before, after)                  # the theta domain (grayscale) fits
    assert after[0, 0] < before[0, 0], (before, after)                        # the direction domain trains too


def test_continued_run_continues_theta_exactly(tmp_path):
    """A run interrupted at a snapshot and continued ends with the same theta and G as an
    uninterrupted one (theta and its Adam state ride with G's optimizer and the snapshot)."""
    import json

    from tiny_nets import snapshot_data
    from training import launch, run_options
    from training import training_loop as tl
    G = tiny_generator(W_DIM, channel_base=64, channel_max=8, seed=0)
    source_pkl, cfg_path = tmp_path / 'source.pkl', tmp_path / 'theta.json'
    save_network_pkl(snapshot_data(G, tiny_discriminator(channel_base=64, channel_max=8)), source_pkl)
    cfg_path.write_text(json.dumps(mixed_cfg('channel_scale')))

    def options(outdir, kimg):  # Ticks of 20 images, batch 4: snapshots after steps 1, 6, 11.
        return run_options.setup_training_options(outdir=str(outdir), resume=str(source_pkl), expansion_cfg_file=str(cfg_path),
            cfg='tiny', kimg=kimg, tick=0.02, snap=1, metrics='none', workers=0, aug='noaug', lambda_src=0,
            lambda_recon_lpips=0)

    full = launch.launch_training(options(tmp_path / 'full', 0.044), str(tmp_path / 'full'), print_options=False)
    part = launch.launch_training(options(tmp_path / 'part', 0.024), str(tmp_path / 'part'), print_options=False)
    opts = options(tmp_path / 'part', 0.044)
    opts.run_dir = part['run_dir']
    cont = tl.training_loop(dict(opts), continue_pkl=part['last_snapshot'])
    a, b = load_network_pkl(full['last_snapshot']), load_network_pkl(cont['last_snapshot'])
    theta_a, theta_b = a[SNAPSHOT_KEY][0]['theta'], b[SNAPSHOT_KEY][0]['theta']
    assert not torch.equal(theta_a, torch.ones_like(theta_a))                  # theta trained
    assert float((theta_a - theta_b).abs().max()) <= 1e-6
    for (name, x), (_, y) in zip(a['G'].named_parameters(), b['G'].named_parameters()):
        assert float((x - y).abs().max()) <= 1e-6, name
