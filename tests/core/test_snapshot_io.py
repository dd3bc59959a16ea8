"""training/snapshot_io.py and legacy.py: official fixture pickles load into our networks with
exact tensors and reference outputs; our pickle and safetensors formats round-trip; bad files give
one-line errors naming the file."""

import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import legacy
from conftest import REPO_ROOT, require_fixtures
from tiny_nets import adam_like_state_dict
from torch_utils import persistence
from training import snapshot_io
from training.snapshot_io import SnapshotError

FIXTURE = ('stylegan2_tiny', 'tiny32_snapshot.pkl')
EXPANDED = ('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')
NETS = ('G', 'D', 'G_ema')


def _npz(name):
    return np.load(require_fixtures('stylegan2_tiny', name), allow_pickle=False)


@pytest.fixture(scope='module')
def loaded():
    """Both fixture snapshots loaded once: {'plain': data, 'expanded': data}."""
    return {'plain': legacy.load_network_pkl(str(require_fixtures(*FIXTURE))),
            'expanded': legacy.load_network_pkl(str(require_fixtures(*EXPANDED)))}


def _assert_tensors_equal_to_fixture(data):
    ref = _npz('state_dicts.npz')
    seen = 0
    for net in NETS:
        state = data[net].state_dict()
        names = {k.split('.', 1)[1] for k in ref.files if k.startswith(net + '.')}
        assert set(state) == names, net
        for name, tensor in state.items():
            expected = ref[f'{net}.{name}']
            assert tensor.dtype == torch.float32 and list(tensor.shape) == list(expected.shape), name
            assert np.array_equal(tensor.numpy(), expected), f'{net}.{name} differs'
            seen += 1
    assert seen == len(ref.files)


def _assert_same_snapshot(a, b):
    assert list(a) == list(b)
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.nn.Module):
            assert type(x) is type(y), key
            sx, sy = x.state_dict(), y.state_dict()
            assert list(sx) == list(sy), key
            for n in sx:
                assert sx[n].dtype == sy[n].dtype and torch.equal(sx[n], sy[n]), f'{key}.{n}'
            assert x.init_kwargs == y.init_kwargs, key
            assert x.training == y.training and [p.requires_grad for p in x.parameters()] == \
                [p.requires_grad for p in y.parameters()], key
        elif isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), key
        else:
            assert x == y and type(x) is type(y), key

# ---------------------------------------------------------------------------------------------
# Official fixtures.


def test_fixture_layout_extras_and_flags(loaded):
    plain, expanded = loaded['plain'], loaded['expanded']
    assert list(plain) == ['training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe']
    assert plain['training_set_kwargs']['path'] == '/data/tiny32.zip'
    assert list(expanded) == ['training_set_kwargs', 'expansion_cfg', 'latent_basis', 'repurposed_dims',
                              'subspace_distance', 'G', 'D', 'G_ema', 'augment_pipe']
    assert expanded['augment_pipe'] is None
    assert expanded['repurposed_dims'].dtype == torch.int32 and expanded['repurposed_dims'].tolist() == [31, 30]
    assert type(expanded['subspace_distance']) is float and expanded['subspace_distance'] == 20.0
    assert [t['dimension'] for t in expanded['expansion_cfg']['tasks']] == [31, 30]
    assert np.array_equal(expanded['latent_basis'].numpy(), _npz('expansion_outputs.npz')['sefa_basis'])
    from training import networks
    for data in (plain, expanded):
        assert type(data['G']) is networks.Generator and type(data['G_ema']) is networks.Generator
        assert type(data['D']) is networks.Discriminator
        for net in NETS:
            assert not any(m.training for m in data[net].modules())
            assert not any(p.requires_grad for p in data[net].parameters())
            assert len(data[net].official_module_src_sha256) == 64


@pytest.mark.parametrize('which', ['plain', 'expanded'])
def test_fixture_tensors_bit_exact(loaded, which):
    _assert_tensors_equal_to_fixture(loaded[which])


