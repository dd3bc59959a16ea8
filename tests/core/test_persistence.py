"""torch_utils/persistence.py: the persistent-class decorator, our module pickle format, and the
allow-list unpickler (malicious pickles are refused before any side effect)."""

import collections
import copy
import io
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch

import dnnlib
from tiny_nets import adam_like_state_dict
from torch_utils import persistence
from torch_utils.persistence import SnapshotError, UnsafePickleError

# ---------------------------------------------------------------------------------------------
# Tiny decorated modules defined here (registered as 'test_persistence.*' or similar).


@persistence.persistent_class
class _Leaf(torch.nn.Module):
    def __init__(self, in_features, out_features, bias_init=0.0, cfg=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features))
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init)))
        self.register_buffer('filt', torch.randn(4, 4))
        self.register_buffer('scratch', torch.zeros(2), persistent=False)
        self.cfg = cfg

    def forward(self, x):
        return x @ self.weight.t() + self.bias


@persistence.persistent_class
class _Net(torch.nn.Module):
    def __init__(self, width, depth, layer_kwargs=None):
        super().__init__()
        self.layers = torch.nn.ModuleList(_Leaf(width, width, **(layer_kwargs or {})) for _ in range(depth))
        self.register_buffer('w_avg', torch.randn(width))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x + self.w_avg


class _Undecorated(_Leaf):
    pass


