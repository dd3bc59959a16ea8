"""One HTML page summarising a training or expansion run directory.

    python -m scripts.report RUN_DIR          # or: python scripts/report.py RUN_DIR

Writes `RUN_DIR/report.html` with
- the expansion config (`expansion_cfg.json`, else `loss_kwargs.expansion_cfg` of
  `training_options.json`) and the main training options;
- the metrics table (every `metric-*.jsonl`: one row per evaluated snapshot);
- loss curves: one PNG plot per statistics group of `stats.jsonl` (a group is a name without
  its last part: `Loss/G/loss` and `Loss/G/reg` are plotted together as `Loss/G`;
  `Loss/domain/<task>` as `Loss/domain`), the mean per tick against `Progress/kimg`;
- the image grids of the run (`fakes*.png`, expansion grids and any other top-level PNG),
  grouped per snapshot, newest first.

Images and plots are referenced by relative paths (plots go to `RUN_DIR/report_files/`), so the
folder can be copied or served as it is. This file imports no project module (only the standard
library and matplotlib), so both invocations above work from anywhere.
"""

import argparse
import html
import json
import os
import re
import sys
import urllib.parse

PLOTS_DIR = 'report_files'
REPORT_NAME = 'report.html'
STATS_NAME = 'stats.jsonl'
KIMG_RE = re.compile(r'^(?P<prefix>.*?)(?P<kimg>\d+(?:\.\d+)?)\.png$')  # fakes000123.png, fakes000000.004.png

# ---------------------------------------------------------------------------------------------


class ReportError(Exception):
    """Bad input (missing run dir or statistics); the command line prints it as one line."""

# ---------------------------------------------------------------------------------------------
# Reading the run directory.


def read_jsonl(path: str) -> list[dict]:
    """The JSON objects of a .jsonl file; a line that does not parse is a ReportError naming it
    (except a truncated last line, which a running training job may be writing)."""
    with open(path, 'r', encoding='utf-8') as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                break  # Being written right now.
            raise ReportError(f'{path}: line {number} is not JSON ({e.msg})') from None
        if not isinstance(value, dict):
            raise ReportError(f'{path}: line {number} is not a JSON object')
        records.append(value)
    return records


def read_stats(run_dir: str) -> list[dict]:
    """The ticks of `stats.jsonl`; ReportError when the run has none."""
    path = os.path.join(run_dir, STATS_NAME)
    if not os.path.isfile(path):
        raise ReportError(f'{run_dir}: no {STATS_NAME}; give a run directory written by train.py '
                          f'(it appears after the first tick)')
    ticks = read_jsonl(path)
    if not ticks:
        raise ReportError(f'{path}: no statistics yet (empty file); wait for the first tick')
    return ticks


def stat_groups(ticks: list[dict]) -> dict[str, list[str]]:
    """`{group: [stat names]}` of every statistic with a mean, groups and names sorted;
    `Progress/kimg` and `timestamp` are the x axes, not plotted."""
    groups: dict[str, set] = {}
    for tick in ticks:
        for name, value in tick.items():
            if name in ('timestamp', 'Progress/kimg') or not isinstance(value, dict) or 'mean' not in value:
                continue
            group = name.rsplit('/', 1)[0] if '/' in name else name
            groups.setdefault(group, set()).add(name)
    return {group: sorted(names) for group, names in sorted(groups.items())}


def tick_x(ticks: list[dict]) -> tuple[list[float], str]:
    """x values of the ticks: `Progress/kimg` when every tick has it, else the tick index."""
    kimg = [tick.get('Progress/kimg', {}).get('mean') if isinstance(tick.get('Progress/kimg'), dict) else None
            for tick in ticks]
    if all(isinstance(x, (int, float)) for x in kimg):
        return [float(x) for x in kimg], 'kimg'
    return [float(i) for i in range(len(ticks))], 'tick'


def read_expansion_config(run_dir: str) -> tuple[dict | None, str | None]:
    """`(config, where it came from)`, or `(None, None)` for a run without expansion."""
    path = os.path.join(run_dir, 'expansion_cfg.json')
    if os.path.isfile(path):
        return _read_json(path), 'expansion_cfg.json'
    options = read_training_options(run_dir)
    cfg = (options or {}).get('loss_kwargs', {}).get('expansion_cfg') if isinstance(options, dict) else None
    return (cfg, 'training_options.json: loss_kwargs.expansion_cfg') if cfg is not None else (None, None)


def read_training_options(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, 'training_options.json')
    return _read_json(path) if os.path.isfile(path) else None


