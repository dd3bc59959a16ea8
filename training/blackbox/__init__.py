"""Black-box adaptation of a frozen generator (Geometry Preserving Loss Functions Promote Improved
Adaptation of Blackbox Generative Models, 2024): target images are inverted into W+, a small
latent diffusion model learns to sample latents like them, and its samples are rendered by the
source generator, whose weights are never updated ("black-box" means "not updated": two of the
training losses still back-propagate through the frozen generator into the sampler).

This package owns the pipeline's pieces, one module each:
    targets.py        reading the folder of target images;
    inversion.py      batched W+ inversion with an on-disk cache (reuses training/projection.py);
    normalization.py  the latent standardisation w_hat = (w - mu) / sigma;
    diffusion.py      the DDPM noise schedule and ancestral sampling with a clean-latent predictor;
    unet1d.py         the 1-D U-Net over [num_ws, w_dim] latents (num_ws as channels);
    sampler.py        the latent sampler (U-Net + schedule + normaliser) and its snapshot file;
    mixing.py         style mixing of samples with random source latents on the later layers;
    geometry.py       the geometry-preserving loss L_geom (paper Eq. 3-5);
    vgg.py            frozen VGG-16 features for the perceptual loss L_VGG (Eq. 6);
    loss.py           the training objective L = L_MSE + 0.5 L_KL + 0.1 L_geom + 0.2 L_VGG (Eq. 2);
    training.py       the sampler's optimisation loop;
    editing.py        text editing of sampled latents with CLIP (Eq. 7);
    pipeline.py       the whole command (`adapt` and `generate`), called by the thin CLIs.

Layering: it may import only the GAN core (`training.networks`, `training.snapshot_io`,
`training.projection`), `torch_utils`, `dnnlib` and `metrics`; nothing in the GAN core or in
other method packages imports it.
"""
