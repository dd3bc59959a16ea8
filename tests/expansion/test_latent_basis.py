"""SeFA basis (training/expansion/basis.py): selection rule, parity with the official basis, I/O."""

import numpy as np
import pytest
import torch

import legacy
from conftest import require_fixtures
from training.expansion import basis as latent_basis

#----------------------------------------------------------------------------

class StateDictGenerator:
    """Stand-in exposing `named_parameters()` of the fixture G_ema in the official order."""

    def __init__(self, net='G_ema'):
        listing = require_fixtures('stylegan2_tiny', 'state_dict_listing.txt').read_text().splitlines()
        tensors = np.load(require_fixtures('stylegan2_tiny', 'state_dicts.npz'), allow_pickle=False)
        self.params = [(name, torch.from_numpy(tensors[f'{net}.{name}']))
            for owner, kind, name, *_ in (line.split('\t') for line in listing if line.strip())
            if owner == net and kind == 'param']

    def named_parameters(self):
        return iter(self.params)

def fixture_basis() -> torch.Tensor:
    return torch.from_numpy(np.load(require_fixtures('stylegan2_tiny', 'expansion_outputs.npz'))['sefa_basis'])

def assert_equal_up_to_column_sign(actual, expected, atol):
    signs = torch.sign((actual * expected).sum(dim=0, keepdim=True))
    assert torch.all(signs != 0)
    torch.testing.assert_close(actual * signs, expected, atol=atol, rtol=0)

#----------------------------------------------------------------------------

def test_selection_keeps_conv_affines_and_only_the_4x4_torgb_affine():
    names = [name for name, _ in latent_basis.sefa_weights(StateDictGenerator())]
    assert 'synthesis.b4.torgb.affine.weight' in names
    assert 'synthesis.b8.torgb.affine.weight' not in names
    assert all('affine.weight' in name for name in names)
    assert names == sorted(names, key=[n for n, _ in StateDictGenerator().named_parameters()].index)
    assert sum(p.shape[0] for _, p in latent_basis.sefa_weights(StateDictGenerator())) == 150 # README: W is [150, 32]
    for name, kept in [('synthesis.b64.torgb.affine.weight', False), ('synthesis.b1024.conv0.affine.weight', True),
            ('synthesis.b4.conv1.affine.bias', False), ('mapping.fc0.weight', False)]:
        assert latent_basis.is_sefa_weight(name) == kept, name

def test_factorize_matches_official_basis_from_state_dict():
    basis = latent_basis.factorize(StateDictGenerator())
    assert basis.shape == (32, 32) and basis.dtype == torch.float32
    assert_equal_up_to_column_sign(basis, fixture_basis(), atol=1e-4)

def test_basis_is_orthonormal_and_sorted_by_singular_value():
    G = StateDictGenerator()
    basis = latent_basis.factorize(G)
    torch.testing.assert_close(basis.mT @ basis, torch.eye(32), atol=1e-5, rtol=0)
    W = torch.cat([p for _, p in latent_basis.sefa_weights(G)])
    gains = (W @ basis).norm(dim=0)                         # singular values, in column order
    assert torch.all(gains[:-1] >= gains[1:] - 1e-5)
    assert gains[0] > 2 * gains[-1]

def test_factorize_of_loaded_snapshot_matches_official_basis():
    snapshot = legacy.load_network_pkl(str(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl')))
    assert_equal_up_to_column_sign(latent_basis.factorize(snapshot['G_ema']), fixture_basis(), atol=1e-4)

def test_factorize_rejects_module_without_affines():
    with pytest.raises(ValueError, match='affine'):
        latent_basis.factorize(torch.nn.Linear(4, 4))

#----------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    basis = fixture_basis()
    path = str(tmp_path / 'basis.pt')
    latent_basis.save_latent_basis(basis, path)
    loaded = latent_basis.load_latent_basis(path, 32)
    assert torch.equal(loaded, basis)

@pytest.mark.parametrize('content, message', [
    (torch.eye(16), 'must be \\[32, 32\\]'),
    (2 * torch.eye(32), 'not orthonormal'),
    ({'basis': torch.eye(32)}, 'expected a tensor'),
])
def test_load_errors_name_the_flag(tmp_path, content, message):
    path = str(tmp_path / 'bad.pt')
    torch.save(content, path)
    with pytest.raises(ValueError, match=message) as info:
        latent_basis.load_latent_basis(path, 32)
    assert '--latent_factors_path' in str(info.value) and '\n' not in str(info.value)

def test_load_missing_file(tmp_path):
    with pytest.raises(ValueError, match='--latent_factors_path .*file not found'):
        latent_basis.load_latent_basis(str(tmp_path / 'nope.pt'), 32)

def test_load_refuses_pickled_code(tmp_path):
    path = str(tmp_path / 'evil.pt')
    torch.save(StateDictGenerator, path) # A class reference: not loadable with weights_only.
    with pytest.raises(ValueError, match='--latent_factors_path .*cannot be read'):
        latent_basis.load_latent_basis(path, 32)

#----------------------------------------------------------------------------

def test_resolve_precedence(tmp_path):
    G = StateDictGenerator()
    official = fixture_basis()
    q, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    other = q.float()
    path = str(tmp_path / 'other.pt')
    latent_basis.save_latent_basis(other, path)

    basis, note = latent_basis.resolve_latent_basis(G, 32, snapshot_basis=official, latent_factors_path=path)
    assert torch.equal(basis, official) and 'snapshot' in note and 'ignored' in note
    basis, note = latent_basis.resolve_latent_basis(G, 32, latent_factors_path=path)
    assert torch.equal(basis, other) and '--latent_factors_path' in note
    basis, note = latent_basis.resolve_latent_basis(G, 32)
    assert_equal_up_to_column_sign(basis, official, atol=1e-4)
    assert 'factoriz' in note

def test_resolve_validates_snapshot_basis():
    with pytest.raises(ValueError, match="snapshot key 'latent_basis'"):
        latent_basis.resolve_latent_basis(None, 32, snapshot_basis=torch.zeros(32, 32))

#----------------------------------------------------------------------------
