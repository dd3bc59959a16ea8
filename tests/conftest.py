"""Shared test helpers: where the official-format fixtures live, a CPU-only, deterministic setup,
one-thread runs, in-process command lines, and TorchScript archives of our own classes.
(Tiny networks: tiny_nets.py.)"""

import importlib.util
import inspect
import itertools
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# tests/core holds test modules whose helpers other folders import by basename (tests/gpu uses
# test_bias_act's inputs and test_networks_parity's fixture networks): importable from any folder.
_CORE_TESTS = str(REPO_ROOT / 'tests' / 'core')
if _CORE_TESTS not in sys.path:
    sys.path.append(_CORE_TESTS)


def fixtures_dir() -> Path:
    """`tests/fixtures`: official-format fixtures vendored into the repository (see its README),
    so a clone tests itself."""
    return REPO_ROOT / 'tests' / 'fixtures'


def require_fixtures(*relative: str) -> Path:
    """Path of a vendored fixture file or folder. A missing one fails the test: it is part of
    the repository, so its absence is a broken checkout, never a reason to skip."""
    path = fixtures_dir().joinpath(*relative)
    if not path.exists():
        pytest.fail(f'fixture {path} is missing from the checkout (restore tests/fixtures from git)')
    return path


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    """Each test starts from the same global RNG state."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Run the test on one CPU thread: tiny networks run far faster so, most of all on a busy
    shared machine (no OpenMP contention). Modules opt in with
    `pytestmark = pytest.mark.usefixtures('one_thread')`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli_inprocess(command, args: list[str], capsys) -> tuple[int, str, str]:
    """Run a click command through dnnlib.util.run_cli in this process, as its script's
    `__main__` would; returns (exit code, stdout, stderr)."""
    import dnnlib
    try:
        dnnlib.util.run_cli(command, args)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


_copy_ids = itertools.count()


def scriptable_copy(cls: type, folder) -> type:
    """`cls` as defined by a private copy of its module's file, for torch.jit.script.

    torch.jit.script reads a method's source from the module's file when it runs, at the line
    numbers of the code imported earlier. Edited meanwhile (someone working on the code during a
    long test run), those lines hold other code, and TorchScript compiles that instead: e.g.
    "Could not cast value of type __torch__.metrics.feature_networks.RandomDetector to bool" at
    feature_networks._broadcast_flag. The copy (written to `folder`, imported under a fresh
    module name, hence a fresh TorchScript type name) cannot change under the compiler.
    """
    name = f'_scriptable_{cls.__module__.replace(".", "_")}_{os.getpid()}_{next(_copy_ids)}'
    path = Path(folder) / f'{name}.py'
    shutil.copyfile(inspect.getsourcefile(cls), path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect (hence TorchScript) finds a class's file through sys.modules.
    spec.loader.exec_module(module)
    return getattr(module, cls.__name__)
