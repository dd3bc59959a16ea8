"""A local web viewer for (expanded) generators: `python viewer.py --network EXPANDED.pkl`.

Layering: this package sits beside the top-level scripts. It may import `training`, `metrics`,
`torch_utils` and `dnnlib`, and never a top-level script (`generate`, `legacy`, `viewer`, ...);
`viewer.py` is only its command line.

- `model.py`:    the loaded generator (plain or expanded), request parsing, one-at-a-time
                 rendering with a per-seed latent cache, the command line behind each image.
- `uploads.py`:  size- and type-checked photo uploads (images only, never pickles).
- `jobs.py`:     photo projections running in the background, with progress.
- `server.py`:   the HTTP server (stdlib `http.server`) and its fixed JSON/PNG interface.
- `static/index.html`: the hand-written page (no asset comes from the internet).
"""
