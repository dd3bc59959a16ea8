"""pyproject.toml, requirements.txt, constraints.txt and environment.yml agree with each other
and with the environment the tests run in."""

import importlib.metadata
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO_ROOT

EXTRAS = ('training', 'clip', 'logging', 'test')


def _pyproject() -> dict:
    with open(REPO_ROOT / 'pyproject.toml', 'rb') as f:
        return tomllib.load(f)['project']


def _requirements_txt() -> list[Requirement]:
    lines = (REPO_ROOT / 'requirements.txt').read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith('#')]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / 'constraints.txt').read_text().splitlines():
        if line.strip() and not line.startswith('#'):
            name, version = line.split('==')
            pins[canonicalize_name(name)] = version
    return pins


def _by_name(requirements) -> dict[str, str]:
    return {canonicalize_name(r.name): str(r.specifier) for r in requirements}


def test_pyproject_is_requirements_txt_split_into_runtime_and_extras():
    project = _pyproject()
    assert project['requires-python'] == '>=3.10'
    runtime = [Requirement(r) for r in project['dependencies']]
    extras = {name: [Requirement(r) for r in reqs] for name, reqs in project['optional-dependencies'].items()}
    assert set(extras) == {*EXTRAS, 'dev'}
    assert extras['dev'] == [Requirement(f"{project['name']}[{','.join(EXTRAS)}]")]
    everything = runtime + [r for name in EXTRAS for r in extras[name]]
    assert _by_name(everything) == _by_name(_requirements_txt())
    runtime_names = set(_by_name(runtime))
    for name in ('test', 'logging'):  # the runtime set stays lean
        assert not runtime_names & set(_by_name(extras[name])), name


def test_caps_allow_bug_fix_releases():
    specs = _by_name(_requirements_txt())
    assert all('<=' not in spec and '==' not in spec for spec in specs.values()), specs
    assert '<2.15' in specs['torch'] and '<0.30' in specs['torchvision']


def test_constraints_pin_every_requirement_within_its_range_as_installed_here():
    pins = _constraints()
    for requirement in _requirements_txt():
        name = canonicalize_name(requirement.name)
        assert name in pins, f'constraints.txt does not pin {name}'
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
        # The environment the suite runs in is the one constraints.txt describes (setup_env.sh).
        assert importlib.metadata.version(requirement.name) == pins[name], name


def test_setup_script_and_conda_environment_use_the_constraints():
    setup = (REPO_ROOT / 'scripts' / 'setup_env.sh').read_text()
    assert re.search(r'pip install .*-r requirements\.txt -c constraints\.txt', setup)
    assert 'constraints.txt' in setup.split('sha256sum')[0]  # a changed pin reinstalls
    env = (REPO_ROOT / 'environment.yml').read_text()
    for line in ('- cuda-nvcc', '- cxx-compiler', '- -r requirements.txt', '- -c constraints.txt'):
        assert line in env, line
