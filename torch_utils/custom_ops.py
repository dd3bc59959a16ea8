"""Build and load our C++/CUDA op plugins with ninja, cached by a hash of their sources.

`get_plugin()` compiles a torch extension once per source digest (sources, headers, torch and
CUDA versions, compiler, arch list, flags) into `<torch extensions dir>/<name>-<digest>/` and
loads it; later processes load the cached library without running a compiler. Concurrent
processes (e.g. the ranks of a distributed run) serialise on a file lock: one builds, the rest
wait and load its result. A failed build raises one `PluginBuildError` that says what failed and
how to get the reference implementation; `get_plugin_or_fallback()` turns that error into a
single announced fallback when the user asked for it (`SG2_OPS_FALLBACK=ref` or
`set_fallback(True)`). `describe_environment()` collects what `scripts/check_ops.py` reports.
"""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

import dnnlib

# ---------------------------------------------------------------------------------------------
# User settings.

VERBOSITY_LEVELS = ('none', 'brief', 'full')  # none: silent; brief: one line per build; full: compiler output
FALLBACK_ENV = 'SG2_OPS_FALLBACK'              # '=ref' runs the reference op when a build fails
VERBOSITY_ENV = 'SG2_OPS_VERBOSITY'            # one of VERBOSITY_LEVELS
LOCK_TIMEOUT_ENV = 'SG2_OPS_LOCK_TIMEOUT_S'     # seconds to wait for another process's build
LOCK_WARN_AFTER_S = 300.0                      # a build normally takes 1-3 min; beyond this, say who holds the lock
LOCK_TIMEOUT_S = 1800.0                        # then give up with the lock path and how to clear it

_verbosity: str | None = None   # None: read VERBOSITY_ENV, default 'brief'
_fallback: bool | None = None   # None: read FALLBACK_ENV


def set_verbosity(level: str) -> None:
    """Set how much building prints: 'none', 'brief' (one line per build) or 'full' (compiler output)."""
    global _verbosity
    if level not in VERBOSITY_LEVELS:
        raise ValueError(f'custom_ops.set_verbosity: level must be one of {VERBOSITY_LEVELS}, got {level!r}')
    _verbosity = level


def get_verbosity() -> str:
    """The current verbosity: the value of `set_verbosity()`, else $SG2_OPS_VERBOSITY, else 'brief'."""
    if _verbosity is not None:
        return _verbosity
    level = os.environ.get(VERBOSITY_ENV, 'brief')
    if level not in VERBOSITY_LEVELS:
        raise ValueError(f'${VERBOSITY_ENV}={level!r} is invalid: use one of {VERBOSITY_LEVELS}')
    return level


def set_fallback(enabled: bool | None) -> None:
    """Allow (True) or forbid (False) the reference implementation when a plugin build fails.

    None returns control to the environment variable $SG2_OPS_FALLBACK.
    """
    global _fallback
    _fallback = None if enabled is None else bool(enabled)


def fallback_enabled() -> bool:
    """Whether a failed build may fall back to the reference op (`set_fallback()` wins over the env)."""
    if _fallback is not None:
        return _fallback
    value = os.environ.get(FALLBACK_ENV, '').strip().lower()
    if value in ('', '0', 'no', 'false', 'cuda'):
        return False
    if value in ('ref', '1', 'yes', 'true'):
        return True
    raise ValueError(f"${FALLBACK_ENV}={value!r} is invalid: use 'ref' to allow the reference "
                     f"fallback or unset it to require the CUDA build")

# ---------------------------------------------------------------------------------------------
# Toolchain discovery.


def _has_toolkit(path: str | None) -> bool:
    # A toolkit needs both the compiler and the runtime headers; a directory holding only a
    # wrapper script `bin/nvcc` (e.g. /usr/local/bin/nvcc -> /usr/local) is not one.
    return bool(path) and os.path.isfile(os.path.join(path, 'bin', 'nvcc')) and \
        os.path.isfile(os.path.join(path, 'include', 'cuda_runtime.h'))


