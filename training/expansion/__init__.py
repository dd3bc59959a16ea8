"""Domain expansion (Nitzan et al. 2023): one pretrained generator gains new domains in dormant
latent directions while its base subspace keeps the source domain.

Owns: the SeFA basis (`basis`), base/repurposed subspaces (`subspaces`, Eq. 1-3), the expansion
config (`config`), task types and their registry (`tasks/`), the objective (`loss`, Eq. 4-7),
evaluation and registered metrics (`evaluation`), the expanded generator of a snapshot
(`expanded_generator`), dormancy analysis (`dormancy`), the W -> W+ render helper (`render`) and
the method's named defaults (`constants`).

May import: `dnnlib`, `torch_utils`, `metrics` and the GAN core of `training` (networks, losses,
snapshot I/O, projection, image transforms). The core never imports this package; other method
packages may (the encoder builds on it). Never a top-level script.
"""