def _read_json(path: str):
    try:
        with open(path, 'r', encoding='utf-8') as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f'{path}: cannot be read as JSON ({e})') from None


def read_metrics(run_dir: str) -> tuple[list[str], list[dict]]:
    """`(columns, rows)`: one row per snapshot (`snapshot_pkl`, else the line's timestamp), one
    column per result key of every `metric-*.jsonl`, in file order."""
    columns: list[str] = []
    rows: dict[str, dict] = {}
    for name in sorted(os.listdir(run_dir)):
        if not (name.startswith('metric-') and name.endswith('.jsonl')):
            continue
        for record in read_jsonl(os.path.join(run_dir, name)):
            results = record.get('results')
            if not isinstance(results, dict):
                continue
            key = str(record.get('snapshot_pkl') or record.get('timestamp', '?'))
            row = rows.setdefault(key, {'snapshot': key})
            for column, value in results.items():
                if column not in columns:
                    columns.append(column)
                row[column] = value
    return columns, list(rows.values())


def image_groups(run_dir: str) -> list[tuple[str, list[str]]]:
    """`[(heading, [png names])]`: top-level PNGs grouped by the kimg number in their name,
    newest snapshot first; names without a number (reals.png, fakes_init.png) come last."""
    by_kimg: dict[float, list[str]] = {}
    other: list[str] = []
    for name in sorted(os.listdir(run_dir)):
        if not name.lower().endswith('.png') or name.startswith('.') or not os.path.isfile(os.path.join(run_dir, name)):
            continue
        match = KIMG_RE.match(name)
        if match is not None:
            by_kimg.setdefault(float(match.group('kimg')), []).append(name)
        else:
            other.append(name)
    groups = [(f'kimg {_format_kimg(kimg)}', names) for kimg, names in sorted(by_kimg.items(), reverse=True)]
    if other:
        groups.append(('start of training and other images', other))
    return groups


def _format_kimg(kimg: float) -> str:
    return f'{kimg:g}' if kimg != int(kimg) else str(int(kimg))

# ---------------------------------------------------------------------------------------------
# Plots.


