"""DomainExpansionLoss: the official toy protocol (expansion_fidelity fixture) and the
lambda/phase invariants of Eq. 4-7."""

import copy

import numpy as np
import pytest
import torch

import legacy
from conftest import require_fixtures
from tiny_nets import tiny_discriminator, tiny_generator
from training.expansion import evaluation
from training.expansion.loss import DomainExpansionLoss
from training.expansion.tasks.shared_models import SharedModels

TRANSFORM_CFG = {'tasks': [
    {'type': 'Transform', 'dimension': 31, 'args': {'transform': 'grayscale'}},
    {'type': 'Transform', 'dimension': 30, 'args': {'transform': 'negative'}},
    {'type': 'Transform', 'dimension': 29, 'args': {'transform': 'hflip'}},
]}

# expansion_fidelity/README.md: step-0 error matrix (rows task k, columns subspace j), exact.
STEP0_ERRORS = np.array([[48.258, 13.246, 79.418],
                         [79.447, 31.877, 82.990],
                         [39.711, 18.282, 75.733]])
# Own errors at step 50 (seed 0 / seed 1), from the same README.
STEP50_OWN = np.array([[11.66, 14.79, 22.25], [12.66, 15.68, 23.15]])


def _fixture_generator():
    path = require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl')
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f)['G_ema']


def _loss(G, D=None, **kwargs):
    kwargs = {'lambda_src': 0, 'lambda_recon_lpips': 0, **kwargs}
    # As the loop set-up does, with G standing for both G and G_ema; explicit kwargs win.
    kwargs = {**DomainExpansionLoss.resolve_inputs(kwargs, G=G, G_ema=G, snapshot=None), **kwargs}
    return DomainExpansionLoss(torch.device('cpu'), G.mapping, G.synthesis, D, expansion_cfg=kwargs.pop('cfg', TRANSFORM_CFG),
                               batch_gpu=8, shared_models=kwargs.pop('models', SharedModels('cpu')), **kwargs)


def _eval_matrix(G_trained, G_src, loss):
    return evaluation.error_matrix(G_trained.synthesis, G_src.mapping, loss.subspaces, loss.tasks,
                                       G_src.mapping.w_avg, n=64, seed=1234)


def test_step0_error_matrix_matches_official():
    G = _fixture_generator()
    loss = _loss(G)
    assert loss.config.repurposed_dims == [31, 30, 29]
    E = _eval_matrix(G, G, loss)
    np.testing.assert_allclose(E, STEP0_ERRORS, atol=1.5e-3)


def test_official_protocol_trajectory_statistics():
    """50 steps of the official toy protocol land within 20% of the fixture's two seeds."""
    G_src = _fixture_generator()
    G = copy.deepcopy(G_src).train()
    torch.manual_seed(0)
    loss = _loss(G, lambda_recon_l2=10)
    # Lazy-regularisation rescaling of the stylegan2 preset: lr 0.001 * 4/5, beta2 0.99 ** 0.8.
    G.synthesis.requires_grad_(True)
    opt = torch.optim.Adam(loss.trainable_params('G', G), lr=0.0008, betas=(0.0, 0.99 ** 0.8), eps=1e-8)
    assert [p.name for p in loss.get_phases(4, 16)] == ['G_expand_and_recon']
    gen_c = torch.zeros([8, 0])
    for _ in range(50):
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('G_expand_and_recon', None, None, torch.randn([8, 32]), gen_c, 1.0, 0)
        opt.step()
    E = _eval_matrix(G.eval(), G_src, loss)
    own = np.diag(E)
    lo, hi = STEP50_OWN.min(0), STEP50_OWN.max(0)
    assert np.all(own > lo * 0.8) and np.all(own < hi * 1.2), own
    # Learning happens on the own subspace: each own error fell far below its step-0 value.
    assert np.all(own < 0.5 * np.diag(STEP0_ERRORS)), own
    # The live w_avg moved (the mapping runs in training mode, as in the official code).
    assert not torch.equal(G.mapping.w_avg, G_src.mapping.w_avg)


