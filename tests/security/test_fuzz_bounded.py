"""A bounded fuzz run of every loader (issue 9, item 6): every input loads or ends in a one-line
UserError; no exception of any other type, no worker killed by a signal, no timeout.
`python -m scripts.fuzz --n 10000` is the long campaign."""

import random

import pytest

from scripts import fuzz

N_PER_TARGET = 120  # Seeds first (the hostile files among them), then mutations.


@pytest.mark.parametrize('target', fuzz.TARGETS)
def test_bounded_fuzz_has_no_crash(target, tmp_path):
    summary = fuzz.run_campaign(target, N_PER_TARGET, seed=0, crash_dir=str(tmp_path), batch=N_PER_TARGET,
                                log=lambda line: None)
    assert summary.tried == N_PER_TARGET
    assert summary.crashes == 0, f'crashing inputs saved as {summary.crash_files}; replay one with ' \
                                 f'python -m scripts.fuzz --replay FILE --target {target}'
    assert summary.clean > 0  # The mutations do reach the error paths.


def test_harness_counts_crashes(monkeypatch, tmp_path):
    """The classifier tells crashes from clean errors (in process; the workers use the same code)."""
    def run(data, workdir):
        if data == b'raise':
            raise KeyError('not a user error')
        if data == b'multi':
            import dnnlib
            raise dnnlib.util.UserError('two\nlines')
        import dnnlib
        raise dnnlib.util.UserError('bad input')
    monkeypatch.setitem(fuzz.TARGET_TABLE, 'unpickler', fuzz.Target(lambda w: [], fuzz.mutate_bytes, run))
    assert fuzz.classify('unpickler', b'raise', str(tmp_path))[0] == 'crash'
    assert fuzz.classify('unpickler', b'multi', str(tmp_path))[0] == 'crash'
    assert fuzz.classify('unpickler', b'fine', str(tmp_path)) == ('clean', '')


@pytest.mark.parametrize('target', fuzz.TARGETS)
def test_empty_input_is_a_clean_error(target, tmp_path):
    assert fuzz.classify(target, b'', str(tmp_path)) == ('clean', '')


def test_inputs_are_reproducible():
    seeds = [b'abcdefgh' * 8, b'0123456789']
    one = fuzz.make_input('unpickler', seeds, seed=3, index=40)
    assert one == fuzz.make_input('unpickler', seeds, seed=3, index=40)
    assert fuzz.make_input('unpickler', seeds, seed=3, index=0) == seeds[0]
    assert len({fuzz.mutate_bytes(seeds[0], random.Random(i), seeds) for i in range(50)}) > 40
