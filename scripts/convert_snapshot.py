"""Convert a network snapshot between pickle and safetensors, or to the official pickle format.

    python -m scripts.convert_snapshot --src network-snapshot.pkl --dest network-snapshot.safetensors
    python -m scripts.convert_snapshot --src network-snapshot.safetensors --dest network-snapshot.pkl
    python -m scripts.convert_snapshot --src ours.pkl --dest theirs.pkl --format official [--lite]

The format of each side follows its extension (.pkl or .safetensors). Reading a .pkl never
executes code stored in it. Writing a .pkl produces our own format (class names, constructor
arguments and tensors; no source code) or, with `--format official`, the stylegan2-ada-pytorch
persistence format that the official loaders and tools open (our own `training/networks.py` and
`training/augment.py` embedded as module source; training/official_format.py). `--lite` leaves
out the optimizer and resume state, which only continuing the run needs.
"""

import os

import click

import dnnlib
from training import official_format
from training import snapshot_io

_FORMATS = ('.pkl', '.safetensors')
PKL_FORMATS = ('ours', 'official')  # --format: how a .pkl destination is written.


def _format_of(path: str, flag: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS:
        raise click.UsageError(f"{flag} {path}: unknown extension '{ext}'; use one of {', '.join(_FORMATS)}")
    return ext


def convert_snapshot(src: str, dest: str, force_fp16: bool = False, pkl_format: str = 'ours',
                     lite: bool = False) -> dict:
    """Read `src` and write the same snapshot to `dest`, each in the format of its extension.

    `pkl_format` ('ours' or 'official') chooses how a .pkl `dest` is written; `lite` drops the
    optimizer and resume state (official_format.RESUME_ONLY_KEYS). Returns the loaded snapshot
    dict. Raises click.UsageError for bad paths and options and snapshot_io.SnapshotError for
    unreadable or unwritable snapshots.
    """
    src_format, dest_format = _format_of(src, '--src'), _format_of(dest, '--dest')
    if pkl_format not in PKL_FORMATS:
        raise click.UsageError(f"--format {pkl_format}: unknown format; use one of {', '.join(PKL_FORMATS)}")
    if pkl_format == 'official' and dest_format != '.pkl':
        raise click.UsageError(f'--format official writes a pickle, but --dest {dest} is {dest_format}; '
                               f'give --dest a .pkl name')
    if os.path.abspath(src) == os.path.abspath(dest):
        raise click.UsageError(f'--dest {dest} is the same file as --src; choose another destination')
    if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        raise click.UsageError(f'--dest {dest}: folder {os.path.dirname(os.path.abspath(dest))} does not exist')
    if src_format == '.pkl':
        data = snapshot_io.load_network_pkl(src, force_fp16=force_fp16)
    else:
        data = snapshot_io.import_safetensors(src, force_fp16=force_fp16)
    if lite:
        data = {key: value for key, value in data.items() if key not in official_format.RESUME_ONLY_KEYS}
    if pkl_format == 'official':
        official_format.save_official_pkl(data, dest)
    elif dest_format == '.pkl':
        snapshot_io.save_network_pkl(data, dest)
    else:
        snapshot_io.export_safetensors(data, dest)
    return data


@click.command()
@click.option('--src', required=True, type=click.Path(exists=True, dir_okay=False),
              help='Snapshot to read (.pkl or .safetensors)')
@click.option('--dest', required=True, type=click.Path(dir_okay=False), help='File to write (.pkl or .safetensors)')
@click.option('--force-fp16', is_flag=True, help='Rebuild networks with num_fp16_res=4, conv_clamp=256')
@click.option('--format', 'pkl_format', type=click.Choice(PKL_FORMATS), default='ours', show_default=True,
              help='How a .pkl --dest is written: ours, or the official stylegan2-ada-pytorch persistence format')
@click.option('--lite', is_flag=True, help='Leave out the optimizer and resume state (the networks and '
                                           'expansion keys stay)')
def main(src: str, dest: str, force_fp16: bool, pkl_format: str, lite: bool) -> None:
    """Convert a network snapshot between .pkl and .safetensors, or to the official pickle format."""
    data = convert_snapshot(src, dest, force_fp16=force_fp16, pkl_format=pkl_format, lite=lite)
    kind = 'official-format pickle' if pkl_format == 'official' else dest_kind(dest)
    click.echo(f'Wrote {dest}, {kind}, {os.path.getsize(dest) / 1e6:.2f} MB ({", ".join(data)})')


def dest_kind(dest: str) -> str:
    return 'safetensors file' if dest.lower().endswith('.safetensors') else 'pickle'


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
