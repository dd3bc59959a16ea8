"""Our snapshots exported to the official persistence format (training/official_format.py):
the official loader, emulated in official_loader_emulation.py, runs our embedded source and
reproduces the official reference outputs; our safe loader reads the export back unchanged."""

import ast
import io
import pickle

import numpy as np
import pytest
import torch

import tiny_nets
from conftest import require_fixtures, run_cli_inprocess
from official_loader_emulation import OfficialPersistence, official_force_fp16, official_load_network_pkl
from torch_utils import persistence
from training import official_format
from training import snapshot_io

pytestmark = pytest.mark.usefixtures('one_thread')

PLAIN = ('stylegan2_tiny', 'tiny32_snapshot.pkl')
EXPANDED = ('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')
IMAGE_TOL = dict(atol=1e-4, rtol=1e-5)  # fixture README: images and logits, float32 CPU
WS_TOL = dict(atol=1e-5, rtol=0)


@pytest.fixture
def emulator():
    official = OfficialPersistence()
    yield official
    official.forget()


def _defining_module(obj) -> str:
    """Module of the class the official decorator wrapped (the decorator itself lives in persistence)."""
    return type(obj).__bases__[0].__module__


def _npz(name: str) -> dict:
    with np.load(require_fixtures('stylegan2_tiny', name)) as f:
        return {k: torch.from_numpy(f[k]) for k in f.files}


def _export(src_fixture: tuple, path, lite: bool = False) -> dict:
    ours = snapshot_io.load_network_pkl(str(require_fixtures(*src_fixture)))
    official_format.save_official_pkl(ours, path, lite=lite)
    return ours


def test_official_loader_runs_our_source_and_reproduces_official_outputs(tmp_path, emulator):
    path = tmp_path / 'theirs.pkl'
    ours = _export(PLAIN, path)
    theirs = official_load_network_pkl(emulator, path)
    G = theirs['G_ema']
    assert _defining_module(G).startswith('_imported_module_'), 'the classes must come from the embedded source'
    assert type(G).__name__ == 'Generator' and G.init_kwargs.synthesis_kwargs.channel_base == 192
    assert G.num_ws == 8 and G.synthesis.block_resolutions == [4, 8, 16, 32]
    assert G.mapping.w_avg.shape == (32,) and 'b32.conv1.noise_const' in dict(G.synthesis.named_buffers())

    ref, extra = _npz('reference_outputs.npz'), _npz('reference_outputs_extra.npz')
    with torch.no_grad():
        ws = G.mapping(ref['z'], ref['c'])
        img = G.synthesis(ref['gema_ws_psi1'], noise_mode='const')
        img_G = theirs['G'](ref['z'], ref['c'], noise_mode='const')
        logits = theirs['D'](ref['gema_img_psi1_const'], ref['c'])
        torch.testing.assert_close(ws, ref['gema_ws_psi1'], **WS_TOL)
        torch.testing.assert_close(img, ref['gema_img_psi1_const'], **IMAGE_TOL)
        torch.testing.assert_close(img_G, extra['g_G_forward_const'], **IMAGE_TOL)
        torch.testing.assert_close(logits, ref['d_logits_gema_img'], **IMAGE_TOL)
        # The official objects run our own code on our own tensors: the same path, so bit for bit.
        assert torch.equal(img, ours['G_ema'].synthesis(ref['gema_ws_psi1'], noise_mode='const'))
    pipe = theirs['augment_pipe']
    assert type(pipe).__name__ == 'AugmentPipe' and _defining_module(pipe) != _defining_module(G)
    assert float(pipe.p) == pytest.approx(0.2) and pipe.init_kwargs == ours['augment_pipe'].init_kwargs
    assert theirs['training_set_kwargs'] == ours['training_set_kwargs']


def test_expanded_snapshot_keeps_its_keys_and_renders_the_official_edits(tmp_path, emulator):
    path = tmp_path / 'theirs.pkl'
    ours = _export(EXPANDED, path)
    theirs = official_load_network_pkl(emulator, path)
    assert list(theirs) == list(ours)  # official key order, expansion keys before the networks
    assert torch.equal(theirs['latent_basis'], ours['latent_basis'])
    assert theirs['repurposed_dims'].dtype == torch.int32
    assert torch.equal(theirs['repurposed_dims'], ours['repurposed_dims'])
    assert theirs['subspace_distance'] == 20.0 and theirs['expansion_cfg'] == ours['expansion_cfg']
    assert theirs['augment_pipe'] is None

    exp = _npz('expansion_outputs.npz')
    G = theirs['G_ema']
    with torch.no_grad():
        for k in range(exp['proj_edit_w'].shape[1]):
            ws = exp['proj_edit_w'][0, k].unsqueeze(1).repeat(1, G.num_ws, 1)
            torch.testing.assert_close(G.synthesis(ws, noise_mode='const'), exp['img_edit_const'][k], **IMAGE_TOL)


