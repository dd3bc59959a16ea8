"""Build each custom op's CUDA plugin and report which implementation will run, and why.

    python -m scripts.check_ops                  # all ops, GPUs visible at build time
    python -m scripts.check_ops --arch 8.0       # build for one compute capability (works without a GPU)
    python -m scripts.check_ops --ops bias_act --verbose

For every op it says what CPU tensors and CUDA tensors will use (reference or kernel) and why
(no GPU, built OK, build failed with the compiler's reason), then the versions, CUDA_HOME,
compiler, build directory and any lock files, which is where hanging builds come from. The exit
code is 1 when a build that was asked for failed, else 0.
"""

import importlib
import os
import time

import click

# Op name -> module holding its CUDA wrapper. The module offers `build_plugin()` (raises
# custom_ops.PluginBuildError on failure); `_get_plugin()` is used when it does not.
OPS = {
    'bias_act': 'torch_utils.ops.bias_act_cuda',
    'upfirdn2d': 'torch_utils.ops.upfirdn2d_cuda',
}


def _build_op(module_name: str) -> tuple[object, str | None]:
    """Import an op's CUDA wrapper and build its plugin. Returns (module or None, failure or None)."""
    from torch_utils import custom_ops
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return None, f'{module_name} cannot be imported ({err}); every tensor uses the reference'
    builder = getattr(module, 'build_plugin', None) or getattr(module, '_get_plugin', None)
    if builder is None:
        return module, f'{module_name} has no build_plugin(); cannot build its kernel'
    saved = custom_ops._fallback
    custom_ops.set_fallback(False)  # the point is to see the build error, not to hide it
    try:
        builder()
    except custom_ops.PluginBuildError as err:
        return module, str(err)
    finally:
        custom_ops._fallback = saved
    return module, None


def _check_one(op: str, cuda_available: bool) -> dict:
    import torch
    from torch_utils import custom_ops
    start = time.time()
    module, failure = _build_op(OPS[op])
    result = dict(op=op, built=failure is None, seconds=time.time() - start, error=failure,
                  cpu='reference (CPU tensors always use the PyTorch reference)')
    if not cuda_available:
        state = 'the plugin built OK' if failure is None else 'the plugin did NOT build'
        result['cuda'] = f'no GPU visible, so no CUDA tensors here ({state}; it is what a GPU run would load)'
    elif failure is None:
        result['cuda'] = 'CUDA kernel'
        self_check = getattr(module, 'self_check', None)
        if self_check is not None:
            err = self_check(torch.device('cuda'))
            result['cuda'] += f' (max abs difference to the reference on a test input: {err:.2e})'
    elif custom_ops.fallback_enabled():
        result['cuda'] = f'reference, because the build failed and {custom_ops.FALLBACK_ENV}/set_fallback allows it'
    else:
        result['cuda'] = (f'ERROR: the build failed, so CUDA tensors with impl=cuda raise; set '
                          f'{custom_ops.FALLBACK_ENV}=ref to use the slower reference')
    return result


def check_ops(ops: list[str] | None = None, arch: str | None = None, verbose: bool = False,
              echo=print) -> dict:
    """Build the plugins of `ops` (default: all) and describe the environment.

    Args:
        ops:     op names from OPS; None checks all.
        arch:    TORCH_CUDA_ARCH_LIST for these builds (e.g. '8.0', '8.6+PTX'); None keeps the
                 environment's value (torch then targets the visible GPUs).
        verbose: print the compiler output while building and every detail of the environment.
        echo:    function printing one line.
    Returns:
        dict(ops=[per-op results], environment=custom_ops.describe_environment()).
    """
    unknown = sorted(set(ops or []) - set(OPS))
    if unknown:
        raise click.UsageError(f'--ops: unknown op(s) {unknown}; choose from {sorted(OPS)}')
    import torch
    from torch_utils import custom_ops
    saved_arch, saved_verbosity = os.environ.get('TORCH_CUDA_ARCH_LIST'), custom_ops._verbosity
    try:
        if arch is not None:
            os.environ['TORCH_CUDA_ARCH_LIST'] = arch
        custom_ops.set_verbosity('full' if verbose else 'brief')
        results = [_check_one(op, torch.cuda.is_available()) for op in (ops or list(OPS))]
        env = custom_ops.describe_environment()
    finally:
        custom_ops._verbosity = saved_verbosity
        if arch is not None:
            if saved_arch is None:
                os.environ.pop('TORCH_CUDA_ARCH_LIST', None)
            else:
                os.environ['TORCH_CUDA_ARCH_LIST'] = saved_arch
    _print_report(results, env, verbose, echo)
    return dict(ops=results, environment=env)


def _print_report(results: list[dict], env: dict, verbose: bool, echo) -> None:
    for r in results:
        echo(f'[{r["op"]}] build: {"OK" if r["built"] else "FAILED"} ({r["seconds"]:.1f} s)')
        echo(f'  CPU tensors:  {r["cpu"]}')
        echo(f'  CUDA tensors: {r["cuda"]}')
        if r['error']:
            lines = r['error'].splitlines()
            for line in lines if verbose else lines[:3] + ['  (run with --verbose for the full report)']:
                echo('  | ' + line)
    echo(f'torch {env["torch"]} (CUDA {env["torch_cuda"]}), python {env["python"]}, GPUs: {env["gpus"] or "none visible"}')
    echo(f'CUDA_HOME {env["cuda_home"] or "not found"} [{env["cuda_home_source"]}]; nvcc {env["nvcc"] or "not found"}'
         f' (on PATH: {env["nvcc_on_path"] or "none"})')
    echo(f'compiler {env["cxx"]}: {env["cxx_version"] or "not found"}; ninja {env["ninja"] or "not found"}')
    echo(f'TORCH_CUDA_ARCH_LIST={env["torch_cuda_arch_list"] or "<unset>"}; build root {env["build_root"]}')
    echo(f'fallback to reference allowed: {env["fallback_enabled"]}')
    held = [lock for lock in env['lock_files'] if lock['held']]
    for lock in env['lock_files'] if verbose else held:
        owner = lock['owner'] or {}
        state = {True: 'HELD', False: 'free (harmless)', None: 'unknown'}[lock['held']]
        echo(f'lock {lock["path"]}: {state}, {lock["age_s"] / 60:.0f} min old'
             + (f', by pid {owner.get("pid")} on {owner.get("host")}' if owner else ''))
    if held:
        echo('A held lock means a build is running (or hung). If its process is gone, delete the lock file.')
    elif not verbose:
        echo(f'no held lock files ({len(env["lock_files"])} free leftover(s); --verbose lists them)')


@click.command()
@click.option('--ops', 'ops', multiple=True, help=f'Op to check (repeatable); default all of {sorted(OPS)}')
@click.option('--arch', default=None, help="TORCH_CUDA_ARCH_LIST for the builds, e.g. '8.0' or '8.6+PTX'")
@click.option('--verbose', is_flag=True, help='Show compiler output and every environment detail')
def main(ops: tuple[str, ...], arch: str | None, verbose: bool) -> None:
    """Build each custom op and report which implementation runs and why."""
    report = check_ops(list(ops) or None, arch=arch, verbose=verbose, echo=click.echo)
    failed = [r['op'] for r in report['ops'] if not r['built']]
    if failed:
        raise click.ClickException(f'build failed for {", ".join(failed)}; see the report above '
                                   f'(rerun with --verbose for compiler output)')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
