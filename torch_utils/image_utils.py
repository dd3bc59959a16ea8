"""Converting generator outputs to uint8 pictures and writing (labelled) image grids."""

import os

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch

import dnnlib

# ---------------------------------------------------------------------------------------------


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """`[N, C, H, W]` images in [-1, 1] -> uint8 `[N, H, W, C]` via `x * 127.5 + 128`, clamped
    (the stylegan convention: 0 maps to 128)."""
    if images.ndim != 4:
        raise ValueError(f'to_uint8: expected [N, C, H, W], got {list(images.shape)}')
    x = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def to_pil(image_hwc: np.ndarray) -> PIL.Image.Image:
    """uint8 `[H, W, C]` with C in {1, 3} -> PIL image (L or RGB)."""
    if image_hwc.shape[2] == 1:
        return PIL.Image.fromarray(image_hwc[:, :, 0], 'L')
    return PIL.Image.fromarray(image_hwc, 'RGB')


def save_png_atomic(image: PIL.Image.Image, path: str) -> None:
    """Write a PNG through a temporary file in the same folder, then rename (no partial files)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with dnnlib.util.atomic_write_path(path) as tmp:
        image.save(tmp, format='PNG')

# ---------------------------------------------------------------------------------------------


def _font(size: int) -> PIL.ImageFont.ImageFont:
    # Pillow ships its own default font, so grids never depend on the system's fonts.
    try:
        return PIL.ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed-size bitmap font.
        return PIL.ImageFont.load_default()


def make_grid(rows: list[np.ndarray], row_labels: list[str] | None = None, label_width: int = 0,
              pad: int = 2) -> PIL.Image.Image:
    """Tile rows of uint8 images `[n_i, H, W, C]` into one picture; optional text label per row.

    Args:
        rows:        one array per row; rows may hold different numbers of images.
        row_labels:  text drawn at the left of each row, or None.
        label_width: width in pixels reserved for labels (0 = derived from the text).
        pad:         pixels between tiles.
    """
    if not rows:
        raise ValueError('make_grid: no rows')
    _, H, W, C = rows[0].shape
    font_size = max(10, min(H // 3, 16))
    font = _font(font_size)
    if row_labels is not None and label_width == 0:
        probe = PIL.ImageDraw.Draw(PIL.Image.new('RGB', (1, 1)))
        label_width = max(int(probe.textlength(text, font=font)) for text in row_labels) + 2 * pad
    cols = max(r.shape[0] for r in rows)
    width = label_width + cols * (W + pad) + pad
    height = len(rows) * (H + pad) + pad
    canvas = PIL.Image.new('RGB', (width, height), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(canvas)
    for i, row in enumerate(rows):
        y = pad + i * (H + pad)
        for j, image in enumerate(row):
            tile = to_pil(image).convert('RGB')
            canvas.paste(tile, (label_width + pad + j * (W + pad), y))
        if row_labels is not None:
            draw.text((pad, y + max(H - font_size, 0) // 2), row_labels[i], fill=(0, 0, 0), font=font)
    return canvas


def save_image_grid(images: torch.Tensor, path: str, grid_size: tuple[int, int]) -> None:
    """Write `[N, C, H, W]` images in [-1, 1] as a `gw x gh` grid PNG (N must equal gw * gh)."""
    gw, gh = grid_size
    if images.shape[0] != gw * gh:
        raise ValueError(f'save_image_grid: {images.shape[0]} images do not fill a {gw}x{gh} grid')
    pixels = to_uint8(images)
    rows = [pixels[r * gw:(r + 1) * gw] for r in range(gh)]
    save_png_atomic(make_grid(rows, pad=0), path)
