"""Base / repurposed subspaces (training/expansion/subspaces.py): invariants and official parity."""

import numpy as np
import pytest
import torch

import legacy
from conftest import require_fixtures
from training.expansion.subspaces import LatentSubspaces, project_to_subspaces

#----------------------------------------------------------------------------

def random_basis(w_dim=16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(w_dim, w_dim, generator=g, dtype=torch.float64))
    return q.float()

@pytest.fixture
def toy():
    torch.manual_seed(1)
    sub = LatentSubspaces(random_basis(16), [15, 3, 9], subspace_distance=20.0)
    return sub, torch.randn(5, 16), torch.randn(16)     # subspaces, w [5, 16], mean [16]

@pytest.fixture(scope='module')
def expansion():
    data = np.load(require_fixtures('stylegan2_tiny', 'expansion_outputs.npz'), allow_pickle=False)
    refs = np.load(require_fixtures('stylegan2_tiny', 'reference_outputs.npz'), allow_pickle=False)
    out = {key: torch.from_numpy(data[key]) for key in data.files}
    out['ws'] = torch.from_numpy(refs['gema_ws_psi1'])
    out['w_avg'] = torch.from_numpy(refs['w_avg_before_update'])
    return out

#----------------------------------------------------------------------------
# Invariants.

def test_buffers_and_default_base_dims(toy):
    sub, _, _ = toy
    assert sub.repurposed_dims.tolist() == [15, 3, 9]
    assert sub.base_dims.tolist() == [d for d in range(16) if d not in (15, 3, 9)]
    assert torch.equal(sub.B_R[:, 1], sub.basis[:, 3])
    assert 'repurposed_dims=[15, 3, 9]' in repr(sub)

def test_base_projection_is_idempotent(toy):
    sub, w, mean = toy
    base = sub.project_base(w, mean)
    torch.testing.assert_close(sub.project_base(base, mean), base, atol=1e-5, rtol=0)

