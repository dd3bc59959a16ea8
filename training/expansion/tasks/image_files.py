"""Reading the image folders that tasks take (MyStyle photos, NADA target images)."""

import os

import numpy as np
import PIL.Image
import torch

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff')

#----------------------------------------------------------------------------

def files_by_stem(folder: str, extensions) -> tuple:
    """Map file stem -> path for the files of `folder` (not recursive) with one of `extensions`.

    Returns:
        `(mapping, duplicates)`: `mapping` sorted by stem; `duplicates` lists stems that occur
        with several extensions (e.g. a.png and a.jpg), which the caller must reject.
    """
    mapping, duplicates = {}, []
    for fname in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(fname)
        path = os.path.join(folder, fname)
        if ext.lower() not in extensions or not os.path.isfile(path):
            continue
        if stem in mapping:
            duplicates.append(stem)
        mapping[stem] = path
    return dict(sorted(mapping.items())), duplicates

def image_size(path: str) -> tuple:
    """(width, height) from the file header, without decoding the pixels."""
    with PIL.Image.open(path) as img:
        return img.size

def load_image(path: str, channels: int = 3) -> torch.Tensor:
    """An image file as a float32 [channels, H, W] tensor in [-1, 1] (grayscale/alpha converted)."""
    with PIL.Image.open(path) as img:
        img = img.convert('RGB' if channels == 3 else 'L')
        array = np.asarray(img, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()) / 127.5 - 1

#----------------------------------------------------------------------------