def test_our_loader_reads_the_export_back(tmp_path):
    """A conditional network of our own format (label embedding, D label mapping), with resume
    state: exported, it loads back through the safe loader with every key and render unchanged."""
    G = tiny_nets.tiny_generator(c_dim=3, seed=1).eval().requires_grad_(False)
    D = tiny_nets.tiny_discriminator(c_dim=3).eval().requires_grad_(False)
    resume_state = {'optimizers': {'G': tiny_nets.adam_like_state_dict()}, 'progress': {'cur_nimg': 64}}
    data = tiny_nets.snapshot_data(G, D, resume_state=resume_state, latent_basis=torch.eye(16))
    official_format.save_official_pkl(data, tmp_path / 'full.pkl')
    official_format.save_official_pkl(data, tmp_path / 'lite.pkl', lite=True)

    back = snapshot_io.load_network_pkl(str(tmp_path / 'full.pkl'))
    lite = snapshot_io.load_network_pkl(str(tmp_path / 'lite.pkl'))
    assert list(back) == list(data) and 'resume_state' not in lite
    assert torch.equal(back['resume_state']['optimizers']['G']['state'][0]['exp_avg'],
                       resume_state['optimizers']['G']['state'][0]['exp_avg'])
    z, c = torch.randn([3, 16]), torch.eye(3)
    with torch.no_grad():
        img = G(z, c, noise_mode='const')
        for loaded in (back, lite):
            assert type(loaded['G_ema']) is type(G)
            assert torch.equal(loaded['G_ema'](z, c, noise_mode='const'), img)
            assert torch.equal(loaded['D'](img, c), D(img, c))
    assert (tmp_path / 'lite.pkl').stat().st_size < (tmp_path / 'full.pkl').stat().st_size


def test_official_force_fp16_rebuild_and_official_resave(tmp_path, emulator):
    """The official loader's force_fp16 path rebuilds from `init_kwargs` (edited by attribute);
    tools built on it (PTI, the projector) pickle the official objects again; both work."""
    path = tmp_path / 'theirs.pkl'
    _export(PLAIN, path)
    theirs = official_load_network_pkl(emulator, path)
    rebuilt = official_force_fp16(theirs)
    assert rebuilt['G_ema'].init_kwargs.synthesis_kwargs.num_fp16_res == 4
    ref = _npz('reference_outputs.npz')
    with torch.no_grad():
        # On CPU our fp16 blocks compute in float32; conv_clamp=256 is far above these values.
        img = rebuilt['G_ema'].synthesis(ref['gema_ws_psi1'], noise_mode='const')
        torch.testing.assert_close(img, ref['gema_img_psi1_const'], **IMAGE_TOL)

    resaved = io.BytesIO()
    pickle.dump(dict(theirs), resaved)
    resaved.seek(0)
    back = snapshot_io.load_network_pkl(resaved)
    with torch.no_grad():
        assert torch.equal(back['G_ema'].synthesis(ref['gema_ws_psi1'], noise_mode='const'),
                           theirs['G_ema'].synthesis(ref['gema_ws_psi1'], noise_mode='const'))


# Globals an official loader must resolve (spec section 1.3); nothing else may appear.
SPEC_GLOBALS = {
    'torch_utils.persistence _reconstruct_persistent_obj', 'torch._utils _rebuild_tensor_v2',
    'torch._utils _rebuild_parameter', 'torch.storage _load_from_bytes', 'collections OrderedDict',
    'dnnlib.util EasyDict', 'numpy._core.multiarray scalar', 'numpy dtype', 'builtins set'}


def _pickle_globals(blob: bytes) -> set[str]:
    """Every global the pickle asks for (the persistence hook answered inertly)."""
    names = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            names.add(f'{module} {name}')
            if (module, name) == ('torch_utils.persistence', '_reconstruct_persistent_obj'):
                return lambda meta: None
            return super().find_class(module, name)

    Recorder(io.BytesIO(blob)).load()
    return names