def _assert_same_tensors(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and torch.equal(sa[name], sb[name]), name


def _safe_roundtrip(obj, protocol=4):
    return persistence.safe_load(io.BytesIO(pickle.dumps(obj, protocol=protocol)), '<test>')

# ---------------------------------------------------------------------------------------------
# Decorator and our format.


def test_decorator_records_arguments_as_kwargs_and_deep_copies():
    cfg = {'mode': 'a', 'nested': [1, 2]}
    leaf = _Leaf(3, 5, cfg=cfg)
    assert leaf.init_args == ()
    assert leaf.init_kwargs == {'in_features': 3, 'out_features': 5, 'cfg': {'mode': 'a', 'nested': [1, 2]}}
    cfg['nested'].append(3)  # Later changes by the caller must not leak into the record.
    assert leaf.init_kwargs['cfg']['nested'] == [1, 2]
    net = _Net(4, 2, layer_kwargs=dict(bias_init=0.5))
    assert net.init_kwargs == {'width': 4, 'depth': 2, 'layer_kwargs': {'bias_init': 0.5}}
    assert net.layers[1].init_kwargs == {'in_features': 4, 'out_features': 4, 'bias_init': 0.5}
    assert persistence.is_persistent(net) and not persistence.is_persistent(_Undecorated(2, 2))
    assert persistence.registered_classes()[type(net)._persistent_name] is _Net


def test_module_pickle_roundtrip_is_exact_and_keeps_flags():
    net = _Net(4, 3, layer_kwargs=dict(cfg={'k': 1}))
    net.train()
    net.layers[1].eval()
    net.layers[2].weight.requires_grad_(False)
    for protocol in (2, 3, 4, 5):
        back = _safe_roundtrip({'net': net}, protocol)['net']
        assert type(back) is _Net and back is not net
        _assert_same_tensors(net, back)
        assert back.init_kwargs == net.init_kwargs
        assert [m.training for m in back.modules()] == [m.training for m in net.modules()]
        assert [p.requires_grad for p in back.parameters()] == [p.requires_grad for p in net.parameters()]
        x = torch.randn(2, 4)
        assert torch.equal(back(x), net(x))


def test_pickle_stores_no_source_and_only_allowed_globals():
    data = pickle.dumps(_Net(2, 1), protocol=4)
    assert b'def forward' not in data and b'register_buffer' not in data
    globals_seen = set()
    strings = []
    import pickletools
    for op, arg, _ in pickletools.genops(data):
        if isinstance(arg, str):
            strings.append(arg)
        if op.name == 'STACK_GLOBAL':
            globals_seen.add(f'{strings[-2]}.{strings[-1]}')
    assert 'torch_utils.persistence.rebuild_module' in globals_seen
    assert globals_seen <= set(persistence.allowed_global_names()), globals_seen


def test_deepcopy_is_a_real_copy_not_a_rebuild():
    net = _Net(3, 2)
    net.custom_attribute = 'kept by deepcopy'  # Not a constructor argument: pickling drops it.
    net.layers[0].weight.requires_grad_(False)
    clone = copy.deepcopy(net)
    assert clone.custom_attribute == 'kept by deepcopy'
    _assert_same_tensors(net, clone)
    assert clone.layers[0].weight.data_ptr() != net.layers[0].weight.data_ptr()
    assert not clone.layers[0].weight.requires_grad and clone.layers[1].weight.requires_grad
    assert clone.init_kwargs == net.init_kwargs
    shallow = copy.copy(net)
    assert shallow.layers[0].weight is net.layers[0].weight
    assert not hasattr(_safe_roundtrip(net), 'custom_attribute')


def test_undecorated_subclass_refuses_to_pickle():
    with pytest.raises(pickle.PicklingError, match='not decorated'):
        pickle.dumps(_Undecorated(2, 2))


def test_rebuild_errors_name_the_problem():
    net = _Net(2, 1)
    fn, args = net.__reduce__()
    assert fn is persistence.rebuild_module
    tag, name, init_args, init_kwargs, tensors, flags = args
    with pytest.raises(SnapshotError, match="'no.such.Class'"):
        fn(tag, 'no.such.Class', init_args, init_kwargs, tensors, flags)
    with pytest.raises(SnapshotError, match="format 'other-v9'"):
        fn('other-v9', name, init_args, init_kwargs, tensors, flags)
    missing = {k: v for k, v in tensors.items() if k != 'layers.0.filt'}
    with pytest.raises(SnapshotError, match=r"missing in the snapshot \['layers.0.filt'\]"):
        fn(tag, name, init_args, init_kwargs, missing, flags)
    extra = dict(tensors, **{'layers.0.extra': torch.zeros(1)})
    with pytest.raises(SnapshotError, match=r"not in the network \['layers.0.extra'\]"):
        fn(tag, name, init_args, init_kwargs, extra, flags)
    wrong = dict(tensors, w_avg=torch.zeros(3))
    with pytest.raises(SnapshotError, match=r"'w_avg' has shape \[3\]"):
        fn(tag, name, init_args, init_kwargs, wrong, flags)
    with pytest.raises(SnapshotError, match='constructor has changed'):
        fn(tag, name, init_args, dict(init_kwargs, no_such_argument=1), tensors, flags)


def test_plain_values_roundtrip_all_protocols():
    value = {
        'none': None, 'bool': True, 'int': -7, 'big': 2 ** 70, 'float': 0.1, 'str': 'päth', 'bytes': b'\x00\xff',
        'list': [1, [2.5, 'x']], 'tuple': (1, (2,)), 'set': {1, 2}, 'frozenset': frozenset({'a'}),
        'od': collections.OrderedDict(b=1, a=2), 'easy': dnnlib.EasyDict(lr=0.002, sub=dnnlib.EasyDict(k=1)),
        'np_f64': np.float64(1.5), 'np_i32': np.int32(-3), 'np_arr': np.arange(6, dtype=np.float32).reshape(2, 3),
        'f32': torch.randn(3, 4), 'i64': torch.arange(5), 'i32': torch.tensor([31, 30], dtype=torch.int32),
        'bool_t': torch.tensor([True, False]), 'bf16': torch.randn(3).to(torch.bfloat16),
        'strided': torch.randn(4, 6)[:, ::2],
        'channels_last': torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
        'param': torch.nn.Parameter(torch.randn(2)), 'optimizer': adam_like_state_dict(),
    }
    for protocol in (2, 3, 4, 5):
        back = _safe_roundtrip(value, protocol)
        assert list(back) == list(value)
        for key in ('none', 'bool', 'int', 'big', 'float', 'str', 'bytes', 'list', 'tuple', 'set', 'frozenset'):
            assert back[key] == value[key] and type(back[key]) is type(value[key]), (protocol, key)
        assert type(back['od']) is collections.OrderedDict and list(back['od']) == ['b', 'a']
        assert type(back['easy']) is dnnlib.EasyDict and back['easy'].sub.k == 1
        assert type(back['np_f64']) is np.float64 and back['np_f64'] == 1.5
        assert type(back['np_i32']) is np.int32 and back['np_i32'] == -3
        assert np.array_equal(back['np_arr'], value['np_arr']) and back['np_arr'].dtype == np.float32
        for key in ('f32', 'i64', 'i32', 'bool_t', 'bf16', 'strided', 'channels_last', 'param'):
            assert back[key].dtype == value[key].dtype and torch.equal(back[key], value[key]), key
            assert back[key].stride() == value[key].stride(), key
        assert isinstance(back['param'], torch.nn.Parameter) and back['param'].requires_grad
        state, ref_state = back['optimizer']['state'], value['optimizer']['state']
        assert set(state) == set(ref_state) == {0, 1}
        assert torch.equal(state[0]['exp_avg'], ref_state[0]['exp_avg'])
        assert back['optimizer']['param_groups'] == value['optimizer']['param_groups']

# ---------------------------------------------------------------------------------------------
# Malicious and foreign pickles.


def _marker(tmp_path):
    return tmp_path / 'pwned'


def _crafted_calls(module: str, name: str, arg: str) -> list[bytes]:
    """`module.name(arg)` as protocol 0 (GLOBAL) and as protocol 4 (STACK_GLOBAL) pickles."""
    text = f"c{module}\n{name}\n(V{arg}\ntR.".encode()

    def short(s: str) -> bytes:
        return b'\x8c' + bytes([len(s)]) + s.encode()
    binary = b'\x80\x04' + short(module) + short(name) + b'\x93' + short(arg) + b'\x85R.'
    return [text, binary]


@pytest.mark.parametrize('module,name,make_arg', [
    ('os', 'system', lambda m: f'touch {m}'),
    ('posix', 'system', lambda m: f'touch {m}'),
    ('builtins', 'exec', lambda m: f'open({str(m)!r}, "w").close()'),
    ('builtins', 'eval', lambda m: f'open({str(m)!r}, "w").close()'),
    ('subprocess', 'Popen', lambda m: f'touch {m}'),
    ('__builtin__', 'eval', lambda m: f'open({str(m)!r}, "w").close()'),  # Python 2 name of builtins
])
def test_dangerous_globals_are_refused_without_side_effect(tmp_path, module, name, make_arg):
    marker = _marker(tmp_path)
    for payload in _crafted_calls(module, name, make_arg(marker)):
        assert payload.endswith(b'.')
        with pytest.raises(UnsafePickleError, match=rf"Refusing to unpickle global '\w+\.{name}' from <evil.pkl>"):
            persistence.safe_load(io.BytesIO(payload), '<evil.pkl>')
    assert not marker.exists()
    # Sanity check of the payload itself: the stock unpickler would have run it (os.system only).
    if (module, name) == ('os', 'system'):
        pickle.loads(_crafted_calls(module, name, make_arg(marker))[1])
        assert marker.exists()


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return subprocess.Popen, (['touch', self.marker],)


def test_refusal_inside_a_valid_looking_snapshot(tmp_path):
    marker = _marker(tmp_path)
    snapshot = {'training_set_kwargs': None, 'G': _Net(2, 1), 'extra': [1, {'x': _Evil(marker)}]}
    for protocol in (2, 4):
        with pytest.raises(UnsafePickleError, match="'subprocess.Popen'"):
            persistence.safe_load(io.BytesIO(pickle.dumps(snapshot, protocol=protocol)), 'snap.pkl')
    assert not marker.exists()


def test_build_on_allowed_class_object_is_refused():
    # GLOBAL collections.OrderedDict, then BUILD with slot state: would setattr on the class.
    payload = b'\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93N}\x8c\x06pwned_\x88s\x86b.'
    with pytest.raises(UnsafePickleError, match='Refusing to set the state of a type'):
        persistence.safe_load(io.BytesIO(payload), '<x>')
    assert not hasattr(collections.OrderedDict, 'pwned_')


def test_persistent_ids_and_codecs_abuse_are_refused():
    with pytest.raises(UnsafePickleError, match='persistent id'):
        persistence.safe_load(io.BytesIO(b'\x80\x04K\x01Q.'), '<x>')
    payload = b'\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.'
    with pytest.raises(UnsafePickleError, match='latin1'):
        persistence.safe_load(io.BytesIO(payload), '<x>')


def test_tensorflow_pickle_gets_a_conversion_hint():
    payload = b'(cdnnlib.tflib.network\nNetwork\n)Rq\x00g0\ng0\nt.'
    with pytest.raises(UnsafePickleError, match='TensorFlow-era.*legacy.py'):
        persistence.safe_load(io.BytesIO(payload), 'old.pkl')

# ---------------------------------------------------------------------------------------------
# Official persistent objects become inert records.


def _record(class_name, module_src='# placeholder\n', **state):
    return persistence.PersistentRecord(class_name, dict(state), module_src, '')


def test_official_records_never_execute_module_src(tmp_path):
    marker = _marker(tmp_path)
    evil_src = f'import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass Leaf: pass\n'
    rec = _record('Leaf', evil_src, _parameters={'weight': torch.nn.Parameter(torch.ones(2))}, _buffers={},
                  _modules={'child': _record('Leaf', evil_src, _parameters={}, _buffers={'b': torch.zeros(1)},
                                             _modules={})}, _init_kwargs=dnnlib.EasyDict(k=1))
    for protocol in (2, 3, 4, 5):
        data = pickle.dumps({'G': rec}, protocol=protocol)
        assert b'torch_utils.persistence' in data and b'_reconstruct_persistent_obj' in data
        back = persistence.safe_load(io.BytesIO(data), 'x.pkl', record_class_names=['Leaf'])['G']
        assert isinstance(back, persistence.PersistentRecord) and back.class_name == 'Leaf'
        assert back.module_src_sha256 == persistence._sha256(evil_src)
        assert sorted(back.named_tensors()) == ['child.b', 'weight']
        assert back.state['_init_kwargs'] == {'k': 1}
        assert pickle.loads(data)['G'].class_name == 'Leaf'  # Even the stock unpickler stays inert here.
    assert not marker.exists()


def test_record_checks_class_type_and_version():
    data = pickle.dumps(_record('Mystery'), protocol=4)
    with pytest.raises(SnapshotError, match="unknown class 'Mystery'.*Generator"):
        persistence.safe_load(io.BytesIO(data), 'x.pkl', record_class_names=['Generator'])
    for meta, message in [
        (dict(type='object', version=6, module_src='', class_name='G', state={}), "type 'object'"),
        (dict(type='class', version=5, module_src='', class_name='G', state={}), 'version 5'),
        (dict(type='class', version=6, module_src='', class_name='G', state=[]), "'state'"),
    ]:
        payload = pickle.dumps(_MetaCall(meta), protocol=4)
        with pytest.raises(SnapshotError, match=message):
            persistence.safe_load(io.BytesIO(payload), 'x.pkl')


class _MetaCall:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return persistence._reconstruct_persistent_obj, (self.meta,)


def test_numpy1_spelling_of_scalar_global_loads():
    value = {'gain': np.float64(0.125), 'arr': np.ones(3, dtype=np.float32)}
    data = pickle.dumps(value, protocol=2)
    assert data.count(b'cnumpy._core.multiarray\n') == 2
    old = data.replace(b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n')
    back = persistence.safe_load(io.BytesIO(old), 'old-numpy.pkl')
    assert type(back['gain']) is np.float64 and back['gain'] == 0.125
    assert np.array_equal(back['arr'], value['arr'])


def test_torch_save_and_load_use_the_same_reduce(tmp_path):
    # torch.save of a decorated module goes through the same reduce; torch.load(weights_only=False)
    # rebuilds it by registry name.
    net = _Net(2, 2)
    path = tmp_path / 'net.pt'
    torch.save(net, path)
    back = torch.load(path, weights_only=False)
    _assert_same_tensors(net, back)
    assert os.path.getsize(path) > 0
