"""The ``blkfuzz`` command line.

Exit codes (the contract the README documents): 0 ran and found nothing, 1 findings, 2 bad input
(one line naming what and where; nothing written is lost), 3 internal error, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import click

from simkernel.errors import BlkfuzzError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
#: the output pipe closed early (128 + SIGPIPE, what a shell reports for a process SIGPIPE killed)
EXIT_SIGPIPE = 141


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _fail(code: int, message: str) -> NoReturn:
    click.echo(message, err=True)
    raise _Exit(code)


def _guard(fn: Callable[..., int]) -> Callable[..., None]:
    """Map errors to the exit-code contract; never show a traceback for bad input."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = fn(*args, **kwargs)
        except BlkfuzzError as err:
            _fail(EXIT_BAD_INPUT, f"blkfuzz: error: {err}")
        except click.ClickException as err:  # a usage error found after parsing
            _fail(EXIT_BAD_INPUT, f"blkfuzz: error: {err.format_message()}")
        except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
            _fail(EXIT_BAD_INPUT, f"blkfuzz: error: {err.filename}: {err.strerror}")
        except KeyboardInterrupt:
            _fail(EXIT_INTERRUPTED, "blkfuzz: interrupted")
        except BrokenPipeError:
            # the reader went away (``blkfuzz show P | head``): stop quietly, as a process killed by
            # SIGPIPE would, and keep the interpreter's final flush from failing on the dead pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise _Exit(EXIT_SIGPIPE) from None
        except _Exit:
            raise
        except Exception as err:  # an internal error: short by default, full with BLKFUZZ_DEBUG
            if os.environ.get("BLKFUZZ_DEBUG"):
                traceback.print_exc()
            _fail(EXIT_INTERNAL, f"blkfuzz: internal error: {type(err).__name__}: {err}")
        raise _Exit(code)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="blkfuzz")
def cli() -> None:
    """blkfuzz: find data-loss races in a simulation of the Linux buffered-I/O stack."""
    # user variants are named by import path ("mypkg.myfix:NoCookie"): resolve them against the
    # current directory, as `python -m` does (worker processes inherit sys.path)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _program_paths(paths: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(path.rglob("*.json")))
        else:
            out.append(path)
    return out


@cli.command()
@click.argument("programs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--image-out", type=click.Path(dir_okay=False), help="Write the final disk image here (one program)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document per program instead of text.")
@click.option("--variant", "variants", multiple=True, help="Add a variant (name or package.module:Class).")
@_guard
def replay(programs: tuple[str, ...], image_out: str | None, as_json: bool, variants: tuple[str, ...]) -> int:
    """Run programs (files or directories of .json) and report what happened.

    Exit 1 when any program produced a finding, 0 when all were clean.
    """
    from fuzz.program import load_program_file
    from fuzz.verdict import judge

    paths = _program_paths(programs)
    if image_out and len(paths) != 1:
        raise click.UsageError("--image-out takes exactly one program")
    any_finding = False
    for path in paths:
        program = load_program_file(path)
        if variants:
            program = program.with_variants(tuple(dict.fromkeys((*program.variants, *variants))))
        verdict = judge(program)
        any_finding = any_finding or bool(verdict.findings)
        if image_out and verdict.execution.image is not None:
            Path(image_out).write_bytes(verdict.execution.image.tobytes())
        if as_json:
            click.echo(json.dumps(verdict.to_json(str(path)), sort_keys=True))
        else:
            click.echo(verdict.render(str(path)))
    return EXIT_FINDINGS if any_finding else EXIT_OK


