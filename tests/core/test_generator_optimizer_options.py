"""--glr, --g_beta1, --affine_lr_mult, --glr_decay (not official): they reach G's optimizer param groups, leave D
and the default path untouched, and bad values are one-line errors naming the flag."""

import pytest
import torch
from click.testing import CliRunner

import legacy
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
                                         ('--affine_lr_mult', '-2'), ('--glr_decay', '1.5'),
                                         ('--glr_decay', '-0.1')])
def test_bad_values_are_one_line_errors(data16, tmp_path, flag, value):
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', data16, '--cfg', 'tiny',
                                             '--metrics', 'none', flag, value, '--dry-run'])
    assert result.exit_code != 0 and flag in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / 'runs').exists()


def test_decay_scale_is_constant_then_linear_to_zero():
    from training.lr_schedule import decay_scale
    total = 1000
    assert [decay_scale(n, total, 0.0) for n in (0, 500, 999)] == [1.0, 1.0, 1.0]
    assert decay_scale(0, total, 0.3) == 1.0 and decay_scale(700, total, 0.3) == 1.0
    assert decay_scale(850, total, 0.3) == pytest.approx(0.5)
    assert decay_scale(990, total, 0.3) == pytest.approx(10 / 300)
    assert decay_scale(total, total, 0.3) == 0.0
    values = [decay_scale(n, total, 1.0) for n in range(0, total, 100)]
    assert values == sorted(values, reverse=True) and values[0] == 1.0


def test_glr_decay_schedules_every_generator_group_only(data16):
    from training import lr_schedule
    opts = run_options.setup_training_options(data=data16, cfg='tiny', metrics='none', workers=0, glr=0.01,
                                              affine_lr_mult=10, glr_decay=0.5)
    assert opts.G_opt_kwargs['lr_decay'] == 0.5 and 'lr_decay' not in opts.D_opt_kwargs
    G, D = tiny_generator(), tiny_discriminator()
    optimizers, _ = loop_setup.build_optimizers(AllParams(), G, D, opts.G_opt_kwargs, opts.D_opt_kwargs, None, None)
    for name in ('G', 'D'):
        lr_schedule.set_learning_rates(optimizers[name], cur_nimg=900, total_nimg=1000)   # scale 100/500
    others, affine = optimizers['G'].param_groups
    assert others['lr'] == pytest.approx(0.01 * 0.2) and affine['lr'] == pytest.approx(0.1 * 0.2)
    assert optimizers['D'].param_groups[0]['lr'] == opts.D_opt_kwargs['lr']            # D keeps its rate
    assert 'lr_decay' not in run_options.setup_training_options(data=data16, cfg='tiny', metrics='none',
                                                                workers=0, glr_decay=0).G_opt_kwargs


def test_glr_decay_reaches_the_training_loop(data16, tmp_path):
    """A 4-step run decaying over its last half: the saved G optimizer ends at half its rate (last
    step at cur_nimg 12 of 16: scale 4 / 8); D's rate untouched."""
    from training import launch
    opts = run_options.setup_training_options(data=data16, outdir=str(tmp_path), cfg='tiny', metrics='none',
                                              workers=0, batch=4, kimg=0.016, snap=1, glr_decay=0.5)
    result = launch.launch_training(opts, str(tmp_path))
    state = legacy.load_network_pkl(result['last_snapshot'])['resume_state']['optimizers']
    G_lr = presets.resolve_preset('tiny', 16, 1)['lrate'] * 4 / 5           # lazy-regularisation rescaling
    group = state['G']['param_groups'][0]
    assert group['base_lr'] == pytest.approx(G_lr) and group['lr'] == pytest.approx(G_lr * 0.5)
    assert state['D']['param_groups'][0]['lr'] == pytest.approx(presets.resolve_preset('tiny', 16, 1)['lrate'] * 16 / 17)