def find_cuda_home() -> tuple[str | None, str]:
    """Locate the CUDA toolkit. Returns (path or None, how it was found / why not)."""
    for var in ('CUDA_HOME', 'CUDA_PATH'):
        if os.environ.get(var):  # the user's explicit choice wins; never silently use another
            path = os.environ[var]
            if _has_toolkit(path):
                return os.path.abspath(path), f'${var}'
            return None, (f'${var}={path} is not a CUDA toolkit (it needs bin/nvcc and '
                          f'include/cuda_runtime.h); point it at one or unset it')
    candidates = []
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates.append((os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), f'nvcc on PATH ({nvcc})'))
        # A wrapper script on PATH often execs the real compiler; follow it once.
        real = _nvcc_wrapper_target(nvcc)
        if real:
            candidates.append((os.path.dirname(os.path.dirname(real)), f'wrapper {nvcc} -> {real}'))
    candidates.append(('/usr/local/cuda', 'default location'))
    for path, how in candidates:
        if _has_toolkit(path):
            return os.path.abspath(path), how
    tried = ', '.join(f'{p} ({h})' for p, h in candidates)
    return None, f'no toolkit with bin/nvcc and include/cuda_runtime.h among: {tried}'


def _nvcc_wrapper_target(nvcc: str) -> str | None:
    try:
        with open(nvcc, 'rb') as f:
            head = f.read(4096)
    except OSError:
        return None
    if not head.startswith(b'#!'):
        return None
    match = re.search(rb'(/\S+/bin/nvcc)\b', head)
    return match.group(1).decode() if match else None


def _run_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip()
    return text if out.returncode == 0 and text else None


def nvcc_version(cuda_home: str | None) -> str | None:
    """The 'release X.Y, VX.Y.Z' part of `nvcc --version` for the toolkit at `cuda_home`."""
    if not cuda_home:
        return None
    text = _run_version([os.path.join(cuda_home, 'bin', 'nvcc'), '--version'])
    if text is None:
        return None
    match = re.search(r'release [^\n]*', text)
    return match.group(0) if match else text.splitlines()[-1]


def cxx_compiler() -> tuple[str, str | None]:
    """The host C++ compiler torch will use ($CXX or c++) and its first version line."""
    cxx = os.environ.get('CXX', 'c++')
    text = _run_version([cxx, '--version'])
    return cxx, (text.splitlines()[0] if text else None)


def build_root() -> Path:
    """Where plugins are built: $TORCH_EXTENSIONS_DIR, else torch's default per-Python/CUDA dir."""
    if os.environ.get('TORCH_EXTENSIONS_DIR'):
        return Path(os.environ['TORCH_EXTENSIONS_DIR'])
    from torch.utils import cpp_extension
    accel = f'cu{torch.version.cuda.replace(".", "")}' if torch.version.cuda else 'cpu'
    return Path(cpp_extension.get_default_build_root()) / f'py{sys.version_info.major}{sys.version_info.minor}_{accel}'

# ---------------------------------------------------------------------------------------------
# Inter-process build lock.