def test_base_ignores_coordinates_along_repurposed_directions(toy):
    sub, w, mean = toy
    shifted = w + torch.randn(5, 3) @ sub.B_R.mT        # arbitrary moves along every repurposed direction
    torch.testing.assert_close(sub.project_base(shifted, mean), sub.project_base(w, mean), atol=1e-5, rtol=0)
    # The repurposed coordinates of a base latent are those of the mean (Eq. 1).
    torch.testing.assert_close(sub.project_base(w, mean) @ sub.B_R, (mean @ sub.B_R).expand(5, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(sub.project_base(w) @ sub.B_R, torch.zeros(5, 3), atol=1e-5, rtol=0)

def test_base_keeps_coordinates_along_base_directions(toy):
    sub, w, mean = toy
    torch.testing.assert_close(sub.project_base(w, mean) @ sub.B_K, w @ sub.B_K, atol=1e-5, rtol=0)

@pytest.mark.parametrize('step', [-7.5, 0.5, 20.0, 300.0])
def test_moving_along_a_repurposed_direction_never_changes_the_base(toy, step):
    sub, w, mean = toy
    base = sub.project_base(w, mean)
    for k in range(3):
        edit = sub.edit(base, k, step)
        torch.testing.assert_close(sub.project_base(edit, mean), base, atol=1e-4, rtol=0)
        torch.testing.assert_close((edit - base) @ sub.B_R[:, k], torch.full([5], step), atol=1e-4, rtol=1e-6)

def test_edit_at_distance_zero_is_the_base(toy):
    sub, w, mean = toy
    base = sub.project_base(w, mean)
    assert torch.equal(sub.edit(base, 1, 0.0), base)
    assert torch.equal(sub.edit(base, torch.tensor([0, 1, 2, 0, 1]), 0.0), base)
    _, edits = sub.edits_all(w, mean, steps=[0.0])
    assert torch.equal(edits[0, 2], base)

def test_edit_defaults_to_subspace_distance_and_projects_eq3(toy):
    sub, w, mean = toy
    base = sub.project_base(w, mean)
    torch.testing.assert_close(sub.edit(base, 2), base + 20.0 * sub.basis[:, 9])
    torch.testing.assert_close(sub.edit(base, torch.tensor(2)), sub.edit(base, np.int64(2)))
    torch.testing.assert_close(sub.edit(base, torch.tensor(2)), sub.edit(base, 2))
    torch.testing.assert_close(sub.project_repurposed(w, 2, mean), base + 20.0 * sub.basis[:, 9])

def test_per_sample_task_index_and_steps(toy):
    sub, w, mean = toy
    base = sub.project_base(w, mean)
    k = torch.tensor([2, 0, 1, 1, 0])
    steps = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    edit = sub.edit(base, k, steps)
    for i in range(5):
        torch.testing.assert_close(edit[i], sub.edit(base[i:i + 1], int(k[i]), float(steps[i]))[0])
    wplus = base.unsqueeze(1).repeat(1, 4, 1)
    edit_plus = sub.edit(wplus, k, steps)
    assert edit_plus.shape == (5, 4, 16)
    torch.testing.assert_close(edit_plus, edit.unsqueeze(1).expand(5, 4, 16))

def test_wplus_rows_are_projected_independently(toy):
    sub, _, mean = toy
    wplus = torch.randn(3, 6, 16)
    base = sub.project_base(wplus, mean)
    for i in range(6):
        torch.testing.assert_close(base[:, i], sub.project_base(wplus[:, i], mean))

def test_edits_all_layout(toy):
    sub, w, mean = toy
    base, edits = sub.edits_all(w, mean, steps=[-1.0, 2.0])
    assert edits.shape == (2, 3, 5, 16)
    torch.testing.assert_close(edits[1, 2], sub.edit(base, 2, 2.0))
    torch.testing.assert_close(edits[0, 0], sub.edit(base, 0, -1.0))
    base_plus, edits_plus = sub.edits_all(w.unsqueeze(1).repeat(1, 4, 1), mean)
    assert edits_plus.shape == (1, 3, 5, 4, 16)
    torch.testing.assert_close(edits_plus[0, 1, :, 3], sub.edit(base, 1))

def test_compose_adds_weighted_directions(toy):
    sub, w, mean = toy
    base = sub.project_base(w, mean)
    torch.testing.assert_close(sub.compose(base, [0.0, 20.0, 0.0]), sub.edit(base, 1))
    mixed = sub.compose(base, torch.tensor([3.0, -2.0, 5.0]))
    torch.testing.assert_close((mixed - base) @ sub.B_R, torch.tensor([3.0, -2.0, 5.0]).expand(5, 3), atol=1e-5, rtol=0)
    per_sample = torch.randn(5, 3)
    wplus = base.unsqueeze(1).repeat(1, 2, 1)
    torch.testing.assert_close(sub.compose(wplus, per_sample)[:, 1], sub.compose(base, per_sample))
    torch.testing.assert_close(sub.project_base(mixed, mean), base, atol=1e-4, rtol=0)

def test_inputs_are_not_modified(toy):
    sub, w, mean = toy
    w_copy = w.clone()
    base, edits = sub.edits_all(w, mean)
    project_to_subspaces(w, sub.basis, [15, 3, 9], step_size=20, mean=mean)
    assert torch.equal(w, w_copy) and w.shape == (5, 16)

def test_gradients_flow_to_the_latent(toy):
    sub, w, mean = toy
    w = w.clone().requires_grad_(True)
    sub.edit(sub.project_base(w, mean), 0).square().sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    # The gradient of the base has no component along the repurposed directions.
    torch.testing.assert_close(w.grad @ sub.B_R, torch.zeros(5, 3), atol=1e-4, rtol=0)

@pytest.mark.parametrize('dims, message', [([3, 3], 'distinct'), ([16], 'lie in'), ([-1], 'lie in')])
def test_bad_repurposed_dims(dims, message):
    with pytest.raises(ValueError, match=message):
        LatentSubspaces(random_basis(16), dims)

def test_custom_base_dims():
    basis = random_basis(8)
    sub = LatentSubspaces(basis, [7], base_dims=[0, 1])
    w = torch.randn(2, 8)
    torch.testing.assert_close(sub.project_base(w), w @ basis[:, :2] @ basis[:, :2].mT)

#----------------------------------------------------------------------------
# Parity with the official project_to_subspaces (fixture expansion_outputs.npz, stored basis).

def test_parity_w_input(expansion):
    w = expansion['w_input'].clone()
    base, edits = project_to_subspaces(w, expansion['sefa_basis'], expansion['repurposed_dims'],
        step_size=float(expansion['subspace_distance']), mean=expansion['w_avg'])
    assert base.shape == (4, 32) and edits.shape == (1, 2, 4, 32)
    torch.testing.assert_close(base, expansion['proj_base_w'], atol=1e-5, rtol=0)
    torch.testing.assert_close(edits, expansion['proj_edit_w'], atol=1e-5, rtol=0)
    assert torch.equal(w, expansion['w_input'])     # no in-place unsqueeze of the caller's tensor

def test_parity_wplus_input(expansion):
    base, edits = project_to_subspaces(expansion['ws'], expansion['sefa_basis'], expansion['repurposed_dims'],
        step_size=20, mean=expansion['w_avg'])
    assert base.shape == (4, 8, 32) and edits.shape == (1, 2, 4, 8, 32)
    torch.testing.assert_close(base, expansion['proj_base_wplus'], atol=1e-5, rtol=0)
    torch.testing.assert_close(edits, expansion['proj_edit_wplus'], atol=1e-5, rtol=0)

def test_parity_class_api(expansion):
    sub = LatentSubspaces(expansion['sefa_basis'], expansion['repurposed_dims'].tolist(), subspace_distance=20.0)
    base, edits = sub.edits_all(expansion['w_input'], expansion['w_avg'])
    torch.testing.assert_close(base, expansion['proj_base_w'], atol=1e-5, rtol=0)
    torch.testing.assert_close(edits, expansion['proj_edit_w'], atol=1e-5, rtol=0)

def test_functional_without_step_and_with_joint_steps(expansion):
    args = (expansion['w_input'], expansion['sefa_basis'], [31, 30])
    base, edits = project_to_subspaces(*args, mean=expansion['w_avg'])
    assert edits is None
    torch.testing.assert_close(base, expansion['proj_base_w'], atol=1e-5, rtol=0)
    joint = torch.tensor([[[20.0, 0.0], [0.0, 20.0], [20.0, 20.0]]])   # [a=1, b=3, K=2]
    base, edits = project_to_subspaces(*args, step_size=joint, mean=expansion['w_avg'])
    assert edits.shape == (1, 3, 4, 32)
    torch.testing.assert_close(edits[0, 0], expansion['proj_edit_w'][0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(edits[0, 1], expansion['proj_edit_w'][0, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(edits[0, 2], expansion['proj_edit_w'][0, 0] + expansion['proj_edit_w'][0, 1] - base,
        atol=1e-4, rtol=0)
    _, multi = project_to_subspaces(*args, step_size=[0.0, 20.0], mean=expansion['w_avg'])
    assert multi.shape == (2, 2, 4, 32)
    torch.testing.assert_close(multi[0, 1], base)

def test_rendered_base_and_edit_images_match_official(expansion):
    G = legacy.load_network_pkl(str(require_fixtures('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')))['G_ema']
    sub = LatentSubspaces(expansion['sefa_basis'], [31, 30], subspace_distance=20.0)
    base, edits = sub.edits_all(expansion['w_input'], G.mapping.w_avg)
    with torch.no_grad():
        img_base = G.synthesis(base.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode='const')
        img_edit = torch.stack([G.synthesis(edits[0, k].unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode='const')
            for k in range(2)])
        img_zero = G.synthesis(sub.edit(base, 0, 0.0).unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode='const')
    torch.testing.assert_close(img_base, expansion['img_base_const'], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(img_edit, expansion['img_edit_const'], atol=1e-4, rtol=1e-5)
    assert torch.equal(img_zero, img_base)          # edit image at distance 0 == base image

#----------------------------------------------------------------------------
