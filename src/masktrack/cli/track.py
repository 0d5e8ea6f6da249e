"""``masktrack scene``, ``masktrack instances`` and ``masktrack track``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from masktrack.errors import ConfigError, SceneError


@click.group("scene")
def scene() -> None:
    """Import and inspect multi-view RGB-D scenes (masktrack's pickle-free scene folders)."""


@scene.command("import")
@click.argument("npz", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--mask-key",
    "mask_keys",
    multiple=True,
    metavar="KEY[=NAME]",
    help="Masks to import as instances: a pickled dict of instances (e.g. sam2_masks, needs --allow-pickle) "
    "or a bool [C,T,H,W] array renamed (gt_masks_gripper=gripper). Repeatable or comma-separated.",
)
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Allow pickled object arrays (runs code from the file: only for files you trust).",
)
@click.option(
    "--camera-ids",
    default=None,
    metavar="A,B,C",
    help="Camera names (overrides the file's, e.g. when they are pickled).",
)
@click.option(
    "--fps",
    type=float,
    default=30.0,
    show_default=True,
    help="Frame rate stored with the scene (for viewers).",
)
@click.option(
    "--robot-model",
    default=None,
    metavar="MODEL",
    help="Also import the robot's state: 'panda' or a .urdf / MJCF .xml file (enables zero-click kinematic prompts).",
)
@click.option(
    "--robot-joints",
    default="joint_positions,gripper_joint_positions",
    show_default=True,
    metavar="KEY,KEY",
    help="NPZ keys of joint positions [T, J], concatenated in order.",
)
@click.option(
    "--robot-joint-names",
    default=None,
    metavar="A,B,...",
    help="One name per joint column (default: Panda's 9 for 'panda', else the model's joints).",
)
@click.option(
    "--robot-base", default=None, metavar="KEY", help="NPZ key of the base pose in world, [4,4] or [T,4,4]."
)
@click.option(
    "--robot-ee",
    default="gripper_matrix",
    show_default=True,
    metavar="KEY",
    help="Without --robot-base: the end-effector pose track [T,4,4] the base pose is fitted to.",
)
@click.option(
    "--robot-base-clicks",
    default=None,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Without --robot-base: fit the base pose (and named joint offsets) to robot points clicked in a few "
    'frames (JSON: {"clicks": [{camera, frame, uv, link, point}]}, see README).',
)
@click.option(
    "--robot-ee-link", default=None, metavar="LINK", help="The link --robot-ee follows (Panda: panda_hand)."
)
@click.option(
    "--robot-mount",
    "robot_mounts",
    multiple=True,
    metavar="CAMERA=LINK",
    help="A camera riding on a link (wrist camera); its camera-from-link pose is fitted from the extrinsics.",
)
@click.option(
    "--robot-refine/--no-robot-refine",
    default=True,
    show_default=True,
    help="Refine the robot's height and each camera's extrinsics against the measured depth (ICP), and "
    "check every camera's rendered vs measured depth.",
)
def scene_import(
    npz: Path,
    out: Path,
    mask_keys: tuple[str, ...],
    allow_pickle: bool,
    camera_ids: str | None,
    fps: float,
    robot_model: str | None,
    robot_joints: str,
    robot_joint_names: str | None,
    robot_base: str | None,
    robot_ee: str,
    robot_ee_link: str | None,
    robot_base_clicks: Path | None,
    robot_mounts: tuple[str, ...],
    robot_refine: bool,
) -> None:
    """Convert an NPZ (rgbs [C,T,3,H,W], depths [C,T,1,H,W], intrs, extrs, camera_ids) into scene folder OUT.

    \b
    Example:
      masktrack scene import episode.npz scene/ --mask-key gt_masks_gripper=gripper
      masktrack scene import rh20t.npz scene/ --mask-key sam2_masks --allow-pickle
      masktrack scene import rlbench.npz scene/ --robot-model panda   # + joint states, base fitted
    """
    from masktrack.io.scene_import import import_npz

    robot = None
    if robot_model is not None:
        import functools

        from masktrack.io.scene_robot import RobotImport
        from masktrack.robot.scene_state import read_npz_robot

        spec = RobotImport(
            model=robot_model,
            joints=[k.strip() for k in robot_joints.split(",") if k.strip()],
            joint_names=[n.strip() for n in robot_joint_names.split(",")] if robot_joint_names else None,
            base=robot_base,
            ee=robot_ee,
            ee_link=robot_ee_link,
            mounts=_pairs(robot_mounts, "--robot-mount"),
            refine=robot_refine,
            base_clicks=str(robot_base_clicks) if robot_base_clicks is not None else None,
        )
        robot = functools.partial(read_npz_robot, spec=spec)

    keys = [k for spec in mask_keys for k in spec.split(",") if k.strip()]
    sc = import_npz(
        npz,
        out,
        mask_key=keys or None,
        allow_pickle=allow_pickle,
        camera_ids=camera_ids.split(",") if camera_ids else None,
        fps=fps,
        robot=robot,
    )
    from masktrack.io.instances import list_instances

    click.echo(
        f"scene {out}: {sc.num_cameras} cameras x {sc.num_frames} frames, {sc.size[0]}x{sc.size[1]}; "
        f"instances: {', '.join(list_instances(out)) or 'none'}"
    )
    if sc.robot is not None:
        fit = sc.robot.source.get("base_fit")
        click.echo(
            f"robot {sc.robot.model}: {len(sc.robot.joint_names)} joints"
            + (
                f", base fitted to {fit['clicks']} clicks ({fit['residual_px']:.2f} px RMS, max {fit['max_px']:.1f} px)"
                if fit and "residual_px" in fit
                else f", base fitted to {fit['ee_key']} ({fit['residual_mm']:.1f} mm)"
                if fit
                else ""
            )
            + (
                ", joint offsets "
                + ", ".join(f"{k} {v:+.4f}" for k, v in sc.robot.joint_offsets.items() if abs(v) >= 5e-5)
                if sc.robot.joint_offsets
                else ""
            )
        )
        cal = sc.robot.source.get("calibration")
        if cal:
            click.echo(f"  depth refinement: robot shifted by {cal['world_shift_mm']} mm")
            for cid, c in cal["cameras"].items():
                chk = c["check"]
                verdict = "ok" if chk["ok"] else "DISAGREES (kinematic masks refused for this camera)"
                click.echo(
                    f"  {cid:<16} depth residual {c['residual_mm_before']:.1f} -> {chk['residual_mm']:.1f} mm, "
                    f"{100 * chk['inlier_fraction']:.0f}% within 2 cm of {chk['pixels']} px: {verdict}"
                )


