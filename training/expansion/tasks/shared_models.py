"""Heavy pretrained networks that tasks share (CLIP, LPIPS), each loaded once per process.

One `SharedModels` object is created per process and handed to every task (and to the loss,
which uses LPIPS for replay alignment), so that ten NADA tasks using ViT-B/32 load it once.
Weights cannot be downloaded on every machine: a failed load raises `PretrainedWeightsError`
with one line naming the model, where the weights are looked for, and how to put them there.
Tests inject tiny stand-ins with `register_clip` / `register_perceptual`.
"""

import os
import warnings

import torch

import dnnlib
from torch_utils import misc

#----------------------------------------------------------------------------

class PretrainedWeightsError(dnnlib.util.UserError, RuntimeError):
    """A pretrained network could not be loaded (typically: offline, weights not cached)."""

#----------------------------------------------------------------------------
# CLIP model names. The config uses OpenAI's names ('ViT-B/32'); open_clip calls the same
# architecture 'ViT-B-32' and its OpenAI weights pretrained='openai'. Any other open_clip model
# can be named as 'ARCH:PRETRAINED_TAG' (e.g. 'ViT-B-32:laion2b_s34b_b79k').

OPENAI_CLIP_MODELS = {
    'RN50':           'RN50',
    'RN101':          'RN101',
    'RN50x4':         'RN50x4',
    'RN50x16':        'RN50x16',
    'RN50x64':        'RN50x64',
    'ViT-B/32':       'ViT-B-32',
    'ViT-B/16':       'ViT-B-16',
    'ViT-L/14':       'ViT-L-14',
    'ViT-L/14@336px': 'ViT-L-14-336',
}

def open_clip_spec(name: str):
    """Map a config CLIP name to open_clip's `(architecture, pretrained tag)`; ValueError if unknown."""
    if name in OPENAI_CLIP_MODELS:
        return OPENAI_CLIP_MODELS[name], 'openai'
    arch, sep, tag = name.partition(':')
    if sep and arch and tag:
        return arch, tag
    raise ValueError(f'unknown CLIP model {name!r}; use one of {", ".join(OPENAI_CLIP_MODELS)} '
        f'or an open_clip "ARCH:PRETRAINED_TAG" name')

#----------------------------------------------------------------------------

class ClipEncoder:
    """A CLIP model with its preprocessing: images in [-1, 1] and strings in, unit vectors out.

    `model` needs `encode_image(x)` (x normalized as CLIP expects, [N, 3, S, S]) and
    `encode_text(tokens)`; `tokenize(list_of_str)` makes the tokens. Parameters are frozen, but
    gradients flow from the image embedding back to the input images.
    """

    def __init__(self,
        model,          # Object with encode_image / encode_text (an open_clip model or a test stand-in).
        tokenize,       # Callable: list of strings -> token tensor for model.encode_text.
        image_size,     # Square input resolution of the image tower, in pixels.
        mean,           # Per-channel normalization mean (3 floats, for images in [0, 1]).
        std,            # Per-channel normalization std (3 floats).
        device = 'cpu', # Device of the model (token tensors are moved there).
        name = 'clip',  # For messages and repr.
    ):
        self.model = model
        self.tokenize = tokenize
        self.image_size = int(image_size)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.device = torch.device(device)
        self.name = name

    def __repr__(self):
        return f'ClipEncoder({self.name!r}, image_size={self.image_size})'

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images [N, 3, H, W] -> CLIP input: shortest side resized, center crop, normalized."""
        misc.assert_shape(images, [None, 3, None, None])
        x = (images + 1) / 2
        H, W = x.shape[2:]
        if (H, W) != (self.image_size, self.image_size):
            scale = self.image_size / min(H, W)
            size = [max(self.image_size, round(H * scale)), max(self.image_size, round(W * scale))]
            x = torch.nn.functional.interpolate(x, size=size, mode='bicubic', align_corners=False, antialias=True)
            top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
            x = x[:, :, top : top + self.image_size, left : left + self.image_size]
        return (x - self.mean.to(x)) / self.std.to(x)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings [N, D] of [-1, 1] images (differentiable w.r.t. the images)."""
        features = self.model.encode_image(self.preprocess(images)).float()
        return torch.nn.functional.normalize(features, dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts) -> torch.Tensor:
        """Unit-norm text embeddings [T, D] (no gradient: texts are fixed targets)."""
        tokens = self.tokenize(list(texts))
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.to(self.device)
        features = self.model.encode_text(tokens).float()
        return torch.nn.functional.normalize(features, dim=-1)

#----------------------------------------------------------------------------

def _freeze(module: torch.nn.Module, device) -> torch.nn.Module:
    """Eval mode, no parameter gradients, on `device`."""
    return module.eval().requires_grad_(False).to(device)