def test_export_uses_only_the_official_globals_and_one_source_string_per_module(tmp_path):
    path = tmp_path / 'theirs.pkl'
    _export(PLAIN, path)
    blob = path.read_bytes()
    assert _pickle_globals(blob) <= SPEC_GLOBALS
    records = snapshot_io.read_pickle_records(str(path))
    G, pipe = records['G_ema'], records['augment_pipe']
    assert isinstance(G, persistence.PersistentRecord) and G.class_name == 'Generator'
    assert G.module_src == official_format.module_source('training.networks')
    assert pipe.module_src == official_format.module_source('training.augment')
    assert blob.count(b'class SynthesisLayer(') == 1 and blob.count(b'class AugmentPipe(') == 1
    assert '_init_kwargs' in G.state and 'init_kwargs' not in G.state
    assert isinstance(G.state['_init_kwargs']['synthesis_kwargs'], dict)


# The official torch_utils API (stylegan2-ada-pytorch and stylegan3): module -> {name: keywords}.
OFFICIAL_API = {
    'misc': {'assert_shape': set()},
    'persistence': {'persistent_class': set()},
    'bias_act': {'bias_act': {'x', 'b', 'dim', 'act', 'alpha', 'gain', 'clamp', 'impl'}, 'activation_funcs': set()},
    'upfirdn2d': {'setup_filter': {'f', 'device', 'normalize', 'flip_filter', 'gain', 'separable'},
                  'upfirdn2d': {'x', 'f', 'up', 'down', 'padding', 'flip_filter', 'gain', 'impl'},
                  'upsample2d': {'x', 'f', 'up', 'padding', 'flip_filter', 'gain', 'impl'},
                  'downsample2d': {'x', 'f', 'down', 'padding', 'flip_filter', 'gain', 'impl'},
                  'filter2d': {'x', 'f', 'padding', 'flip_filter', 'gain', 'impl'}},
    'conv2d_resample': {'conv2d_resample': {'x', 'w', 'f', 'up', 'down', 'padding', 'groups', 'flip_weight',
                                            'flip_filter'}},
}
ALLOWED_IMPORTS = {'itertools', 'math', 'numpy', 'torch', 'torch.nn.functional', 'torch_utils.misc',
                   'torch_utils.persistence', 'torch_utils.ops.bias_act', 'torch_utils.ops.upfirdn2d',
                   'torch_utils.ops.conv2d_resample'}


@pytest.mark.parametrize('module_name', official_format.EXPORTABLE_MODULES)
def test_embedded_source_uses_only_the_official_torch_utils_api(module_name):
    tree = ast.parse(official_format.module_source(module_name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= ALLOWED_IMPORTS, ast.unparse(node)
        elif isinstance(node, ast.ImportFrom):
            assert {f'{node.module}.{a.name}' if node.module.startswith('torch_utils') else node.module
                    for a in node.names} <= ALLOWED_IMPORTS, ast.unparse(node)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in OFFICIAL_API:
            assert node.attr in OFFICIAL_API[node.value.id], f'{node.value.id}.{node.attr} is not official API'
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id in OFFICIAL_API:
            allowed = OFFICIAL_API[node.func.value.id][node.func.attr]
            assert {k.arg for k in node.keywords} <= allowed, ast.unparse(node)


def test_convert_snapshot_cli_official_format(tmp_path, capsys, emulator):
    from scripts.convert_snapshot import main
    dest = tmp_path / 'theirs.pkl'
    code, out, err = run_cli_inprocess(main, ['--src', str(require_fixtures(*EXPANDED)), '--dest', str(dest),
                                              '--format', 'official', '--lite'], capsys)
    assert code == 0, err
    assert 'official-format pickle' in out and str(dest) in out
    assert _defining_module(official_load_network_pkl(emulator, dest)['G_ema']).startswith('_imported_module_')

    bad = tmp_path / 'theirs.safetensors'
    code, out, err = run_cli_inprocess(main, ['--src', str(require_fixtures(*EXPANDED)), '--dest', str(bad),
                                              '--format', 'official'], capsys)
    last_line = (out + err).strip().splitlines()[-1]
    assert code != 0 and '--format official' in last_line and '.pkl' in last_line
    assert 'Traceback' not in out + err and not bad.exists()


def test_classes_outside_the_exportable_modules_are_refused(tmp_path):
    G = tiny_nets.tiny_generator(seed=0)
    data = tiny_nets.snapshot_data(G, snapshot_io.AugmentPipeState({}, {}))
    with pytest.raises(persistence.SnapshotError, match=r"snapshot\['D'\] is a training.snapshot_io.AugmentPipeState"):
        official_format.save_official_pkl(data, tmp_path / 'x.pkl')
    assert not (tmp_path / 'x.pkl').exists()