class BuildLock:
    """An exclusive advisory lock on `path` (flock: the OS releases it if the holder dies).

    The holder writes its pid, host and start time into the file so that waiters can say who
    holds it. After `warn_after_s` a waiter prints that information and how to clear the lock;
    after `timeout_s` it raises TimeoutError with the same text. The file is never deleted on
    release (deleting a lock file others have open would let two processes hold it).
    """

    def __init__(self, path: str | os.PathLike, timeout_s: float = LOCK_TIMEOUT_S,
                 warn_after_s: float = LOCK_WARN_AFTER_S, poll_s: float = 0.5):
        self.path = Path(path)            # lock file; created if missing
        self.timeout_s = timeout_s        # give up after this many seconds of waiting
        self.warn_after_s = warn_after_s  # print who holds the lock after this many seconds
        self.poll_s = poll_s              # seconds between attempts
        self._fd = None

    def __enter__(self):
        import fcntl  # POSIX only; the ops plugins are built on Linux.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        start, warned = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= self.timeout_s:
                    os.close(fd)
                    raise TimeoutError(self.waiting_message(waited) + ' Giving up.') from None
                if waited >= self.warn_after_s and not warned:
                    print(self.waiting_message(waited), flush=True)
                    warned = True
                time.sleep(self.poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), started=time.time())).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc):
        import fcntl
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def waiting_message(self, waited_s: float) -> str:
        """Explain who holds the lock and how to clear it."""
        owner = read_lock_owner(self.path)
        msg = f'Waited {waited_s / 60:.1f} min for the plugin build lock {self.path}'
        if owner is None:
            return msg + (f'; its holder is unknown. If no other process is building this op, '
                          f'delete the lock: rm {self.path}')
        since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(owner.get('started', 0)))
        msg += f', held by pid {owner.get("pid")} on host {owner.get("host")} since {since}.'
        if owner.get('host') == socket.gethostname() and not _pid_alive(owner.get('pid')):
            return msg + (f' That process no longer exists, so the lock is stale (typical on network '
                          f'filesystems): delete it: rm {self.path}')
        return msg + (f' If that build is stuck, stop that process; if it is gone, delete the '
                      f'lock: rm {self.path}')


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True  # exists but not ours, or unknown: assume alive
    return True


def read_lock_owner(path: str | os.PathLike) -> dict | None:
    """The {pid, host, started} record a holder wrote into a lock file, or None."""
    try:
        return json.loads(Path(path).read_text() or 'null')
    except (OSError, ValueError):
        return None


def find_lock_files(root: str | os.PathLike | None = None) -> list[dict]:
    """Lock files under the build root (ours and torch's), each with its age and whether it is held."""
    import fcntl
    root = Path(root) if root is not None else build_root()
    if not root.is_dir():
        return []
    result = []
    for path in sorted(set(root.glob('*/lock')) | set(root.glob('*/*.lock')) | set(root.glob('*.lock'))):
        info = dict(path=str(path), age_s=time.time() - path.stat().st_mtime, owner=read_lock_owner(path))
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            info['held'] = None  # cannot probe without write access
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                info['held'] = False
            except BlockingIOError:
                info['held'] = True
            finally:
                os.close(fd)
        result.append(info)
    return result

# ---------------------------------------------------------------------------------------------
# Building and loading.


class PluginBuildError(RuntimeError):
    """A plugin could not be built or loaded; the message says why and what to do."""


_plugins: dict = {}            # memo key -> loaded module
_failures: dict = {}           # memo key -> PluginBuildError (a failed build is not retried in-process)
_announced_fallbacks: set = set()


def _source_digest(module_name: str, files: list[Path], cuda_home: str | None, build_kwargs: dict) -> str:
    h = hashlib.sha256()
    facts = dict(module=module_name, torch=torch.__version__, torch_cuda=torch.version.cuda,
                 python=sys.version_info[:2], nvcc=nvcc_version(cuda_home), cuda_home=cuda_home,
                 cxx=cxx_compiler(), arch_list=os.environ.get('TORCH_CUDA_ARCH_LIST'),
                 kwargs=sorted((k, repr(v)) for k, v in build_kwargs.items()))
    h.update(repr(facts).encode())
    for path in files:
        h.update(path.name.encode() + b'\0' + path.read_bytes() + b'\0')
    return h.hexdigest()


def _load_library(name: str, library: Path):
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _announce(message: str) -> None:
    if get_verbosity() != 'none':
        print(message, flush=True)


