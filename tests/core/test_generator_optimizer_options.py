"""--glr, --g_beta1, --affine_lr_mult (not official): they reach G's optimizer param groups, leave D
and the default path untouched, and bad values are one-line errors naming the flag."""

import pytest
import torch
from click.testing import CliRunner

import train
from tiny_nets import tiny_discriminator, tiny_generator
from training import loop_setup, presets, run_options
from training.loss import Loss
from training.synthetic_data import make_synthetic_dataset

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data16(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp('data') / 'shapes16.zip'), num_images=8,
                                  resolution=16, seed=3, style='shapes')


class AllParams(Loss):
    def trainable_params(self, name, module):
        return list(module.parameters())


def affine_names(module) -> set[str]:
    return {n for n, _ in module.named_parameters() if '.affine.' in n}


def test_default_options_keep_the_preset_optimizer(data16):
    opts = run_options.setup_training_options(data=data16, cfg='tiny', metrics='none', workers=0)
    spec = presets.resolve_preset('tiny', 16, 1)
    assert opts.G_opt_kwargs == dict(class_name='torch.optim.Adam', lr=spec['lrate'], betas=list(spec['betas']),
                                     eps=spec['eps'])
    assert opts.D_opt_kwargs == opts.G_opt_kwargs
    G, D = tiny_generator(), tiny_discriminator()
    optimizers, _ = loop_setup.build_optimizers(AllParams(), G, D, opts.G_opt_kwargs, opts.D_opt_kwargs, 4, 16)
    assert len(optimizers['G'].param_groups) == 1 and len(optimizers['D'].param_groups) == 1


def test_flags_reach_the_generator_param_groups(data16):
    opts = run_options.setup_training_options(data=data16, cfg='tiny', metrics='none', workers=0, glr=0.01,
                                              g_beta1=0.9, affine_lr_mult=10)
    assert opts.G_opt_kwargs['lr'] == 0.01 and opts.G_opt_kwargs['betas'][0] == 0.9
    assert opts.D_opt_kwargs['lr'] == presets.resolve_preset('tiny', 16, 1)['lrate'] and opts.D_opt_kwargs['betas'][0] == 0
    G, D = tiny_generator(), tiny_discriminator()
    optimizers, params = loop_setup.build_optimizers(AllParams(), G, D, opts.G_opt_kwargs, opts.D_opt_kwargs, 4, 16)
    others, affine = optimizers['G'].param_groups
    ratio = 4 / 5                                           # lazy-regularisation rescaling, G_reg_interval 4
    assert others['lr'] == pytest.approx(0.01 * ratio) and affine['lr'] == pytest.approx(0.1 * ratio)
    assert affine['betas'][0] == pytest.approx(0.9 ** ratio) and others['betas'][0] == pytest.approx(0.9 ** ratio)
    by_id = {id(p): n for n, p in G.named_parameters()}
    assert {by_id[id(p)] for p in affine['params']} == affine_names(G) and affine_names(G)
    assert len(others['params']) + len(affine['params']) == len(params['G']) == len(list(G.parameters()))
    assert len(optimizers['D'].param_groups) == 1                 # D keeps the preset's single group


def test_affine_layers_step_by_the_multiplier():
    """Adam's first step moves each weight by about lr: the affine layers move mult times as far."""
    G, D = tiny_generator(seed=0), tiny_discriminator()
    kwargs = dict(class_name='torch.optim.Adam', lr=1e-3, betas=[0.0, 0.99], eps=1e-8, affine_lr_mult=10)
    optimizers, _ = loop_setup.build_optimizers(AllParams(), G, D, kwargs, dict(kwargs, affine_lr_mult=1), None, None)
    before = {n: p.detach().clone() for n, p in G.named_parameters()}
    G.synthesis(torch.randn([2, G.num_ws, G.w_dim])).square().mean().backward()
    optimizers['G'].step()
    steps = {n: float((p.detach() - before[n]).abs().max()) for n, p in G.named_parameters() if p.grad is not None}
    affine = [v for n, v in steps.items() if n in affine_names(G) and v > 0]
    others = [v for n, v in steps.items() if n not in affine_names(G) and v > 0]
    assert affine and others
    assert max(affine) == pytest.approx(1e-2, rel=1e-3) and max(others) == pytest.approx(1e-3, rel=1e-3)


def test_no_affine_layers_is_a_clear_error():
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    kwargs = dict(class_name='torch.optim.Adam', lr=1e-3, betas=[0.0, 0.99], eps=1e-8)
    with pytest.raises(ValueError, match='affine_lr_mult: G has no trainable affine'):
        loop_setup.build_optimizers(AllParams(), G, D, dict(kwargs, affine_lr_mult=2), kwargs, None, None)


@pytest.mark.parametrize('flag, value', [('--glr', '0'), ('--g_beta1', '1'), ('--g_beta1', '-0.1'),
                                         ('--affine_lr_mult', '-2')])
def test_bad_values_are_one_line_errors(data16, tmp_path, flag, value):
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', data16, '--cfg', 'tiny',
                                             '--metrics', 'none', flag, value, '--dry-run'])
    assert result.exit_code != 0 and flag in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / 'runs').exists()
