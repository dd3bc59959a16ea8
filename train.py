"""Train a StyleGAN2-ADA generator, or expand one (--expansion_cfg_file).

    python train.py --outdir=runs --data=data.zip --gpus=1 --cfg=auto
    python train.py --outdir=runs --data=data.zip --cfg=tiny --kimg=1 --metrics=none   # CPU smoke run

The command line only (STYLE.md principle 1): `training.run_options.setup_training_options()`
validates the flags and resolves them into one nested options dict (each *_kwargs names its
class_name); `training.launch.launch_training()` picks the run directory, prints the options,
saves them as training_options.json and starts the training processes. `--dry-run` prints and
creates nothing.

Continuing a run: re-running the same command (same resolved options) into the same --outdir
continues the newest matching run from its newest snapshot, exactly (counters, optimizer and
ADA state, RNG streams, data position); `--resume latest` continues the newest run under
--outdir that has a snapshot, with the new options. `--resume PKL` starts a new run from the
networks of PKL, built from the pickle's own constructor arguments (see training/loop_state.py).
"""

import click

import dnnlib
from torch_utils import distributed
from training import presets
from training.cli_helpers import check_output_dir
from training.expansion import constants as expansion_defaults
from training.expansion import evaluation as _expansion_evaluation  # noqa: F401 (registers its metrics)
from training.launch import launch_training
from training.run_options import setup_training_options

# ---------------------------------------------------------------------------------------------
# Command line.


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
# General.
@click.option('--outdir', help='Where to save the results', metavar='DIR', required=True)
@click.option('--gpus', help='Number of GPUs (processes) [default: 1; torchrun: its world size]', type=int, metavar='INT')
@click.option('--snap', help='Snapshot interval in ticks [default: 50]', type=int, metavar='INT')
@click.option('--metrics', help="Comma-separated metrics or 'none' [default: fid50k_full with --data]", metavar='LIST')
@click.option('--seed', help='Random seed [default: 0]', type=int, default=0, metavar='INT')
@click.option('-n', '--dry-run', help='Print the resolved options and exit; creates nothing', is_flag=True)
# Dataset.
@click.option('--data', help='Training data (directory or zip)', metavar='PATH')
@click.option('--subset', help='Train with only N images, a random subset drawn with --seed [default: all]', type=int, metavar='INT')
@click.option('--cond', help='Train a conditional model from dataset.json labels [default: false]', type=bool, default=False, metavar='BOOL')
@click.option('--mirror', help='Enable dataset x-flips [default: false]', type=bool, default=False, metavar='BOOL')
# Base configuration.
@click.option('--cfg', help=f'Preset: {", ".join(presets.PRESETS)} [default: auto]', default='auto', metavar='NAME')
@click.option('--gamma', help='Override R1 gamma', type=float, metavar='FLOAT')
@click.option('--kimg', help='Override training duration (kimg)', type=float, metavar='FLOAT')
@click.option('--batch', help='Override batch size', type=int, metavar='INT')
@click.option('--tick', help='Progress tick length in kimg [default: from --cfg, 4 for official presets]', type=float, metavar='FLOAT')
# Discriminator augmentation.
@click.option('--aug', help='Augmentation mode: noaug, ada, fixed [default: ada]', default='ada', metavar='MODE')
@click.option('--p', help='Augmentation probability for --aug=fixed', type=float, metavar='FLOAT')
@click.option('--target', help='ADA target value for --aug=ada [default: 0.6]', type=float, metavar='FLOAT')
@click.option('--augpipe', help='Augmentation pipeline [default: bgc]', metavar='NAME')
# Transfer learning and continuation.
@click.option('--resume', help="Network pickle (path or URL) to start from, 'latest' to continue the newest run "
              "in --outdir, or noresume [default: noresume]", metavar='PKL')
@click.option('--freezed', help='Freeze-D: number of frozen discriminator layers [default: 0]', type=int, default=0, metavar='INT')
# Performance.
@click.option('--fp32', help='Disable mixed-precision training', type=bool, default=False, metavar='BOOL')
@click.option('--nhwc', help='Use NHWC memory format with FP16', type=bool, default=False, metavar='BOOL')
@click.option('--allow-tf32', help='Allow TF32 for matmul and convolutions', type=bool, default=False, metavar='BOOL')
@click.option('--nobench', help='Disable cuDNN benchmarking', type=bool, default=False, metavar='BOOL')
@click.option('--workers', help='DataLoader worker processes [default: 3]', type=int, default=3, metavar='INT')
# Logging.
@click.option('--wandb', 'wandb_mode', help='Weights & Biases: online, offline or disabled [default: disabled]', default='disabled', metavar='MODE')
@click.option('--wandb-project', help='W&B project', metavar='NAME')
@click.option('--wandb-name', help='W&B run name [default: the run directory name]', metavar='NAME')
@click.option('--wandb-tags', help='Comma-separated W&B tags', metavar='LIST')
# The domain-expansion fork's names, accepted as aliases (a note says what they map to).
@click.option('--wandb_log', help='Fork alias: true = --wandb offline, false = --wandb disabled', type=bool, metavar='BOOL')
@click.option('--name', help='Fork alias of --wandb-name (the run directory stays numbered under --outdir)', metavar='NAME')
@click.option('--tag', help='Fork alias: one more W&B tag (like --wandb-tags)', metavar='TAG')
# Domain expansion.
@click.option('--expansion_cfg_file', help='Expansion config (JSON): train a domain-expansion run', metavar='CFG')
@click.option('--latent_factors_path', help='Saved latent basis (torch.save) [default: factorize G_ema]', metavar='PATH')
@click.option('--subspace_distance', help=f'Step along a repurposed direction [default: {expansion_defaults.SUBSPACE_DISTANCE:g}]', type=float, metavar='FLOAT')
@click.option('--lambda_src', help=f'Source-domain GAN loss on/off (0 = off; then --data is optional) [default: {expansion_defaults.LAMBDA_SRC:g}]', type=float, metavar='FLOAT')
@click.option('--lambda_expand', help=f'Weight of the expansion (task) losses [default: {expansion_defaults.LAMBDA_EXPAND:g}]', type=float, metavar='FLOAT')
@click.option('--lambda_recon_l2', help=f'Weight of the base-subspace L2 reconstruction [default: {expansion_defaults.LAMBDA_RECON_L2:g}]', type=float, metavar='FLOAT')
@click.option('--lambda_recon_lpips', help=f'Weight of the base-subspace LPIPS reconstruction [default: {expansion_defaults.LAMBDA_RECON_LPIPS:g}]', type=float, metavar='FLOAT')
@click.option('--replay_noise', help='Noise of the frozen replay render: independent (official) or shared with the '
              'trained render (less base drift) [default: independent]', type=click.Choice(['independent', 'shared']))
