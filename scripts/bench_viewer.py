"""Benchmark: render latency of the viewer (viewer.py), through its HTTP interface.

    python -m scripts.bench_viewer [--network PKL] [--renders 40] [--device cpu]

Starts the viewer's server on a free localhost port in this process and times `GET /api/render`:
- "new seed": a seed not seen before (mapping, base projection, synthesis, PNG);
- "slider move": the same seed with another domain strength (the cached latent: synthesis, PNG),
  which is what a slider drag costs;
and the bare `ViewerModel.render` of a slider move (no HTTP, no PNG). Prints median and 90th
percentile in milliseconds. The default network is the tiny expanded test fixture; pass the
demo's expanded snapshot (demo_out/NNNNN/expanded/*/network-snapshot-*.pkl) for the README figure.
"""

import os
import statistics
import threading
import time
import urllib.request

import click

from viewer_app.model import load_viewer_model
from viewer_app.server import ViewerServer

DEFAULT_PKL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'tests', 'fixtures', 'stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')


def summary(times_s: list) -> str:
    ordered = sorted(times_s)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return f'median {1000 * statistics.median(ordered):7.1f} ms   p90 {1000 * p90:7.1f} ms   (n={len(ordered)})'


def timed_get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
    return time.perf_counter() - start


def bench_viewer(network_pkl: str, renders: int, device: str) -> dict:
    """Seconds per render for each case (see the module docstring)."""
    import torch
    model = load_viewer_model(network_pkl, torch.device(device))
    server = ViewerServer(model, '127.0.0.1', 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        domain = f'dim{model.eg.dims[0]:03d}' if model.expanded else None
        mix = (lambda i: f'&domains={domain}:{(i % 15) / 10 + 0.1:g}') if domain else (lambda i: '')
        timed_get(f'{server.url}api/render?seed=0')                                    # warm-up
        new_seed = [timed_get(f'{server.url}api/render?seed={1000 + i}') for i in range(renders)]
        slider = [timed_get(f'{server.url}api/render?seed=1000{mix(i)}') for i in range(renders)]
        request = model.parse_request({'seed': ['1000'], **({'domains': [f'{domain}:1']} if domain else {})})
        bare = []
        for _ in range(renders):
            start = time.perf_counter()
            model.render(request)
            bare.append(time.perf_counter() - start)
    finally:
        server.shutdown()
        server.server_close()
    return {'new seed (HTTP)': new_seed, 'slider move (HTTP)': slider, 'slider move (model.render)': bare}


@click.command()
@click.option('--network', 'network_pkl', default=DEFAULT_PKL, show_default='the tiny expanded test fixture',
              help='Expanded (or plain) snapshot.')
@click.option('--renders', type=click.IntRange(min=3), default=40, show_default=True, help='Renders per case.')
@click.option('--device', default='cpu', show_default=True, help='Torch device.')
def main(network_pkl, renders, device):
    """Time the viewer's renders."""
    import torch
    print(f'{network_pkl} on {device} ({torch.get_num_threads()} threads)')
    for name, times_s in bench_viewer(network_pkl, renders, device).items():
        print(f'{name:28s} {summary(times_s)}')


if __name__ == '__main__':
    main()
