"""The error contract of every command line (interfaces.md sections 2 and 4), end to end.

Each case runs a top-level command as a subprocess with one bad input and checks: exit code not
0, no traceback, the last line of output names the offending flag / key / value / path, and
nothing appeared in the case's own folder (where the command was told to write). The cases run
a few at a time (a subprocess mostly waits for imports), then each is asserted separately.
"""

import concurrent.futures
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from conftest import REPO_ROOT, require_fixtures

TINY = ('stylegan2_tiny', 'tiny32_snapshot.pkl')
EXPANDED = ('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')
PARALLEL = 3            # Concurrent subprocesses: their start-up is mostly imports, not compute.
TIMEOUT_S = 180         # Per command; a hang is a failure, not a stuck test run.
HEAVY_MODULES = ('open_clip', 'lpips', 'torchvision')  # Must not load before the config is checked.

# Runs train.py as __main__ and writes which heavy modules were imported by the time it exited.
TRAIN_WITH_MODULE_REPORT = """
import json, runpy, sys
report_path, sys.argv = sys.argv[1], ['train.py'] + sys.argv[2:]
try:
    runpy.run_path('train.py', run_name='__main__')
finally:
    with open(report_path, 'w') as f:
        json.dump(sorted(m for m in %r if m in sys.modules), f)
""" % (HEAVY_MODULES,)