def _tiny_nets():
    G = tiny_generator(32, seed=1)
    D = tiny_discriminator()
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


class _Counting:
    """Wraps a callable and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _run_phases(loss, G, D, steps=2):
    params = loss.trainable_params('G', G) + loss.trainable_params('D', D)
    for p in params:
        p.requires_grad_(True)
    real = torch.rand([4, 3, 16, 16]) * 2 - 1
    for _ in range(steps):
        for phase in loss.get_phases(4, 16):
            loss.accumulate_gradients(phase.name, real, torch.zeros([4, 0]), torch.randn([4, 32]), torch.zeros([4, 0]), 1.0, 0)
    return params


def test_every_lambda_zero_trains_nothing():
    G, D = _tiny_nets()
    loss = _loss(G, D, lambda_src=0, lambda_expand=0, lambda_recon_l2=0, lambda_recon_lpips=0,
                 cfg={'tasks': TRANSFORM_CFG['tasks'][:1]})
    assert loss.get_phases(4, 16) == [] and loss.get_phases(None, None) == []
    assert loss.G_synthesis_frozen is None


def test_each_lambda_at_zero_removes_its_term_and_compute():
    G, D = _tiny_nets()
    cfg = {'tasks': [{'type': 'Transform', 'args': {'transform': 'negative'}}]}
    models = SharedModels('cpu')
    perceptual = _Counting(lambda x, y: (x - y).abs().mean([1, 2, 3]))
    models.register_perceptual('alex', perceptual)

    # lambda_recon_lpips = 0: LPIPS never runs, but L2 replay does.
    loss = _loss(G, D, cfg=cfg, models=models, lambda_recon_lpips=0, lambda_recon_l2=10)
    loss.G_synthesis_frozen = _Counting(loss.G_synthesis_frozen)
    _run_phases(loss, G, D)
    assert perceptual.calls == 0 and loss.G_synthesis_frozen.calls == 2

    # lambda_recon_l2 = 0 alone still runs LPIPS replay (the official code would skip it).
    loss = _loss(G, D, cfg=cfg, models=models, lambda_recon_lpips=10, lambda_recon_l2=0)
    _run_phases(loss, G, D)
    assert perceptual.calls == 2

    # lambda_expand = 0: no edit renders, no task error.
    loss = _loss(G, D, cfg=cfg, models=models, lambda_expand=0, lambda_recon_l2=10)
    loss.tasks[0].error = _Counting(loss.tasks[0].error)
    _run_phases(loss, G, D)
    assert loss.tasks[0].error.calls == 0

    # lambda_src = 0: D is never evaluated; > 0: the GAN phases appear.
    D_counting = _Counting(D)
    loss = _loss(G, D_counting, cfg=cfg, models=models, lambda_src=0, lambda_recon_l2=10)
    _run_phases(loss, G, D)
    assert D_counting.calls == 0
    loss = _loss(G, D, cfg=cfg, models=models, lambda_src=1)
    assert [p.name for p in loss.get_phases(4, 16)] == ['G_expand_and_recon', 'G_adv', 'G_reg', 'D_adv', 'D_reg']
    assert [p.name for p in loss.get_phases(None, None)] == ['G_all', 'D_all']


def test_only_synthesis_is_trained_and_gradients_flow():
    G, D = _tiny_nets()
    loss = _loss(G, D, lambda_src=1, cfg={'tasks': [{'type': 'Transform', 'args': {'transform': 'hflip'}}]})
    params = _run_phases(loss, G, D, steps=1)
    synthesis_ids = {id(p) for p in G.synthesis.parameters()}
    assert all(id(p) in synthesis_ids for p in loss.trainable_params('G', G))
    assert all(p.grad is None for p in G.mapping.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_snapshot_extras_use_official_names_and_types():
    G, _ = _tiny_nets()
    loss = _loss(G, cfg={'tasks': [{'type': 'Transform', 'args': {'transform': 'negative'}},
                                   {'type': 'Transform', 'args': {'transform': 'grayscale'}}]})
    extras = loss.snapshot_extras()
    assert extras['repurposed_dims'].dtype == torch.int32 and extras['repurposed_dims'].tolist() == [31, 30]
    assert extras['latent_basis'].shape == (32, 32) and extras['latent_basis'].dtype == torch.float32
    assert isinstance(extras['subspace_distance'], float) and extras['subspace_distance'] == 20.0
    assert extras['expansion_cfg']['tasks'][0]['dimension'] == 31
    # The stored basis is the SeFA basis of the synthesis network (orthonormal).
    B = extras['latent_basis']
    torch.testing.assert_close(B.T @ B, torch.eye(32), atol=1e-5, rtol=0)


def test_resume_state_restores_replay_target():
    G, _ = _tiny_nets()
    basis = torch.linalg.qr(torch.randn(32, 32))[0]  # fixed, so the changed network's SeFA basis does not matter
    loss = _loss(G, lambda_recon_l2=10, latent_basis=basis)
    state, shared = loss.state_dict(), loss.shared_state_dict()
    assert not {'frozen_synthesis', 'latent_basis'} & set(state)  # the same on every rank: stored once per snapshot
    with torch.no_grad():
        for p in G.synthesis.parameters():
            p.add_(1)
    resumed = _loss(G, lambda_recon_l2=10, latent_basis=basis)  # frozen copy of the *changed* network ...
    resumed.load_shared_state_dict(shared)   # ... replaced by the source it had at the start
    resumed.load_state_dict(state)
    for name, tensor in resumed.G_synthesis_frozen.state_dict().items():
        assert torch.equal(tensor, shared['frozen_synthesis'][name]), name
    older = _loss(G, lambda_recon_l2=10, latent_basis=basis)
    older.load_state_dict({**state, **shared})  # snapshots that kept a copy per rank still resume
    for name, tensor in older.G_synthesis_frozen.state_dict().items():
        assert torch.equal(tensor, shared['frozen_synthesis'][name]), name
    with pytest.raises(ValueError, match='unexpected shared loss state'):
        resumed.load_shared_state_dict({'bogus': 1})
    with pytest.raises(ValueError, match='unexpected loss state'):
        resumed.load_state_dict({'bogus': 1})
    with pytest.raises(ValueError, match='different latent basis'):
        resumed.load_state_dict({**state, 'latent_basis': torch.eye(32)})
    with pytest.raises(ValueError, match='different latent basis'):
        resumed.load_shared_state_dict({**shared, 'latent_basis': torch.eye(32)})


def test_hundred_domains_parse_and_train():
    cfg = {'tasks': [{'type': 'Transform', 'args': {'transform': 'negative', 'name': f'd{i}'}} for i in range(100)]}
    G = tiny_generator(128, z_dim=16, mapping_layers=1, channel_base=512, channel_max=32, seed=0)
    G.train().requires_grad_(False)
    loss = _loss(G, cfg=cfg, lambda_recon_l2=1)
    assert loss.config.repurposed_dims == list(range(127, 27, -1))
    params = loss.trainable_params('G', G)
    before = [p.detach().clone() for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=0.01)
    loss.accumulate_gradients('G_expand_and_recon', None, None, torch.randn([8, 16]), torch.zeros([8, 0]), 1.0, 0)
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, params))


def test_empty_config_runs_replay_alignment_only():
    G, D = _tiny_nets()
    loss = _loss(G, D, cfg={}, lambda_recon_l2=10)
    assert [p.name for p in loss.get_phases(4, 16)] == ['G_expand_and_recon']
    _run_phases(loss, G, D, steps=1)
    assert loss.snapshot_extras()['repurposed_dims'].tolist() == []
    assert _loss(G, D, cfg={}, lambda_recon_l2=0).get_phases(4, 16) == []