@scene.command("info")
@click.argument("scene_path", metavar="SCENE", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scene_info(scene_path: Path, as_json: bool) -> None:
    """Cameras, frames, image size, depth range and instances of a scene."""
    import numpy as np

    from masktrack.io.instances import list_instances
    from masktrack.io.scene import load_scene
    from masktrack.track.geometry import camera_center

    sc = load_scene(scene_path)
    cams = []
    for c, cid in enumerate(sc.camera_ids):
        d = np.asarray(sc.depths[c, 0])
        valid = d[d > 0]
        cams.append(
            {
                "id": cid,
                "center_m_frame0": np.round(camera_center(sc.extrs[c, 0]), 3).tolist(),
                "moving": bool(np.abs(np.asarray(sc.extrs[c]) - np.asarray(sc.extrs[c, :1])).max() > 1e-6),
                "depth_valid_frame0": round(float(valid.size / d.size), 3),
                "depth_range_m_frame0": [round(float(valid.min()), 3), round(float(valid.max()), 3)]
                if valid.size
                else None,
            }
        )
    names = list_instances(scene_path)
    info = {
        "scene": str(scene_path),
        "num_cameras": sc.num_cameras,
        "num_frames": sc.num_frames,
        "height": sc.size[0],
        "width": sc.size[1],
        "fps": sc.fps,
        "cameras": cams,
        "instances": names,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(
        f"{scene_path}: {sc.num_cameras} cameras x {sc.num_frames} frames, {sc.size[0]}x{sc.size[1]}, {sc.fps:g} fps"
    )
    for cam in cams:
        click.echo(
            f"  {cam['id']:<16} centre {cam['center_m_frame0']}  {'moving' if cam['moving'] else 'static'}  "
            f"depth valid {100 * cam['depth_valid_frame0']:.0f}% range {cam['depth_range_m_frame0']}"
        )
    click.echo(f"  instances: {', '.join(names) or 'none'}")


@click.group("instances")
def instances() -> None:
    """List, verify and add a scene's instances (masks only; RGB and depth stay in the scene)."""


@instances.command("list")
@click.argument("scene_path", metavar="SCENE", type=click.Path(file_okay=False, path_type=Path))
def instances_list(scene_path: Path) -> None:
    """One line per instance: name, id, colour, frames with a mask per camera."""
    from masktrack.io.instances import list_instances, load_instance
    from masktrack.io.scene import load_scene

    sc = load_scene(scene_path)
    names = list_instances(scene_path)
    if not names:
        click.echo("no instances")
        return
    for n in names:
        inst = load_instance(scene_path, n)
        counts = inst.packed().reshape(inst.shape[0], inst.shape[1], -1).any(axis=2).sum(axis=1)
        per = ", ".join(f"{cid} {int(k)}/{inst.shape[1]}" for cid, k in zip(sc.camera_ids, counts))
        click.echo(f"{n}  id {inst.id}  color {list(inst.color)}  frames with mask: {per}")


@instances.command("verify")
@click.argument("scene_path", metavar="SCENE", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--min-depth-valid",
    type=float,
    default=0.5,
    show_default=True,
    help="Minimum fraction of mask pixels with valid depth (per camera).",
)
def instances_verify(scene_path: Path, min_depth_valid: float) -> None:
    """Check shapes, non-empty masks and valid depth inside masks; exit 2 on problems."""
    from masktrack.track.verify import verify_instances

    lines, problems = verify_instances(scene_path, min_depth_valid=min_depth_valid)
    for line in lines:
        click.echo(line)
    if problems:
        raise SceneError("instances failed verification", path=scene_path, problems=problems)
    click.echo("ok")


@instances.command("add")
@click.argument("scene_path", metavar="SCENE", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--output",
    "outputs",
    multiple=True,
    required=True,
    metavar="CAMERA=DIR",
    help="masktrack pipeline output folder of one camera's video (repeat per camera).",
)
@click.option(
    "--instance",
    "refs",
    multiple=True,
    required=True,
    metavar="NAME=REF",
    help="Instance from the outputs: session.object (mask store) or composed:name (composition). Repeatable.",
)
def instances_add(scene_path: Path, outputs: tuple[str, ...], refs: tuple[str, ...]) -> None:
    """Add instances from masktrack segmentation/composition outputs (one output folder per camera).

    \b
    Example:
      masktrack instances add scene/ --output front=out/front --output wrist=out/wrist \\
          --instance gripper=grippers.gripper --instance arm=composed:arm_only
    """
    from masktrack.masks.instances import instances_from_outputs

    made = instances_from_outputs(scene_path, _pairs(outputs, "--output"), _pairs(refs, "--instance"))
    click.echo(f"added {', '.join(i.name for i in made)}")


@instances.command("export")
@click.argument("scene_path", metavar="SCENE", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mvtracker"]),
    default="mvtracker",
    show_default=True,
    help="mvtracker: one NPZ per instance in the layout mvtracker's demo.py reads.",
)
@click.option("--instances", "names", default="all", show_default=True, help="Comma-separated names, or all.")
def instances_export(scene_path: Path, out_dir: Path, fmt: str, names: str) -> None:
    """Write each instance as OUT/<instance>.npz for the upstream tools (no pickle).

    Keys: rgbs [C,T,3,H,W] uint8, depths [C,T,1,H,W], intrs [C,T,3,3], extrs [C,T,3,4],
    query_points [N,4] (t,x,y,z: the instance's own, else sampled), camera_ids (strings),
    masks [C,T,H,W] bool, and per_camera_timestamps / sam2_contact_frames when the scene has them.

    \b
    Example:
      masktrack instances export scene/ mvt/ --format mvtracker
      python demo.py --sample-path mvt/gripper.npz     # in mvtracker's repository
    """
    from masktrack.track.export import export_mvtracker

    wanted = None if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    for e in export_mvtracker(scene_path, out_dir, instances=wanted):
        click.echo(f"{e.path}: {e.query_points} query points ({e.query_source})")


def _pairs(items: tuple[str, ...], opt: str) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise ConfigError(f"expected KEY=VALUE, got {it!r}", field=opt)
        out[k] = v
    return out


def _contact(value: str | None) -> int | dict[str, int] | None:
    if value is None:
        return None
    try:
        if "=" not in value:
            return int(value)
        return {k: int(v) for k, v in _pairs(tuple(value.split(",")), "--contact").items()}
    except ValueError:
        raise ConfigError(
            f"expected a frame number or CAM=FRAME,... (e.g. 40 or cam0=40,cam1=42), got {value!r}",
            field="--contact",
        ) from None


@click.command("track")
@click.argument("scene_path", metavar="SCENE", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Tracking output folder.",
)
@click.option(
    "--tracker",
    default="flow",
    show_default=True,
    help="flow (weight-free CPU), mvtracker, spatialtracker, cotracker.",
)
@click.option(
    "--option",
    "-o",
    "tracker_opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Tracker option (JSON value), e.g. -o method=dis -o checkpoint=ckpt.pth.",
)
@click.option("--instances", default="all", show_default=True, help="Comma-separated instance names, or all.")
@click.option(
    "--window",
    type=click.Choice(["first", "frame", "all", "before_contact", "after_contact", "given"]),
    default="first",
    show_default=True,
    help="Frames to sample queries from (per camera): first visible, --frame, every --stride-th, or around "
    "--contact; given = the instance's own queries (an imported NPZ's query_points).",
)
@click.option("--frame", type=int, default=0, show_default=True, help="The frame of --window frame.")
@click.option("--span", type=int, default=1, show_default=True, help="Frames in the window.")
@click.option(
    "--stride",
    type=int,
    default=1,
    show_default=True,
    help="Every STRIDE-th frame of the window (--window all, --span).",
)
@click.option(
    "--contact",
    default=None,
    metavar="F|CAM=F,...",
    help="Contact frame (one for all cameras, or per camera); default: the scene's imported contact frames.",
)
@click.option(
    "--voxel",
    type=float,
    default=0.005,
    show_default=True,
    help="De-duplication voxel (m); 0 keeps every pixel.",
)
@click.option(
    "--max-queries",
    type=int,
    default=1024,
    show_default=True,
    help="Cap per instance (even spatial spread); 0 = no cap.",
)
@click.option(
    "--erode", type=int, default=1, show_default=True, help="Erode masks by this many pixels before sampling."
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the query cap's spatial spread (deterministic).",
)
@click.option(
    "--max-points-per-batch", type=int, default=None, help="Track queries in batches of at most this many."
)
@click.option("--rerun", "rerun", is_flag=True, help="Also write Rerun recordings under OUT/rerun.")
@click.option("--force", is_flag=True, help="Recompute instances that are up to date.")
@click.option("--quiet", is_flag=True, help="No progress output (the summary table only).")
def track(
    scene_path: Path,
    out_dir: Path,
    tracker: str,
    tracker_opts: tuple[str, ...],
    instances: str,
    window: str,
    frame: int,
    span: int,
    stride: int,
    contact: str | None,
    voxel: float,
    max_queries: int,
    erode: int,
    seed: int,
    max_points_per_batch: int | None,
    rerun: bool,
    force: bool,
    quiet: bool,
) -> None:
    """Track each instance of SCENE independently in 3D; writes OUT/<instance>/{tracks.npz,queries.npy,instance.json}.

    Re-runs skip instances whose scene, masks, tracker and query options are unchanged.

    \b
    Example:
      masktrack track scene/ --out tracks/ --instances gripper --window frame --frame 0 --rerun
    """
    from masktrack.plugins import parse_option_values
    from masktrack.track.pipeline import run_tracking
    from masktrack.track.queries import QueryOptions

    _pairs(tracker_opts, "--option")  # a value is required here
    opts = parse_option_values(tracker_opts)
    contact_frames = _contact(contact)
    try:
        qo = QueryOptions(
            window=window,  # type: ignore[arg-type]
            frame=frame,
            span=span,
            stride=stride,
            contact=contact_frames,
            voxel=voxel,
            max_queries=max_queries,
            erode=erode,
            seed=seed,
        )
    except ConfigError as e:  # name the command-line flags, not the dataclass fields
        flags = [type(p)("--" + p.location.replace("_", "-"), p.message) for p in e.problems]
        raise ConfigError("invalid options", problems=flags) from None
    if max_points_per_batch is not None and max_points_per_batch < 1:
        raise ConfigError(f"must be at least 1, got {max_points_per_batch}", field="--max-points-per-batch")
    rep = run_tracking(
        scene_path,
        out_dir,
        tracker=tracker,
        tracker_options=opts,
        instances=instances,
        query_options=qo,
        force=force,
        progress=None if quiet else (lambda msg: click.echo(msg, err=True)),
        max_points_per_batch=max_points_per_batch,
    )
    recording = None
    if rerun:
        from masktrack.viz.recordings import record_tracking

        recording = record_tracking(scene_path, out_dir, [r.name for r in rep.instances])
        if not quiet:
            click.echo(f"rerun recording(s): {recording}", err=True)
    click.echo(
        f"tracked {len(rep.tracked)}, up to date {len(rep.skipped)} -> {out_dir}"
        + (f"; rerun: {recording}" if recording else "")
    )
