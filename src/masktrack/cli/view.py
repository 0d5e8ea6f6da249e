"""``masktrack view``: open an output folder's Rerun recording in the viewer that ships with rerun-sdk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click


def rerun_executable() -> list[str]:
    """The viewer binary bundled with rerun-sdk (``rerun_cli/rerun``), run directly.

    Why not ``python -m rerun``: that is a Python process that starts the binary as its child, so
    signalling it (or its death) leaves the server running; the binary itself can be owned.
    """
    import importlib.util

    spec = importlib.util.find_spec("rerun_cli")
    if spec is not None and spec.origin:
        exe = Path(spec.origin).parent / ("rerun.exe" if sys.platform.startswith("win") else "rerun")
        if exe.is_file():
            return [str(exe)]
    return [sys.executable, "-m", "rerun"]


def viewer_command(files: list[Path], *, web: bool, port: int, grpc_port: int) -> list[str]:
    """The ``rerun`` command line (the binary bundled with rerun-sdk)."""
    cmd = rerun_executable()
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


def viewer_url(port: int, grpc_port: int) -> str:
    """The address that shows the recording: the web viewer told where its data server is.

    The bare ``http://127.0.0.1:PORT`` opens Rerun's welcome page with nothing loaded.
    """
    from urllib.parse import quote

    return f"http://127.0.0.1:{port}/?url={quote(f'rerun+http://127.0.0.1:{grpc_port}/proxy', safe='')}"


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:PORT can be bound now (as the Rerun server binds it: SO_REUSEADDR)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(avoid: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    import socket

    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            p = int(s.getsockname()[1])
        if p not in avoid:
            return p


def choose_ports(port: int, grpc_port: int, *, explicit_port: bool, explicit_grpc: bool) -> tuple[int, int]:
    """Ports to serve on: a port the user named must be free (exit 2), a default one that is taken is
    replaced by a free one (printed with the URL), so the URL never shows another process's recording."""
    from masktrack.errors import MasktrackError

    probs = []
    chosen = []
    for value, explicit, flag in ((port, explicit_port, "--port"), (grpc_port, explicit_grpc, "--grpc-port")):
        if port_free(value) and value not in chosen:
            chosen.append(value)
        elif explicit:
            probs.append(f"{flag} {value}: port is taken on 127.0.0.1 (another viewer?); pick another")
            chosen.append(value)
        else:
            chosen.append(free_port(set(chosen)))
    if probs:
        raise MasktrackError("; ".join(probs), field=None)
    return chosen[0], chosen[1]


def _wait_listening(proc: subprocess.Popen, ports: tuple[int, ...], timeout: float = 60.0) -> bool:
    """Wait until the server accepts connections on every port (False: it exited first)."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending and time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                pending.pop(0)
        except OSError:
            time.sleep(0.1)
    return not pending and proc.poll() is None


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when masktrack dies, even by SIGKILL."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


def serve_web(files: list[Path], *, port: int, grpc_port: int, open_browser: bool) -> int:
    """Run the Rerun web viewer for FILES until the server exits or masktrack gets SIGINT/SIGTERM/SIGHUP.

    The server runs in its own process group (so a Ctrl-C in the terminal reaches masktrack only) and
    masktrack stops that whole group on the way out; on Linux it also dies with masktrack.
    """
    import collections
    import signal
    import threading

    from masktrack.errors import MasktrackError

    cmd = viewer_command(files, web=True, port=port, grpc_port=grpc_port)
    env = {**os.environ, "RERUN_ANALYTICS": os.environ.get("RERUN_ANALYTICS", "0")}
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
        env=env,
    )
    log: collections.deque[str] = collections.deque(maxlen=40)

    def drain() -> None:  # keep the pipe empty; keep the tail for error messages
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.append(raw.decode("utf-8", "replace").rstrip())

    threading.Thread(target=drain, daemon=True).start()

    def stop() -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass

    class _Stopped(Exception):
        pass

    def on_signal(signum: int, frame: object) -> None:
        # only unwind here: waiting for the server inside the handler would deadlock with the
        # interrupted proc.wait() (it holds the Popen's wait lock)
        raise _Stopped(signum)

    sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {s: signal.signal(s, on_signal) for s in sigs}
    try:
        if not _wait_listening(proc, (port, grpc_port)):
            stop()
            tail = " | ".join(line for line in log if line.strip())[-400:]
            if "already in use" in tail:
                raise MasktrackError(f"port {port} or {grpc_port} is taken on 127.0.0.1; pick others")
            raise MasktrackError(f"the Rerun web viewer did not start (exit {proc.returncode}): {tail}")
        url = viewer_url(port, grpc_port)
        click.echo(url)
        click.echo(
            f"masktrack: serving {', '.join(map(str, files))}: open the URL above (Ctrl-C to stop)", err=True
        )
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        return proc.wait()
    except _Stopped:
        return 0
    finally:
        for s in sigs:
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stop()
        for s, h in old.items():
            signal.signal(s, h)


@click.command("view")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--web",
    is_flag=True,
    help="Serve the web viewer on http://127.0.0.1:PORT instead of opening the native viewer (runs until Ctrl-C).",
)
@click.option(
    "--port",
    type=int,
    default=9090,
    show_default=True,
    help="HTTP port of the web viewer (--web). Named and taken: exit 2; the default taken: a free one is used.",
)
@click.option(
    "--grpc-port",
    type=int,
    default=9876,
    show_default=True,
    help="Port of the data server the web viewer reads from (--web); taken as for --port.",
)
@click.option("--open", "open_browser", is_flag=True, help="With --web: also open the URL in the browser.")
@click.option(
    "--print-path", is_flag=True, help="Only print the recording file(s) that would be opened, one per line."
)
@click.pass_context
def view(
    ctx: click.Context,
    target: Path,
    web: bool,
    port: int,
    grpc_port: int,
    open_browser: bool,
    print_path: bool,
) -> None:
    """Open TARGET's Rerun recording.

    TARGET is a tracking output folder (opens rerun/combined.rrd: the scene and every
    instance merged), a folder of .rrd files (all opened together: files of one job share a
    recording id, so the viewer merges them), or a single .rrd file.

    \b
    Examples:
      masktrack view tracks/                 # native viewer
      masktrack view tracks/ --web           # prints http://127.0.0.1:9090/?url=rerun%2Bhttp...
      masktrack view tracks/ --web --open    # ... and opens it in the browser
      masktrack view tracks/rerun/instances/cube.rrd
      masktrack view tracks/ --print-path
    """
    from masktrack.viz.rerun import find_recording

    files = find_recording(target)
    if print_path:
        for f in files:
            click.echo(str(f))
        return
    if web:
        from click.core import ParameterSource

        port, grpc_port = choose_ports(
            port,
            grpc_port,
            explicit_port=ctx.get_parameter_source("port") != ParameterSource.DEFAULT,
            explicit_grpc=ctx.get_parameter_source("grpc_port") != ParameterSource.DEFAULT,
        )
        raise click.exceptions.Exit(
            serve_web(files, port=port, grpc_port=grpc_port, open_browser=open_browser)
        )
    cmd = viewer_command(files, web=web, port=port, grpc_port=grpc_port)
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise click.ClickException(
            "no display for the native viewer (DISPLAY is not set); use --web, or copy the file and run `rerun FILE` where you have a screen"
        )
    subprocess.Popen(cmd, start_new_session=True)
    click.echo(f"masktrack: opened {', '.join(map(str, files))} in the Rerun viewer", err=True)
