"""Official StyleGAN3 pickles through the safe loader (training/snapshot_io.py +
training/snapshot_io_stylegan3.py): family decided from the data, outputs at parity, round trips."""

import numpy as np
import pytest
import torch

import legacy
import sg3_fixture
from conftest import require_fixtures
from training import networks
from training import networks_stylegan3
from training import snapshot_io
from training import snapshot_io_stylegan3

pytestmark = pytest.mark.usefixtures('one_thread')

IMG_TOL = dict(atol=1e-4, rtol=1e-5)


def t(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array))


@pytest.fixture(scope='module', params=sg3_fixture.CONFIGS)
def loaded(request):
    cfg = request.param
    return cfg, legacy.load_network_pkl(str(sg3_fixture.path(cfg, 'snapshot.pkl')))


def test_classes_and_tensors(loaded):
    cfg, data = loaded
    assert type(data['G']) is networks_stylegan3.Generator and type(data['G_ema']) is networks_stylegan3.Generator
    assert type(data['D']) is networks.Discriminator
    assert data['augment_pipe'] is None and data['training_set_kwargs']['resolution'] == 32
    stored = sg3_fixture.arrays(cfg, 'state_dicts')
    for net in ('G', 'G_ema', 'D'):
        module = data[net]
        assert not module.training and not any(p.requires_grad for p in module.parameters())
        state = module.state_dict()
        assert sorted(state) == sorted(k[len(net) + 1:] for k in stored if k.startswith(net + '.'))
        for name, value in state.items():
            assert torch.equal(value, t(stored[f'{net}.{name}'])), f'{net}.{name}'


def test_discriminator_gets_the_stylegan3_repository_defaults(loaded):
    """The pickle omits num_fp16_res / conv_clamp (stylegan3-repo defaults 4 / 256); its layers store them."""
    _, data = loaded
    D = data['D']
    assert D.init_kwargs['conv_clamp'] == 256
    assert [getattr(D, f'b{res}').use_fp16 for res in (32, 16, 8)] == [True, True, True]
    assert D.b32.conv0.conv_clamp == 256


def test_outputs_reproduce_the_references(loaded):
    cfg, data = loaded
    ref = sg3_fixture.arrays(cfg, 'reference_outputs')
    z, c = t(ref['z']), t(ref['c'])
    torch.testing.assert_close(data['G_ema'](z, c, truncation_psi=0.7), t(ref['gema_G_forward_psi07']), **IMG_TOL)
    torch.testing.assert_close(data['G'](z, c), t(ref['g_G_forward']), **IMG_TOL)
    images8 = torch.cat([t(ref['gema_img_psi1']), t(ref['g_G_forward'])])
    torch.testing.assert_close(data['D'](images8, torch.cat([c, c])), t(ref['d_logits_batch8']), **IMG_TOL)


def test_family_is_decided_from_the_data():
    sg3 = snapshot_io.read_pickle_records(str(sg3_fixture.path('r', 'snapshot.pkl')))
    assert snapshot_io_stylegan3.is_stylegan3_record(sg3['G_ema'])
    assert snapshot_io_stylegan3.is_stylegan3_record(sg3['G_ema'].state['_modules']['synthesis'])
    assert not snapshot_io_stylegan3.is_stylegan3_record(sg3['D'])
    sg2 = snapshot_io.read_pickle_records(str(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl')))
    assert not snapshot_io_stylegan3.is_stylegan3_record(sg2['G_ema'])


def test_inconsistent_layer_names_are_refused():
    records = snapshot_io.read_pickle_records(str(sg3_fixture.path('t', 'snapshot.pkl')))
    record = records['G_ema']
    record.state['_modules']['synthesis'].state['layer_names'][3] = 'L3_36_99'
    kwargs = dict(record.state['_init_kwargs'])
    with pytest.raises(snapshot_io.SnapshotError, match='L3_36_99.*inconsistent'):
        snapshot_io_stylegan3.build_module(record, (), kwargs, record.named_tensors(), 'G_ema')


def test_our_pickle_and_safetensors_round_trips(loaded, tmp_path):
    cfg, data = loaded
    ws = t(sg3_fixture.arrays(cfg, 'reference_outputs')['gema_ws_psi1'])[:2]
    expected = data['G_ema'].synthesis(ws)
    snapshot_io.save_network_pkl(data, tmp_path / 'ours.pkl')
    snapshot_io.export_safetensors(data, tmp_path / 'ours.safetensors')
    for again in (snapshot_io.load_network_pkl(tmp_path / 'ours.pkl'),
                  snapshot_io.import_safetensors(tmp_path / 'ours.safetensors')):
        assert type(again['G_ema']) is networks_stylegan3.Generator
        assert again['D'].init_kwargs == data['D'].init_kwargs
        assert torch.equal(again['G_ema'].synthesis(ws), expected)  # same code path: bitwise


def test_force_fp16_rebuilds_flat_kwargs():
    data = legacy.load_network_pkl(str(sg3_fixture.path('t', 'snapshot.pkl')), force_fp16=True)
    G = data['G_ema']
    assert type(G) is networks_stylegan3.Generator
    assert G.init_kwargs['num_fp16_res'] == 4 and G.init_kwargs['conv_clamp'] == 256
    ref = sg3_fixture.arrays('t', 'reference_outputs')
    torch.testing.assert_close(G.synthesis(t(ref['gema_ws_psi1'])[:1]), t(ref['gema_img_psi1'])[:1], **IMG_TOL)


@pytest.mark.parametrize('change, message', [
    (dict(filter_size=10 ** 9), 'filter_size=1000000000 is not an integer in'),
    (dict(num_layers=100000), 'num_layers=100000'),
    (dict(num_layers=2), 'num_critical=2 must be below num_layers=2'),
    (dict(first_stopband=1e-12), 'non-finite or zero cutoffs / sampling rates'),
    (dict(num_layers=1, num_critical=0, first_stopband=0.5, filter_size=64, lrelu_upsampling=8),
     '16384-tap filters, over the cap'),
    (dict(first_cutoff='2'), 'give no layer schedule'),
])
def test_absurd_stored_arguments_are_refused_before_building(change, message):
    records = snapshot_io.read_pickle_records(str(sg3_fixture.path('t', 'snapshot.pkl')))
    record = records['G_ema']
    kwargs = {**record.state['_init_kwargs'], **change}
    with pytest.raises(snapshot_io.SnapshotError, match=message):
        snapshot_io_stylegan3.build_module(record, (), kwargs, record.named_tensors(), 'G_ema')
