"""An output folder that cannot be written is one clear line before any work (issue 9, item 4):
train.py and generate.py as subprocesses (exit != 0, no traceback, the last line names the
path), the other tools through the same `cli_helpers.check_output_dir`, which leaves nothing
behind when the folder is fine."""

import concurrent.futures
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import dnnlib
from conftest import REPO_ROOT
from training import cli_helpers


def _bad_paths(root) -> dict:
    """{case: (path, words the message must contain)}."""
    a_file = root / 'a_file.txt'
    a_file.write_text('keep me\n')
    cases = {
        'proc': ('/proc/domain_expansion_out', 'cannot write there'),  # virtual file system
        'sys': ('/sys/domain_expansion_out', 'cannot write there'),    # read-only for everyone, root included
        'existing_file': (str(a_file), 'is a file'),
        'below_a_file': (str(a_file / 'sub'), 'is a file'),
    }
    if os.geteuid() != 0:  # root writes into a mode-555 folder anyway
        read_only = root / 'read_only'
        read_only.mkdir()
        read_only.chmod(0o555)
        cases['read_only_folder'] = (str(read_only / 'out'), 'cannot write there')
    return cases


def _run(argv: list) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable] + argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, env=env)


def test_train_and_generate_name_the_unwritable_path(tmp_path):
    cases = _bad_paths(tmp_path)
    argv = dict(  # The other inputs are never reached: the output path is checked first.
        train=lambda path: ['train.py', '--outdir', path, '--data', str(tmp_path / 'data.zip'), '--cfg', 'tiny'],
        generate=lambda path: ['generate.py', '--network', str(tmp_path / 'net.pkl'), '--seeds', '0', '--outdir', path])
    # Each case once, by one of the two tools (a subprocess is seconds of imports).
    commands = {(tool, case): argv[tool](cases[case][0]) for tool, case in
                [('train', 'proc'), ('train', 'below_a_file'), ('generate', 'sys'), ('generate', 'existing_file')]
                + [('generate', case) for case in cases if case == 'read_only_folder']}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = dict(zip(commands, pool.map(_run, commands.values())))
    for (tool, case), proc in results.items():
        path, words = cases[case]
        output = proc.stdout + proc.stderr
        last = output.strip().splitlines()[-1]
        assert proc.returncode != 0, (tool, case, output[-2000:])
        assert 'Traceback' not in output, (tool, case, output[-2000:])
        assert '--outdir' in last and path in last and words in last, (tool, case, last)
    assert (tmp_path / 'a_file.txt').read_text() == 'keep me\n'
    assert sorted(os.listdir(tmp_path)) == sorted(['a_file.txt'] + (['read_only'] if 'read_only_folder' in cases else []))


@pytest.mark.parametrize('tool', ['generate_aligned', 'generate_mystyle', 'projector', 'style_mixing', 'traverse'])
def test_other_tools_check_the_output_path_first(tool, tmp_path):
    module = __import__(tool)
    argv = {
        'generate_aligned': ['--network', 'net.pkl', '--seeds', '0'],
        'generate_mystyle': ['--network', 'net.pkl', '--anchors', 'anchors', '--dim', '0', '--num', '1'],
        'projector': ['--network', 'net.pkl', '--target', 'target.png'],
        'style_mixing': ['--network', 'net.pkl', '--rows', '0', '--cols', '1'],
        'traverse': ['--network', 'net.pkl', '--seeds', '0', '--domain', 'x'],
    }[tool]
    result = CliRunner().invoke(module.main, argv + ['--outdir', '/proc/domain_expansion_out'])
    assert isinstance(result.exception, dnnlib.util.UserError), (result.output, result.exception)
    assert str(result.exception).startswith('--outdir /proc/domain_expansion_out: cannot write there')


def test_a_writable_path_is_left_as_it_was(tmp_path):
    existing = tmp_path / 'existing'
    existing.mkdir()
    cli_helpers.check_output_dir(str(existing))
    cli_helpers.check_output_dir(str(tmp_path / 'new' / 'deeper'))
    assert os.listdir(existing) == [] and sorted(os.listdir(tmp_path)) == ['existing']
    with pytest.raises(dnnlib.util.UserError, match='--out: empty path'):
        cli_helpers.check_output_dir('', '--out')
