"""Reading the folder of target images (adapt_blackbox.py --targets): PNG/JPEG files directly in
the folder, sorted by name, each already at the generator's resolution."""

import os

import numpy as np
import PIL.Image
import torch

import dnnlib

#----------------------------------------------------------------------------

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')

class TargetsError(dnnlib.util.UserError, ValueError):
    """A target folder that cannot be used."""

def list_target_files(folder: str, flag: str = '--targets') -> list:
    """Sorted paths of the images in `folder` (not recursive); TargetsError when there are none."""
    if not os.path.isdir(folder):
        raise TargetsError(f"{flag}: no such folder: '{folder}'")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith('.'))
    if not names:
        raise TargetsError(f"{flag}: no PNG or JPEG images in '{folder}'")
    return [os.path.join(folder, n) for n in names]

def load_target_images(paths, resolution: int, channels: int, flag: str = '--targets') -> torch.Tensor:
    """uint8 images `[N, channels, resolution, resolution]`; TargetsError naming the first bad file."""
    mode = {1: 'L', 3: 'RGB'}[channels]
    images = []
    for path in paths:
        try:
            with PIL.Image.open(path) as image:
                image = image.convert(mode)
        except (OSError, ValueError) as err:
            raise TargetsError(f"{flag}: cannot read '{path}' ({type(err).__name__}); remove or replace it") from None
        if image.size != (resolution, resolution):
            raise TargetsError(f"{flag}: '{path}' is {image.size[0]}x{image.size[1]}, the generator makes "
                f'{resolution}x{resolution}; resize the targets (e.g. dataset_tool.py --resolution {resolution})')
        array = np.asarray(image, dtype=np.uint8).reshape(resolution, resolution, channels)
        images.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return torch.stack(images)

#----------------------------------------------------------------------------
