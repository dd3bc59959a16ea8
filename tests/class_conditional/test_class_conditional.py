"""The class-conditional baseline (Appendix B): the graft, its gradients, a short run, its snapshot."""

import glob
import json
import os
import subprocess
import sys

import pytest
import torch

from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from training import launch, run_options, snapshot_io
from training.class_conditional import graft
from training.class_conditional.loss import ClassConditionalLoss
from training.networks import Generator
from training.synthetic_data import make_synthetic_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def grafted(num_classes=3, seed=0):
    parent = tiny_generator(8, z_dim=6, mapping_layers=2, channel_base=64, channel_max=8, seed=seed).eval()
    with torch.no_grad():
        parent.mapping.w_avg.copy_(torch.randn([8]))
    kwargs = graft.conditional_G_kwargs(dict(parent.init_kwargs, class_name='training.networks.Generator'), num_classes)
    kwargs.pop('class_name')
    torch.manual_seed(seed + 1)
    G = Generator(**kwargs).eval()
    graft.graft_parent(parent, G)
    return parent, G


def test_every_class_maps_like_the_parent_at_init():
    torch.set_num_threads(1)
    parent, G = grafted()
    z = torch.randn([5, 6])
    w_parent = parent.mapping(z, None)
    for k in range(3):
        c = graft.class_labels(k, 5, 3, 'cpu')
        # Different matmul shapes (fc0's fan-in grew), so equal up to float rounding only.
        torch.testing.assert_close(G.mapping(z, c), w_parent, rtol=0, atol=1e-5)
        torch.testing.assert_close(G.mapping(z, c, truncation_psi=0.5), parent.mapping(z, None, truncation_psi=0.5),
                                   rtol=0, atol=1e-5)
    assert torch.equal(G.mapping.w_avg, parent.mapping.w_avg)
    # The embedding is live (its output reaches fc0), only fc0's columns for it are zero.
    assert G.mapping.embed.weight.abs().sum() > 0
    assert G.mapping.fc0.weight[:, 6:].abs().sum() == 0
    # The synthesis is the parent's, tensor for tensor: the same path renders bit for bit.
    ws = w_parent.detach()
    assert torch.equal(G.synthesis(ws, noise_mode='const'), parent.synthesis(ws, noise_mode='const'))


def test_graft_refuses_a_conditional_parent_and_a_misfit():
    parent, G = grafted()
    with pytest.raises(ValueError, match='unconditional parent'):
        graft.graft_parent(G, G)
    other = tiny_generator(8, z_dim=6, mapping_layers=3, channel_base=64, channel_max=8)
    with pytest.raises(ValueError, match='does not fit'):
        graft.graft_parent(other, G)


class _NoModels:
    lpips_random_backbone = True


def make_loss(G, **kwargs):
    cfg = {'tasks': [{'type': 'Transform', 'args': {'transform': 'negative'}},
                     {'type': 'Transform', 'args': {'transform': 'hflip'}}]}
    D = tiny_discriminator(channel_base=64, channel_max=8)
    resolved = ClassConditionalLoss.resolve_inputs(kwargs, G=G, G_ema=G, snapshot=None)
    return ClassConditionalLoss('cpu', G.mapping, G.synthesis, D, cfg, shared_models=_NoModels(),
                                lambda_recon_lpips=0, **kwargs, **resolved), D


def test_gradients_reach_the_generator_only_and_the_class_columns():
    torch.manual_seed(0)
    parent, G = grafted()
    G.train().requires_grad_(True)
    loss, D = make_loss(G, lambda_src=0)
    assert [p.name for p in loss.get_phases(4, 16)] == ['G_classes']
    loss.accumulate_gradients('G_classes', None, None, torch.randn([4, 6]), torch.zeros([4, 3]), gain=1, cur_nimg=0)
    # The task losses need classes 1, 2 to differ from class 0: fc0's class columns learn.
    assert G.mapping.fc0.weight.grad[:, 6:].abs().sum() > 0
    assert all(p.grad is not None for p in G.synthesis.parameters() if p.requires_grad)
    # fc0's class columns are zero, so no gradient reaches the embedding through them yet.
    assert G.mapping.embed.weight.grad is None or G.mapping.embed.weight.grad.abs().sum() == 0
    assert all(p.grad is None for p in D.parameters())
    assert all(p.grad is None for p in loss.G_frozen.parameters())


