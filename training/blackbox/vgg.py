"""Frozen VGG-16 features for the perceptual loss L_VGG (paper Eq. 6).

The ImageNet weights come from torchvision's download cache; offline, loading raises
`VggWeightsError`, one line naming the file torchvision looks for and how to put it there.
`weights='random'` builds the same network from a fixed seed instead: an explicit choice for
offline runs, whose distances are then not the published perceptual distance.
"""

import os

import torch

import dnnlib
from torch_utils import misc

#----------------------------------------------------------------------------

class VggWeightsError(dnnlib.util.UserError, RuntimeError):
    """The pretrained VGG-16 weights could not be loaded (typically: offline, not cached)."""

WEIGHTS = ('imagenet', 'random')
RANDOM_SEED = 0                                                 # Seed of the random-init network.
LAYER_INDICES = {'relu1_2': 3, 'relu2_2': 8, 'relu3_3': 15, 'relu4_3': 22}  # In torchvision's vgg16().features.
DEFAULT_LAYERS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#----------------------------------------------------------------------------

class VGGFeatures(torch.nn.Module):
    """[-1, 1] RGB images `[N, 3, H, W]` -> list of VGG-16 activations at `layers`; frozen."""

    def __init__(self,
        features,                   # torchvision vgg16().features (a Sequential), or a stand-in with the same indexing.
        layers = DEFAULT_LAYERS,    # Names from LAYER_INDICES, or integer indices into `features`.
    ):
        super().__init__()
        self.indices = sorted(LAYER_INDICES[l] if isinstance(l, str) else int(l) for l in layers)
        self.features = torch.nn.Sequential(*list(features)[:self.indices[-1] + 1])  # Drop what no layer needs.
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def extra_repr(self):
        return f'indices={self.indices}'

    def forward(self, images: torch.Tensor) -> list:
        misc.assert_shape(images, [None, 3, None, None])
        h = ((images + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.indices:
                out.append(h)
        return out

def perceptual_distance(vgg: VGGFeatures, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 6 per image `[N]`: sum over layers of (1 / CHW) ||phi(x) - phi(y)||^2; gray images are repeated to RGB."""
    misc.assert_shape(y, list(x.shape))
    if x.shape[1] == 1:
        x, y = x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)
    return sum((fx - fy).square().flatten(1).mean(dim=1) for fx, fy in zip(vgg(x), vgg(y)))

#----------------------------------------------------------------------------

def _random_vgg16_features() -> torch.nn.Sequential:
    """VGG-16's convolutional part with torchvision's initialisation (Kaiming-normal fan-out
    convolutions, zero biases), drawn from RANDOM_SEED; built without the 120M-parameter
    classifier that `vgg16(weights=None)` would initialise and throw away."""
    from torchvision.models import vgg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        features = vgg.make_layers(vgg.cfgs['D'])
        for layer in features:
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(layer.weight, mode='fan_out', nonlinearity='relu')
                torch.nn.init.zeros_(layer.bias)
    return features

def load_vgg16(weights: str = 'imagenet', device='cpu', layers=DEFAULT_LAYERS) -> VGGFeatures:
    """Frozen VGG-16 features; VggWeightsError when the ImageNet weights are not available."""
    import torchvision  # Imported here: only the perceptual loss needs it.
    if weights not in WEIGHTS:
        raise ValueError(f'unknown VGG weights {weights!r}; choose one of {", ".join(WEIGHTS)}')
    if weights == 'random':
        return VGGFeatures(_random_vgg16_features(), layers).to(device)
    spec = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    try:
        net = torchvision.models.vgg16(weights=spec)
    except Exception as err:  # urllib / OSError / RuntimeError when offline.
        target = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(spec.url))
        raise VggWeightsError(f'VGG-16 ImageNet weights could not be loaded ({type(err).__name__}); torchvision '
            f'looks for {target}. Offline? Download {spec.url} elsewhere and copy it there, '
            f'or pass --vgg random (a random-init network: not the published perceptual loss)') from None
    return VGGFeatures(net.features, layers).to(device)

#----------------------------------------------------------------------------