@click.option('--class_conditional', help='Train the paper\'s class-conditional baseline (Appendix B) on the same '
              '--expansion_cfg_file tasks instead of expanding: class 0 = source, class k = task k [default: 0]',
              type=bool, default=False, metavar='BOOL')
@click.option('--glr', help='Not official: G learning rate [default: from --cfg]', type=float, metavar='FLOAT')
@click.option('--g_beta1', help='Not official: Adam beta1 of G [default: from --cfg, 0]', type=float, metavar='FLOAT')
@click.option('--affine_lr_mult', help='Not official: learning-rate multiplier of G\'s affine (style) layers '
              '[default: 1]', type=float, metavar='FLOAT')
@click.option('--glr_decay', help='Not official: decay G\'s learning rate linearly to 0 over this last fraction of '
              '--kimg [default: 0, constant]', type=float, metavar='FRACTION')
@click.option('--resume_from_ema', help='Not official: start the trained G (and the expansion\'s frozen replay copy) '
              'from the --resume pickle\'s G_ema instead of its G [default: 0]', type=bool, default=False,
              metavar='BOOL')
def main(outdir, dry_run, gpus, wandb_mode, **flags):
    """Train a StyleGAN2-ADA network (or expand one with --expansion_cfg_file).

    Re-running the same command into the same --outdir continues the newest run whose
    training_options.json equals the new resolved options (ignoring run_dir), from its newest
    snapshot; --resume latest continues the newest run in --outdir with the new options.
    """
    wandb_mode = _fork_aliases(flags, wandb_mode)
    info = distributed.torchrun_info()
    if gpus is None:
        gpus = info.world_size if info is not None else 1
    try:
        # Every user-input problem surfaces here, before anything is created.
        check_output_dir(outdir, '--outdir')
        options = setup_training_options(outdir=outdir, gpus=gpus, wandb=wandb_mode, **flags)
    except (dnnlib.util.UserError, ValueError, FileNotFoundError) as e:
        raise click.ClickException(_one_line(e)) from None
    try:
        result = launch_training(options, outdir, dry_run=dry_run)
    except (dnnlib.util.UserError, _non_finite_error()) as e:
        raise click.ClickException(_one_line(e)) from None
    if result is not None and result.get('last_snapshot'):
        print(f'Last snapshot: {result["last_snapshot"]}')


def _fork_aliases(flags: dict, wandb_mode: str) -> str:
    """Map the domain-expansion fork's --wandb_log, --name, --tag onto our flags (in `flags`),
    saying so; returns the W&B mode."""
    wandb_log, name, tag = flags.pop('wandb_log'), flags.pop('name'), flags.pop('tag')
    if wandb_log is not None:
        # Offline, not online: it needs no account (`wandb sync` uploads later; --wandb online streams).
        wandb_mode = 'offline' if wandb_log else 'disabled'
        print(f'Note: --wandb_log={wandb_log} (domain-expansion fork) is taken as --wandb {wandb_mode}')
    if name is not None:
        flags['wandb_name'] = flags.get('wandb_name') or name
        print(f'Note: --name {name} (domain-expansion fork) is taken as --wandb-name {flags["wandb_name"]}; '
              f'the run directory is still numbered under --outdir')
    if tag is not None:
        flags['wandb_tags'] = ','.join(t for t in (flags.get('wandb_tags'), tag) if t)
        print(f'Note: --tag {tag} (domain-expansion fork) is taken as --wandb-tags {flags["wandb_tags"]}')
    return wandb_mode


def _non_finite_error():
    from training.training_loop import NonFiniteError
    return NonFiniteError


def _one_line(error: Exception) -> str:
    """The message of a user-input error; multi-line messages (e.g. config problems) keep their lines."""
    return str(error).strip() or type(error).__name__


if __name__ == '__main__':
    main()
