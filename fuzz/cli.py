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
from pathlib import Path
from typing import Any, NoReturn

import click

from simkernel.errors import BlkfuzzError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


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
        except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
            _fail(EXIT_BAD_INPUT, f"blkfuzz: error: {err.filename}: {err.strerror}")
        except KeyboardInterrupt:
            _fail(EXIT_INTERRUPTED, "blkfuzz: interrupted")
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