@cli.command()
@click.option(
    "--variant", "variants", multiple=True, help="Variant to fuzz (repeatable; name or package.module:Class)."
)
@click.option("--time", "time_limit", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@click.option("--runs", type=click.IntRange(min=0), help="Stop after this many executions.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the search.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: all cores; 1 runs in this process).",
)
@click.option(
    "--campaign",
    "campaign_dir",
    type=click.Path(file_okay=False),
    default="blkfuzz-campaign",
    show_default=True,
    help="Campaign directory (created, or resumed if it holds a campaign).",
)
@click.option("--stop-on-first", is_flag=True, help="Stop at the first new finding.")
@click.option(
    "--stats-json", type=click.Path(dir_okay=False), help="Keep the latest status as JSON in this file."
)
@click.option("--stop-file", type=click.Path(dir_okay=False), help="Stop cleanly when this file appears.")
@click.option("--cluster", help="Run the workers on a Dask cluster (tcp://HOST:8786).")
@click.option("--no-minimize", is_flag=True, help="Do not minimize new findings.")
@click.option(
    "--minimize-time",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds each.",
)
@_guard
def fuzz(
    variants: tuple[str, ...],
    time_limit: float | None,
    runs: int | None,
    seed: int,
    jobs: int | None,
    campaign_dir: str,
    stop_on_first: bool,
    stats_json: str | None,
    stop_file: str | None,
    cluster: str | None,
    no_minimize: bool,
    minimize_time: float,
) -> int:
    """Search programs and interleavings for findings; write them under the campaign directory.

    Exit 0 when the campaign holds no finding, 1 when it does, 130 when interrupted (the campaign
    directory is complete either way: run the same command again to resume).
    """
    from fuzz.campaign import Campaign, signature_id
    from fuzz.hub import Hub, InlineBackend
    from fuzz.status import StatusDisplay
    from fuzz.workers import Backend, DaskBackend, LocalBackend
    from simkernel.variants import resolve_variants

    if time_limit is not None and runs is not None:
        raise click.UsageError("give --time or --runs, not both")
    resolve_variants(variants)  # an unknown name is bad input before anything is created
    backend: Backend
    if cluster:
        backend = DaskBackend(cluster)
    elif (jobs or os.cpu_count() or 1) == 1:
        backend = InlineBackend()
    else:
        backend = LocalBackend(jobs or os.cpu_count() or 1)
    display = StatusDisplay(stats_json=stats_json)
    interrupted = False
    try:
        with Campaign.open(campaign_dir, tuple(variants), seed=seed) as camp:
            for line in camp.problems:
                click.echo(f"blkfuzz: warning: {line}", err=True)
            hub = Hub(
                camp,
                backend,
                variants,
                seed=seed,
                minimize=not no_minimize,
                minimize_time=minimize_time,
                stop_on_first=stop_on_first,
                status=display,
                stop_file=stop_file,
            )
            try:
                summary = hub.run(time_limit=time_limit, runs=runs)
                final = summary.status
            except KeyboardInterrupt:
                interrupted = True
                final = hub.status()
            display.close(final)
            findings = sorted(camp.findings.values(), key=lambda r: r.signature)
            click.echo(final.line(), err=True)
            for rec in findings:
                where = Path(campaign_dir) / "findings" / signature_id(rec.signature)
                click.echo(f"[{rec.category}] {rec.title}  ({where})")
    finally:
        backend.close()
    if interrupted:
        click.echo("blkfuzz: interrupted (run the same command again to resume)", err=True)
        return EXIT_INTERRUPTED
    return EXIT_FINDINGS if findings else EXIT_OK


@cli.command()
@click.argument("program", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the result."
)
@click.option("--signature", help="Finding to keep (default: the program's expect, else its first finding).")
@click.option("--time", "time_limit", type=click.FloatRange(min=1), default=60.0, show_default=True)
@_guard
def minimize(program: str, output: str, signature: str | None, time_limit: float) -> int:
    """Shrink PROGRAM to a smallest program that shows the same finding; write it to OUTPUT."""
    import time

    from fuzz.campaign import atomic_write
    from fuzz.minimize import minimize as shrink
    from fuzz.program import Expect, dump_program, load_program_file
    from fuzz.verdict import judge

    prog = load_program_file(program)
    sigs = judge(prog).signatures()
    if signature is None:
        want = prog.expect.signature if prog.expect is not None and prog.expect.signature else None
        signature = want if want in sigs else (sigs[0] if sigs else None)
    if signature is None or signature not in sigs:
        what = f"finding {signature!r}" if signature else "a finding"
        _fail(EXIT_BAD_INPUT, f"blkfuzz: error: {program}: the program does not show {what}")
    t0 = time.monotonic()
    small = replace(shrink(prog, signature, time_limit=time_limit), expect=Expect("finding", signature))
    atomic_write(Path(output), dump_program(small))
    click.echo(
        f"{program}: {prog.n_threads} threads {prog.n_syscalls} syscalls {len(prog.schedule)} decisions -> "
        f"{small.n_threads} threads {small.n_syscalls} syscalls {len(small.schedule)} decisions "
        f"in {time.monotonic() - t0:.1f}s ({signature}); wrote {output}"
    )
    return EXIT_FINDINGS


@cli.command()
@click.argument("program", type=click.Path(dir_okay=False))
@_guard
def show(program: str) -> int:
    """Show PROGRAM and its interleaving as a timeline, one column per thread and actor."""
    from fuzz.program import load_program_file
    from fuzz.timeline import render_program
    from fuzz.verdict import judge

    verdict = judge(load_program_file(program))
    click.echo(render_program(verdict.execution))
    click.echo("")
    click.echo(verdict.render(program))
    return EXIT_FINDINGS if verdict.findings else EXIT_OK


@cli.command()
@click.argument("campaign_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False))
@_guard
def report(campaign_dir: str, output: str) -> int:
    """Write a self-contained HTML report of CAMPAIGN_DIR (findings, timelines, plots)."""
    from fuzz.report_html import write_report

    path = write_report(campaign_dir, output)
    click.echo(f"wrote {path}")
    return EXIT_OK


@cli.command(name="variants")
@_guard
def variants_cmd() -> int:
    """List the built-in variants."""
    from simkernel.variants import builtin_variants

    for name, cls in builtin_variants().items():
        click.echo(f"{name:20} {cls.kind:5} {cls.description}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        cli.main(args=argv, standalone_mode=False)
    except _Exit as e:
        sys.exit(e.code)
    except click.exceptions.Abort:
        click.echo("blkfuzz: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_BAD_INPUT)
    except SystemExit as e:  # --help / --version
        sys.exit(e.code if isinstance(e.code, int) else 0)
    sys.exit(EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