def get_plugin(module_name: str, sources: list[str], headers: list[str] | None = None,
               source_dir: str | os.PathLike | None = None, **build_kwargs):
    """Build (once per source digest) and load a torch C++/CUDA extension.

    Args:
        module_name:  short plugin name, e.g. 'bias_act_plugin'; the loaded Python module is
                      named '<module_name>_<digest prefix>' (its TORCH_EXTENSION_NAME).
        sources:      .cpp/.cu files; relative paths are taken from `source_dir`.
        headers:      files the sources include; hashed and copied next to them.
        source_dir:   directory of relative `sources` and `headers`.
        build_kwargs: passed to torch.utils.cpp_extension.load (extra_cflags, extra_cuda_cflags,
                      extra_ldflags, extra_include_paths...).
    Returns:
        the loaded extension module.
    Raises:
        PluginBuildError: the toolkit is missing or the build or load failed (memoised per process).
    """
    memo_key = (module_name, tuple(sources), tuple(headers or ()), str(source_dir),
                repr(sorted(build_kwargs.items())), os.environ.get('TORCH_EXTENSIONS_DIR'),
                os.environ.get('TORCH_CUDA_ARCH_LIST'), os.environ.get('CUDA_HOME'))
    if memo_key in _plugins:
        return _plugins[memo_key]
    if memo_key in _failures:
        raise _failures[memo_key]
    try:
        module = _build_and_load(module_name, sources, headers or [], source_dir, build_kwargs)
    except PluginBuildError as err:
        _failures[memo_key] = err
        raise
    _plugins[memo_key] = module
    return module


def _build_and_load(module_name, sources, headers, source_dir, build_kwargs):
    base = Path(source_dir) if source_dir is not None else Path.cwd()
    files = [base / f for f in list(sources) + list(headers)]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f'custom_ops.get_plugin({module_name!r}): source file {path} does not exist')
    needs_cuda = any(str(f).endswith('.cu') for f in sources)
    cuda_home, how = find_cuda_home()
    if needs_cuda and cuda_home is None:
        raise PluginBuildError(_failure_message(module_name, 'no CUDA toolkit found: ' + how, None, None))
    if needs_cuda and not os.environ.get('TORCH_CUDA_ARCH_LIST') and torch.cuda.device_count() == 0:
        # torch picks the target architectures from the visible GPUs; with none it cannot.
        raise PluginBuildError(_failure_message(
            module_name, 'no GPU is visible to choose the target architecture: set '
            "TORCH_CUDA_ARCH_LIST (e.g. '8.0' or '8.6+PTX'), or pass --arch to scripts/check_ops",
            cuda_home, None))

    digest = _source_digest(module_name, files, cuda_home, build_kwargs)
    name = f'{module_name}_{digest[:10]}'
    build_dir = build_root() / f'{module_name}-{digest[:16]}'
    marker = build_dir / 'sg2_build.json'
    try:
        if not marker.is_file():
            with BuildLock(build_dir / 'build.lock', timeout_s=float(os.environ.get(LOCK_TIMEOUT_ENV, LOCK_TIMEOUT_S))):
                if not marker.is_file():  # another process may have built it while we waited
                    _build(name, files, len(sources), build_dir, marker, cuda_home, build_kwargs)
        library = build_dir / json.loads(marker.read_text())['library']
        return _load_library(name, library)
    except PluginBuildError:
        raise
    except Exception as err:  # any failure of the toolchain becomes one explained error
        raise PluginBuildError(_failure_message(module_name, f'{type(err).__name__}: {err}', cuda_home, build_dir)) from err


def _build(name, files, num_sources, build_dir, marker, cuda_home, build_kwargs):
    from torch.utils import cpp_extension
    src_dir = build_dir / 'src'
    src_dir.mkdir(parents=True, exist_ok=True)
    # Copy the hashed files so the build directory holds exactly the sources its digest names.
    copies = []
    for path in files:
        shutil.copyfile(path, src_dir / path.name)
        copies.append(str(src_dir / path.name))
    _announce(f'Building CUDA/C++ plugin {name!r} in {build_dir} (once per source version)...')
    start = time.time()
    # torch reads CUDA_HOME once at import; a toolkit found later (or only via a wrapper nvcc)
    # must be set for the duration of this build and then restored.
    saved_home, saved_env = cpp_extension.CUDA_HOME, os.environ.get('CUDA_HOME')
    try:
        if cuda_home is not None:
            cpp_extension.CUDA_HOME = cuda_home
            os.environ['CUDA_HOME'] = cuda_home
        cpp_extension.load(name=name, sources=copies[:num_sources], build_directory=str(build_dir),
                           verbose=(get_verbosity() == 'full'), **build_kwargs)
    finally:
        cpp_extension.CUDA_HOME = saved_home
        if saved_env is None:
            os.environ.pop('CUDA_HOME', None)
        else:
            os.environ['CUDA_HOME'] = saved_env
    libraries = [p for p in build_dir.iterdir() if p.name.startswith(name + '.') and p.suffix in ('.so', '.pyd')]
    if not libraries:
        raise RuntimeError(f'the build finished but produced no {name}.so in {build_dir}')
    # Atomic: processes that skip the lock must never read a half-written marker.
    dnnlib.util.write_text_atomic(str(marker), json.dumps(dict(library=libraries[0].name, built=time.time(),
                                                               seconds=time.time() - start)))
    _announce(f'Built plugin {name!r} in {time.time() - start:.0f} s.')


