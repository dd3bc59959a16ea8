"""Loading network pickles: the name and signature users of stylegan2-ada-pytorch know.

`legacy.load_network_pkl(f)` reads official stylegan2-ada-pytorch / domain-expansion pickles and
our own snapshots without executing anything stored in them; see `training/snapshot_io.py`.
TensorFlow-era pickles are not supported: convert them with the official legacy.py first.
"""

import os
from typing import BinaryIO

from training import snapshot_io


def load_network_pkl(f: BinaryIO | str | os.PathLike, force_fp16: bool = False) -> dict:
    """Load a network snapshot (file object or path) into our modules.

    Returns a dict with `G`, `D`, `G_ema`, `augment_pipe`, `training_set_kwargs` and every extra
    key of the snapshot (e.g. `latent_basis`, `repurposed_dims`, `subspace_distance`,
    `expansion_cfg`). `force_fp16=True` rebuilds the networks with num_fp16_res=4, conv_clamp=256.
    Raises `snapshot_io.SnapshotError` (a ValueError) with a one-line message on bad input.
    """
    return snapshot_io.load_network_pkl(f, force_fp16=force_fp16)
