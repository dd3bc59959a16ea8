"""Convert a folder or zip of images into a training archive in the official StyleGAN2-ADA layout.

    python dataset_tool.py --source ~/photos --dest ~/datasets/photos256.zip \\
        --resolution 256x256 --transform center-crop
    python dataset_tool.py --source ~/downloads/cifar-10-python.tar.gz --dest ~/datasets/cifar10.zip
    python dataset_tool.py --source ~/downloads/lsun/bedroom_train_lmdb --dest ~/datasets/bedroom256.zip \\
        --width 256 --height 256 --transform center-crop --resize-filter box

Sources, as with the official tool (training/dataset_sources.py): a folder or zip of PNG/JPEG
images, an LSUN LMDB folder, CIFAR-10's `cifar-10-python.tar.gz` (with class labels) or MNIST's
`train-images-idx3-ubyte.gz` (with labels; padded to 32x32). `--width W --height H` is the
official spelling of `--resolution WxH`; `--resize-filter` is lanczos (default) or box.

Output: `00000/img00000000.png`, ... plus `dataset.json` (the source's labels, when it has a
dataset.json, mapped to the new names; otherwise `{"labels": null}`). Written atomically.
"""

import re

import click
import numpy as np
import PIL.Image

from training.dataset import DatasetError, DatasetWriter, image_header, is_power_of_two, scan_dataset
from training.dataset_sources import open_source

TRANSFORMS = ('center-crop', 'center-crop-wide')
RESIZE_FILTERS = {'lanczos': PIL.Image.LANCZOS, 'box': PIL.Image.BOX}  # --resize-filter (official choices)


