"""``masktrack annotate``: click prompts for one video in a local web app."""

from __future__ import annotations

import socket
import threading
import webbrowser
from pathlib import Path

import click

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def default_prompts_path(video: Path) -> Path:
    """``frames/cam0`` -> ``frames/cam0.prompts.json``; ``clip.mp4`` -> ``clip.prompts.json``."""
    video = Path(video)
    base = video.with_suffix("") if video.is_file() else video
    return base.parent / f"{base.name}.prompts.json"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every keep-alive response stalls ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


@click.command("annotate")
@click.argument("video", required=False, type=click.Path(path_type=Path))
@click.option(
    "--prompts",
    "prompts_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Prompt file to edit (created on first save). Default: the config's prompts, else VIDEO.prompts.json beside the video.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pipeline config: its video, prompts, session objects and the backend used for the live preview.",
)
@click.option(
    "--objects", default="", help="Comma-separated object names to offer (e.g. gripper_left,gripper_right)."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on. The app has no login: keep it on localhost.",
)
@click.option(
    "--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="Port (0 picks a free one)."
)
@click.option("--no-browser", is_flag=True, help="Print the address instead of opening a browser.")
def annotate(
    video: Path | None,
    prompts_path: Path | None,
    config_path: Path | None,
    objects: str,
    host: str,
    port: int,
    no_browser: bool,
) -> None:
    """Click positive/negative points and boxes per object on VIDEO (a frame folder or video file) and save a prompt file.

    \b
    In the page: click = positive point, right/shift-click = negative point,
    drag = box, alt-click = delete, Ctrl+Z = undo, ←/→ = frame (shift ±10),
    wheel = zoom, space-drag = pan, P = live preview of the config's backend.
    Saving writes the masktrack.prompts v1 format atomically after the same
    validation as `masktrack prompts`; a file changed by another tab is never
    overwritten silently.

    \b
    Examples:
      masktrack annotate frames/cam0 --objects gripper_left,gripper_right
      masktrack annotate --config job.yaml          # video, prompts and objects from the config
      masktrack annotate clip.mp4 --prompts clip.json --no-browser --port 8765
    """
    try:
        import uvicorn

        from masktrack.annotate.app import create_app
    except ImportError as e:
        raise click.ClickException(
            f"the annotation app needs fastapi and uvicorn ({e}): pip install 'masktrack[annotate]'"
        ) from None
    from masktrack.config import load_config

    cfg = load_config(config_path) if config_path is not None else None
    if video is None:
        if cfg is None:
            raise click.UsageError("give VIDEO or --config")
        video = cfg.video
    if prompts_path is None:
        if cfg is not None and cfg.prompts is not None:
            prompts_path = cfg.prompts
        elif cfg is not None and any(s.prompts for s in cfg.sessions):
            prompts_path = next(s.prompts for s in cfg.sessions if s.prompts)
        else:
            prompts_path = default_prompts_path(video)
    names = [n.strip() for n in objects.split(",") if n.strip()]

    local = host in LOOPBACK
    app = create_app(video, prompts_path, config=cfg, objects=names, allowed_hosts=None if local else ["*"])
    sock = _bind(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}/"
    click.echo(f"masktrack annotate: {video} -> {prompts_path}")
    click.echo(f"open {url}  (Ctrl+C to stop)")
    click.echo(f"scripts save with the header X-Masktrack-Token: {app.state.save_token}")
    if not local:
        click.echo(
            "warning: listening beyond localhost; anyone who can reach this port can read the frames and edit the prompt file",
            err=True,
        )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    if not no_browser:
        threading.Timer(0.5, lambda: webbrowser.open(url)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
