"""Convert a network snapshot between pickle and safetensors, or an official pickle to ours.

    python -m scripts.convert_snapshot --src network-snapshot.pkl --dest network-snapshot.safetensors
    python -m scripts.convert_snapshot --src network-snapshot.safetensors --dest network-snapshot.pkl

The format of each side follows its extension (.pkl or .safetensors). Reading a .pkl never
executes code stored in it; writing a .pkl produces our own format (class names, constructor
arguments and tensors; no source code).
"""

import os

import click

from training import snapshot_io

_FORMATS = ('.pkl', '.safetensors')


def _format_of(path: str, flag: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS:
        raise click.UsageError(f"{flag} {path}: unknown extension '{ext}'; use one of {', '.join(_FORMATS)}")
    return ext


def convert_snapshot(src: str, dest: str, force_fp16: bool = False) -> dict:
    """Read `src` and write the same snapshot to `dest`, each in the format of its extension.

    Returns the loaded snapshot dict. Raises click.UsageError for bad paths and
    snapshot_io.SnapshotError for unreadable or unwritable snapshots.
    """
    src_format, dest_format = _format_of(src, '--src'), _format_of(dest, '--dest')
    if os.path.abspath(src) == os.path.abspath(dest):
        raise click.UsageError(f'--dest {dest} is the same file as --src; choose another destination')
    if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        raise click.UsageError(f'--dest {dest}: folder {os.path.dirname(os.path.abspath(dest))} does not exist')
    if src_format == '.pkl':
        data = snapshot_io.load_network_pkl(src, force_fp16=force_fp16)
    else:
        data = snapshot_io.import_safetensors(src, force_fp16=force_fp16)
    if dest_format == '.pkl':
        snapshot_io.save_network_pkl(data, dest)
    else:
        snapshot_io.export_safetensors(data, dest)
    return data


@click.command()
@click.option('--src', required=True, type=click.Path(exists=True, dir_okay=False),
              help='Snapshot to read (.pkl or .safetensors)')
@click.option('--dest', required=True, type=click.Path(dir_okay=False), help='File to write (.pkl or .safetensors)')
@click.option('--force-fp16', is_flag=True, help='Rebuild networks with num_fp16_res=4, conv_clamp=256')
def main(src: str, dest: str, force_fp16: bool) -> None:
    """Convert a network snapshot between .pkl and .safetensors."""
    try:
        data = convert_snapshot(src, dest, force_fp16=force_fp16)
    except snapshot_io.SnapshotError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f'Wrote {dest} ({", ".join(data)})')


if __name__ == '__main__':
    main()
