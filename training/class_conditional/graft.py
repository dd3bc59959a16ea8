"""A conditional generator grafted onto an unconditional parent (Appendix B).

The conditional mapping (training.networks.MappingNetwork with c_dim = K + 1) computes

    x = concat(normalize_2nd_moment(z), normalize_2nd_moment(embed(c)))    # [N, z_dim + embed]
    w = fc_{L-1}( ... fc_0(x))

so only `embed` and the input columns of `fc0` differ from the parent's. The graft copies every
other tensor by name (w_avg included, so truncation is the parent's), copies the parent's `fc0`
columns for z, and sets the `fc0` columns that read the class embedding to zero. `embed` keeps its
random initialisation: with both at zero neither would ever receive a gradient. Then every class
maps z exactly as the parent did at step 0, up to float rounding: fc0's weight gain is
lr_multiplier / sqrt(in_features), so the copied columns are rescaled by
sqrt((z_dim + embed) / z_dim) to keep the effective weights, which rounds in the last bit.
"""

import numpy as np
import torch

from torch_utils import misc

SOURCE_CLASS = 0  # Class index of the source domain; task i of the config is class i + 1.


def one_hot(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Labels `c [N, num_classes]` (float32) of class indices `[N]`."""
    return torch.nn.functional.one_hot(classes.to(torch.int64), num_classes).to(torch.float32)


def class_labels(class_index: int, n: int, num_classes: int, device) -> torch.Tensor:
    """`n` copies of the one-hot label of `class_index`, `[n, num_classes]`."""
    return one_hot(torch.full([n], class_index, device=device), num_classes)


def conditional_G_kwargs(G_kwargs: dict, num_classes: int) -> dict:
    """The parent's constructor arguments with a `num_classes`-way one-hot label input."""
    if G_kwargs.get('c_dim', 0) != 0:
        raise ValueError(f"class-conditional baseline: the parent generator must be unconditional, "
                         f"it has c_dim={G_kwargs['c_dim']}")
    if G_kwargs.get('class_name') != 'training.networks.Generator':
        raise ValueError(f"class-conditional baseline: needs a StyleGAN2 generator (training.networks.Generator), "
                         f"got {G_kwargs.get('class_name')}")
    return dict(G_kwargs, c_dim=int(num_classes))


@torch.no_grad()
def graft_parent(parent: torch.nn.Module, G: torch.nn.Module) -> None:
    """Copy the unconditional `parent` into the conditional `G` (same architecture otherwise).

    Raises ValueError naming the first tensor that does not fit.
    """
    if parent.c_dim != 0 or G.c_dim == 0:
        raise ValueError(f'graft_parent: needs an unconditional parent (c_dim={parent.c_dim}) and a '
                         f'conditional G (c_dim={G.c_dim})')
    src = dict(misc.named_params_and_buffers(parent))
    dst = dict(misc.named_params_and_buffers(G))
    new = {name for name in dst if name.startswith('mapping.embed.')}
    missing, extra = sorted(set(dst) - set(src) - new), sorted(set(src) - set(dst))
    if missing or extra:
        raise ValueError(f'graft_parent: the parent does not fit the conditional generator: '
                         f'missing {missing[:5]}, unexpected {extra[:5]}')
    z_dim = parent.z_dim
    for name, tensor in dst.items():
        if name in new:
            continue                                                  # embed keeps its initialisation
        if name == 'mapping.fc0.weight':
            _graft_fc0(src[name], tensor, z_dim)
            continue
        if src[name].shape != tensor.shape:
            raise ValueError(f"graft_parent: shape mismatch for '{name}': parent {list(src[name].shape)}, "
                             f"conditional {list(tensor.shape)}")
        tensor.copy_(src[name])


def _graft_fc0(parent_weight: torch.Tensor, weight: torch.Tensor, z_dim: int) -> None:
    # weight [out, z_dim + embed]: z columns = the parent's, rescaled for the wider fan-in
    # (effective weight = stored * lr_multiplier / sqrt(in_features)); class columns = 0.
    misc.assert_shape(parent_weight, [weight.shape[0], z_dim])
    scale = np.sqrt(weight.shape[1] / z_dim)
    weight.zero_()
    weight[:, :z_dim] = (parent_weight.double() * scale).to(weight.dtype)


def load_resume_networks(data: dict, G, D, G_ema, source: str) -> None:
    """Loader of the --resume pickle for a class-conditional run: the parent's G and G_ema are
    grafted, D (unconditional: it only sees class 0) is copied as it is."""
    try:
        graft_parent(data['G'], G)
        graft_parent(data['G_ema'], G_ema)
        misc.copy_params_and_buffers(data['D'], D, require_all=True)
    except ValueError as e:
        raise ValueError(f'{source}: {e}') from None


def grafted_copy(parent: torch.nn.Module, num_classes: int) -> torch.nn.Module:
    """A new conditional `training.networks.Generator` with `parent` grafted in (eval mode)."""
    from training.networks import Generator
    if type(parent) is not Generator:
        raise ValueError(f'grafted_copy: needs a training.networks.Generator, got {type(parent).__name__}')
    kwargs = conditional_G_kwargs(dict(parent.init_kwargs, class_name='training.networks.Generator'), num_classes)
    kwargs.pop('class_name')
    G = Generator(**kwargs).to(next(parent.parameters()).device)
    graft_parent(parent, G)
    return G.eval().requires_grad_(False)
