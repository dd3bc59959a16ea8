"""Feature networks ("detectors") that the metrics embed images with.

The official numbers come from NVIDIA's TorchScript exports of Inception-v3 (FID, KID, IS) and
VGG16 (precision/recall, and the LPIPS distance inside PPL). They are loaded from a URL (cached by
`dnnlib.util.open_url`), from a local path given instead of the URL, or from a folder holding the
files under their original names (`detector_dir` / $GAN_METRICS_DETECTOR_DIR) for offline machines.

Detectors are injectable: `register_detector(url, module)` makes every metric that asks for `url`
use `module` instead, which is how tests (and offline smoke runs) use `RandomDetector`. A
detector is called as `detector(images, **detector_kwargs)` with images `[N, 3, H, W]` holding
values in [0, 255] (uint8, or float for PPL) and returns `[N, D]` float features; the keyword
arguments are those of the official exports: `return_features` (Inception pool features / VGG
fc features instead of class probabilities), `no_output_bias` (Inception softmax without the
output bias, for IS), `resize_images` and `return_lpips` (VGG: LPIPS-normalised features whose
squared Euclidean distance is the LPIPS distance).
"""

import copy
import hashlib
import os
import warnings

import torch

import dnnlib

# ---------------------------------------------------------------------------------------------

INCEPTION_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt'
VGG16_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt'
DETECTOR_DIR_ENV = 'GAN_METRICS_DETECTOR_DIR'   # Folder with detectors stored under their URL's file name.

_registered: dict[str, torch.nn.Module] = {}        # url -> injected module (tests, offline runs)
_loaded: dict[tuple, torch.nn.Module] = {}           # (url, detector dir, device) -> module ready on that device


class DetectorUnavailableError(dnnlib.util.UserError, OSError):
    """A feature network cannot be found or downloaded; the message says where to put the file."""

# ---------------------------------------------------------------------------------------------
# Injection.


