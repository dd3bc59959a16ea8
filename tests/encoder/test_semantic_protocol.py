"""Semantic-Score / Diversity protocol (Eq. 13-14): values by hand with a CLIP stand-in, input
checks, and the command line refusing to score without real CLIP weights."""

import os

import numpy as np
import pytest
import torch

import dnnlib
from conftest import run_cli_inprocess
from training import cli_helpers
from training.encoder import protocol
from training.expansion.tasks import ClipEncoder


class MeanColour(torch.nn.Module):
    def encode_image(self, x):
        return x.mean(dim=[2, 3])


def _stand_in():
    return ClipEncoder(MeanColour(), None, 8, mean=[0.5] * 3, std=[0.5] * 3, name='mean-colour')


def _solid(colour):
    return torch.tensor(colour, dtype=torch.float32).reshape(1, 3, 1, 1).repeat(1, 1, 8, 8)


def _domain(tmp_path, name, reference, adapted):
    folder = tmp_path / name
    for i, colour in enumerate(adapted):
        cli_helpers.save_image(_solid(colour), str(folder / f'seed{i:04d}.png'))
    cli_helpers.save_image(_solid(reference), str(tmp_path / f'{name}.png'))
    return protocol.ProtocolDomain(name, str(tmp_path / f'{name}.png'), str(folder))


def _unit(colours):
    # What the stand-in sees after the PNG round trip: uint8 levels mapped back to [-1, 1].
    levels = np.rint((np.array(colours, dtype=np.float64) + 1) * 127.5).clip(0, 255)
    v = torch.tensor(levels / 127.5 - 1)
    return torch.nn.functional.normalize(v.reshape(-1, 3), dim=1)


def test_scores_match_eq13_eq14(tmp_path):
    a = _domain(tmp_path, 'a', [1, 0, 0], [[1, 0, 0], [0, 1, 0], [0.6, 0.6, 0]])
    b = _domain(tmp_path, 'b', [0, 0, 1], [[0, 0, 1], [0, 0, 1], [0, 0, 1]])
    result = protocol.evaluate(_stand_in(), [a, b])
    ref, adapted = _unit([1, 0, 0]), _unit([[1, 0, 0], [0, 1, 0], [0.6, 0.6, 0]])
    score_a = float((adapted @ ref[0]).mean())
    sims = adapted @ adapted.t()
    diversity_a = float(np.mean([1 - sims[i, j] for i, j in [(0, 1), (0, 2), (1, 2)]]))
    (row_a, row_b) = result['domains']
    assert row_a['semantic_score'] == pytest.approx(score_a, abs=1e-5)
    assert row_a['diversity'] == pytest.approx(diversity_a, abs=1e-5)
    assert row_b['semantic_score'] == pytest.approx(1.0, abs=1e-5) and row_b['diversity'] == pytest.approx(0.0, abs=1e-5)
    assert result['semantic_score'][0] == pytest.approx((score_a + 1) / 2, abs=1e-5)
    assert result['semantic_score'][1] == pytest.approx(abs(score_a - 1) / 2, abs=1e-5)
    table = protocol.format_table(result, 'encoder')
    assert '| **encoder** (mean ± std over 2 domains) |' in table


def test_domains_must_share_the_source_images(tmp_path):
    a = _domain(tmp_path, 'a', [1, 0, 0], [[1, 0, 0], [0, 1, 0]])
    b = _domain(tmp_path, 'b', [0, 0, 1], [[0, 0, 1], [0, 0, 1], [0, 0, 1]])
    with pytest.raises(dnnlib.util.UserError, match='does not hold the same image names'):
        protocol.check_domains([a, b])
    with pytest.raises(dnnlib.util.UserError, match='reference image not found'):
        protocol.check_domains([protocol.ProtocolDomain('c', str(tmp_path / 'nope.png'), a.adapted_dir)])


def test_cli_without_clip_weights_prints_no_score(tmp_path, capsys, monkeypatch):
    from scripts import semantic_protocol
    monkeypatch.setenv(dnnlib.util.OFFLINE_ENV, '1')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    a = _domain(tmp_path, 'a', [1, 0, 0], [[1, 0, 0], [0, 1, 0]])
    cache = tmp_path / 'empty-cache'
    cache.mkdir()
    code, out, err = run_cli_inprocess(semantic_protocol.main, ['--domain', 'a', a.reference, a.adapted_dir,
        '--clip-cache', str(cache), '--json', str(tmp_path / 'scores.json')], capsys)
    assert code == 2 and 'Traceback' not in err
    assert 'ViT-B/32' in err.strip().splitlines()[-1]
    assert 'Semantic-Score' not in out and not os.path.exists(tmp_path / 'scores.json')
