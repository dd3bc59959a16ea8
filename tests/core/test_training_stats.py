"""training_stats: moments per interval, independent collectors, pending state for exact resume.
(The cross-rank sum is exercised in test_distributed.py.)"""

import math

import numpy as np
import pytest
import torch

from torch_utils import training_stats


@pytest.fixture(autouse=True)
def _fresh_counters():
    training_stats.reset_all()
    yield
    training_stats.reset_all()


def test_mean_std_num_over_an_interval():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    collector = training_stats.Collector(regex='Loss/.*')
    training_stats.report('Loss/a', torch.tensor(values[:3]))
    training_stats.report('Loss/a', float(values[3]))
    training_stats.report('Other/b', 5.0)  # Not matched.
    collector.update()
    assert collector.names() == ['Loss/a']
    assert collector.num('Loss/a') == 4
    assert collector.mean('Loss/a') == pytest.approx(values.mean())
    assert collector.std('Loss/a') == pytest.approx(values.std())
    assert collector['Loss/a'] == collector.mean('Loss/a')
    assert math.isnan(collector.mean('Other/b'))
    assert collector.as_dict() == {'Loss/a': {'num': 4, 'mean': pytest.approx(3.5), 'std': pytest.approx(values.std())}}


def test_intervals_and_keep_previous():
    keep = training_stats.Collector(keep_previous=True)
    drop = training_stats.Collector(keep_previous=False)
    training_stats.report('x', [1.0, 3.0])
    keep.update()
    drop.update()
    assert keep.mean('x') == drop.mean('x') == 2.0
    keep.update()
    drop.update()  # Nothing new reported.
    assert keep.mean('x') == 2.0 and keep.num('x') == 2
    assert drop.num('x') == 0 and 'x' not in drop.as_dict()
    training_stats.report('x', 10.0)
    keep.update()
    assert keep.mean('x') == 10.0 and keep.num('x') == 1  # Only the new interval.


def test_collectors_are_independent():
    a = training_stats.Collector()
    b = training_stats.Collector()
    training_stats.report('x', 1.0)
    a.update()
    training_stats.report('x', 3.0)
    a.update()
    b.update()
    assert a.mean('x') == 3.0
    assert b.mean('x') == 2.0 and b.num('x') == 2


def test_nonfinite_values_are_visible():
    collector = training_stats.Collector()
    training_stats.report('Loss/G/loss', torch.tensor([1.0, float('nan')]))
    collector.update()
    assert math.isnan(collector.mean('Loss/G/loss'))


def test_report_returns_value_and_ignores_none():
    t = torch.ones(3)
    assert training_stats.report('x', t) is t
    assert training_stats.report('y', None) is None
    assert training_stats.report0('z', 5.0) == 5.0
    collector = training_stats.Collector()
    collector.update()
    assert collector.names() == ['x', 'z']


def test_pending_state_round_trip():
    # Values reported after the last update survive a "restart" (fresh counters) via state_dict.
    collector = training_stats.Collector(regex='Loss/signs/real')
    training_stats.report('Loss/signs/real', [1.0, 1.0])
    collector.update()
    training_stats.report('Loss/signs/real', [-1.0, 1.0, 1.0])
    state = collector.state_dict()
    assert state == {'pending': {'Loss/signs/real': [3.0, 1.0, 3.0]}}

    training_stats.reset_all()
    restored = training_stats.Collector(regex='Loss/signs/real')
    restored.load_state_dict(state)
    training_stats.report('Loss/signs/real', [1.0])
    restored.update()
    assert restored.num('Loss/signs/real') == 4
    assert restored.mean('Loss/signs/real') == pytest.approx(0.5)