def parse_resolution(text: str | None) -> tuple[int, int] | None:
    """'WxH' -> (W, H); None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r'\s*(\d+)\s*[xX]\s*(\d+)\s*', text)
    if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise DatasetError(f"--resolution: expected WxH with positive integers, e.g. 256x256, got '{text}'")
    return int(m.group(1)), int(m.group(2))


def resolution_from_flags(resolution: str | None, width: int | None, height: int | None) -> str | tuple | None:
    """--resolution WxH, or the official --width W --height H (both), as what convert_dataset takes."""
    if width is None and height is None:
        return resolution
    if resolution is not None:
        raise DatasetError('--width/--height and --resolution say the same thing; give one of them')
    if width is None or height is None or width < 1 or height < 1:
        raise DatasetError(f'--width and --height go together, as positive integers (got --width {width} '
                           f'--height {height})')
    return width, height


def _resize(img: PIL.Image.Image, width: int, height: int, resize_filter: str = 'lanczos') -> PIL.Image.Image:
    if img.size == (width, height):
        return img
    return img.resize((width, height), RESIZE_FILTERS[resize_filter])


def _crop_centre(img: PIL.Image.Image, aspect: float) -> PIL.Image.Image:
    """The largest centred region with width / height == aspect."""
    w, h = img.size
    cw, ch = (w, round(w / aspect)) if w / h < aspect else (round(h * aspect), h)
    cw, ch = min(max(cw, 1), w), min(max(ch, 1), h)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def transform_image(img: PIL.Image.Image, resolution: tuple[int, int] | None, transform: str | None,
                    resize_filter: str = 'lanczos') -> PIL.Image.Image:
    """Apply --resolution / --transform to one image (resampling with --resize-filter).

    - no transform: resize to WxH when --resolution is given (aspect ratio not kept), else unchanged;
    - center-crop: largest centred square, resized to WxH;
    - center-crop-wide: largest centred W:H region, resized to WxH, then letterboxed (black bars
      above and below) into a WxW square, for wide subjects such as cars.
    """
    if transform is None:
        return img if resolution is None else _resize(img, *resolution, resize_filter)
    width, height = resolution
    if transform == 'center-crop':
        return _resize(_crop_centre(img, 1.0), width, height, resize_filter)
    assert transform == 'center-crop-wide', transform
    band = _resize(_crop_centre(img, width / height), width, height, resize_filter)
    canvas = PIL.Image.new(img.mode, (width, width))
    canvas.paste(band, (0, (width - height) // 2))
    return canvas


def _check_options(resolution, transform) -> None:
    """Option consistency, before any image is read."""
    if transform is not None and transform not in TRANSFORMS:
        raise DatasetError(f"--transform: unknown value '{transform}'; choose one of {', '.join(TRANSFORMS)}")
    if transform is not None and resolution is None:
        raise DatasetError(f'--transform {transform} requires --resolution WxH')
    if resolution is None:
        return
    width, height = resolution
    if transform == 'center-crop-wide':
        if height > width:
            raise DatasetError(f'--resolution {width}x{height}: center-crop-wide needs H <= W (it letterboxes into WxW)')
        out = width
    elif width != height:
        raise DatasetError(f'--resolution {width}x{height}: training images must be square; use WxW, or '
                           f'--transform center-crop-wide to letterbox wide images into a square')
    else:
        out = width
    if not is_power_of_two(out):
        raise DatasetError(f'--resolution {width}x{height}: the output size {out} must be a power of two')


def convert_dataset(source: str, dest: str, resolution: str | tuple | None = None, transform: str | None = None,
                    max_images: int | None = None, resize_filter: str = 'lanczos') -> int:
    """Convert the images of `source` into the archive `dest` (.zip or directory).

    Args:
        source:     input directory (searched recursively) or zip of PNG/JPEG files, an LSUN LMDB
                    folder, cifar-10-python.tar.gz or train-images-idx3-ubyte.gz (dataset_sources).
        dest:       output .zip, or a new/empty directory.
        resolution: 'WxH' string or (W, H); None keeps the source size (which must then be square).
        transform:  None, 'center-crop' or 'center-crop-wide' (see `transform_image`).
        max_images: convert only the first N images (in sorted name order); None = all.
        resize_filter: 'lanczos' or 'box' (PIL resampling filter of every resize).
    Returns:
        number of images written. Raises `DatasetError` (one line) for bad options or images.
    """
    if isinstance(resolution, str) or resolution is None:
        resolution = parse_resolution(resolution)
    _check_options(resolution, transform)
    if max_images is not None and max_images < 1:
        raise DatasetError(f'--max-images must be at least 1, got {max_images}')
    if resize_filter not in RESIZE_FILTERS:
        raise DatasetError(f"--resize-filter: unknown filter '{resize_filter}'; choose one of {', '.join(RESIZE_FILTERS)}")

    archive = open_source(source, what='--source')
    names = archive.image_names[:max_images] if max_images is not None else archive.image_names
    if not names:
        raise DatasetError(f'--source {source}: no PNG or JPEG images found (searched recursively)')
    labels = archive.read_labels()
    if labels is not None:
        missing = [n for n in names if n not in labels]
        if missing:
            raise DatasetError(f'{archive.describe("dataset.json")}: no label for {len(missing)} image(s), '
                               f'e.g. {missing[0]}')
    # Every header is read (a list, not a short-circuiting generator) so that an unreadable image
    # fails here, before the destination exists. Grayscale output only when every source image
    # is grayscale; anything else becomes RGB.
    modes = [image_header(archive, n)[2] for n in names]
    gray = all(mode in ('L', '1') for mode in modes)

    try:
        count = _write_images(archive, names, labels, gray, dest, resolution, transform, source, resize_filter)
    finally:
        archive.close()
    return count


def _write_images(archive, names, labels, gray, dest, resolution, transform, source, resize_filter) -> int:
    """Transform and write every image; the archive appears only when all succeeded."""
    expected = None  # (name, size) of the first output image; all others must match it.
    with DatasetWriter(dest) as writer:
        for name in names:
            try:
                with archive.open(name) as f:
                    img = PIL.Image.open(f)
                    img = img.convert('L' if gray else 'RGB')
            except Exception as e:  # A readable header with damaged pixel data (truncated file, zip CRC error, ...).
                raise DatasetError(f'{archive.describe(name)}: cannot read image ({e})') from None
            img = transform_image(img, resolution, transform, resize_filter)
            if expected is None:
                expected = (name, img.size)
                w, h = img.size
                if w != h:
                    raise DatasetError(f'--source {source}: {name} is {w}x{h}, but training images must be square; '
                                       f'use --transform center-crop --resolution WxW')
                if not is_power_of_two(w):
                    raise DatasetError(f'--source {source}: {name} is {w}x{h}, not a power of two; use --resolution')
            elif img.size != expected[1]:
                raise DatasetError(f'--source {source}: images differ in size ({expected[0]} is '
                                   f'{expected[1][0]}x{expected[1][1]}, {name} is {img.size[0]}x{img.size[1]}); '
                                   f'use --resolution to resize them all')
            writer.add_image(np.asarray(img), label=None if labels is None else labels[name])
        count = len(writer)
    return count


def check_dataset(path: str, echo=print) -> int:
    """Full scan of a training dataset (every image decoded, every label checked); prints each
    problem and a summary line last. Returns the number of problems."""
    checked, problems = scan_dataset(path)
    for problem in problems:
        echo(problem)
    echo(f'Checked {checked} item(s) of {path}: {len(problems)} problem(s)'
         + ('' if problems else '; the dataset is readable'))
    return len(problems)


@click.command()
@click.option('--source', metavar='PATH', help='Input folder or zip of PNG/JPEG images, LSUN LMDB folder, '
                                                'cifar-10-python.tar.gz or train-images-idx3-ubyte.gz.')
@click.option('--dest', metavar='PATH', help='Output .zip or (new/empty) directory.')
@click.option('--resolution', metavar='WxH', help='Resize every image to this size.')
@click.option('--width', type=int, metavar='W', help='Output width (official spelling; with --height).')
@click.option('--height', type=int, metavar='H', help='Output height (official spelling; with --width).')
@click.option('--resize-filter', type=click.Choice(list(RESIZE_FILTERS)), default='lanczos', show_default=True,
              help='Resampling filter of every resize.')
@click.option('--transform', type=click.Choice(TRANSFORMS), help='Crop before resizing (needs --resolution).')
@click.option('--max-images', '--max_images', 'max_images', type=int, metavar='N',
              help='Convert only the first N images (--max_images: as the official README spells it).')
@click.option('--check', 'check_path', metavar='DATA', help='Only scan the dataset DATA fully; exit 1 on any problem.')
def main(source, dest, resolution, width, height, resize_filter, transform, max_images, check_path):
    """Convert images into a StyleGAN2-ADA training archive (dataset.json labels carried over),
    or check an existing one with --check DATA."""
    if check_path is not None:
        others = [flag for flag, value in (('--source', source), ('--dest', dest), ('--resolution', resolution),
                                           ('--width', width), ('--height', height),
                                           ('--transform', transform), ('--max-images', max_images)) if value]
        if others:
            raise click.UsageError(f'--check scans a dataset and takes no other option; drop {", ".join(others)}')
        if check_dataset(check_path, echo=click.echo):
            raise SystemExit(1)
        return
    for flag, value in (('--source', source), ('--dest', dest)):
        if value is None:
            raise click.UsageError(f'Missing option {flag} (or give --check DATA to scan a dataset)')
    try:
        resolution = resolution_from_flags(resolution, width, height)
        count = convert_dataset(source, dest, resolution=resolution, transform=transform, max_images=max_images,
                                resize_filter=resize_filter)
    except DatasetError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f'Wrote {count} images to {dest}')


if __name__ == '__main__':
    main()