def test_shared_replay_noise_makes_the_step_zero_replay_vanish():
    """At step 0 class 0 is the frozen parent: with the same noise draws (shared) the replay L2
    leaves only float rounding (the trained G renders in training mode, the frozen one in eval
    mode: other kernels), so its gradient is tiny; with its own draws (independent, official) not."""
    grads = {}
    for replay_noise in ('independent', 'shared'):
        torch.manual_seed(0)
        parent, G = grafted()
        with torch.no_grad():
            for name, p in G.synthesis.named_parameters():
                if name.endswith('noise_strength'):
                    p.fill_(0.5)                                # init is 0: noise would not show
        G.train().requires_grad_(True)
        loss, _ = make_loss(G, lambda_src=0, lambda_expand=0, replay_noise=replay_noise)
        loss.accumulate_gradients('G_classes', None, None, torch.randn([4, 6]), torch.zeros([4, 3]), gain=1,
                                  cur_nimg=0)
        grads[replay_noise] = sum(float(p.grad.abs().sum()) for p in G.synthesis.parameters() if p.grad is not None)
    assert grads['independent'] > 0.01 and grads['shared'] < 1e-4 * grads['independent'], grads


def test_replay_noise_value_is_checked():
    _, G = grafted()
    with pytest.raises(ValueError, match="replay_noise must be 'independent' or 'shared'"):
        make_loss(G, replay_noise='same')


@pytest.fixture(scope='module')
def parent_pkl(tmp_path_factory):
    folder = tmp_path_factory.mktemp('parent')
    G = tiny_generator(16, mapping_layers=2, channel_base=64, channel_max=8, seed=3)
    D = tiny_discriminator(channel_base=64, channel_max=8, epilogue_kwargs=dict(mbstd_group_size=2))
    path = str(folder / 'parent16.pkl')
    snapshot_io.save_network_pkl(snapshot_data(G.eval(), D.eval()), path)
    return path


def test_a_short_run_with_data_writes_a_snapshot_that_generate_renders(tmp_path, parent_pkl):
    torch.set_num_threads(1)
    cfg = tmp_path / 'tasks.json'
    cfg.write_text(json.dumps({'tasks': [{'type': 'Transform', 'args': {'transform': 'negative'}}]}))
    data = make_synthetic_dataset(str(tmp_path / 'data16.zip'), num_images=8, resolution=16, seed=1)
    opts = run_options.setup_training_options(
        outdir=str(tmp_path / 'out'), data=data, resume=parent_pkl, expansion_cfg_file=str(cfg), class_conditional=True,
        cfg='tiny', batch=2, kimg=0.004, tick=0.004, snap=1, metrics='none', aug='noaug', workers=0,
        lambda_recon_lpips=0)
    assert opts.loss_kwargs['class_name'] == 'training.class_conditional.loss.ClassConditionalLoss'
    assert opts.G_kwargs['c_dim'] == 2
    assert 'replay_noise' not in opts.loss_kwargs          # the default is not recorded: older runs still match
    opts.logging['tensorboard'] = False
    launch.launch_training(opts, str(tmp_path / 'out'), print_options=False)
    pkl = sorted(glob.glob(str(tmp_path / 'out' / '*' / 'network-snapshot-*.pkl')))[-1]
    with open(pkl, 'rb') as f:
        data = snapshot_io.load_network_pkl(f)
    assert data['G_ema'].c_dim == 2 and data['class_names'] == ['source', 'negative']
    with open(parent_pkl, 'rb') as f:
        parent = snapshot_io.load_network_pkl(f)['G_ema']
    assert not torch.equal(data['G_ema'].synthesis.b4.conv1.weight, parent.synthesis.b4.conv1.weight)  # it trained
    outdir = tmp_path / 'images'
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'generate.py'), '--network', pkl, '--seeds', '0-1',
                             '--class', '1', '--outdir', str(outdir)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(glob.glob(str(outdir / '*.png'))) == 2


def test_class_conditional_needs_a_config(parent_pkl):
    with pytest.raises(run_options.OptionError, match='--expansion_cfg_file'):
        run_options.setup_training_options(outdir='x', resume=parent_pkl, class_conditional=True, lambda_src=0)
