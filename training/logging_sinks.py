"""Where the training loop's per-tick statistics go (STYLE.md principle 10): every sink receives
the same `training_stats.Collector.as_dict()` snapshot once per tick.

- `RunLog`: human-readable lines to stdout and `log.txt` (we never replace sys.stdout).
- `JsonlSink`: one JSON line per tick in `stats.jsonl` (always).
- `TensorBoardSink`: `torch.utils.tensorboard` event files in the run dir (when installed).
- `WandbSink`: Weights & Biases, `--wandb online|offline` (off by default). It never asks for a
  login: `online` without credentials is refused by `check_wandb_ready()` before any work, and
  the mode is passed to `wandb.init` directly instead of being set in the process environment.
Only rank 0 creates sinks.
"""

import json
import netrc
import os
import secrets
import urllib.parse

import dnnlib

WANDB_MODES = ('online', 'offline', 'disabled')
WANDB_ID_FILE = 'wandb_run_id.txt'  # Lets a continued run log into the same W&B run.

# ---------------------------------------------------------------------------------------------


class RunLog:
    """Print messages and append them to `<run_dir>/log.txt` (rank 0; other ranks stay quiet)."""

    def __init__(self,
        path: str | None,        # log.txt path; None = stdout only (e.g. --dry-run, tests).
        enabled: bool = True,    # False on ranks other than 0.
    ):
        self.path = path
        self.enabled = enabled
        self._file = open(path, 'at') if (path is not None and enabled) else None

    def __call__(self, message: str = '') -> None:
        if not self.enabled:
            return
        print(message, flush=True)
        if self._file is not None:
            self._file.write(message + '\n')
            self._file.flush()

    def to_file(self, message: str = '') -> None:
        """Append to log.txt only (what a brief console leaves out)."""
        if self._file is not None:
            self._file.write(message + '\n')
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StatsSink:
    """Interface: receive one tick's statistics; `kimg` = training progress, `cur_nimg` = images."""

    def write(self, stats: dict, cur_nimg: int, timestamp: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JsonlSink(StatsSink):
    """`stats.jsonl`: `{name: {num, mean, std}, ..., "timestamp": t}` per tick (official layout)."""

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, 'at')

    def write(self, stats, cur_nimg, timestamp):
        self._file.write(json.dumps(dict(stats, timestamp=timestamp)) + '\n')
        self._file.flush()

    def close(self):
        self._file.close()


class TensorBoardSink(StatsSink):
    """Scalar `mean` of every statistic, step = kimg (or images for runs with sub-kimg ticks)."""

    def __init__(self, run_dir: str, start_time: float, step_in_images: bool):
        import torch.utils.tensorboard as tensorboard  # Imported only when used (slow import).
        self._writer = tensorboard.SummaryWriter(run_dir)
        self._start_time = start_time
        self._step_in_images = step_in_images

    def write(self, stats, cur_nimg, timestamp):
        step = cur_nimg if self._step_in_images else cur_nimg // 1000
        walltime = timestamp - self._start_time
        for name, value in stats.items():
            self._writer.add_scalar(name, value['mean'], global_step=step, walltime=walltime)
        self._writer.flush()

    def close(self):
        self._writer.close()


class WandbSink(StatsSink):
    """Weights & Biases logging of every statistic's mean, keyed by name, with 'Progress/kimg'."""

    def __init__(self,
        run_dir: str,              # W&B files go to <run_dir>/wandb; the run id is kept in WANDB_ID_FILE.
        mode: str,                 # 'online' or 'offline'.
        project: str | None,       # W&B project; None = W&B's default.
        name: str | None,          # Run name; None = the run directory's name.
        tags: list[str] | None,    # Run tags.
        config: dict,              # The resolved training options (shown as the run config).
    ):
        if mode not in ('online', 'offline'):
            raise ValueError(f"--wandb: WandbSink needs mode 'online' or 'offline', got {mode!r}")
        import wandb  # Imported only when used.
        self._wandb = wandb
        run_id = _read_or_create_run_id(run_dir)
        # console='off': W&B must not wrap sys.stdout/stderr; mode is passed here, not via the
        # environment, so nothing process-wide changes.
        settings = wandb.Settings(console='off', silent=True)
        self._run = wandb.init(mode=mode, project=project, name=name or os.path.basename(run_dir),
                               tags=list(tags or []), dir=run_dir, config=config, id=run_id,
                               resume='allow', settings=settings)

    def write(self, stats, cur_nimg, timestamp):
        values = {name: value['mean'] for name, value in stats.items()}
        values['Progress/kimg'] = cur_nimg / 1000
        self._run.log(values)

    def close(self):
        self._run.finish()


def _read_or_create_run_id(run_dir: str) -> str:
    path = os.path.join(run_dir, WANDB_ID_FILE)
    if os.path.isfile(path):
        with open(path, 'rt') as f:
            return f.read().strip()
    run_id = f'{os.path.basename(run_dir)[:40]}-{secrets.token_hex(4)}'
    dnnlib.util.write_text_atomic(path, run_id + '\n')
    return run_id

# ---------------------------------------------------------------------------------------------


def check_wandb_ready(mode: str) -> None:
    """Raise ValueError (naming --wandb) when `mode` is invalid or W&B could not log without
    asking for a login. Called before any work."""
    if mode not in WANDB_MODES:
        raise ValueError(f"--wandb: unknown mode '{mode}'; choose one of {', '.join(WANDB_MODES)}")
    if mode == 'disabled':
        return
    try:
        import importlib.util
        found = importlib.util.find_spec('wandb') is not None
    except ValueError:
        found = False
    if not found:
        raise ValueError(f'--wandb {mode}: the wandb package is not installed; `pip install wandb` or use --wandb disabled')
    if mode == 'online' and not _wandb_credentials_present():
        raise ValueError('--wandb online: no W&B credentials found (WANDB_API_KEY or a ~/.netrc entry); run '
                         '`wandb login` first, or use --wandb offline and `wandb sync` later')


def _wandb_credentials_present() -> bool:
    if os.environ.get('WANDB_API_KEY'):
        return True
    host = urllib.parse.urlparse(os.environ.get('WANDB_BASE_URL', 'https://api.wandb.ai')).hostname
    netrc_path = os.environ.get('NETRC', os.path.join(os.path.expanduser('~'), '.netrc'))
    if not os.path.isfile(netrc_path):
        return False
    try:
        return netrc.netrc(netrc_path).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def make_sinks(run_dir: str, logging_options: dict, options: dict, start_time: float, step_in_images: bool,
               log: RunLog) -> list[StatsSink]:
    """The sinks for a run (rank 0): stats.jsonl always, TensorBoard and W&B as configured.
    A requested sink that cannot start is an error, except TensorBoard when not installed, which
    is reported in the log."""
    sinks: list[StatsSink] = [JsonlSink(os.path.join(run_dir, 'stats.jsonl'))]
    if logging_options.get('tensorboard', True):
        try:
            sinks.append(TensorBoardSink(run_dir, start_time, step_in_images))
        except ImportError as e:
            log(f'TensorBoard: not available ({e}); statistics go to stats.jsonl only')
    wandb_options = logging_options.get('wandb') or {}
    mode = wandb_options.get('mode', 'disabled')
    if mode != 'disabled':
        sinks.append(WandbSink(run_dir, mode, wandb_options.get('project'), wandb_options.get('name'),
                               wandb_options.get('tags'), config=options))
        log(f'W&B: logging {mode}')
    return sinks
