"""``realign-data hub serve DIR``: a local Hugging Face Hub (:mod:`realign_data.publish.hub_server`) to try ``push`` on."""

from __future__ import annotations

from pathlib import Path

import typer

hub_app = typer.Typer(
    help="A local Hugging Face Hub to try `push` and `load_dataset` without the network.", no_args_is_help=True
)


@hub_app.command("serve")
def serve(
    root: Path = typer.Argument(..., help="Folder where the pushed files are written (created if missing)."),
    port: int = typer.Option(0, "--port", help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    token: str = typer.Option("hf_local", "--token", help="The token clients must send (HF_TOKEN)."),
) -> None:
    """Serve a local Hub on HOST:PORT until Ctrl-C; prints the variables a client needs (export them).

    Repos live as long as the server runs; each branch head's files are written under ROOT.
    """
    import signal
    import time

    from realign_data.cli_common import fail
    from realign_data.publish.hub_server import HubServer

    if not 0 <= port <= 65535:
        fail(f"--port must be from 0 to 65535 (got {port}).")
    # Ctrl-C (and SIGTERM) must stop it even when it was started with SIGINT ignored, as a non-interactive shell
    # does for `... &` and as some test runners' workers pass on: Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server = HubServer(root, token=token, user="local", port=port, host=host).start()
    except OSError as e:
        fail(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port (0: any free one).", 1)
    try:  # the signal may come as soon as the address is printed
        typer.echo(
            f"Local Hub at {server.endpoint}, files under {Path(root).resolve()} (Ctrl-C stops it). In the "
            "shell that pushes or loads:"
        )
        typer.echo(
            f"export HF_ENDPOINT={server.endpoint} HF_TOKEN={token} HF_HUB_DISABLE_XET=1 HF_HUB_OFFLINE=0 "
            "HF_DATASETS_OFFLINE=0",
            color=False,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
