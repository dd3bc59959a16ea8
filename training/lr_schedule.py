"""G's learning-rate schedule (not official; train.py --glr_decay): constant, then linearly to 0.

The official code keeps every learning rate constant. With Adam each step moves a weight by
about lr whatever the size of its gradient, so at a constant rate the weights keep jittering
around their optimum; a short expansion run stops wherever the jitter is. Decaying the rate over
the end of the run lets them settle: in scripts.bench_demo_quality on the demo generator the base
drift halves and every Transform domain's R^2 rises (README, "The demo").

The fraction is stored in the optimizer's param groups ('lr_decay', beside 'base_lr'), so a
continued run, which restores the optimizer state, keeps the schedule of the run it continues.
"""


def decay_scale(cur_nimg: int, total_nimg: int, fraction: float) -> float:
    """The multiplier of the base rate for the step that starts at `cur_nimg`: 1 until the last
    `fraction` of `total_nimg`, then falling linearly (to batch / (fraction * total) at the last step)."""
    if fraction <= 0:
        return 1.0
    return min(1.0, max(total_nimg - cur_nimg, 0) / (fraction * total_nimg))


def mark_groups(optimizer, fraction: float) -> None:
    """Give every param group the schedule (fraction 0: constant rate, nothing stored)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f'glr_decay must be a fraction of the run in [0, 1], got {fraction}')
    if fraction > 0:
        for group in optimizer.param_groups:
            group['base_lr'], group['lr_decay'] = group['lr'], float(fraction)


def set_learning_rates(optimizer, cur_nimg: int, total_nimg: int) -> None:
    """Before a step: lr = base_lr * decay_scale of each scheduled group (others untouched)."""
    for group in optimizer.param_groups:
        if group.get('lr_decay', 0) > 0:
            group['lr'] = group['base_lr'] * decay_scale(cur_nimg, total_nimg, group['lr_decay'])
