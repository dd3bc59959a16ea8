"""Expansion snapshots carry the frozen source synthesis once (not once per process), and the
resume state written that way restores the replay target exactly (training/loop_snapshot.py)."""

import copy
import types

import pytest
import torch

import tiny_nets
from training import loop_snapshot
from training import official_format
from training import snapshot_io
from training.expansion.loss import DomainExpansionLoss
from training.expansion.tasks.shared_models import SharedModels

pytestmark = pytest.mark.usefixtures('one_thread')

CFG = {'tasks': [{'type': 'Transform', 'dimension': 15, 'args': {'transform': 'negative'}}]}


def _loss(G, D) -> DomainExpansionLoss:
    """A loss whose replay target is a frozen copy of G's synthesis as it is now."""
    return DomainExpansionLoss(torch.device('cpu'), G.mapping, G.synthesis, D, expansion_cfg=CFG, batch_gpu=4,
                               latent_basis=torch.eye(16), G_synthesis_frozen=copy.deepcopy(G.synthesis),
                               lambda_src=0, lambda_recon_lpips=0, shared_models=SharedModels('cpu'))


def _snapshot(G, D, loss, num_ranks: int) -> dict:
    """A snapshot as the loop writes it, with `num_ranks` processes' rank-local states."""
    per_rank = [loop_snapshot.rank_local_state(torch.device('cpu'), loss, None, G) for _ in range(num_ranks)]
    state = loop_snapshot.make_resume_state(loop_snapshot.Progress(cur_nimg=8, batch_idx=2), 4,
                                            {'G': types.SimpleNamespace(state_dict=tiny_nets.adam_like_state_dict)}, None, per_rank,
                                            loss.shared_state_dict())
    return loop_snapshot.make_snapshot(None, G, D, G, None, loss.snapshot_extras(), state)


def test_frozen_source_is_stored_once_and_restores_the_replay_target(tmp_path):
    G, D = tiny_nets.tiny_generator(seed=3), tiny_nets.tiny_discriminator()
    loss = _loss(G, D)
    frozen = {k: v.clone() for k, v in loss.G_synthesis_frozen.state_dict().items()}
    sizes = {}
    for num_ranks in (1, 4):
        path = tmp_path / f'ranks{num_ranks}.pkl'
        snapshot_io.save_network_pkl(_snapshot(G, D, loss, num_ranks), path)
        sizes[num_ranks] = path.stat().st_size
    frozen_bytes = sum(t.numel() * t.element_size() for t in frozen.values())
    # Each further rank adds its RNG streams and small loss state, not another synthesis copy.
    assert (sizes[4] - sizes[1]) / 3 < frozen_bytes, sizes

    data = snapshot_io.load_network_pkl(str(tmp_path / 'ranks4.pkl'))
    state = loop_snapshot.load_resume_state(data, 'ranks4.pkl')
    assert all(not {'frozen_synthesis', 'latent_basis'} & set(r['loss']) for r in state['per_rank'])
    assert set(state['loss_shared']) == {'frozen_synthesis', 'latent_basis'}
    with torch.no_grad():
        for p in G.synthesis.parameters():
            p.add_(1)  # The trained network differs from the source ...
    resumed = _loss(G, D)  # ... so a new loss's frozen copy is the wrong replay target until restored.
    loop_snapshot.restore_rank_state(state, 0, 4, torch.device('cpu'), resumed, None, G, 0, print)
    for name, tensor in resumed.G_synthesis_frozen.state_dict().items():
        assert torch.equal(tensor, frozen[name]), name


def test_lite_official_export_is_the_size_of_the_networks(tmp_path):
    """What the README reports: a snapshot with resume state vs its --lite official export."""
    G, D = tiny_nets.tiny_generator(seed=3), tiny_nets.tiny_discriminator()
    full = tmp_path / 'full.pkl'
    snapshot_io.save_network_pkl(_snapshot(G, D, _loss(G, D), 1), full)
    lite = official_format.save_official_pkl(snapshot_io.load_network_pkl(str(full)), tmp_path / 'lite.pkl', lite=True)
    assert 'resume_state' not in lite
    source_bytes = len(official_format.module_source('training.networks').encode())
    network_bytes = sum(t.numel() * t.element_size() for net in (G, D, G) for t in net.state_dict().values())
    assert (tmp_path / 'lite.pkl').stat().st_size < 1.5 * (network_bytes + source_bytes)