def test_fixture_reference_outputs(loaded):
    ref = _npz('reference_outputs.npz')
    G, D = loaded['plain']['G_ema'], loaded['plain']['D']
    z, c = torch.from_numpy(ref['z']), torch.from_numpy(ref['c'])
    with torch.no_grad():
        for psi, tag in ((1, 'psi1'), (0.7, 'psi07')):
            ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=None)
            np.testing.assert_allclose(ws.numpy(), ref[f'gema_ws_{tag}'], rtol=0, atol=1e-5)
            img = G.synthesis(torch.from_numpy(ref[f'gema_ws_{tag}']), noise_mode='const')
            np.testing.assert_allclose(img.numpy(), ref[f'gema_img_{tag}_const'], rtol=1e-5, atol=1e-4)
        logits = D(torch.from_numpy(ref['gema_img_psi1_const']), c)
        np.testing.assert_allclose(logits.numpy(), ref['d_logits_gema_img'], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(G.mapping.w_avg.numpy(), ref['w_avg_before_update'])


def test_augment_pipe_kept(loaded):
    pipe = loaded['plain']['augment_pipe']
    assert isinstance(pipe, torch.nn.Module)
    assert pipe.p.item() == pytest.approx(0.2)
    assert list(pipe.Hz_geom.shape) == [12] and list(pipe.Hz_fbank.shape) == [4, 43]
    assert pipe.init_kwargs['xflip'] == 1 and pipe.init_kwargs['saturation'] == 1


def test_file_object_and_force_fp16():
    with open(require_fixtures(*EXPANDED), 'rb') as f:
        data = snapshot_io.load_network_pkl(f, force_fp16=True)
    for key in ('G', 'G_ema'):
        assert data[key].init_kwargs['synthesis_kwargs']['num_fp16_res'] == 4
        assert data[key].init_kwargs['synthesis_kwargs']['conv_clamp'] == 256
        assert data[key].synthesis.b32.conv1.conv_clamp == 256  # the rebuilt layers use the new arguments
    assert data['D'].init_kwargs['num_fp16_res'] == 4 and data['D'].init_kwargs['conv_clamp'] == 256
    assert data['D'].b32.conv0.conv_clamp == 256
    _assert_tensors_equal_to_fixture(data)
    assert not any(p.requires_grad for p in data['G'].parameters())

# ---------------------------------------------------------------------------------------------
# Official layout re-written: other protocols, numpy 1 names, Freeze-D, hostile source.


def _official_bytes(records: dict, protocol: int) -> bytes:
    return pickle.dumps(records, protocol=protocol)


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_official_layout_any_protocol(protocol):
    records = snapshot_io.read_pickle_records(str(require_fixtures(*FIXTURE)))
    assert isinstance(records['G'], persistence.PersistentRecord)
    data = _official_bytes(records, protocol)
    if protocol <= 3:
        assert b'builtins\nset' in data or b'__builtin__\nset' in data  # the protocol <= 3 spelling
    _assert_tensors_equal_to_fixture(snapshot_io.load_network_pkl(io.BytesIO(data)))


def test_official_layout_numpy1_names():
    records = snapshot_io.read_pickle_records(str(require_fixtures(*FIXTURE)))
    data = _official_bytes(records, 2)
    assert b'cnumpy._core.multiarray\nscalar\n' in data
    data = data.replace(b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n')
    assert b'numpy._core' not in data
    _assert_tensors_equal_to_fixture(snapshot_io.load_network_pkl(io.BytesIO(data)))


def test_freeze_d_buffers_are_found():
    records = snapshot_io.read_pickle_records(str(require_fixtures(*FIXTURE)))
    # Freeze-D registers frozen layers' weight and bias as buffers: move them there.
    moved = 0
    for block in records['D'].state['_modules'].values():
        for layer in block.state['_modules'].values():
            params = layer.state['_parameters']
            for name in [n for n in ('weight', 'bias') if n in params]:
                layer.state['_buffers'][name] = params.pop(name).detach()
                moved += 1
    assert moved > 10
    _assert_tensors_equal_to_fixture(snapshot_io.load_network_pkl(io.BytesIO(_official_bytes(records, 4))))


def test_hostile_module_src_is_never_executed(tmp_path):
    marker = tmp_path / 'executed'
    hostile = f'import pathlib\npathlib.Path({str(marker)!r}).touch()\n'
    records = snapshot_io.read_pickle_records(str(require_fixtures(*EXPANDED)))

    def poison(record):
        record.module_src = hostile
        for child in record.state['_modules'].values():
            poison(child)
    for net in NETS:
        poison(records[net])
    data = snapshot_io.load_network_pkl(io.BytesIO(_official_bytes(records, 4)))
    _assert_tensors_equal_to_fixture(data)
    assert not marker.exists()
    assert data['G'].official_module_src_sha256 == persistence._sha256(hostile)


def test_strict_tensor_names_and_shapes():
    records = snapshot_io.read_pickle_records(str(require_fixtures(*FIXTURE)))
    mapping = records['G_ema'].state['_modules']['mapping']
    w_avg = mapping.state['_buffers'].pop('w_avg')
    with pytest.raises(SnapshotError, match=r"'G_ema'.*missing in the snapshot \['mapping.w_avg'\]"):
        snapshot_io.load_network_pkl(io.BytesIO(_official_bytes(records, 4)))
    mapping.state['_buffers']['w_avg'] = w_avg
    mapping.state['_buffers']['w_extra'] = w_avg.clone()
    with pytest.raises(SnapshotError, match=r"not in the network \['mapping.w_extra'\]"):
        snapshot_io.load_network_pkl(io.BytesIO(_official_bytes(records, 4)))
    del mapping.state['_buffers']['w_extra']
    mapping.state['_buffers']['w_avg'] = w_avg[:5].clone()
    with pytest.raises(SnapshotError, match=r"'mapping.w_avg' has shape \[5\]"):
        snapshot_io.load_network_pkl(io.BytesIO(_official_bytes(records, 4)))


def test_unknown_class_and_missing_keys(tmp_path):
    records = snapshot_io.read_pickle_records(str(require_fixtures(*EXPANDED)))
    records['D'].class_name = 'StyleGAN3Discriminator'
    with pytest.raises(SnapshotError, match="unknown class 'StyleGAN3Discriminator'"):
        snapshot_io.load_network_pkl(io.BytesIO(_official_bytes(records, 4)))
    records['D'].class_name = 'Discriminator'
    del records['D'], records['G_ema']
    path = tmp_path / 'partial.pkl'
    path.write_bytes(_official_bytes(records, 4))
    with pytest.raises(SnapshotError, match=r'partial.pkl is missing snapshot key\(s\) D, G_ema'):
        snapshot_io.load_network_pkl(str(path))

# ---------------------------------------------------------------------------------------------
# Broken and foreign files.


def test_truncated_corrupt_and_foreign_files(tmp_path):
    blob = require_fixtures(*FIXTURE).read_bytes()
    cases = {
        'truncated.pkl': (blob[:len(blob) // 2], 'truncated'),
        'empty.pkl': (b'', 'truncated'),
        'garbage.pkl': (b'\xffGIF89a not a pickle', 'is not a network pickle'),
        'list.pkl': (pickle.dumps([1, 2, 3]), 'not a network snapshot'),
        'tf.pkl': (b'(cdnnlib.tflib.network\nNetwork\n)Rq\x00g0\ng0\nt.', 'TensorFlow-era'),
        'tf_tuple.pkl': (pickle.dumps((1, 2, 3)), 'TensorFlow-era'),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(SnapshotError, match=message) as info:
            snapshot_io.load_network_pkl(str(path))
        text = str(info.value)
        assert str(path) in text and '\n' not in text, text
    with pytest.raises(SnapshotError, match='Cannot open network pickle'):
        snapshot_io.load_network_pkl(str(tmp_path / 'absent.pkl'))

# ---------------------------------------------------------------------------------------------
# Our own formats.


def _with_optimizer_state(data):
    data = dict(data)
    data['G_opt_state'] = adam_like_state_dict()
    data['cur_nimg'] = 12000
    return data


def _assert_outputs_equal(a, b):
    ref = _npz('reference_outputs.npz')
    ws = torch.from_numpy(ref['gema_ws_psi1'][:2])
    with torch.no_grad():
        assert torch.equal(a['G_ema'].synthesis(ws, noise_mode='const'), b['G_ema'].synthesis(ws, noise_mode='const'))
        z, c = torch.from_numpy(ref['z'][:2]), torch.from_numpy(ref['c'][:2])
        assert torch.equal(a['G'].mapping(z, c), b['G'].mapping(z, c))


def _assert_optimizer_state_equal(a, b):
    assert a['param_groups'] == b['param_groups']
    assert set(a['state']) == set(b['state']) == {0, 1}
    for i in a['state']:
        for k in a['state'][i]:
            assert torch.equal(a['state'][i][k], b['state'][i][k])


def test_our_pickle_roundtrip(loaded, tmp_path):
    for which in ('plain', 'expanded'):
        data = _with_optimizer_state(loaded[which])
        path = tmp_path / f'{which}.pkl'
        snapshot_io.save_network_pkl(data, path)
        raw = path.read_bytes()
        assert b'module source omitted' not in raw and b'_reconstruct_persistent_obj' not in raw
        back = snapshot_io.load_network_pkl(str(path))
        _assert_optimizer_state_equal(data.pop('G_opt_state'), back.pop('G_opt_state'))
        _assert_same_snapshot(data, back)
        _assert_outputs_equal(data, back)
        _assert_tensors_equal_to_fixture(back)
    assert sorted(os.listdir(tmp_path)) == ['expanded.pkl', 'plain.pkl']  # no temporary files left


def test_save_is_atomic_and_validates_first(loaded, tmp_path, monkeypatch):
    path = tmp_path / 'snap.pkl'
    snapshot_io.save_network_pkl(loaded['expanded'], path)
    before = path.read_bytes()
    with pytest.raises(SnapshotError, match=r"data\['bad'\] is a PosixPath"):
        snapshot_io.save_network_pkl(dict(loaded['expanded'], bad=tmp_path), path)
    with pytest.raises(SnapshotError, match='G_ema'):
        snapshot_io.save_network_pkl({k: v for k, v in loaded['expanded'].items() if k != 'G_ema'}, path)
    with pytest.raises(SnapshotError, match=r"data\['extra'\] is a Linear.*persistent_class"):
        snapshot_io.save_network_pkl(dict(loaded['expanded'], extra=torch.nn.Linear(2, 2)), path)
    assert path.read_bytes() == before

    class FailsMidWrite:
        def __reduce__(self):
            raise RuntimeError('disk full')
    monkeypatch.setattr(snapshot_io, '_check_value', lambda value, where, path: None)
    with pytest.raises(RuntimeError, match='disk full'):
        snapshot_io.save_network_pkl(dict(loaded['expanded'], late=FailsMidWrite()), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['snap.pkl']


def test_safetensors_roundtrip(loaded, tmp_path):
    from safetensors import safe_open
    for which in ('plain', 'expanded'):
        data = _with_optimizer_state(loaded[which])
        path = tmp_path / f'{which}.safetensors'
        snapshot_io.export_safetensors(data, path)
        with safe_open(str(path), 'pt') as f:
            names = set(f.keys())
            assert 'sg2x_snapshot' in f.metadata()
        assert {'G_ema.mapping.w_avg', 'G.synthesis.b4.const', 'D.b4.out.weight'} <= names
        if which == 'expanded':
            assert {'latent_basis', 'repurposed_dims'} <= names
        back = snapshot_io.import_safetensors(path)
        _assert_optimizer_state_equal(data.pop('G_opt_state'), back.pop('G_opt_state'))
        _assert_same_snapshot(data, back)
        _assert_outputs_equal(data, back)


def test_safetensors_errors(tmp_path):
    from safetensors.torch import save_file
    plain = tmp_path / 'plain.safetensors'
    save_file({'x': torch.zeros(2)}, str(plain))
    with pytest.raises(SnapshotError, match='not a snapshot written by export_safetensors'):
        snapshot_io.import_safetensors(plain)
    junk = tmp_path / 'junk.safetensors'
    junk.write_bytes(b'\x05\x00\x00\x00\x00\x00\x00\x00{oops')
    with pytest.raises(SnapshotError, match='not a valid safetensors file'):
        snapshot_io.import_safetensors(junk)


def test_augment_pipe_placeholder_roundtrip(monkeypatch, tmp_path):
    """Without training.augment the pipe is kept in AugmentPipeState; with it, it comes back real."""
    monkeypatch.setattr(snapshot_io, '_augment_pipe_class', lambda: None)
    data = snapshot_io.load_network_pkl(str(require_fixtures(*FIXTURE)))
    holder = data['augment_pipe']
    assert type(holder) is snapshot_io.AugmentPipeState
    assert holder.pipe_kwargs['hue'] == 1 and holder.p.item() == pytest.approx(0.2)
    snapshot_io.save_network_pkl(data, tmp_path / 'holder.pkl')
    snapshot_io.export_safetensors(data, tmp_path / 'holder.safetensors')
    assert type(snapshot_io.load_network_pkl(str(tmp_path / 'holder.pkl'))['augment_pipe']) is \
        snapshot_io.AugmentPipeState
    monkeypatch.undo()
    if snapshot_io._augment_pipe_class() is None:
        return  # training/augment.py not present: nothing to upgrade to.
    for back in (snapshot_io.load_network_pkl(str(tmp_path / 'holder.pkl')),
                 snapshot_io.import_safetensors(tmp_path / 'holder.safetensors')):
        pipe = back['augment_pipe']
        assert type(pipe) is snapshot_io._augment_pipe_class()
        for name, tensor in holder.state_dict().items():
            assert torch.equal(pipe.state_dict()[name], tensor)

# ---------------------------------------------------------------------------------------------
# Command line.


def test_convert_snapshot_function_and_cli(tmp_path):
    from scripts.convert_snapshot import convert_snapshot
    src = str(require_fixtures(*EXPANDED))
    st_path, pkl_path = tmp_path / 'x.safetensors', tmp_path / 'x.pkl'
    convert_snapshot(src, str(st_path))
    convert_snapshot(str(st_path), str(pkl_path))
    _assert_tensors_equal_to_fixture(snapshot_io.load_network_pkl(str(pkl_path)))
    from click.testing import CliRunner
    from scripts.convert_snapshot import main
    result = CliRunner().invoke(main, ['--src', src, '--dest', str(tmp_path / 'y.txt')])
    assert result.exit_code != 0 and result.exception is None or isinstance(result.exception, SystemExit)
    last_line = result.output.strip().splitlines()[-1]
    assert '--dest' in last_line and '.safetensors' in last_line
    assert not (tmp_path / 'y.txt').exists()
    bad = tmp_path / 'bad.pkl'
    bad.write_bytes(b'\x80\x04')
    result = subprocess.run([sys.executable, '-m', 'scripts.convert_snapshot', '--src', str(bad),
                             '--dest', str(tmp_path / 'z.pkl')], cwd=REPO_ROOT, capture_output=True, text=True)
    last_line = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert result.returncode != 0 and 'truncated' in last_line and str(bad) in last_line
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'z.pkl').exists()


def test_stylegan3_repository_generator_layout():
    """StyleGAN2 snapshots written by the stylegan3 repository pass synthesis arguments flat and
    set fused_modconv_default='inference_only'; they load and give the same outputs."""
    records = snapshot_io.read_pickle_records(str(require_fixtures(*FIXTURE)))
    for key in ('G', 'G_ema'):
        kwargs = records[key].state['_init_kwargs']
        flat = dict(kwargs.pop('synthesis_kwargs'))
        kwargs.update(flat, fused_modconv_default='inference_only')
    data = snapshot_io.load_network_pkl(io.BytesIO(_official_bytes(records, 4)))
    _assert_tensors_equal_to_fixture(data)
    G = data['G_ema']
    assert G.synthesis.b32.fused_modconv_default == 'inference_only'
    assert G.init_kwargs['synthesis_kwargs']['channel_base'] == 192
    assert G.mapping.w_avg_beta == 0.998
    ref = _npz('reference_outputs.npz')
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref['gema_ws_psi1']), noise_mode='const')
    np.testing.assert_allclose(img.numpy(), ref['gema_img_psi1_const'], atol=1e-4, rtol=1e-5)