def _failure_message(module_name: str, what: str, cuda_home: str | None, build_dir: Path | None) -> str:
    cxx, cxx_version = cxx_compiler()
    lines = what.strip().splitlines()
    if len(lines) > 40:  # keep the compiler's last words, where the error is
        lines = ['...'] + lines[-40:]
    return '\n'.join([
        f'Could not build the CUDA plugin {module_name!r}:',
        *('    ' + line for line in lines),
        f'  CUDA_HOME:  {cuda_home or "not found"} (set $CUDA_HOME to the toolkit directory holding bin/nvcc)',
        f'  nvcc:       {nvcc_version(cuda_home) or "not found"}; torch {torch.__version__} built for CUDA {torch.version.cuda}',
        f'  compiler:   {cxx} ({cxx_version or "not found"})',
        f'  arch list:  TORCH_CUDA_ARCH_LIST={os.environ.get("TORCH_CUDA_ARCH_LIST", "<unset: GPUs visible at build>")}',
        f'  build dir:  {build_dir or "<not created>"} (delete it to force a rebuild)',
        'Diagnose with `python -m scripts.check_ops --verbose`. To run the slower pure-PyTorch reference '
        f'instead, set {FALLBACK_ENV}=ref, call torch_utils.custom_ops.set_fallback(True), or pass impl=\'ref\'.',
    ])


def get_plugin_or_fallback(module_name: str, sources: list[str], headers: list[str] | None = None,
                           source_dir: str | os.PathLike | None = None, **build_kwargs):
    """Like `get_plugin()`, but return None (announced once per plugin) when the build fails and
    the user allowed the reference fallback; otherwise the PluginBuildError propagates."""
    try:
        return get_plugin(module_name, sources, headers=headers, source_dir=source_dir, **build_kwargs)
    except PluginBuildError as err:
        if not fallback_enabled():
            raise
        if module_name not in _announced_fallbacks:
            _announced_fallbacks.add(module_name)
            lines = str(err).splitlines()
            first_line = (lines[1] if len(lines) > 1 else lines[0]).strip()[:200]
            warnings.warn(f'{module_name}: the CUDA plugin failed to build ({first_line}); running the '
                          f'slower pure-PyTorch reference because {FALLBACK_ENV}/set_fallback allowed it. '
                          f'Run `python -m scripts.check_ops --verbose` for details.', OpsFallbackWarning,
                          stacklevel=3)
        return None


class OpsFallbackWarning(UserWarning):
    """Emitted once per plugin when a failed build falls back to the reference implementation."""

# ---------------------------------------------------------------------------------------------


def describe_environment() -> dict:
    """Versions and paths that decide whether plugins build: torch, CUDA, nvcc, compiler, dirs, locks."""
    cuda_home, how = find_cuda_home()
    cxx, cxx_version = cxx_compiler()
    return dict(
        python=sys.version.split()[0],
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
        gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [],
        cuda_home=cuda_home,
        cuda_home_source=how,
        nvcc=nvcc_version(cuda_home),
        nvcc_on_path=shutil.which('nvcc'),
        cxx=cxx,
        cxx_version=cxx_version,
        ninja=_run_version(['ninja', '--version']),
        torch_cuda_arch_list=os.environ.get('TORCH_CUDA_ARCH_LIST'),
        build_root=str(build_root()),
        fallback_enabled=fallback_enabled(),
        verbosity=get_verbosity(),
        lock_files=find_lock_files(),
    )
