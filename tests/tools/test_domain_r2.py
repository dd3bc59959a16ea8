"""scripts/domain_r2.py: R^2 from generate_aligned.py's PNGs agrees with R^2 of in-memory renders."""

import pytest
import torch

from expanded_toy import save_toy_snapshot
from scripts import domain_r2
from training.expansion.evaluation import r_squared
from training.expansion.expanded_generator import load_expanded_generator
from training.cli_helpers import seed_to_z
from training.image_transforms import get_transform


def test_r2_from_pngs_matches_the_renders(tmp_path):
    torch.set_num_threads(1)
    pkl = str(tmp_path / 'toy.pkl')
    save_toy_snapshot(pkl, tasks=((7, 'grayscale'), (6, 'negative')))
    seeds = [0, 1, 2, 3]
    r2 = domain_r2.domain_r2(pkl, seeds, str(tmp_path / 'pngs'))
    assert list(r2) == ['grayscale', 'negative']
    eg = load_expanded_generator(pkl, torch.device('cpu'))
    z = torch.cat([torch.from_numpy(seed_to_z(s, eg.G.z_dim)) for s in seeds])
    base, edits = eg.render_aligned(eg.map(z, torch.zeros([4, 0]), 1.0), [0, 1])
    for k, name in enumerate(['grayscale', 'negative']):
        expected = r_squared(edits[k].clamp(-1, 1), get_transform(name)(base.clamp(-1, 1)))
        assert r2[name] == pytest.approx(expected, abs=0.02)  # 8-bit PNG rounding only