class _Evil:
    """Pickles as a call of os.system: loading it must be refused, not executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _save_png(path, height, width, seed=0):
    pixels = np.random.RandomState(seed).randint(0, 256, size=(height, width, 3), dtype=np.uint8)
    PIL.Image.fromarray(pixels).save(path)


def _write_json(path, value) -> str:
    with open(path, 'w') as f:
        f.write(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def _make_inputs(root) -> dict:
    """Every bad (and the few good) input files the cases name, outside the watched folders."""
    P = {'tiny': str(require_fixtures(*TINY)), 'expanded': str(require_fixtures(*EXPANDED))}
    tiny_bytes = open(P['tiny'], 'rb').read()
    (root / 'random.pkl').write_bytes(np.random.RandomState(1).bytes(3000))
    (root / 'trunc.pkl').write_bytes(tiny_bytes[:20000])
    # A damaged tensor payload: the magic number of the first torch-serialised storage.
    magic = b'\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19'
    at = tiny_bytes.index(magic)
    damaged = bytearray(tiny_bytes)
    damaged[at:at + len(magic)] = bytes(b ^ 0x5A for b in magic)
    (root / 'damaged.pkl').write_bytes(bytes(damaged))
    P['pwned'] = str(root / 'pwned')
    with open(root / 'evil.pkl', 'wb') as f:
        pickle.dump({'G_ema': _Evil(P['pwned'])}, f)
    for name in ('random', 'trunc', 'damaged', 'evil'):
        P[name] = str(root / f'{name}.pkl')

    (root / 'data16').mkdir()
    for i in range(2):
        _save_png(root / 'data16' / f'{i}.png', 16, 16, seed=i)
    (root / 'unreadable_data').mkdir()
    (root / 'unreadable_data' / 'x.png').write_bytes(b'not a png')
    _save_png(root / 'a.png', 20, 24)  # 24x20: not the generator's 32x32.
    (root / 'truncimg').mkdir()
    _save_png(root / 'truncimg' / 'a.png', 32, 32)
    _save_png(root / 'big.png', 32, 32, seed=3)
    whole = (root / 'big.png').read_bytes()
    (root / 'truncimg' / 'b.png').write_bytes(whole[:len(whole) // 2])
    (root / 'anchors').mkdir()
    torch.save(torch.zeros(1, 32), root / 'anchors' / 'a.pt')
    torch.save(torch.ones(1, 32), root / 'anchors' / 'b.pt')
    (root / 'anchors' / 'c.pt').write_bytes(np.random.RandomState(2).bytes(300))
    for name in ('data16', 'unreadable_data', 'truncimg', 'anchors'):
        P[name] = str(root / name)
    P['a_png'] = str(root / 'a.png')

    transform = {'type': 'Transform', 'dimension': 31, 'args': {'transform': 'grayscale'}}
    configs = {
        'ok': {'tasks': [transform]},
        'unknown_type': {'tasks': [{'type': 'Nope', 'dimension': 31, 'args': {}}]},
        'duplicate_dim': {'tasks': [transform, dict(transform, args={'transform': 'negative'})]},
        'out_of_range': {'tasks': [dict(transform, dimension=32)]},
        'missing_arg': {'tasks': [dict(transform, args={})]},
        'unknown_arg': {'tasks': [dict(transform, args={'transform': 'grayscale', 'bogus': 1})]},
        'mystyle_dirs': {'tasks': [{'type': 'MyStyle', 'dimension': 31, 'args': {
            'images_dir': str(root / 'noimages'), 'anchors_dir': str(root / 'noanchors')}}]},
        'clip_weights': {'tasks': [{'type': 'NADA', 'dimension': 31, 'args': {'source_text': 'photo',
                                                                               'target_text': 'sketch'}}],
                         'tasks_losses': {'NADA': {'clip_models': ['ViT-B/32', 'ViT-B/16'],
                                                   'clip_model_weights': [1.0]}}},
        'invalid_json': '{"tasks": [',
    }
    for name, value in configs.items():
        P[f'cfg_{name}'] = _write_json(root / f'{name}.json', value)
    P['modules_report'] = str(root / 'modules.json')
    return P


def _train(P, W, *args):
    return ['train.py', '--outdir', str(W / 'runs'), '--metrics', 'none', *args]


def _expand(cfg_name):
    """train.py expanding the tiny fixture with the named config (no data needed: --lambda_src 0)."""
    return lambda P, W: _train(P, W, '--resume', P['tiny'], '--expansion_cfg_file', P[f'cfg_{cfg_name}'],
                               '--lambda_src', '0')


def _copy_into(key, name):
    """A `prepare` step: copy input P[key] into the watched folder (a command that writes beside it)."""
    return lambda P, W: shutil.copyfile(P[key], W / name)


# (id, argv(P, W), substrings of the last line, files prepared in W by `prepare`, prepare)
CASES = [
    # train.py: flags, data and pickles.
    ('train_resume_truncated', lambda P, W: _train(P, W, '--data', P['data16'], '--resume', P['trunc']),
     ['--resume', 'trunc.pkl', 'truncated'], [], None),
    ('train_batch_vs_gpus', lambda P, W: _train(P, W, '--data', P['data16'], '--batch', '5', '--gpus', '2'),
     ['--batch=5', '--gpus=2'], [], None),
    ('train_resume_wrong_resolution', lambda P, W: _train(P, W, '--data', P['data16'], '--resume', P['tiny']),
     ['--resume', 'img_resolution=32', 'img_resolution=16'], [], None),
    ('train_latent_factors_random_bytes',
     lambda P, W: _expand('ok')(P, W) + ['--latent_factors_path', P['random']],
     ['--latent_factors_path', 'random.pkl', 'cannot be read'], [], None),
    # train.py: expansion config errors (interfaces.md section 2).
    ('cfg_unknown_type', _expand('unknown_type'),
     ['tasks[0].type', "'Nope'", 'registered types', 'MyStyle', 'NADA', 'Transform'], [], None),
    ('cfg_duplicate_dimension', _expand('duplicate_dim'), ['tasks[1].dimension', '31', 'already used'], [], None),
    ('cfg_dimension_out_of_range', _expand('out_of_range'), ['tasks[0].dimension', '32', '[0, 31]'], [], None),
    ('cfg_missing_argument', _expand('missing_arg'), ['tasks[0].args.transform', 'missing'], [], None),
    ('cfg_unknown_argument', _expand('unknown_arg'), ['tasks[0].args.bogus', 'unknown'], [], None),
    ('cfg_mystyle_missing_dirs', _expand('mystyle_dirs'), ['tasks[0].args.anchors_dir', 'noanchors'], [], None),
    ('cfg_clip_weights_length', _expand('clip_weights'),
     ['tasks_losses.NADA.clip_model_weights', 'clip_models'], [], None),
    ('cfg_invalid_json', _expand('invalid_json'), ['--expansion_cfg_file', 'invalid_json.json', 'invalid JSON'],
     [], None),
    # The config is checked before the data is read (the data here is unreadable) and before CLIP,
    # LPIPS or torchvision are imported (the module report, checked below).
    ('cfg_checked_before_data_and_models',
     lambda P, W: ['-c', TRAIN_WITH_MODULE_REPORT, P['modules_report'], '--outdir', str(W / 'runs'),
                   '--data', P['unreadable_data'], '--resume', P['tiny'],
                   '--expansion_cfg_file', P['cfg_unknown_type']],
     ['tasks[0].type', "'Nope'"], [], None),
    # generate.py and the pickle loader.
    ('generate_random_bytes', lambda P, W: ['generate.py', '--network', P['random'], '--seeds', '0',
                                            '--outdir', str(W / 'out')], ['random.pkl', 'not a network pickle'], [], None),
    ('generate_os_system_pickle', lambda P, W: ['generate.py', '--network', P['evil'], '--seeds', '0',
                                                '--outdir', str(W / 'out')], ['evil.pkl', 'system'], [], None),
    ('generate_damaged_tensor', lambda P, W: ['generate.py', '--network', P['damaged'], '--seeds', '0',
                                              '--outdir', str(W / 'out')], ['damaged.pkl', 'damaged'], [], None),
    ('generate_bad_seeds', lambda P, W: ['generate.py', '--network', P['tiny'], '--seeds', 'a-b',
                                         '--outdir', str(W / 'out')], ['--seeds', "'a-b'"], [], None),
    ('generate_missing_device', lambda P, W: ['generate.py', '--network', P['tiny'], '--seeds', '0',
                                              '--device', 'cuda:99', '--outdir', str(W / 'out')],
     ['--device cuda:99'], [], None),
    # Tools for expanded generators.
    ('aligned_plain_snapshot', lambda P, W: ['generate_aligned.py', '--network', P['tiny'], '--seeds', '0',
                                             '--outdir', str(W / 'out')],
     ['--network', 'tiny32_snapshot.pkl', 'not an expanded generator'], [], None),
    ('aligned_unknown_domain', lambda P, W: ['generate_aligned.py', '--network', P['expanded'], '--seeds', '0',
                                             '--domains', 'zzz', '--outdir', str(W / 'out')],
     ['--domains', "'zzz'", '31'], [], None),
    ('mystyle_corrupt_anchor', lambda P, W: ['generate_mystyle.py', '--network', P['expanded'], '--anchors',
                                             P['anchors'], '--dim', '31', '--num', '2', '--outdir', str(W / 'out')],
     ['--anchors', 'c.pt', 'cannot be read'], [], None),
    ('traverse_bad_steps', lambda P, W: ['traverse.py', '--network', P['expanded'], '--seeds', '0', '--domain',
                                         '31', '--steps', '1:2', '--outdir', str(W / 'out')],
     ['--steps', "'1:2'"], [], None),
    ('projector_wrong_resolution', lambda P, W: ['projector.py', '--network', P['tiny'], '--target', P['a_png'],
                                                 '--metric', 'l2', '--num-steps', '1', '--outdir', str(W / 'out')],
     ['--target', 'a.png', '24x20', '32x32'], [], None),
    ('dormancy_basis_random_bytes', lambda P, W: ['analyze_dormancy.py', '--network', P['tiny'], '--lpips', 'l2',
                                                  '--num', '2', '--latent_factors_path', P['random'],
                                                  '--out', str(W / 'out')],
     ['--latent_factors_path', 'random.pkl'], [], None),
    # calc_metrics.py writes its results beside the pickle: the pickle lives in the watched folder.
    ('metrics_unknown_name', lambda P, W: ['calc_metrics.py', '--network', str(W / 'net.pkl'), '--metrics',
                                           'fid_nope'], ['--metrics', "'fid_nope'"], ['net.pkl'],
     _copy_into('tiny', 'net.pkl')),
    ('metrics_truncated_pickle', lambda P, W: ['calc_metrics.py', '--network', str(W / 'net.pkl'), '--metrics',
                                               'fid_tiny'], ['net.pkl', 'truncated'], ['net.pkl'],
     _copy_into('trunc', 'net.pkl')),
    # dataset_tool.py: a failure halfway leaves no archive and no folder made for it.
    ('dataset_bad_resolution', lambda P, W: ['dataset_tool.py', '--source', P['data16'], '--dest',
                                             str(W / 'new' / 'd.zip'), '--resolution', 'abc'],
     ['--resolution', "'abc'"], [], None),
    ('dataset_truncated_image', lambda P, W: ['dataset_tool.py', '--source', P['truncimg'], '--dest',
                                              str(W / 'new' / 'sub' / 'd.zip')],
     ['b.png', 'cannot read image'], [], None),
    # demo.py.
    ('demo_outdir_is_a_file', lambda P, W: ['demo.py', '--outdir', str(W / 'afile'), '--steps', '1'],
     ['--outdir', 'afile'], ['afile'], lambda P, W: (W / 'afile').write_text('')),
    ('demo_small_batch', lambda P, W: ['demo.py', '--outdir', str(W / 'out'), '--batch', '2'],
     ['--batch', '2'], [], None),
    # scripts.
    ('convert_damaged_tensor', lambda P, W: ['-m', 'scripts.convert_snapshot', '--src', P['damaged'], '--dest',
                                             str(W / 'x.safetensors')], ['damaged.pkl', 'damaged'], [], None),
    ('convert_unknown_extension', lambda P, W: ['-m', 'scripts.convert_snapshot', '--src', P['tiny'], '--dest',
                                                str(W / 'x.bin')], ['--dest', 'x.bin', '.safetensors'], [], None),
    ('check_ops_unknown_op', lambda P, W: ['-m', 'scripts.check_ops', '--ops', 'nosuchop'],
     ['--ops', 'nosuchop', 'bias_act'], [], None),
    ('report_run_without_stats', lambda P, W: ['-m', 'scripts.report', str(W)],
     ['report_run_without_stats', 'stats.jsonl'], [], None),
]


def _run(argv: list) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope='module')
def cli_runs(tmp_path_factory):
    """{case id: (CompletedProcess, watched folder, inputs)}: every case, run a few at a time."""
    P = _make_inputs(tmp_path_factory.mktemp('inputs'))
    jobs = {}
    for case_id, argv, _expect, _keep, prepare in CASES:
        W = tmp_path_factory.mktemp(case_id)
        if prepare is not None:
            prepare(P, W)
        jobs[case_id] = (argv(P, W), W)
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = {case_id: pool.submit(_run, argv) for case_id, (argv, _W) in jobs.items()}
        return {case_id: (future.result(), jobs[case_id][1], P) for case_id, future in futures.items()}


@pytest.mark.parametrize('case_id, expect, keep', [(c[0], c[2], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(cli_runs, case_id, expect, keep):
    result, W, P = cli_runs[case_id]
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.returncode != 0, output
    assert 'Traceback' not in output, output
    assert lines, 'no output at all'
    last = lines[-1]
    for text in expect:
        assert text in last, f'{text!r} not in the last line {last!r}\n--- output:\n{output}'
    assert sorted(os.listdir(W)) == sorted(keep), f'created in the output folder: {os.listdir(W)}'
    assert not os.path.exists(P['pwned']), 'a pickle executed os.system'


def test_config_checked_before_heavy_modules(cli_runs):
    result, _W, P = cli_runs['cfg_checked_before_data_and_models']
    with open(P['modules_report']) as f:
        assert json.load(f) == [], result.stderr
