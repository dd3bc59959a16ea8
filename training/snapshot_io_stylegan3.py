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

import inspect
from typing import Any

import numpy as np
import torch

from torch_utils import persistence
from torch_utils.persistence import SnapshotError
from training import networks_stylegan3

# Official class names that only StyleGAN3 pickles contain (the snapshot reader's allow-list).
STYLEGAN3_ONLY_CLASS_NAMES = ('SynthesisInput',)

# Bounds on stored arguments that drive work the meta-device size check cannot see (the layer
# schedule and the filter design run in numpy/scipy): official values 14, 2, 6, 2, 10, 3 (1 for R).
ARGUMENT_LIMITS = dict(num_layers=(1, 64), num_critical=(0, 64), filter_size=(1, 64), lrelu_upsampling=(1, 8),
                       margin_size=(0, 1024), conv_kernel=(1, 15), img_resolution=(4, 16384))
MAX_FILTER_TAPS = 1024  # Largest filter the stored schedule may ask the filter design for (official: 24).

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
    check_synthesis_arguments(init_kwargs, what)
    module = persistence.build_module_checked(cls, init_args, init_kwargs, tensors, what=what)
    synthesis_record = _modules(record)['synthesis'] if record.class_name == 'Generator' else record
    synthesis = module.synthesis if record.class_name == 'Generator' else module
    stored_names = synthesis_record.state['layer_names']
    if not isinstance(stored_names, list) or stored_names != synthesis.layer_names:
        raise SnapshotError(f'{what}: the stored StyleGAN3 layers {stored_names} differ from the ones its '
                            f'constructor arguments give ({synthesis.layer_names}); the pickle is inconsistent')
    return module


def check_synthesis_arguments(kwargs: dict, what: str) -> None:
    """Refuse stored Generator / SynthesisNetwork arguments whose layer schedule or filters would be
    absurdly large or not finite, before anything is built (SnapshotError naming `what` and the key)."""
    defaults = {name: p.default for cls in (networks_stylegan3.SynthesisNetwork, networks_stylegan3.SynthesisLayer)
                for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    value = {key: kwargs.get(key, defaults.get(key)) for key in (*ARGUMENT_LIMITS, 'channel_base', 'channel_max',
             'img_channels', 'first_cutoff', 'first_stopband', 'last_stopband_rel')}
    for key, (low, high) in ARGUMENT_LIMITS.items():
        if type(value[key]) is not int or not low <= value[key] <= high:
            raise SnapshotError(f'{what}: stored argument {key}={value[key]!r} is not an integer in [{low}, {high}]; '
                                f'the pickle is damaged or not a StyleGAN3 network')
    if value['num_critical'] >= value['num_layers']:
        raise SnapshotError(f"{what}: stored num_critical={value['num_critical']} must be below "
                            f"num_layers={value['num_layers']}")
    try:
        with np.errstate(all='ignore'):
            sched = networks_stylegan3.layer_schedule(
                value['img_resolution'], value['img_channels'], value['channel_base'], value['channel_max'],
                value['num_layers'], value['num_critical'], value['first_cutoff'], value['first_stopband'],
                value['last_stopband_rel'], value['margin_size'])
    except (TypeError, ValueError, OverflowError) as e:
        raise SnapshotError(f'{what}: the stored StyleGAN3 arguments give no layer schedule ({e})') from None
    rates = sched['sampling_rates']
    if not (np.all(np.isfinite(sched['cutoffs'])) and np.all(sched['cutoffs'] > 0) and np.all(np.isfinite(rates))
            and np.all(rates >= 1)):
        raise SnapshotError(f'{what}: the stored StyleGAN3 arguments give non-finite or zero cutoffs / sampling '
                            f'rates (first_cutoff, first_stopband, last_stopband_rel)')
    ratio = np.maximum(rates[1:], rates[:-1]) / np.minimum(rates[1:], rates[:-1])
    taps = value['filter_size'] * value['lrelu_upsampling'] * float(np.max(ratio, initial=1))
    if taps > MAX_FILTER_TAPS:
        raise SnapshotError(f'{what}: the stored StyleGAN3 schedule asks for {taps:g}-tap filters, over the cap of '
                            f'{MAX_FILTER_TAPS}; the pickle is damaged or not a StyleGAN3 network')


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
