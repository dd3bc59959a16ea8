"""Issue 9 item 1: the loop set-up resolves the SeFA basis from the starting G_ema (not the
training copy G) once, and hands it and the frozen replay target to DomainExpansionLoss."""

import torch

import legacy
from conftest import require_fixtures
from training import loop_setup
from training.expansion.basis import factorize
from training.expansion.tasks.shared_models import SharedModels

DIMS = [31, 30, 29]
LOSS_KWARGS = dict(class_name='training.expansion.loss.DomainExpansionLoss', lambda_src=0, lambda_recon_l2=10,
                   lambda_recon_lpips=0, shared_models=SharedModels('cpu'),
                   expansion_cfg={'tasks': [{'type': 'Transform', 'dimension': dim, 'args': {'transform': name}}
                                            for dim, name in zip(DIMS, ('grayscale', 'negative', 'hflip'))]})


def _snapshot():
    with open(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl'), 'rb') as f:
        return legacy.load_network_pkl(f)


def _build(data, **kwargs):
    return loop_setup.build_loss({**LOSS_KWARGS, **kwargs}, data['G'], data['D'], data['G_ema'], None, 8,
                                 torch.device('cpu'), snapshot=data)


def _abs_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|cos| between corresponding columns, [w_dim]."""
    return (torch.nn.functional.normalize(a, dim=0) * torch.nn.functional.normalize(b, dim=0)).sum(0).abs()


def test_stored_basis_is_sefa_of_g_ema_not_of_g():
    data = _snapshot()
    assert any(not torch.equal(p, q) for p, q in zip(data['G'].parameters(), data['G_ema'].parameters()))
    loss = _build(data)
    stored = loss.snapshot_extras()['latent_basis']
    of_g_ema, of_g = factorize(data['G_ema']), factorize(data['G'])
    cos_ema = _abs_cos(stored, of_g_ema)
    assert cos_ema.min() > 1 - 1e-5, cos_ema                     # every column, signs included below
    torch.testing.assert_close(stored, of_g_ema, atol=1e-6, rtol=0)
    cos_g = _abs_cos(stored[:, DIMS], of_g[:, DIMS])
    assert cos_g.min() < 0.9, cos_g                               # G's own SeFA repurposes other directions
    # The replay target is the loaded training copy's synthesis, frozen.
    for (name, frozen), live in zip(loss.G_synthesis_frozen.state_dict().items(), data['G'].synthesis.state_dict().values()):
        assert torch.equal(frozen, live), name
    assert not any(p.requires_grad for p in loss.G_synthesis_frozen.parameters())


def test_snapshot_basis_and_factors_path_take_precedence(tmp_path):
    data = _snapshot()
    stored = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))[0]
    loss = _build({**data, 'latent_basis': stored})
    torch.testing.assert_close(loss.subspaces.basis, stored, atol=0, rtol=0)
    path = tmp_path / 'basis.pt'
    other = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(2)))[0]
    torch.save(other, path)
    loss = _build(data, latent_factors_path=str(path))
    torch.testing.assert_close(loss.subspaces.basis, other, atol=0, rtol=0)
