"""The ``vcgate`` command: keys, DIDs, issuing, presenting and verifying credentials.

Exit codes (the contract scripts rely on, also in ``docs/cli.md``):

* 0 - done; for ``verify``: the token is valid.
* 1 - refused or failed: a vcgate error, printed as ``error: <code>: <message>`` on stderr
  (``<code>`` is the stable code of :mod:`vcgate.errors`, or ``io_error`` for a file that
  cannot be read or written); for ``verify --json`` the refusal is JSON on stdout instead.
* 2 - usage error: unknown option, missing argument, bad option value, missing input file.
* 130 - interrupted (Ctrl-C).

Commands are thin: they parse options, call the library, and print. One module per
command group; the helpers they share (passphrases, key loading, durations, token input,
resolvers) and the root ``cli`` group are in :mod:`vcgate.cli.base`:

* ``base``         - root group, exit codes, ``CLIError``, shared helpers
* ``key``          - ``vcgate key new|import|show``
* ``did``          - ``vcgate did resolve``
* ``credentials``  - ``vcgate issue``, ``vcgate present``, ``vcgate verify``
* ``delegation``   - ``vcgate delegate``
* ``status``       - ``vcgate revoke``, ``unrevoke``, ``status``, ``status-list ...``
* ``chain``        - ``vcgate chain dev``, ``vcgate registry deploy``
* ``policy``       - ``vcgate policy check|explain|nginx-snippet`` (bodies in ``policy_report``)
* ``serve``        - ``vcgate serve``
* ``audit``        - ``vcgate audit verify|head|tail``
* ``conformance``  - ``vcgate conformance jose issue|verify`` (the W3C vc-jose-cose suite)

Importing this package registers every command group on ``cli``.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from ..errors import VCGateError
from . import audit, chain, conformance, credentials, delegation, did, init, key, policy, serve, status  # noqa: F401  (register the command groups)
from .base import DEBUG_ENV, EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, CLIError, json_requested, to_cli_error, cli

__all__ = ["cli", "main"]

# --- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run ``cli`` and map every outcome to an exit code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="vcgate", standalone_mode=False)
        code = rv if isinstance(rv, int) else EXIT_OK
    except click.ClickException as exc:  # usage errors (exit 2) and CLIError refusals (exit 1)
        exc.show()
        code = exc.exit_code
    except click.Abort as exc:  # click turns Ctrl-C / Ctrl-D at a prompt into Abort
        # A prompt raises Abort "from None": the interrupt is then only in __context__.
        interrupted = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        click.echo("error: interrupted" if interrupted else "error: aborted", err=True)
        code = EXIT_INTERRUPTED if interrupted else EXIT_REFUSED
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        code = EXIT_INTERRUPTED
    except (VCGateError, OSError) as exc:  # raised outside a command (parameter callbacks)
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            _silence_stdout()
            code = EXIT_REFUSED
        else:
            error = to_cli_error(exc)
            error.as_json = json_requested(args)
            error.show()
            code = EXIT_REFUSED
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        error = CLIError("internal_error", f"{type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)")
        error.as_json = json_requested(args)
        error.show()
        code = EXIT_REFUSED
    sys.exit(code)


def _silence_stdout() -> None:
    # The reader went away (`vcgate ... | head -1`): flushing at exit would fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    main()
