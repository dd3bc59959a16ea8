"""Serve a local web page to explore a (domain-expanded) generator.

    python viewer.py --network expanded.pkl [--host 127.0.0.1] [--port 7860] [--device cpu]

Then open the printed address: a seed box, a truncation slider, one slider per domain (0 = the
base subspace, 1 = the domain as trained, up to 1.5; several compose domains), the base and the
current image side by side with a "save PNG" button and the command line of our other tools that
writes the same image, and a photo upload that projects the photo into W and lets every slider
apply to it. A plain (unexpanded) snapshot works too: seed and truncation only. The HTTP
interface is described in viewer_app/server.py.
"""

import click
import torch

import dnnlib
from training.cli_helpers import parse_device
from viewer_app.model import load_viewer_model
from viewer_app.server import ViewerServer

# ---------------------------------------------------------------------------------------------


def run_viewer(network_pkl: str, host: str = '127.0.0.1', port: int = 7860, device: torch.device = torch.device('cpu'),
               class_idx: int | None = None, metric: str = 'l2', allow_task_import: bool = False,
               verbose: bool = False) -> None:
    """Load the network, listen on (host, port) and serve until Ctrl+C.

    Args:
        network_pkl: plain or expanded snapshot (path or URL).
        host:        address to listen on (127.0.0.1 = this machine only).
        port:        TCP port; 0 = any free port (the address is printed).
        device:      torch device for rendering and projection.
        class_idx:   class of a conditional network.
        metric:      photo projection distance: 'l2' (pixel MSE, offline) or 'lpips' (LPIPS-VGG).
        allow_task_import: import dotted task types named in the snapshot (--allow-task-import).
        verbose:     log every request.
    """
    if not 0 <= port <= 65535:
        raise dnnlib.util.UserError(f'--port {port}: use 0 to 65535 (0 = any free port)')
    model = load_viewer_model(network_pkl, device, class_idx=class_idx, metric=metric,
                              allow_task_import=allow_task_import)
    if model.eg is not None and model.eg.names_note:
        print(f'note: {model.eg.names_note}')
    server = ViewerServer(model, host, port, verbose=verbose)
    kind = f'{model.eg.num_domains} domain(s)' if model.expanded else 'a plain generator'
    print(f'Serving {network_pkl} ({kind}, {model.resolution}x{model.resolution}) at {server.url}  (Ctrl+C stops)',
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print('Stopped.')
    finally:
        server.server_close()

# ---------------------------------------------------------------------------------------------


@click.command()
@click.option('--network', 'network_pkl', required=True, metavar='PKL', help='Expanded (or plain) network pickle.')
@click.option('--host', default='127.0.0.1', show_default=True, help='Address to listen on.')
@click.option('--port', type=int, default=7860, show_default=True, help='TCP port (0 = any free port).')
@click.option('--device', default='cpu', show_default=True, help="Torch device, e.g. 'cpu' or 'cuda'.")
@click.option('--class', 'class_idx', type=int, default=None, help='Class index (conditional networks).')
@click.option('--metric', type=click.Choice(['l2', 'lpips']), default='l2', show_default=True,
              help="Photo projection distance: 'l2' = pixel MSE (no download), 'lpips' = LPIPS-VGG.")
@click.option('--allow-task-import', is_flag=True, help='Import task classes named by dotted paths in the '
              "snapshot's expansion_cfg, for domain names (only for snapshots you trust; default: registered types only).")
@click.option('--verbose', is_flag=True, help='Log every request.')
def main(network_pkl, host, port, device, class_idx, metric, allow_task_import, verbose):
    """Serve an interactive viewer for an expanded generator on a local web page."""
    run_viewer(network_pkl, host=host, port=port, device=parse_device(device), class_idx=class_idx, metric=metric,
               allow_task_import=allow_task_import, verbose=verbose)


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