def _clip_weights_error(name: str, cache_dir, reason: str) -> PretrainedWeightsError:
    arch, tag = open_clip_spec(name)
    where = cache_dir if cache_dir is not None else _hf_cache_dir()
    return PretrainedWeightsError(f'CLIP model {name!r} (open_clip {arch!r}, pretrained={tag!r}) could not be loaded '
        f'({reason}); weights are looked for in {where}. '
        f'Offline? On a machine with internet run: python -c "import open_clip; '
        f"open_clip.create_model_and_transforms('{arch}', pretrained='{tag}', cache_dir='DIR')\" "
        f'and copy DIR to {where}')

def _clip_weights_source(name: str, cache_dir=None) -> tuple:
    """`(cached, download URL)` of the weights of CLIP model `name`, without any network access."""
    from open_clip import pretrained
    arch, tag = open_clip_spec(name)
    cfg = pretrained.get_pretrained_cfg(arch, tag)
    if not cfg:
        return False, None  # Unknown to open_clip: loading says so.
    if 'file' in cfg:
        return os.path.isfile(cfg['file']), None
    hub = cfg.get('hf_hub', '')
    if hub and pretrained.has_hf_hub():
        from huggingface_hub import constants, try_to_load_from_cache
        model_id, filename = os.path.split(hub)
        filename = filename or pretrained.HF_WEIGHTS_NAME
        for candidate in [filename, *pretrained._get_safe_alternatives(filename)]:
            if isinstance(try_to_load_from_cache(model_id, candidate, cache_dir=cache_dir), str):
                return True, None
        return False, f'{constants.ENDPOINT}/{model_id}'
    url = cfg.get('url', '')
    folder = cache_dir or os.path.expanduser('~/.cache/clip')
    return os.path.isfile(os.path.join(folder, os.path.basename(url))), url or None

def check_clip_weights(name: str, cache_dir=None) -> None:
    """Before any work: the weights of CLIP model `name` are cached, or their host answers (one
    quick probe, see dnnlib.util.url_reachable); else PretrainedWeightsError at once, instead of
    the hub's retries."""
    cached, url = _clip_weights_source(name, cache_dir)
    if not cached and url is not None and not dnnlib.util.url_reachable(url):
        raise _clip_weights_error(name, cache_dir, f'offline: not cached, and {dnnlib.util.url_host(url)} is '
                                  f'unreachable or ${dnnlib.util.OFFLINE_ENV} / $HF_HUB_OFFLINE is set')

def load_open_clip(name: str, device, cache_dir=None) -> ClipEncoder:
    """Load an open_clip model with its real pretrained weights; PretrainedWeightsError when unavailable."""
    import open_clip # Imported here: it takes seconds and only NADA needs it.
    from open_clip.pretrained import get_pretrained_cfg
    arch, tag = open_clip_spec(name)
    check_clip_weights(name, cache_dir)
    # OpenAI's CLIP weights were trained with QuickGELU; open_clip only warns when the
    # architecture's default (GELU) does not match, so ask for it explicitly.
    quick_gelu = bool(get_pretrained_cfg(arch, tag).get('quick_gelu', False))
    try:
        model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=tag, device=device, cache_dir=cache_dir,
            force_quick_gelu=quick_gelu)
    except Exception as err: # open_clip / huggingface_hub / urllib raise many types when offline.
        reason = f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}'
        raise _clip_weights_error(name, cache_dir, reason) from err
    cfg = getattr(model.visual, 'preprocess_cfg', {})
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
    mean = cfg.get('mean', open_clip.OPENAI_DATASET_MEAN)
    std = cfg.get('std', open_clip.OPENAI_DATASET_STD)
    return ClipEncoder(_freeze(model, device), open_clip.get_tokenizer(arch), image_size, mean, std,
        device=device, name=name)

def _hf_cache_dir() -> str:
    """Where huggingface_hub (used by open_clip) caches downloads by default."""
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return os.path.join(os.path.expanduser('~'), '.cache', 'huggingface', 'hub')

#----------------------------------------------------------------------------

RANDOM_BACKBONE_SEED = 0  # Seed of the random-init LPIPS backbone (offline use).
LPIPS_BACKBONE_WEIGHTS = {'alex': 'AlexNet_Weights', 'vgg': 'VGG16_Weights', 'squeeze': 'SqueezeNet1_1_Weights'}

def _lpips_backbone_file(net: str) -> tuple:
    """`(download URL, local path)` of the torchvision backbone weights of LPIPS network `net`."""
    import torchvision
    weights = getattr(torchvision.models, LPIPS_BACKBONE_WEIGHTS[net]).IMAGENET1K_V1
    return weights.url, os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(weights.url))

