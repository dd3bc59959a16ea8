"""The class-conditional baseline of domain expansion (Nitzan et al. 2023, Appendix B).

The parent (unconditional) generator gains a one-hot class input through StyleGAN2's own
conditional mapping (Karras et al. 2020: an FC embedding of c, normalised, concatenated to the
normalised z). Class 0 is the source domain and trains with the source losses (GAN + replay
alignment to the frozen parent, Eq. 10); class i (1..K) is the config's i-th task and trains with
that task's loss, whose "base" image is the same z rendered with class 0 (Eq. 11).

Owns: the graft of the parent onto the conditional generator (`graft`: new weights that read the
class embedding start at zero, so class 0 equals the parent at step 0), the objective (`loss`)
and its evaluation (`evaluation`: task errors on every class, R^2 of Transform classes).

May import: `dnnlib`, `torch_utils`, the GAN core of `training` and `training.expansion` (its
config, tasks and evaluation helpers). The core never imports this package; never a top-level script.
"""
