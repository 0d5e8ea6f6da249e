"""``masktrack view``: open an output folder's Rerun recording in the viewer that ships with rerun-sdk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click


def viewer_command(files: list[Path], *, web: bool, port: int, grpc_port: int) -> list[str]:
    """The ``rerun`` command line (the binary bundled with rerun-sdk, run as ``python -m rerun``)."""
    cmd = [sys.executable, "-m", "rerun"]
    if web:
        cmd += [
            "--web-viewer",
            "--bind",
            "127.0.0.1",
            "--web-viewer-port",
            str(port),
            "--port",
            str(grpc_port),
        ]
    return cmd + [str(f) for f in files]


@click.command("view")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--web",
    is_flag=True,
    help="Serve the web viewer on http://127.0.0.1:PORT instead of opening the native viewer (runs until Ctrl-C).",
)
@click.option(
    "--port", type=int, default=9090, show_default=True, help="HTTP port of the web viewer (--web)."
)
@click.option(
    "--grpc-port",
    type=int,
    default=9876,
    show_default=True,
    help="Port of the data server the web viewer reads from (--web).",
)
@click.option(
    "--print-path", is_flag=True, help="Only print the recording file(s) that would be opened, one per line."
)
def view(target: Path, web: bool, port: int, grpc_port: int, print_path: bool) -> None:
    """Open TARGET's Rerun recording.

    TARGET is a tracking output folder (opens rerun/combined.rrd: the scene and every
    instance merged), a folder of .rrd files (all opened together: files of one job share a
    recording id, so the viewer merges them), or a single .rrd file.

    \b
    Examples:
      masktrack view tracks/                 # native viewer
      masktrack view tracks/ --web           # web viewer on http://127.0.0.1:9090
      masktrack view tracks/rerun/instances/cube.rrd
      masktrack view tracks/ --print-path
    """
    from masktrack.viz.rerun import find_recording

    files = find_recording(target)
    if print_path:
        for f in files:
            click.echo(str(f))
        return
    cmd = viewer_command(files, web=web, port=port, grpc_port=grpc_port)
    if web:
        click.echo(
            f"masktrack: serving {', '.join(map(str, files))} at http://127.0.0.1:{port} (Ctrl-C to stop)",
            err=True,
        )
        try:
            code = subprocess.call(cmd)
        except KeyboardInterrupt:
            code = 0
        raise click.exceptions.Exit(code)
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise click.ClickException(
            "no display for the native viewer (DISPLAY is not set); use --web, or copy the file and run `rerun FILE` where you have a screen"
        )
    subprocess.Popen(cmd, start_new_session=True)
    click.echo(f"masktrack: opened {', '.join(map(str, files))} in the Rerun viewer", err=True)