def plot_group(ticks: list[dict], names: list[str], group: str, path: str) -> None:
    """One PNG: the mean of each statistic in `names` per tick, a +-std band where std > 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Object API: no global backend state.
    from matplotlib.figure import Figure
    x_all, x_label = tick_x(ticks)
    fig = Figure(figsize=(7, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name in names:
        points = [(x, tick[name]['mean'], tick[name].get('std', 0.0) or 0.0) for x, tick in zip(x_all, ticks)
                  if isinstance(tick.get(name), dict) and isinstance(tick[name].get('mean'), (int, float))]
        if not points:
            continue
        xs, means, stds = zip(*points)
        label = name[len(group) + 1:] if name.startswith(group + '/') else name
        line, = ax.plot(xs, means, marker='.' if len(xs) < 30 else None, linewidth=1.2, label=label)
        if any(s > 0 for s in stds):
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_title(group)
    ax.set_xlabel(x_label)
    ax.grid(alpha=0.3)
    if len(names) > 1:
        ax.legend(fontsize='small', loc='best')
    fig.tight_layout()
    fig.savefig(path, format='png')


def _plot_file_name(group: str) -> str:
    return 'stats_' + (re.sub(r'[^A-Za-z0-9_-]+', '_', group).strip('_') or 'stats') + '.png'

# ---------------------------------------------------------------------------------------------
# HTML.


def _src(relative_path: str) -> str:
    return html.escape(urllib.parse.quote(relative_path.replace(os.sep, '/')), quote=True)


def _format_value(value) -> str:
    if isinstance(value, float):
        return f'{value:.6g}'
    return html.escape(str(value))


def _config_html(cfg: dict | None, source: str | None) -> str:
    if cfg is None:
        return '<p>No expansion config (a plain StyleGAN2 run).</p>'
    parts = [f'<p>From <code>{html.escape(source)}</code>.</p>']
    tasks = cfg.get('tasks') if isinstance(cfg, dict) else None
    if isinstance(tasks, list) and tasks:
        parts.append('<table><tr><th>#</th><th>type</th><th>dimension</th><th>args</th></tr>')
        for i, task in enumerate(tasks):
            task = task if isinstance(task, dict) else {}
            args = json.dumps(task.get('args', {}), sort_keys=True)
            cells = [str(i), html.escape(str(task.get('type', '?'))), html.escape(str(task.get('dimension', 'auto'))),
                     f'<code>{html.escape(args)}</code>']
            parts.append('<tr>' + ''.join(f'<td>{cell}</td>' for cell in cells) + '</tr>')
        parts.append('</table>')
    parts.append(f'<pre>{html.escape(json.dumps(cfg, indent=2, sort_keys=True))}</pre>')
    return '\n'.join(parts)


def _options_html(options: dict | None) -> str:
    if options is None:
        return '<p>No training_options.json.</p>'
    keys = ('resume_pkl', 'total_kimg', 'batch_size', 'num_gpus', 'random_seed', 'metrics', 'desc')
    rows = ''.join(f'<tr><th>{html.escape(k)}</th><td>{_format_value(options[k])}</td></tr>' for k in keys if k in options)
    return (f'<table>{rows}</table><details><summary>all options</summary>'
            f'<pre>{html.escape(json.dumps(options, indent=2, sort_keys=True))}</pre></details>')


def _metrics_html(columns: list[str], rows: list[dict]) -> str:
    if not rows:
        return '<p>No metrics (no metric-*.jsonl).</p>'
    head = ''.join(f'<th>{html.escape(c)}</th>' for c in ['snapshot'] + columns)
    body = ''.join('<tr>' + ''.join(f'<td>{_format_value(row.get(c, ""))}</td>' for c in ['snapshot'] + columns) + '</tr>'
                   for row in rows)
    return f'<table><tr>{head}</tr>{body}</table>'


def _images_html(groups: list[tuple[str, list[str]]]) -> str:
    if not groups:
        return '<p>No image grids.</p>'
    parts = []
    for heading, names in groups:
        parts.append(f'<h3>{html.escape(heading)}</h3>')
        for name in names:
            parts.append(f'<figure><img src="{_src(name)}" alt="{html.escape(name)}">'
                         f'<figcaption>{html.escape(name)}</figcaption></figure>')
    return '\n'.join(parts)


STYLE = ('body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;margin:.5em 0} '
         'td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:90%} '
         'figure{display:inline-block;margin:.4em;vertical-align:top} img{max-width:100%;image-rendering:pixelated} '
         'pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:30em}')

# ---------------------------------------------------------------------------------------------


def make_report(run_dir: str) -> str:
    """Write `run_dir/report.html` (and its plots in `run_dir/report_files/`); returns its path.

    Raises ReportError when `run_dir` is not a folder or has no statistics.
    """
    if not os.path.isdir(run_dir):
        raise ReportError(f'{run_dir}: no such run directory')
    ticks = read_stats(run_dir)
    cfg, cfg_source = read_expansion_config(run_dir)
    options = read_training_options(run_dir)
    columns, metric_rows = read_metrics(run_dir)
    images = image_groups(run_dir)
    groups = stat_groups(ticks)

    os.makedirs(os.path.join(run_dir, PLOTS_DIR), exist_ok=True)
    plot_parts = []
    for group, names in groups.items():
        relative = os.path.join(PLOTS_DIR, _plot_file_name(group))
        plot_group(ticks, names, group, os.path.join(run_dir, relative))
        plot_parts.append(f'<figure><img src="{_src(relative)}" alt="{html.escape(group)}"></figure>')

    title = os.path.basename(os.path.abspath(run_dir))
    last = ticks[-1].get('Progress/kimg', {}).get('mean') if isinstance(ticks[-1].get('Progress/kimg'), dict) else None
    summary = f'{len(ticks)} ticks' + (f', last at kimg {last:g}' if isinstance(last, (int, float)) else '')
    page = '\n'.join([
        '<!DOCTYPE html>', '<html><head><meta charset="utf-8">', f'<title>{html.escape(title)}</title>',
        f'<style>{STYLE}</style></head><body>',
        f'<h1>{html.escape(title)}</h1>', f'<p>{html.escape(summary)}</p>',
        '<h2>Expansion config</h2>', _config_html(cfg, cfg_source),
        '<h2>Training options</h2>', _options_html(options),
        '<h2>Metrics</h2>', _metrics_html(columns, metric_rows),
        '<h2>Statistics</h2>', '\n'.join(plot_parts) or '<p>No statistics with values.</p>',
        '<h2>Image grids (newest first)</h2>', _images_html(images),
        '</body></html>', ''])
    path = os.path.join(run_dir, REPORT_NAME)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(page)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Write RUN_DIR/report.html: config, metrics, loss plots, image grids.')
    parser.add_argument('run_dir', metavar='RUN_DIR', help='A run directory written by train.py.')
    args = parser.parse_args(argv)
    try:
        path = make_report(args.run_dir)
    except ReportError as e:
        print(f'Error: {e}', file=sys.stderr)
        return 2
    print(os.path.abspath(path))
    return 0


if __name__ == '__main__':
    sys.exit(main())