def register_detector(url: str, module: torch.nn.Module) -> None:
    """Make every metric that asks for `url` use `module` (nothing is downloaded for it)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'register_detector({url!r}): expected a torch.nn.Module, got {type(module).__name__}')
    _registered[url] = module
    _forget_loaded(url)


def unregister_detector(url: str) -> None:
    """Undo `register_detector(url, ...)`; later loads go back to the URL."""
    _registered.pop(url, None)
    _forget_loaded(url)


def _forget_loaded(url: str) -> None:
    for key in [key for key in _loaded if key[0] == url]:
        del _loaded[key]


def detector_fingerprint(url: str, detector_dir: str | None = None) -> str:
    """Identity of the detector behind `url`, for cache keys, so that a stand-in network never
    shares cached statistics with the real one: for an injected module its class and a hash of
    its tensors; for a file read from a local path or detector dir, the URL plus the file's
    SHA-256; for a download, the URL."""
    module = _registered.get(url)
    if module is None:
        path = _local_source(url, resolve_detector_dir(detector_dir))
        return url if path is None else f'{url}:sha256:{_file_sha256(path)}'
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f'injected:{url}:{digest.hexdigest()[:16]}'

# ---------------------------------------------------------------------------------------------
# Loading.


def resolve_detector_dir(detector_dir: str | None) -> str | None:
    """The explicit `detector_dir`, else $GAN_METRICS_DETECTOR_DIR, else None."""
    if detector_dir is not None:
        return detector_dir
    return os.environ.get(DETECTOR_DIR_ENV) or None


def load_detector(url: str, device: torch.device, num_gpus: int = 1, rank: int = 0,
                  detector_dir: str | None = None) -> torch.nn.Module:
    """Return the detector for `url` on `device` (eval mode, no gradients), loading it once per
    process and device.

    Args:
        url:          http(s) URL or local path of a TorchScript archive, or a registered name.
        device:       torch device to put the network on.
        num_gpus:     number of processes; when > 1, rank 0 downloads first and the others wait.
        rank:         this process's rank.
        detector_dir: folder that holds the file under the URL's base name (offline use);
                      None: $GAN_METRICS_DETECTOR_DIR if set, else download/cache by URL.
    """
    key = (url, resolve_detector_dir(detector_dir) if url not in _registered else None, str(device))
    if key in _loaded:
        return _loaded[key]
    if url in _registered:
        module = copy.deepcopy(_registered[url])
    else:
        # Rank 0 fetches into the cache first so that the other ranks only read it; every rank
        # learns whether that worked, so a failure cannot leave the others waiting forever.
        ok = True
        error = None
        if rank == 0 or num_gpus == 1:
            try:
                module = _load_torchscript(url, device, detector_dir)
            except DetectorUnavailableError as e:
                ok, error = False, e
        if num_gpus > 1:
            ok = _broadcast_flag(ok, device)
        if not ok:
            raise error if error is not None else DetectorUnavailableError(
                f'Rank 0 could not load the feature network {url}; see its error message')
        if rank != 0 and num_gpus > 1:
            module = _load_torchscript(url, device, detector_dir)
    module = module.eval().to(device)
    for param in module.parameters():  # (ScriptModules lack requires_grad_(); parameters have it)
        param.requires_grad_(False)
    _loaded[key] = module
    return module


def _local_source(url: str, detector_dir: str | None) -> str | None:
    # The local file a detector is read from (None: downloaded / cached by URL).
    if detector_dir is not None and dnnlib.util.is_url(url):
        return os.path.join(detector_dir, os.path.basename(url))
    if not dnnlib.util.is_url(url, allow_file_urls=True):
        return url
    return None


_sha256_cache: dict[tuple, str] = {}  # (path, size, mtime) -> hex digest


def _file_sha256(path: str) -> str:
    if not os.path.isfile(path):
        return 'missing'
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _sha256_cache:
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
        _sha256_cache[key] = digest.hexdigest()[:16]
    return _sha256_cache[key]


def _load_torchscript(url: str, device: torch.device, detector_dir: str | None) -> torch.nn.Module:
    # torch.jit.load does not unpickle arbitrary Python objects (unlike the StyleGAN3 `.pkl`
    # exports, which we therefore do not use), but a TorchScript archive is still a program:
    # its code runs in the TorchScript interpreter and may call any registered torch operator.
    # Only load detectors from sources you trust.
    detector_dir = resolve_detector_dir(detector_dir)
    source = url
    if detector_dir is not None and dnnlib.util.is_url(url):
        source = _local_source(url, detector_dir)
        if not os.path.isfile(source):
            raise DetectorUnavailableError(
                f'Feature network {os.path.basename(source)} not found in detector dir {detector_dir} '
                f'(set by --detector-dir or ${DETECTOR_DIR_ENV}); download {url} into that folder')
    try:
        with dnnlib.util.open_url(source) as f, warnings.catch_warnings():
            # The official detectors only exist as TorchScript; its deprecation notice is no news.
            warnings.filterwarnings('ignore', message='`torch.jit.load` is deprecated', category=FutureWarning)
            return torch.jit.load(f, map_location=device)
    except dnnlib.util.DownloadError as e:
        raise DetectorUnavailableError(f'{e}; or put it in a folder named by --detector-dir / '
                                       f'${DETECTOR_DIR_ENV}') from None
    except FileNotFoundError as e:
        raise DetectorUnavailableError(f'Feature network file missing: {e}') from None


def check_detector(url: str, detector_dir: str | None = None) -> None:
    """Make sure the detector file behind `url` is at hand (registered, local, in the detector dir
    or the download cache, else downloaded now) without loading it: a run checks this before its
    first tick. Offline without the file: DetectorUnavailableError at once, as `load_detector`."""
    if url in _registered:
        return
    detector_dir = resolve_detector_dir(detector_dir)
    source = _local_source(url, detector_dir)
    if source is not None:
        if not os.path.isfile(source):
            where = (f'not found in detector dir {detector_dir} (set by --detector-dir or ${DETECTOR_DIR_ENV}); '
                     f'download {url} into that folder') if detector_dir is not None and source != url else 'not found'
            raise DetectorUnavailableError(f'Feature network {source}: {where}')
        return
    try:
        dnnlib.util.open_url(url, return_filename=True)
    except dnnlib.util.DownloadError as e:
        raise DetectorUnavailableError(f'{e}; or put it in a folder named by --detector-dir / '
                                       f'${DETECTOR_DIR_ENV}') from None


def _broadcast_flag(flag: bool, device: torch.device) -> bool:
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.broadcast(tensor, src=0)
    return bool(tensor.item() > 0.5)

# ---------------------------------------------------------------------------------------------
# A tiny random detector for tests and offline smoke runs (its numbers are not comparable to
# published ones: they only move in the right direction).


class RandomDetector(torch.nn.Module):
    """A small randomly initialised conv net with the call signature of the official detectors."""

    def __init__(self,
        feature_dim: int = 16,      # Length of the feature vector (return_features=True / return_lpips=True).
        num_classes: int = 10,      # Number of softmax outputs (return_features=False, as used by IS).
        resolution: int = 32,       # Images are resized to this square size first (when resize_images).
        seed: int = 0,              # Seed of the random weights (same seed -> same network).
    ):
        super().__init__()
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.resolution = resolution
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv1 = torch.nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
            self.conv2 = torch.nn.Conv2d(8, feature_dim, kernel_size=3, stride=2, padding=1)
            self.head = torch.nn.Linear(feature_dim, num_classes, bias=False)

    def extra_repr(self) -> str:
        return f'feature_dim={self.feature_dim}, num_classes={self.num_classes}, resolution={self.resolution}'

    def forward(self, images: torch.Tensor, return_features: bool = False, no_output_bias: bool = False,
                resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        # (Written to be torch.jit.script-able, so tests can also exercise the TorchScript
        # loading path; no_output_bias is accepted for signature parity: the head has no bias.)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError('RandomDetector expects images [N, 3, H, W]')
        x = images.to(torch.float32) / 127.5 - 1                                     # [N, 3, H, W] in [-1, 1]
        if resize_images and (x.shape[2] != self.resolution or x.shape[3] != self.resolution):
            x = torch.nn.functional.interpolate(x, size=(self.resolution, self.resolution),
                                                mode='bilinear', align_corners=False)
        x = torch.relu(self.conv1(x))                                                 # [N, 8, H/2, W/2]
        x = self.conv2(x)                                                             # [N, D, H/4, W/4]
        if return_lpips:
            # LPIPS-style: unit-normalise each position's channel vector, average over positions.
            x = x / x.square().sum(dim=1, keepdim=True).sqrt().clamp(min=1e-8)
            return x.flatten(1) / (x.shape[2] * x.shape[3]) ** 0.5                 # [N, D*h*w]
        features = x.mean(dim=[2, 3])                                                 # [N, D]
        if return_features:
            return features
        return torch.softmax(self.head(features), dim=1)                              # [N, num_classes]

# ---------------------------------------------------------------------------------------------
