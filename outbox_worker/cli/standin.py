"""`outbox-worker standin`: the local stand-in for Ravelin's registration endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from outbox_worker.standin import Latency


def _latency(ctx: click.Context, param: click.Parameter, value: str) -> Latency:
    """--latency as seconds, fixed ("0.05") or a uniform range ("0.03-0.12"); else exit 2."""
    # Imported here: the stand-in (aiohttp) loads only when this command runs.
    from outbox_worker.standin import parse_latency

    try:
        return parse_latency(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command("standin")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port", default=8765, show_default=True, type=int, help="Port (0 picks a free one)."
)
@click.option(
    "--api-key", default="sk_test_standin", show_default=True, help="Key the stand-in accepts."
)
@click.option(
    "--latency",
    default="0",
    show_default=True,
    metavar="SECONDS|LOW-HIGH",
    callback=_latency,
    help="Delay every answer by this many seconds, or by a uniform draw from LOW-HIGH "
    "(e.g. 0.03-0.12, as a remote API answers).",
)
@click.option(
    "--seed",
    default=None,
    type=int,
    help="Seed the latency draws, so equal runs draw equal delays [default: random].",
)
@click.option(
    "--ready-file",
    default=None,
    metavar="PATH",
    help="Write the endpoint URL here once listening (for scripts that wait for it).",
)
@click.option("--allow-remote", is_flag=True, help="Allow a non-loopback --host (containers).")
def standin_command(
    host: str,
    port: int,
    api_key: str,
    latency: Latency,
    seed: int | None,
    ready_file: str | None,
    allow_remote: bool,
) -> None:
    """Run the local stand-in for Ravelin's registration endpoint (for trials and benchmarks).

    It prints `standin listening on URL` once ready and runs until SIGTERM or Ctrl-C. Faults
    (statuses, scripts, dropped connections, latency) are set at run time through its control
    API: POST /_standin/faults, GET /_standin/received, POST /_standin/reset (see the
    outbox_worker.standin docstring).

    \b
    Examples:
      outbox-worker standin --port 8765 &
      OUTBOX_ENDPOINT_URL=http://127.0.0.1:8765/v2/registration \\
        OUTBOX_API_KEY=sk_test_standin outbox-worker run
      outbox-worker standin --port 0 --latency 0.03-0.12 --seed 7 --ready-file /tmp/url
    """
    # Imported here: the stand-in (aiohttp) loads only when this command runs.
    from outbox_worker.cli.run import run_async
    from outbox_worker.standin import StandIn, serve

    standin = StandIn(
        api_key, host=host, port=port, allow_remote=allow_remote, latency=latency, seed=seed
    )
    try:
        run_async(lambda: serve(standin, ready_file))
    except OSError as exc:  # the port is taken, the address is not this host's
        raise click.ClickException(f"the stand-in cannot listen on {host}:{port}: {exc}") from None


def register(group: click.Group) -> None:
    """Add `standin` to the CLI group."""
    group.add_command(standin_command)
