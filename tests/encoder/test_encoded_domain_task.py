"""EncodedDomain: an expansion config names it by dotted path; its target is the encoded domain's
render of the base image (one encoder pass at build time); config errors name the argument."""

import os

import pytest
import torch

from tiny_nets import tiny_generator
from training import cli_helpers
from training.encoder import domains, pipeline
from training.encoder.encoder import DomainEncoder, save_encoder_snapshot
from training.encoder.parameterizations import get_parameterization
from training.expansion.config import ExpansionConfigError, parse_expansion_config
from training.expansion.tasks import SharedModels, build_tasks

pytestmark = pytest.mark.usefixtures('one_thread')
TYPE = 'training.encoder.tasks.EncodedDomain'


@pytest.fixture(scope='module')
def G():
    return tiny_generator(seed=5).eval().requires_grad_(False)


def _setup(tmp_path, G, parameterization='rgb_affine', head_std=0.0):
    param = get_parameterization(parameterization, G.synthesis)
    enc = DomainEncoder(param.num_params, param.identity(), channels=8, hidden=16)
    torch.nn.init.normal_(enc.head[-1].weight, std=head_std)
    encoder_pt = str(tmp_path / 'enc.pt')
    save_encoder_snapshot(encoder_pt, enc, parameterization, 'x', 16, {})
    images = pipeline.render_seeds(G, [1, 2])
    for folder, batch in (('refs', domains.compose('negative', domains.negation())(images)), ('srcs', images)):
        os.makedirs(tmp_path / folder, exist_ok=True)
        for i, image in enumerate(batch):
            cli_helpers.save_image(image, str(tmp_path / folder / f'r{i}.png'))
    args = dict(encoder=encoder_pt, references=str(tmp_path / 'refs'), sources=str(tmp_path / 'srcs'))
    return enc.eval(), args


def _build(G, cfg):
    config = parse_expansion_config(cfg, w_dim=G.w_dim, img_resolution=16, img_channels=3)
    return config, build_tasks(config, 'cpu', SharedModels('cpu'), z_dim=G.z_dim, img_resolution=16)


def test_task_target_is_the_encoded_render(tmp_path, G):
    enc, args = _setup(tmp_path, G, head_std=0.05)
    config, (task,) = _build(G, {'tasks': [{'type': TYPE, 'args': args}]})
    assert task.name == 'encoded-refs' and config.repurposed_dims == [G.w_dim - 1]
    refs, srcs = pipeline.load_reference_pairs(G, args['references'], args['sources'])
    theta = enc(refs[None], srcs[None])[0]
    torch.testing.assert_close(task.theta, theta)
    ws = G.mapping(torch.randn([2, G.z_dim]), None)
    param = get_parameterization('rgb_affine', G.synthesis)
    base = G.synthesis(ws, noise_mode='const')
    rendered = param.render(ws, theta)
    torch.testing.assert_close(task.target(base), rendered, rtol=1e-5, atol=1e-5)
    assert task.error(None, base, rendered).max() < 1e-8
    assert task.error(None, base, base).min() > 1e-6


def test_identity_encoder_asks_for_the_base(tmp_path, G):
    _, args = _setup(tmp_path, G, head_std=0.0)
    _, (task,) = _build(G, {'tasks': [{'type': TYPE, 'args': args}]})
    base = torch.rand([2, 3, 16, 16]) * 2 - 1
    assert torch.equal(task.target(base), base)


def test_config_errors_name_the_argument(tmp_path, G):
    _, args = _setup(tmp_path, G, parameterization='channel_scale')
    with pytest.raises(ExpansionConfigError, match=r'tasks\[0\]\.args\.encoder: is a channel_scale encoder'):
        _build(G, {'tasks': [{'type': TYPE, 'args': args}]})
    _, args = _setup(tmp_path, G)
    os.remove(tmp_path / 'srcs' / 'r1.png')
    with pytest.raises(ExpansionConfigError, match=r"args\.sources: no source image for reference 'r1'"):
        _build(G, {'tasks': [{'type': TYPE, 'args': args}]})
    with pytest.raises(ExpansionConfigError, match=r'args\.references: directory not found'):
        _build(G, {'tasks': [{'type': TYPE, 'args': {**args, 'references': str(tmp_path / 'nope')}}]})


def test_importing_the_encoder_tasks_leaves_the_registry_alone():
    """Encoder tasks are named by dotted path; importing them never adds registry entries (the
    registry is what snapshot data may name, and what the tools list)."""
    import training.encoder.target_clip  # noqa: F401
    import training.encoder.tasks  # noqa: F401
    from training.expansion.tasks.base import registered_task_types
    assert registered_task_types() == ['MyStyle', 'NADA', 'Transform']
