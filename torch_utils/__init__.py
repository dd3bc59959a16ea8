"""torch_utils: torch plumbing that knows nothing of our models: custom ops with pure-PyTorch
references (`ops/`), safe persistence, training statistics, distributed and misc helpers.

May import `dnnlib` and third-party packages; never `metrics`, `training` or a top-level script.
"""
