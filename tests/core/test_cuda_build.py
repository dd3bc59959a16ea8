"""custom_ops: compiling the bias_act plugin with nvcc (no GPU needed), the cache, clear build
errors, the announced fallback, build locks and scripts/check_ops.

The compiled plugin also runs its kernel's per-element code on CPU tensors (a host path meant for
exactly this), so the kernel arithmetic and the autograd wiring of bias_act_cuda are checked
against the reference here, in float64 gradcheck/gradgradcheck included, without a GPU.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import torch

from conftest import REPO_ROOT
from test_bias_act import safe_inputs, value_grad_gradgrad
from torch_utils import custom_ops
from torch_utils.ops import bias_act, bias_act_cuda

ACTS = list(bias_act.activation_funcs)
BUILD_ARCH = '8.0'  # one compute capability keeps the CI build short

@pytest.fixture(scope='module')
def build_env(tmp_path_factory):
    """Environment for the builds of this module: a fresh extensions dir, one arch, the toolkit."""
    cuda_home, how = custom_ops.find_cuda_home()
    if cuda_home is None:
        pytest.skip(f'nvcc / CUDA toolkit absent ({how})')
    env = dict(TORCH_EXTENSIONS_DIR=str(tmp_path_factory.mktemp('torch_extensions')),
               TORCH_CUDA_ARCH_LIST=BUILD_ARCH, CUDA_HOME=cuda_home)
    with pytest.MonkeyPatch.context() as mp:  # restored when the module's tests are done
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


@pytest.fixture(scope='module')
def plugin(build_env):
    start = time.time()
    module = bias_act_cuda.build_plugin()
    seconds = time.time() - start
    print(f'\nbias_act plugin build: {seconds:.1f} s (arch {BUILD_ARCH})')
    assert seconds < 300, f'building one arch took {seconds:.0f} s; CI needs it well under 3 min'
    return module


def test_plugin_builds_loads_and_is_cached(plugin, build_env, capsys):
    assert callable(plugin.bias_act)
    build_dirs = list(Path(build_env['TORCH_EXTENSIONS_DIR']).glob('bias_act_plugin-*'))
    assert len(build_dirs) == 1
    assert (build_dirs[0] / 'sg2_build.json').is_file()
    assert list(build_dirs[0].glob('bias_act_plugin_*.so')), 'no shared library was produced'
    assert bias_act_cuda.build_plugin() is plugin  # memoised in-process
    # A new process (simulated by clearing the memo) loads the cached library without compiling.
    custom_ops._plugins.clear()
    start = time.time()
    again = bias_act_cuda.build_plugin()
    assert time.time() - start < 10 and 'Building' not in capsys.readouterr().out
    assert callable(again.bias_act)


def _run(plugin, x, b, dim, act, alpha=None, gain=None, clamp=None):
    spec, alpha, gain, clamp = bias_act._resolve_args(act, alpha, gain, clamp)
    return bias_act_cuda._run_plugin(plugin, x, b, dim, spec, alpha, gain, clamp)


@pytest.mark.parametrize('act', ACTS)
def test_kernel_code_matches_reference_on_host(plugin, act):
    x, b, clamp = safe_inputs(act, shape=(2, 3, 4), clamp=0.6)
    for kwargs in (dict(dim=1), dict(dim=1, alpha=0.3, gain=0.7, clamp=clamp)):
        y = _run(plugin, x, b, act=act, **kwargs)
        ref = bias_act.bias_act_ref(x, b, act=act, **kwargs)
        torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    y = _run(plugin, x, None, dim=1, act=act)
    torch.testing.assert_close(y, bias_act.bias_act_ref(x, None, act=act), rtol=1e-12, atol=1e-12)
    fn = lambda x, b: _run(plugin, x, b, dim=1, act=act, clamp=clamp)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_kernel_second_order_matches_reference_with_clamping(plugin):
    x = (torch.randn([3, 5, 4, 4], dtype=torch.float64) * 2).requires_grad_(True)
    b = torch.randn([5], dtype=torch.float64).requires_grad_(True)
    for act in ('swish', 'elu', 'lrelu'):
        ours = value_grad_gradgrad(lambda x, b: _run(plugin, x, b, 1, act, clamp=0.9), x, b)
        ref = value_grad_gradgrad(lambda x, b: bias_act.bias_act_ref(x, b, act=act, clamp=0.9), x, b)
        for p, q in zip(ours, ref):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)


def test_kernel_layouts_dims_dtypes(plugin):
    x = torch.randn([2, 6, 5, 7])
    b = torch.randn([6])
    for xx in (x, x.to(memory_format=torch.channels_last), x.transpose(2, 3), x[:, :, ::2]):
        y = _run(plugin, xx, b, 1, 'lrelu', clamp=0.7)
        assert y.shape == xx.shape
        torch.testing.assert_close(y, bias_act.bias_act_ref(xx, b, act='lrelu', clamp=0.7))
    y_cl = _run(plugin, x.to(memory_format=torch.channels_last), b, 1, 'relu')
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    b3 = torch.randn([7])
    torch.testing.assert_close(_run(plugin, x, b3, 3, 'tanh'), bias_act.bias_act_ref(x, b3, dim=3, act='tanh'))
    b0 = torch.randn([2])
    torch.testing.assert_close(_run(plugin, x, b0, 0, 'sigmoid'), bias_act.bias_act_ref(x, b0, dim=0, act='sigmoid'))
    y16 = _run(plugin, x.half(), b.half(), 1, 'swish', clamp=1.0)
    assert y16.dtype == torch.float16
    torch.testing.assert_close(y16.float(), bias_act.bias_act_ref(x, b, act='swish', clamp=1.0), rtol=2e-3, atol=2e-3)
    y_mixed = _run(plugin, x.half(), b, 1, 'linear')  # half + float promotes to float, as x + b does
    assert y_mixed.dtype == bias_act.bias_act_ref(x.half(), b).dtype == torch.float32
    assert _run(plugin, torch.zeros([0, 6]), b, 1, 'relu').shape == (0, 6)
    torch.testing.assert_close(_run(plugin, torch.tensor(0.5), None, 1, 'sigmoid'), torch.sigmoid(torch.tensor(0.5)))
    with pytest.raises(RuntimeError, match='dtype'):
        plugin.bias_act(x, b.double(), torch.empty([0]), 1, 2, 0, 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match='unsupported dtype'):
        plugin.bias_act(x.bfloat16(), torch.empty([0], dtype=torch.bfloat16), torch.empty([0]), 1, 2, 0, 0.0, 1.0, -1.0)

# ---------------------------------------------------------------------------------------------
# Failures: clear errors, and the fallback only when asked for (announced once).


@pytest.fixture
def clean_state(monkeypatch):
    monkeypatch.delenv(custom_ops.FALLBACK_ENV, raising=False)
    monkeypatch.setattr(custom_ops, '_fallback', None)
    monkeypatch.setattr(custom_ops, '_failures', {})
    monkeypatch.setattr(custom_ops, '_announced_fallbacks', set())
    yield


@pytest.mark.skipif(shutil.which(os.environ.get('CXX', 'c++')) is None or shutil.which('ninja') is None,
                    reason='no C++ compiler or ninja to run a build with')
def test_broken_source_raises_one_clear_error(tmp_path, monkeypatch, clean_state):
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'ext'))
    (tmp_path / 'broken.cpp').write_text('int broken( { return 0; }\n')
    with pytest.raises(custom_ops.PluginBuildError) as info:
        custom_ops.get_plugin('broken_plugin', ['broken.cpp'], source_dir=tmp_path)
    msg = str(info.value)
    assert "Could not build the CUDA plugin 'broken_plugin'" in msg
    assert 'broken.cpp' in msg and 'error' in msg                    # the compiler's own words
    assert str(tmp_path / 'ext') in msg and 'build dir' in msg
    assert 'CUDA_HOME' in msg and 'nvcc' in msg and 'compiler' in msg
    assert 'SG2_OPS_FALLBACK=ref' in msg and 'set_fallback(True)' in msg
    # Memoised: the second call raises the same error without another build.
    start = time.time()
    with pytest.raises(custom_ops.PluginBuildError) as again:
        custom_ops.get_plugin('broken_plugin', ['broken.cpp'], source_dir=tmp_path)
    assert again.value is info.value and time.time() - start < 0.5


def test_missing_toolkit_is_reported(tmp_path, monkeypatch, clean_state):
    monkeypatch.setattr(custom_ops, 'find_cuda_home', lambda: (None, 'nothing found on PATH'))
    (tmp_path / 'k.cu').write_text('// never compiled\n')
    with pytest.raises(custom_ops.PluginBuildError, match='no CUDA toolkit found: nothing found on PATH'):
        custom_ops.get_plugin('k_plugin', ['k.cu'], source_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match='missing.cu'):
        custom_ops.get_plugin('k_plugin', ['missing.cu'], source_dir=tmp_path)


def test_no_gpu_and_no_arch_list_is_reported(tmp_path, monkeypatch, clean_state):
    monkeypatch.setattr(custom_ops, 'find_cuda_home', lambda: (str(tmp_path), 'test'))
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 0)
    monkeypatch.delenv('TORCH_CUDA_ARCH_LIST', raising=False)
    (tmp_path / 'k.cu').write_text('// never compiled\n')
    with pytest.raises(custom_ops.PluginBuildError, match="set TORCH_CUDA_ARCH_LIST"):
        custom_ops.get_plugin('k_plugin', ['k.cu'], source_dir=tmp_path)


def _fail_build(*args, **kwargs):
    raise custom_ops.PluginBuildError("Could not build the CUDA plugin 'bias_act_plugin':\n    fake nvcc crash")


def test_failed_build_without_fallback_raises(monkeypatch, clean_state):
    monkeypatch.setattr(custom_ops, 'get_plugin', _fail_build)
    with pytest.raises(custom_ops.PluginBuildError, match='fake nvcc crash'):
        bias_act_cuda.bias_act_cuda(torch.randn([2, 3]), torch.randn([3]), act='lrelu')


@pytest.mark.parametrize('enable', ['env', 'function'])
def test_failed_build_with_fallback_announces_once_and_matches_reference(monkeypatch, clean_state, enable):
    monkeypatch.setattr(custom_ops, 'get_plugin', _fail_build)
    if enable == 'env':
        monkeypatch.setenv(custom_ops.FALLBACK_ENV, 'ref')
    else:
        custom_ops.set_fallback(True)
    x, b = torch.randn([2, 3, 4]), torch.randn([3])
    with pytest.warns(custom_ops.OpsFallbackWarning, match='fake nvcc crash') as record:
        y1 = bias_act_cuda.bias_act_cuda(x, b, act='swish', clamp=0.5)
        y2 = bias_act_cuda.bias_act_cuda(x, b, act='swish', clamp=0.5)
    assert len([w for w in record if issubclass(w.category, custom_ops.OpsFallbackWarning)]) == 1
    assert torch.equal(y1, bias_act.bias_act_ref(x, b, act='swish', clamp=0.5)) and torch.equal(y1, y2)


def test_fallback_setting_parsing(monkeypatch, clean_state):
    assert not custom_ops.fallback_enabled()
    monkeypatch.setenv(custom_ops.FALLBACK_ENV, 'maybe')
    with pytest.raises(ValueError, match='SG2_OPS_FALLBACK'):
        custom_ops.fallback_enabled()
    custom_ops.set_fallback(False)  # the explicit call wins over the environment
    assert not custom_ops.fallback_enabled()
    with pytest.raises(ValueError, match='level must be one of'):
        custom_ops.set_verbosity('loud')

# ---------------------------------------------------------------------------------------------
# Locks.


def test_held_lock_times_out_naming_holder_and_fix(tmp_path, capsys):
    path = tmp_path / 'build.lock'
    with custom_ops.BuildLock(path):
        info = {lock['path']: lock for lock in custom_ops.find_lock_files(tmp_path)}[str(path)]
        assert info['held'] is True and info['owner']['pid'] == os.getpid()
        with pytest.raises(TimeoutError) as err:
            with custom_ops.BuildLock(path, timeout_s=0.4, warn_after_s=0.1, poll_s=0.05):
                pass
    msg = str(err.value)
    assert str(path) in msg and f'pid {os.getpid()}' in msg and f'rm {path}' in msg
    assert str(path) in capsys.readouterr().out  # the warning printed while waiting
    assert custom_ops.find_lock_files(tmp_path)[0]['held'] is False  # released, file left in place
    with custom_ops.BuildLock(path, timeout_s=0.4):  # and free to take again
        pass


def test_lock_of_dead_process_is_called_stale(tmp_path):
    import fcntl
    import json
    import socket
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    path = tmp_path / 'build.lock'
    path.write_text(json.dumps(dict(pid=dead.pid, host=socket.gethostname(), started=time.time() - 3600)))
    fd = os.open(path, os.O_RDWR)  # a lock the filesystem failed to release (e.g. NFS)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(TimeoutError, match=r'no longer exists, so the lock is stale.*rm '):
            with custom_ops.BuildLock(path, timeout_s=0.2, warn_after_s=10, poll_s=0.05):
                pass
    finally:
        os.close(fd)

# ---------------------------------------------------------------------------------------------
# scripts/check_ops.


def test_describe_environment_lists_the_facts(build_env):
    env = custom_ops.describe_environment()
    assert env['torch'] == torch.__version__ and env['cuda_home'] == build_env['CUDA_HOME']
    assert env['nvcc'].startswith('release') and env['torch_cuda_arch_list'] == BUILD_ARCH
    assert env['build_root'] == build_env['TORCH_EXTENSIONS_DIR']
    assert isinstance(env['lock_files'], list) and env['cxx_version']


def test_check_ops_reports_bias_act(plugin, build_env):
    from scripts.check_ops import check_ops
    lines = []
    report = check_ops(['bias_act'], arch=BUILD_ARCH, echo=lines.append)
    (r,) = report['ops']
    assert r['built'] and r['error'] is None and 'reference' in r['cpu']
    if not torch.cuda.is_available():
        assert 'no GPU visible' in r['cuda'] and 'built OK' in r['cuda']
    text = '\n'.join(lines)
    assert '[bias_act] build: OK' in text and build_env['CUDA_HOME'] in text
    with pytest.raises(click.UsageError, match='--ops'):
        check_ops(['conv3d'])


def test_check_ops_cli_reports_failure_with_exit_code(plugin, build_env, tmp_path):
    env = dict(os.environ, CUDA_HOME=str(tmp_path / 'no_toolkit'), PATH='/usr/bin:/bin',
               TORCH_EXTENSIONS_DIR=str(tmp_path / 'ext'))
    out = subprocess.run([sys.executable, '-m', 'scripts.check_ops', '--ops', 'bias_act', '--arch', BUILD_ARCH],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert '[bias_act] build: FAILED' in text and 'is not a CUDA toolkit' in text
    assert text.strip().splitlines()[-1].startswith('Error: build failed for bias_act')
