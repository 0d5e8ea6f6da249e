"""Entry point of the ``masktrack`` command.

Subcommands live in their own modules and are imported only when invoked, so
``masktrack --help`` stays fast and never imports a model library.  User
errors (:class:`masktrack.errors.MasktrackError`) print one line per problem
and exit with code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from masktrack import __version__
from masktrack.errors import EnvironmentProblem, MasktrackError, environment_error

# command name -> ("module", "attribute", short help shown in `masktrack --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "segment": (
        "masktrack.cli.segment",
        "segment",
        "Run a config's segmentation sessions into the mask store.",
    ),
    "prompts": ("masktrack.cli.prompts", "prompts", "Validate and convert prompt files."),
    "backends": ("masktrack.cli.segment", "backends", "List segmentation backends."),
    "eval": ("masktrack.cli.eval", "eval_group", "Evaluate masks against ground truth (DAVIS J&F)."),
    "compose": (
        "masktrack.cli.compose",
        "compose",
        "Compose session masks and export PNG folders for inpainting.",
    ),
    "preview": ("masktrack.cli.compose", "preview", "Contact sheet and overlay video of masks."),
    "scene": ("masktrack.cli.track", "scene", "Import and inspect multi-view RGB-D scenes."),
    "instances": ("masktrack.cli.track", "instances", "List and verify a scene's instances."),
    "track": ("masktrack.cli.track", "track", "Track each instance's query points in 3D."),
    "view": ("masktrack.cli.view", "view", "Open an output folder's Rerun recording."),
    "demo": ("masktrack.cli.demo", "demo", "The whole job on a synthetic robot scene, no weights needed."),
    "annotate": ("masktrack.cli.annotate", "annotate", "Click prompts in a local web app."),
    "batch": ("masktrack.cli.batch", "batch", "Run a pipeline over a whole dataset, resumably."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            reason = str(exc)

            @click.command(name=name, help=COMMANDS[name][2])
            def unavailable() -> None:
                raise click.ClickException(f"command {name!r} is not available: {reason}")

            return unavailable

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="masktrack")
def cli() -> None:
    """masktrack: object masks and per-object 3D point tracks from robot-manipulation recordings.

    \b
    Typical job:
      masktrack demo out/                  # the whole job on a synthetic scene
      masktrack annotate frames/ --objects gripper_left,gripper_right
      masktrack segment job.yaml           # isolated sessions -> mask store
      masktrack compose job.yaml           # arm_only = dilate(arm,15) - dilate(gripper,15)
      masktrack preview job.yaml           # contact sheet + overlay video
      masktrack track scene/ --out tracks/ --rerun
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one-line messages with exit code 2."""
    try:
        # Not standalone, click *returns* the code of a raised `click.exceptions.Exit` instead of exiting
        # (`masktrack demo` exits 1 when a quality check fails); a command's own return value is None.
        rv = cli.main(args=argv, prog_name="masktrack", standalone_mode=False)
        if isinstance(rv, int):
            return rv
    except MasktrackError as e:
        return _report(e)
    except OSError as e:  # environment: full or read-only disk, a file where a folder must be (exit 3)
        return _report(environment_error(e))
    except MemoryError:
        return _report(EnvironmentProblem("out of memory; use smaller inputs or a machine with more memory"))
    except RecursionError:
        return _report(MasktrackError("input nested too deeply (a document or expression); simplify it"))
    except click.exceptions.Abort:
        click.echo("masktrack: aborted", err=True)
        return 130
    except click.ClickException as e:
        # one style for every user error (`masktrack: error: ...`, exit 2); usage errors keep their usage line
        if isinstance(e, click.UsageError) and e.ctx is not None:
            click.echo(e.ctx.get_usage(), err=True)
            click.echo(f"Try '{e.ctx.command_path} --help' for help.", err=True)
        click.echo(f"masktrack: error: {e.format_message()}", err=True)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        click.echo("masktrack: interrupted", err=True)
        return 130
    return 0


def _report(e: MasktrackError) -> int:
    for line in e.lines():
        click.echo(f"masktrack: error: {line}", err=True)
    return e.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
