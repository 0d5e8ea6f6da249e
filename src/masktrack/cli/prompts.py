"""``masktrack prompts validate`` and ``masktrack prompts convert``."""

from __future__ import annotations

from pathlib import Path

import click


def _size(video: Path | None):
    if video is None:
        return None, None
    from masktrack.io.video import open_video

    with open_video(video) as v:
        return v.num_frames, v.size


@click.group("prompts")
def prompts() -> None:
    """Validate and convert prompt files (v1 format or legacy sam3.annotation_prompts.v1)."""


@prompts.command("validate")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--video",
    "video",
    type=click.Path(path_type=Path),
    help="Frame folder or video file: checks frame range and image bounds, resolves legacy 'rel' coordinates.",
)
def validate(file: Path, video: Path | None) -> None:
    """Check FILE and report every problem at once, each with its location.

    Without --video only the structure is checked (legacy files with relative
    coordinates need it).

    \b
    Example:
      masktrack prompts validate prompts.json --video frames/cam0
    """
    from masktrack.prompts.model import load_prompts

    num_frames, size = _size(video)
    pf = load_prompts(file, size=size, num_frames=num_frames).validate_for(
        num_frames=num_frames, size=size, path=file
    )
    n_kf = sum(len(o.keyframes) for o in pf.objects)
    what = (
        f"against {video} ({num_frames} frames, {size[1]}x{size[0]})"
        if size
        else "(structure only: pass --video to check frames and bounds)"
    )
    click.echo(
        f"{file}: ok, {len(pf.objects)} object(s) ({', '.join(pf.names())}), {n_kf} keyframe(s) {what}"
    )


@prompts.command("convert")
@click.argument("src", metavar="IN", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("dst", metavar="OUT", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--video",
    "video",
    type=click.Path(path_type=Path),
    help="Frame folder or video file (needed for legacy 'rel' coordinates; also validates against it).",
)
def convert(src: Path, dst: Path, video: Path | None) -> None:
    """Convert IN (legacy sam3.annotation_prompts.v1 or v1) to the v1 format in OUT.

    Same-frame entries of an object are merged; mask paths are rewritten
    relative to OUT.  Legacy names (by key): ARM_CABLE -> arm, ARM_CABLE_2 -> arm_2,
    GRIPPER_LEFT/RIGHT -> gripper_left/gripper_right; ids renumbered 1..N.

    \b
    Example:
      masktrack prompts convert notebook_prompts.json prompts.json --video frames/cam0
    """
    import os

    from masktrack.prompts.model import load_prompts, save_prompts

    num_frames, size = _size(video)
    pf = load_prompts(src, size=size, num_frames=num_frames).validate_for(
        num_frames=num_frames, size=size, path=src
    )
    if video is not None:
        pf.video = os.path.relpath(video.resolve(), dst.resolve().parent)
    for o in pf.objects:
        for k in o.keyframes:
            if k.mask is not None:
                k.mask = os.path.relpath(k.mask, dst.resolve().parent)
    save_prompts(pf, dst)
    click.echo(
        f"wrote {dst}: {len(pf.objects)} object(s) ({', '.join(f'{o.name}={o.id}' for o in pf.objects)})"
    )
