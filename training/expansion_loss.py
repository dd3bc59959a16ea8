"""Old import path of `DomainExpansionLoss`, kept because `training_options.json` files of earlier
runs name `training.expansion_loss.DomainExpansionLoss` as their `loss_kwargs.class_name`.
The loss lives in `training/expansion/loss.py`."""

from training.expansion.loss import DomainExpansionLoss  # noqa: F401 (alias)