def _lpips_weights_error(net: str, reason: str) -> PretrainedWeightsError:
    url, target = _lpips_backbone_file(net)
    return PretrainedWeightsError(f'LPIPS backbone {net!r} could not be loaded ({dnnlib.util.one_line(reason)}); '
        f'torchvision looks for {target}. Offline? Download {url} elsewhere and copy it to that path')

def check_lpips_weights(net: str) -> None:
    """Before any work: the backbone weights of LPIPS network `net` are in torchvision's cache or
    their host answers (one quick probe); else PretrainedWeightsError at once."""
    if net not in LPIPS_BACKBONE_WEIGHTS:
        raise ValueError(f'unknown LPIPS network {net!r}; choose one of {", ".join(LPIPS_BACKBONE_WEIGHTS)}')
    url, target = _lpips_backbone_file(net)
    if not os.path.isfile(target) and not dnnlib.util.url_reachable(url):
        raise _lpips_weights_error(net, f'offline: not cached, and {dnnlib.util.url_host(url)} is unreachable '
                                   f'or ${dnnlib.util.OFFLINE_ENV} is set')

def load_lpips(net: str, device, random_backbone: bool = False):
    """LPIPS as a callable `(x, y) -> [N]` for [-1, 1] images; PretrainedWeightsError when unavailable.

    The linear calibration layers ship inside the `lpips` package; the backbone (AlexNet for
    'alex') comes from torchvision's download cache. `random_backbone=True` builds the backbone
    with random weights instead (no download): an explicit, reported choice for offline demos,
    whose distances are then not the published LPIPS.
    """
    import lpips # Imported here: it pulls in torchvision.
    if net not in LPIPS_BACKBONE_WEIGHTS:
        raise ValueError(f'unknown LPIPS network {net!r}; choose one of {", ".join(LPIPS_BACKBONE_WEIGHTS)}')
    if not random_backbone:
        check_lpips_weights(net)
    try:
        # A random backbone is drawn from a fixed seed (without touching the caller's RNG), so
        # distances are the same in every process and every run.
        # The lpips package still calls torchvision with its deprecated `pretrained=` argument;
        # those two deprecation warnings say nothing to our user, so they are dropped here only.
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings('ignore', category=UserWarning, module='torchvision.models._utils',
                                    message=r"(The parameter 'pretrained' is deprecated|Arguments other than a weight enum)")
            torch.manual_seed(RANDOM_BACKBONE_SEED)
            model = lpips.LPIPS(net=net, verbose=False, pnet_rand=random_backbone)
    except Exception as err: # urllib / OSError / RuntimeError when the backbone cannot be downloaded.
        raise _lpips_weights_error(net, f'{type(err).__name__}: {err}') from err
    model = _freeze(model, device)

    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        misc.assert_shape(y, list(x.shape))
        return model(x, y).reshape(x.shape[0])
    return distance

#----------------------------------------------------------------------------

class SharedModels:
    """Process-wide cache of pretrained networks shared by tasks and the expansion loss."""

    def __init__(self,
        device,                         # Device the networks run on.
        clip_cache_dir = None,          # Download cache for open_clip weights; None = huggingface_hub default.
        lpips_random_backbone = False,  # True: LPIPS with a randomly initialised backbone (offline demo).
    ):
        self.device = torch.device(device)
        self.clip_cache_dir = clip_cache_dir
        self.lpips_random_backbone = bool(lpips_random_backbone)
        self._clip = {}         # config CLIP name -> ClipEncoder
        self._perceptual = {}   # LPIPS net name -> callable (x, y) -> [N]

    def clip(self, name: str) -> ClipEncoder:
        """The CLIP encoder `name` ('ViT-B/32', ... or 'ARCH:TAG'), loaded on first use."""
        if name not in self._clip:
            self._clip[name] = load_open_clip(name, self.device, cache_dir=self.clip_cache_dir)
        return self._clip[name]

    def perceptual(self, net: str = 'alex'):
        """LPIPS distance `(x, y) -> [N]` with backbone `net`, loaded on first use."""
        if net not in self._perceptual:
            self._perceptual[net] = load_lpips(net, self.device, random_backbone=self.lpips_random_backbone)
        return self._perceptual[net]

    def lpips_backbone(self, net: str = 'alex') -> str:
        """How the LPIPS network `net` is (or will be) built, for reports: 'alex' or 'random-init (offline)'."""
        return 'random-init (offline)' if self.lpips_random_backbone else net

    def register_clip(self, name: str, encoder: ClipEncoder) -> None:
        """Use `encoder` for CLIP name `name` (tests, or a model loaded by other means)."""
        self._clip[name] = encoder

    def register_perceptual(self, net: str, distance) -> None:
        """Use `distance(x, y) -> [N]` as the LPIPS network `net` (tests use small stand-ins)."""
        self._perceptual[net] = distance

#----------------------------------------------------------------------------
