"""Old import path of the domain parameterisations: they live in
`training/expansion/parameterizations.py`, because expansion configs select them per task
(`"parameterization": "channel_scale"`) and the expansion package may not import the encoder's."""

from training.expansion.parameterizations import (  # noqa: F401 (aliases)
    PARAMETERIZATIONS, ChannelScale, Parameterization, ParameterizationError, RgbAffine, StyleOffset,
    apply_rgb_affine, get_parameterization)
