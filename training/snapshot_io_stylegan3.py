"""Official StyleGAN3 pickles (NVlabs/stylegan3) onto our classes, without executing their source.

The official pickles name classes without their module: `Generator`, `MappingNetwork`,
`SynthesisNetwork`, `SynthesisLayer` and `FullyConnectedLayer` exist in both
`networks_stylegan2` and `networks_stylegan3`, and the embedded source that would tell them apart
is never run. So the family is decided per top-level network from the data it holds
(tests/fixtures/stylegan3_tiny/README.md, "Pickle facts"): a synthesis network whose state has
`layer_names` and an `input` child (the Fourier features) is StyleGAN3; everything else keeps the
StyleGAN2 mapping of `training/snapshot_io.py`. D is always the StyleGAN2 class.

The stylegan3 repository's StyleGAN2 discriminator defaults to `num_fp16_res=4, conv_clamp=256`
(stylegan2-ada-pytorch: 0 and None) and its pickles omit arguments left at their defaults, so
`discriminator_kwargs` reads those two values from the stored layers when they are absent.
"""

from typing import Any

import torch

from torch_utils import persistence
from torch_utils.persistence import SnapshotError
from training import networks_stylegan3

# Official class names that only StyleGAN3 pickles contain (the snapshot reader's allow-list).
STYLEGAN3_ONLY_CLASS_NAMES = ('SynthesisInput',)

# ---------------------------------------------------------------------------------------------


def _modules(record: persistence.PersistentRecord) -> dict:
    return record.state.get('_modules') or {}


def _is_stylegan3_synthesis(record: Any) -> bool:
    return (isinstance(record, persistence.PersistentRecord) and record.class_name == 'SynthesisNetwork'
            and 'layer_names' in record.state and isinstance(_modules(record).get('input'), persistence.PersistentRecord))


def is_stylegan3_record(record: persistence.PersistentRecord) -> bool:
    """True when an official top-level record is a StyleGAN3 `Generator` or `SynthesisNetwork`."""
    if record.class_name == 'Generator':
        return _is_stylegan3_synthesis(_modules(record).get('synthesis'))
    return _is_stylegan3_synthesis(record)


def build_module(record: persistence.PersistentRecord, init_args: tuple, init_kwargs: dict,
                 tensors: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    """Our StyleGAN3 class for `record` (`is_stylegan3_record` is True), built from the stored
    constructor arguments and filled strictly by state_dict name.

    Raises:
        SnapshotError naming `what` when the arguments do not build, the tensors do not match
        (names, shapes, dtypes) or the layer schedule differs from the stored `layer_names`.
    """
    cls = getattr(networks_stylegan3, record.class_name)
    module = persistence.build_module_checked(cls, init_args, init_kwargs, tensors, what=what)
    synthesis_record = _modules(record)['synthesis'] if record.class_name == 'Generator' else record
    synthesis = module.synthesis if record.class_name == 'Generator' else module
    stored_names = synthesis_record.state['layer_names']
    if list(stored_names) != synthesis.layer_names:
        raise SnapshotError(f'{what}: the stored StyleGAN3 layers {stored_names} differ from the ones its '
                            f'constructor arguments give ({synthesis.layer_names}); the pickle is inconsistent')
    return module


def _stored_attributes(record: persistence.PersistentRecord, name: str) -> list:
    """Values of attribute `name` in `record` and all its descendants (depth first)."""
    found = [record.state[name]] if name in record.state else []
    for child in _modules(record).values():
        if isinstance(child, persistence.PersistentRecord):
            found += _stored_attributes(child, name)
    return found


def discriminator_kwargs(record: persistence.PersistentRecord, init_kwargs: dict) -> dict:
    """`init_kwargs` of an official Discriminator, plus `num_fp16_res` / `conv_clamp` read from the
    stored blocks and layers when the pickle omits them and they differ from our class defaults
    (0 and None, as in stylegan2-ada-pytorch; see the module docstring).

    `num_fp16_res` becomes the number of blocks stored with `use_fp16`, which selects the same
    blocks as the original value (e.g. 4 at 32 px, where only 3 blocks exist, becomes 3).
    """
    kwargs = dict(init_kwargs)
    if 'num_fp16_res' not in kwargs:
        blocks = [child for child in _modules(record).values()
                  if isinstance(child, persistence.PersistentRecord) and child.class_name == 'DiscriminatorBlock']
        num_fp16 = sum(1 for block in blocks if bool(block.state.get('use_fp16', False)))
        if num_fp16:
            kwargs['num_fp16_res'] = num_fp16
    if 'conv_clamp' not in kwargs:
        clamps = set(_stored_attributes(record, 'conv_clamp')) - {None}  # resnet skips never clamp
        if len(clamps) > 1:
            raise SnapshotError(f'Discriminator layers store different conv_clamp values {sorted(clamps)}; '
                                f'the pickle is inconsistent')
        if clamps:
            kwargs['conv_clamp'] = clamps.pop()
    return kwargs


def takes_flat_synthesis_kwargs(module: torch.nn.Module) -> bool:
    """True for our StyleGAN3 Generator, whose synthesis arguments are flat keyword arguments
    (`force_fp16` then sets num_fp16_res / conv_clamp at the top level)."""
    return isinstance(module, networks_stylegan3.Generator)
