"""Quality metrics for generators (FID, KID, precision/recall, IS, PPL, ...): the feature
networks, the shared machinery (`metric_utils`) and the registry (`metric_main`).

Sits between `torch_utils` and `training`: may import `dnnlib`, `torch_utils` and itself, never
`training` (the training loop calls the registry; a method package registers its own metrics on
import, e.g. `training/expansion/evaluation.py`) and never a top-level script. `calc_metrics.py`
is the command line.
"""
