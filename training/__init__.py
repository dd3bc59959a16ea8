"""training: the GAN core (networks, losses, datasets, augmentation, the loop, snapshot I/O,
projection, image transforms), one sub-package per method beside it (`expansion/`, ...), and
run planning (`launch.py`, `run_options.py`).

The core (`training/*.py`) may import `dnnlib`, `torch_utils`, `metrics` and other core modules,
never a method package (it builds losses by class name) and never a top-level script. A method
package may import the core and the layers below it; run planning may import methods too.
`expansion_loss.py` and `adaptation_tasks.py` are thin aliases kept for class names stored in
earlier `training_options.json` files and configs. Enforced by tests/test_layering.py.
"""
