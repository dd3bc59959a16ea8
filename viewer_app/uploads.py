"""Photo uploads: size- and type-checked images, prepared as projection targets.

The page sends the file's raw bytes (no multipart form). Only PNG, JPEG, WebP and BMP data is
decoded, by Pillow with its decoders restricted to those formats, so no other kind of file (a
pickle above all) is ever interpreted. The picture is prepared as `projector.py --resize`
prepares a target: converted to RGB (or L), center-cropped to a square, resized with Lanczos.
"""

import io

import numpy as np
import PIL.Image

from viewer_app.model import RequestError

MAX_UPLOAD_BYTES    = 16 * 2 ** 20                      # Larger bodies are refused before they are read.
MAX_UPLOAD_PIXELS   = 40_000_000                        # Width x height; guards against decompression bombs.
UPLOAD_FORMATS      = ('PNG', 'JPEG', 'WEBP', 'BMP')    # Pillow format names that are decoded.
UPLOAD_TYPES        = ('image/png', 'image/jpeg', 'image/webp', 'image/bmp', 'image/x-ms-bmp')
PICKLE_MAGIC        = b'\x80'                           # Protocol 2+ pickles start with PROTO (0x80).

#----------------------------------------------------------------------------

def check_upload_headers(content_type: str, content_length: str) -> int:
    """Validate the request headers before reading the body; returns the body size in bytes."""
    kind = (content_type or '').split(';')[0].strip().lower()
    if kind not in UPLOAD_TYPES:
        raise RequestError(f"upload: Content-Type '{kind or 'none'}' is not accepted; send a PNG, JPEG, WebP "
            f'or BMP image ({", ".join(UPLOAD_TYPES)})', http_status=415)
    try:
        size = int(content_length)
    except (TypeError, ValueError):
        raise RequestError('upload: Content-Length is missing; send the image bytes as the request body',
            http_status=411) from None
    if size <= 0:
        raise RequestError('upload: the body is empty; send the image bytes')
    if size > MAX_UPLOAD_BYTES:
        raise RequestError(f'upload: {size} bytes is too large; the limit is {MAX_UPLOAD_BYTES // 2 ** 20} MiB '
            f'(resize the photo first)', http_status=413)
    return size

def _center_crop_resize(img: PIL.Image.Image, resolution: int) -> PIL.Image.Image:
    """Largest centered square, resized to `resolution` with Lanczos (as projector.py --resize)."""
    if img.size == (resolution, resolution):
        return img
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((resolution, resolution), PIL.Image.LANCZOS)

def load_upload(data: bytes, resolution: int, channels: int) -> np.ndarray:
    """Decode an uploaded image into a projection target: uint8 [channels, resolution, resolution]."""
    if data.startswith(PICKLE_MAGIC):
        raise RequestError('upload: this looks like a pickle; only images (PNG, JPEG, WebP, BMP) are accepted')
    try:
        with PIL.Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
            if img.width * img.height > MAX_UPLOAD_PIXELS:
                raise RequestError(f'upload: the image is {img.width}x{img.height} pixels; the limit is '
                    f'{MAX_UPLOAD_PIXELS // 10 ** 6} megapixels (resize it first)', http_status=413)
            img = img.convert('RGB' if channels == 3 else 'L')          # decodes the pixels
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as err:  # UnidentifiedImageError is an OSError
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RequestError(f'upload: not a readable PNG, JPEG, WebP or BMP image ({first_line})') from None
    array = np.asarray(_center_crop_resize(img, resolution), dtype=np.uint8)
    array = array[:, :, np.newaxis] if array.ndim == 2 else array
    return np.ascontiguousarray(array.transpose(2, 0, 1))              # [H, W, C] -> [C, H, W]

#----------------------------------------------------------------------------
