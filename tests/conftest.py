"""Shared test helpers: where the official-format fixtures live, and a CPU-only, deterministic setup."""

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path:
    """`../shared/fixtures` relative to the repository root (read in place, never copied)."""
    return REPO_ROOT.parent / 'shared' / 'fixtures'


def require_fixtures(*relative: str) -> Path:
    """Path of a fixture file or folder; skips the calling test, saying why, when it is absent."""
    path = fixtures_dir().joinpath(*relative)
    if not path.exists():
        pytest.skip(f'official-format fixture {path} is not present (it lives in ../shared beside the repo)')
    return path


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    """Each test starts from the same global RNG state."""
    torch.manual_seed(0)
    yield
