"""dnnlib: plain-Python helpers (EasyDict, objects by name, cached open_url, UserError, run_cli).

Owns nothing model-specific. May import only the standard library: no torch, no numpy, and
nothing else of ours (it is the lowest layer; see README "Layout", tests/test_layering.py).
"""

from . import util
from .util import EasyDict, make_cache_dir_path

__all__ = ['util', 'EasyDict', 'make_cache_dir_path']
