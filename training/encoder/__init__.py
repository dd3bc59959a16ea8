"""One-pass domain adaptation (issue 14; Korolev, "Development of domain adaptation methods for
generative models"): a new domain is a small parameter vector theta applied to a frozen source
synthesis network, and an encoder predicts theta from K reference images in one forward pass.

Owns:
    parameterizations.py  an alias: how theta acts on a frozen `G.synthesis` (`channel_scale`,
                          text Eq. 10; `style_offset`, Eq. 12; `rgb_affine`, ours) lives in
                          `training/expansion/parameterizations.py`, since expansion configs
                          select it per task (`"parameterization"`);
    domains.py            the CPU family of ground-truth colour domains (affine colour maps) and
                          the held-out ones;
    fit.py                the per-domain fit of theta (Adam on a pixel loss) and the R^2 measure;
    encoder.py            the encoder network (backbone, mean over K references, MLP head whose
                          last layer starts at zero) and its snapshot file;
    training.py           training the encoder on sampled ground-truth domains;
    clip_losses.py        the text's CLIP losses in image-guided form (direction Eq. 3, inter-domain
                          direction, in-domain angle Eq. 11, domain norm) for `losses='clip'`;
    pipeline.py           the commands train_encoder.py and encode_domain.py call;
    tasks.py              `EncodedDomain`, an expansion task whose domain is one encoder pass;
    target_clip.py        `TargetCLIP`, an expansion task with TargetCLIP's losses (text Eq. 7-9);
    protocol.py           the Semantic-Score / Diversity protocol (text Eq. 13-14) over domains.

May import: `dnnlib`, `torch_utils`, `metrics`, the GAN core of `training` and
`training.expansion`. Nothing in the GAN core or in other method packages imports it; never a
top-level script.
"""
