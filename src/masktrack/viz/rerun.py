"""Rerun recordings of a tracked scene: the scene once, one recording per instance, one merged file.

Layout under a tracking output folder::

    rerun/scene.rrd               cameras (pinhole + pose), RGB (JPEG), depth (16-bit PNG, mm), instance masks
    rerun/instances/<name>.rrd    one instance's tracks: ONE Points3D entity + per-frame trail segments
    rerun/combined.rrd            scene + every instance merged into one recording with one blueprint
    rerun/manifest.json           content keys of what each file was made from (re-runs skip what matches)

Why this shape: every file shares the application id ``masktrack`` and one
recording id derived from the scene and the output folder, and every instance
logs under its own ``world/instances/<name>/`` path, so the files merge
instead of overwriting each other (in the viewer, with ``rerun rrd merge``, or
here in :func:`merge_recordings`).  Time-varying data goes through
``send_columns`` - one call per entity for all frames - instead of one
``log`` call per track per frame.

Entity layout (timeline ``frame``)::

    world                              ViewCoordinates (static), AnnotationContext: instance id -> name, colour (static)
    world/cameras/<cam>                Transform3D child-from-parent (world-to-camera) + Pinhole (OpenCV RDF)
    world/cameras/<cam>/rgb            EncodedImage (image/jpeg)
    world/cameras/<cam>/depth          EncodedDepthImage (image/png, uint16 millimetres, meter=1000)
    world/cameras/<cam>/masks          SegmentationImage (class id = instance id)
    world/instances/<name>/points      Points3D, instance index = track index, N points every frame
    world/instances/<name>/trails      LineStrips3D, one segment (t-1 -> t) per live track; the blueprint
                                       shows the last ``trail`` frames of them
    world/cameras/<cam>/instances/<name>  Points2D: the instance's tracks projected into that camera, only
                                       those in front of it and inside (or within ``IMAGE_MARGIN`` of) the
                                       image; the rest are NaN (not drawn), so index i is still track i

Each camera's 2D view shows its own entities only (image, depth, masks, projected tracks) with its
visual bounds fixed to the image: projecting every 3D point (behind the camera, far off-image) made
the view auto-fit to them and shrank the image in its cell.

Visibility rule: every frame logs all N tracks of an instance, so the point
with instance index ``i`` is always track ``i``.  Visible points use the
instance colour; occluded ones the same colour dimmed (alpha ``occluded_alpha``);
frames before a track's query frame carry the tracker's NaN position, which
the viewer does not draw.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from masktrack.io.atomic import atomic_path, atomic_write_json, clean_temp_files, hash_file, hash_json
from masktrack.io.manifest import Status
from masktrack.io.scene import Scene
from masktrack.track.base import Tracks

if TYPE_CHECKING:  # pragma: no cover
    import rerun as rr
    import rerun.blueprint as rrb

    from masktrack.track.instances import Instance

APPLICATION_ID = "masktrack"
TIMELINE = "frame"
FORMAT_VERSION = 1
#: how far outside the image (fraction of its width/height) projected track points are still drawn
IMAGE_MARGIN = 0.05
MANIFEST = "manifest.json"

# Colours for instances without masks (tab10); instances with masks use their own colour.
PALETTE: list[tuple[int, int, int]] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


@dataclass(frozen=True)
class RecordingPaths:
    """Where :func:`write_recordings` put its files."""

    scene: Path
    instances: dict[str, Path]
    combined: Path
    status: Status = field(default=Status.COMPUTED, compare=False)  # reused: all files verified, none written


@dataclass(frozen=True)
class InstanceStyle:
    """What a per-instance recording needs to know about its instance besides the tracks."""

    name: str
    id: int
    color: tuple[int, int, int]


# ---------------------------------------------------------------------------------------------
# ids, paths, styles


def recording_id(scene: Scene, out_dir: str | os.PathLike[str]) -> str:
    """Deterministic recording id shared by every file of one output folder, so that they merge.

    Derived from the scene folder (or, for an in-memory scene, its shape and cameras) and the
    resolved output folder: the same job always gets the same id, two jobs never share one.
    """
    src = (
        str(Path(scene.path).resolve())
        if scene.path is not None
        else f"memory:{scene.rgbs.shape}:{scene.camera_ids}"
    )
    digest = hashlib.sha256(f"{src}|{Path(out_dir).resolve()}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def entity_part(name: str) -> str:
    """An instance or camera name as one entity-path part (escaped if it holds '/', spaces, ...)."""
    import rerun as rr

    return rr.escape_entity_path_part(name)


def instance_entity(name: str) -> str:
    return f"world/instances/{entity_part(name)}"


def camera_entity(camera_id: str) -> str:
    return f"world/cameras/{entity_part(camera_id)}"


def instance_styles(
    names: Iterable[str], instances: Mapping[str, Instance] | None
) -> dict[str, InstanceStyle]:
    """Name -> (segmentation class id, colour): the instance's own when known, else a palette colour."""
    instances = instances or {}
    names = list(dict.fromkeys([*instances, *names]))
    known_ids = [int(instances[n].id) for n in names if n in instances]
    ids_ok = all(i > 0 for i in known_ids) and len(set(known_ids)) == len(known_ids)
    used = set(known_ids) if ids_ok else set()
    next_id = 1
    styles: dict[str, InstanceStyle] = {}
    for k, name in enumerate(names):
        inst = instances.get(name)
        if inst is not None and ids_ok:
            cid = int(inst.id)
        else:
            while next_id in used:
                next_id += 1
            cid = next_id
            used.add(cid)
        color = tuple(int(c) for c in inst.color) if inst is not None else PALETTE[k % len(PALETTE)]
        styles[name] = InstanceStyle(name=name, id=cid, color=color)  # type: ignore[arg-type]
    return styles


# ---------------------------------------------------------------------------------------------
# blueprint


def scene_blueprint(
    camera_ids: list[str],
    instance_names: Iterable[str],
    *,
    trail: int = 10,
    image_size: tuple[int, int] | None = None,
) -> rrb.Blueprint:
    """3D view of the world (trails over the last ``trail`` frames) beside a grid of per-camera 2D views.

    ``image_size`` (height, width) fixes each 2D view's visual bounds to the image.
    """
    import rerun.blueprint as rrb

    trail_range = rrb.VisibleTimeRanges(
        timeline=TIMELINE,
        start=rrb.TimeRangeBoundary.cursor_relative(seq=-max(int(trail), 0)),
        end=rrb.TimeRangeBoundary.cursor_relative(seq=0),
    )
    overrides = {f"{instance_entity(n)}/trails": trail_range for n in instance_names}
    view3d = rrb.Spatial3DView(origin="world", name="world", overrides=overrides)  # type: ignore[arg-type]
    bounds = {}
    if image_size is not None:
        h, w = image_size
        bounds = {"visual_bounds": rrb.VisualBounds2D(x_range=[-0.5, w - 0.5], y_range=[-0.5, h - 0.5])}
    cams = [
        rrb.Spatial2DView(origin=camera_entity(c), name=str(c), contents=["$origin/**"], **bounds)  # type: ignore[arg-type]
        for c in camera_ids
    ]
    cols = int(np.ceil(np.sqrt(len(cams)))) if cams else 1
    if cams:
        layout = rrb.Horizontal(view3d, rrb.Grid(*cams, grid_columns=cols), column_shares=[3, 2])
    else:
        layout = rrb.Horizontal(view3d)
    return rrb.Blueprint(layout, rrb.TimePanel(state="collapsed"), collapse_panels=False)


# ---------------------------------------------------------------------------------------------
# scene


def _varies(a: np.ndarray, atol: float = 1e-7) -> bool:
    a = np.asarray(a)
    return bool(a.shape[0] > 1 and not np.allclose(a, a[:1], atol=atol, rtol=0))


def _frames(n: int, start: int = 0) -> rr.TimeColumn:
    import rerun as rr

    return rr.TimeColumn(TIMELINE, sequence=np.arange(start, start + n, dtype=np.int64))


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(
        ".jpg",
        cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, int(quality)],
    )
    if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def encode_depth_png(depth_m: np.ndarray, compression: int = 3) -> bytes:
    """Metres -> 16-bit PNG in millimetres (0 = invalid; clipped at 65.535 m)."""
    import cv2

    mm = np.clip(np.rint(np.asarray(depth_m, np.float32) * 1000.0), 0, 65535).astype(np.uint16)
    ok, buf = cv2.imencode(".png", mm, [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def segmentation(
    instances: Mapping[str, Instance],
    styles: Mapping[str, InstanceStyle],
    camera: int,
    shape: tuple[int, int, int],
) -> np.ndarray:
    """Class-id images [T, H, W] of one camera: 0 = background, later instances drawn over earlier ones."""
    ids = [styles[n].id for n in instances]
    dtype = np.uint8 if max(ids, default=0) < 256 else np.uint16
    seg = np.zeros(shape, dtype)
    for name, inst in instances.items():
        m = inst.masks(camera)
        if tuple(m.shape) != tuple(shape):
            from masktrack.errors import SceneError

            raise SceneError(
                f"masks of camera {camera} have shape {tuple(m.shape)}, scene has {tuple(shape)}",
                path=inst.folder,
                field="masks",
            )
        seg[m] = styles[name].id
    return seg


def log_scene(
    rec: rr.RecordingStream,
    scene: Scene,
    *,
    instances: Mapping[str, Instance] | None = None,
    styles: Mapping[str, InstanceStyle] | None = None,
    jpeg_quality: int = 90,
    world_coordinates: str = "RIGHT_HAND_Z_UP",
) -> None:
    """Log cameras, RGB, depth and instance masks of ``scene`` into ``rec`` (columnar, one call per entity)."""
    import rerun as rr

    instances = dict(instances or {})
    styles = dict(styles or instance_styles(instances, instances))
    rec.log("world", getattr(rr.ViewCoordinates, world_coordinates), static=True)
    rec.log(
        "world",
        rr.AnnotationContext(
            [rr.AnnotationInfo(id=0, label="background", color=(0, 0, 0, 0))]
            + [rr.AnnotationInfo(id=s.id, label=s.name, color=s.color) for s in styles.values()]
        ),
        static=True,
    )
    t_all = scene.num_frames
    h, w = scene.size
    for c, cam in enumerate(scene.camera_ids):
        ent = camera_entity(cam)
        extr = np.asarray(scene.extrs[c], np.float32)
        rot, trans = extr[:, :, :3], extr[:, :, 3]
        if _varies(extr):
            rec.send_columns(
                ent,
                indexes=[_frames(t_all)],
                columns=rr.Transform3D.columns(
                    translation=trans, mat3x3=rot, relation=[rr.TransformRelation.ChildFromParent] * t_all
                ),
            )
        else:
            rec.log(
                ent,
                rr.Transform3D(
                    translation=trans[0], mat3x3=rot[0], relation=rr.TransformRelation.ChildFromParent
                ),
                static=True,
            )
        intr = np.asarray(scene.intrs[c], np.float32)
        if _varies(intr):
            rec.log(
                ent, rr.Pinhole.from_fields(resolution=[w, h], camera_xyz=rr.ViewCoordinates.RDF), static=True
            )
            rec.send_columns(
                ent, indexes=[_frames(t_all)], columns=rr.Pinhole.columns(image_from_camera=intr)
            )
        else:
            rec.log(
                ent,
                rr.Pinhole(image_from_camera=intr[0], resolution=[w, h], camera_xyz=rr.ViewCoordinates.RDF),
                static=True,
            )

        rgbs = scene.rgbs[c]
        blobs = [encode_jpeg(rgbs[t], jpeg_quality) for t in range(t_all)]
        rec.log(f"{ent}/rgb", rr.EncodedImage.from_fields(media_type="image/jpeg"), static=True)
        rec.send_columns(f"{ent}/rgb", indexes=[_frames(t_all)], columns=rr.EncodedImage.columns(blob=blobs))
        del blobs

        depths = scene.depths[c]
        blobs = [encode_depth_png(depths[t]) for t in range(t_all)]
        rec.log(
            f"{ent}/depth",
            rr.EncodedDepthImage.from_fields(media_type="image/png", meter=1000.0),
            static=True,
        )
        rec.send_columns(
            f"{ent}/depth", indexes=[_frames(t_all)], columns=rr.EncodedDepthImage.columns(blob=blobs)
        )
        del blobs

        if instances:
            seg = segmentation(instances, styles, c, (t_all, h, w))
            dtype = rr.ChannelDatatype.U8 if seg.dtype == np.uint8 else rr.ChannelDatatype.U16
            fmt = rr.components.ImageFormat(width=w, height=h, channel_datatype=dtype)
            rec.log(f"{ent}/masks", rr.SegmentationImage.from_fields(format=fmt, opacity=0.5), static=True)
            rec.send_columns(
                f"{ent}/masks",
                indexes=[_frames(t_all)],
                columns=rr.SegmentationImage.columns(buffer=seg.reshape(t_all, -1)),
            )


# ---------------------------------------------------------------------------------------------
# instance tracks


def track_colors(visibility: np.ndarray, color: tuple[int, int, int], occluded_alpha: int = 60) -> np.ndarray:
    """RGBA uint8 [T, N, 4]: the instance colour, dimmed where the track is occluded."""
    vis = np.asarray(visibility, bool)
    rgba = np.empty((*vis.shape, 4), np.uint8)
    rgba[..., :3] = np.asarray(color, np.uint8)
    rgba[..., 3] = np.where(vis, 255, int(occluded_alpha)).astype(np.uint8)
    return rgba


def trail_segments(tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segments (t-1 -> t) of every track alive at both ends: (segments [S, 2, 3], count per frame [T]).

    Frame 0 has none.  With the blueprint's visible time range of ``trail`` frames the viewer
    draws the last ``trail`` segments of each track: a trail, without storing it ``trail`` times.
    """
    x = np.asarray(tracks, np.float32)
    t_all = x.shape[0]
    if t_all < 2:
        return np.zeros((0, 2, 3), np.float32), np.zeros(t_all, np.int64)
    ok = np.asarray(np.isfinite(x).all(-1))
    live = ok[1:] & ok[:-1]  # [T-1, N]
    seg = np.stack([x[:-1], x[1:]], axis=2)  # [T-1, N, 2, 3]
    counts = np.concatenate([[0], live.sum(1)]).astype(np.int64)
    return seg[live], counts


def project_to_image(
    points: np.ndarray,
    intrs: np.ndarray,
    extrs: np.ndarray,
    size: tuple[int, int],
    margin: float = IMAGE_MARGIN,
) -> np.ndarray:
    """Pixel positions [T, N, 2] of world points [T, N, 3] in one camera (intrs [T,3,3], extrs [T,3,4]
    world-to-camera); NaN where the point is missing, behind the camera or more than ``margin`` of the
    image size outside it."""
    x = np.asarray(points, np.float64)
    r = np.asarray(extrs, np.float64)[:, None, :, :3]
    t = np.asarray(extrs, np.float64)[:, None, :, 3]
    xc = (r @ x[..., None])[..., 0] + t  # [T, N, 3]
    k = np.asarray(intrs, np.float64)[:, None]
    uvw = (k @ xc[..., None])[..., 0]
    z = xc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[..., :2] / uvw[..., 2:3]
    h, w = size
    mx, my = margin * w, margin * h
    ok = (
        np.isfinite(uv).all(-1)
        & (z > 1e-6)
        & (uv[..., 0] >= -0.5 - mx)
        & (uv[..., 0] <= w - 0.5 + mx)
        & (uv[..., 1] >= -0.5 - my)
        & (uv[..., 1] <= h - 0.5 + my)
    )
    return np.where(ok[..., None], uv, np.nan).astype(np.float32)


@dataclass(frozen=True)
class CameraView:
    """What projecting tracks into one camera needs."""

    camera_id: str
    intrs: np.ndarray  # [T, 3, 3]
    extrs: np.ndarray  # [T, 3, 4] world-to-camera
    size: tuple[int, int]  # (height, width)


def camera_views(scene: Scene) -> list[CameraView]:
    return [
        CameraView(str(c), np.asarray(scene.intrs[i]), np.asarray(scene.extrs[i]), scene.size)
        for i, c in enumerate(scene.camera_ids)
    ]


def cameras_fingerprint(scene: Scene) -> str:
    h = hashlib.sha256()
    for a in (scene.intrs, scene.extrs):
        _hash_array(h, a)
    h.update(json.dumps([list(scene.camera_ids), list(scene.size)]).encode())
    return h.hexdigest()


def log_instance_tracks(
    rec: rr.RecordingStream,
    name: str,
    tracks: Tracks,
    color: tuple[int, int, int],
    *,
    point_radius: float = 4.0,
    trail_radius: float = 1.5,
    occluded_alpha: int = 60,
    cameras: Iterable[CameraView] = (),
) -> None:
    """Log one instance's tracks: one Points3D entity (N points per frame), its trail segments and,
    per camera in ``cameras``, the points that camera can show (see the module's entity layout)."""
    import rerun as rr

    x = np.asarray(tracks.tracks, np.float32)
    t_all, n = x.shape[:2]
    if tuple(np.shape(tracks.visibility)) != (t_all, n):
        from masktrack.errors import SceneError

        raise SceneError(
            f"visibility shape {np.shape(tracks.visibility)} does not match tracks {(t_all, n)}",
            field=f"{name}.visibility",
        )
    ent = instance_entity(name)
    rgba = track_colors(tracks.visibility, color, occluded_alpha)
    rec.log(f"{ent}/points", rr.Points3D.from_fields(radii=rr.Radius.ui_points(point_radius)), static=True)
    rec.send_columns(
        f"{ent}/points",
        indexes=[_frames(t_all)],
        columns=rr.Points3D.columns(positions=x.reshape(-1, 3), colors=rgba.reshape(-1, 4)).partition(
            np.full(t_all, n)
        ),
    )
    seg, counts = trail_segments(x)
    rec.log(
        f"{ent}/trails",
        rr.LineStrips3D.from_fields(radii=rr.Radius.ui_points(trail_radius), colors=[(*color, 160)]),
        static=True,
    )
    if len(seg):
        keep = counts > 0
        rec.send_columns(
            f"{ent}/trails",
            indexes=[rr.TimeColumn(TIMELINE, sequence=np.flatnonzero(keep).astype(np.int64))],
            columns=rr.LineStrips3D.columns(strips=seg).partition(counts[keep]),
        )
    for cam in cameras:
        uv = project_to_image(x, cam.intrs, cam.extrs, cam.size)
        ent2d = f"{camera_entity(cam.camera_id)}/instances/{entity_part(name)}"
        rec.log(ent2d, rr.Points2D.from_fields(radii=rr.Radius.ui_points(point_radius)), static=True)
        rec.send_columns(
            ent2d,
            indexes=[_frames(t_all)],
            columns=rr.Points2D.columns(positions=uv.reshape(-1, 2), colors=rgba.reshape(-1, 4)).partition(
                np.full(t_all, n)
            ),
        )


# ---------------------------------------------------------------------------------------------
# files


@contextlib.contextmanager
def _recording_file(path: Path, rid: str, blueprint: Any, *, send_properties: bool = True):
    """A RecordingStream saving to ``path`` atomically: the file appears complete (footer included) or not at all."""
    import rerun as rr

    with atomic_path(path) as tmp:
        rec = rr.RecordingStream(APPLICATION_ID, recording_id=rid, send_properties=send_properties)
        try:
            rec.save(tmp, default_blueprint=blueprint)
            yield rec
            rec.flush()
        finally:
            rec.disconnect()
            del rec


def merge_recordings(inputs: list[Path], out: Path, *, recording_id: str, blueprint: Any) -> Path:
    """Merge .rrd files into ONE recording with ONE blueprint: every input's chunks sent into one stream.

    Inputs must share the application id and recording id (the files written here do); the
    merged file is written atomically.
    """
    import rerun as rr
    from rerun.chunk import RrdReader

    with _recording_file(out, recording_id, blueprint, send_properties=False) as rec:
        for p in inputs:
            reader = RrdReader(p)
            entries = reader.recordings()
            if (
                len(entries) != 1
                or entries[0].recording_id != recording_id
                or entries[0].application_id != APPLICATION_ID
            ):
                from masktrack.errors import StoreError

                got = [(e.application_id, e.recording_id) for e in entries]
                raise StoreError(
                    f"cannot merge: expected one recording ({APPLICATION_ID!r}, {recording_id!r}), found {got}",
                    path=p,
                )
            rr.send_chunks(reader.store(), recording=rec)
    return out


def _hash_array(h: Any, a: np.ndarray) -> None:
    a = np.asarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.ndim == 0 or a.shape[0] == 0:
        h.update(np.ascontiguousarray(a).tobytes())
        return
    for i in range(a.shape[0]):  # per leading index: no full copy of a memory-mapped scene
        h.update(np.ascontiguousarray(a[i]).data)


def scene_fingerprint(scene: Scene) -> str:
    """Content hash of the scene's arrays and camera ids."""
    h = hashlib.sha256()
    for a in (scene.rgbs, scene.depths, scene.intrs, scene.extrs):
        _hash_array(h, a)
    h.update(json.dumps(list(scene.camera_ids)).encode())
    return h.hexdigest()


def tracks_fingerprint(tracks: Tracks) -> str:
    h = hashlib.sha256()
    for a in (tracks.tracks, tracks.visibility):
        _hash_array(h, a)
    return h.hexdigest()


def instance_fingerprint(inst: Instance) -> str:
    h = hashlib.sha256()
    _hash_array(h, inst.packed())
    h.update(json.dumps([inst.name, int(inst.id), list(inst.color)]).encode())
    return h.hexdigest()


def _file_entry(path: Path, key: str, root: Path) -> dict[str, Any]:
    return {
        "file": str(path.relative_to(root)),
        "key": key,
        "bytes": path.stat().st_size,
        "sha256": hash_file(path),
    }


def _is_current(entry: dict[str, Any] | None, path: Path, key: str) -> bool:
    """A file is reused only if its manifest entry has the same key and the bytes on disk are the ones recorded."""
    if not entry or entry.get("key") != key or not path.is_file():
        return False
    try:
        return path.stat().st_size == entry.get("bytes") and hash_file(path) == entry.get("sha256")
    except OSError:
        return False


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        return m if isinstance(m, dict) and m.get("version") == FORMAT_VERSION else {}
    except (OSError, json.JSONDecodeError):
        return {}


def write_recordings(
    scene: Scene,
    tracks: dict[str, Tracks],
    out_dir: Path,
    *,
    instances: dict[str, Instance] | None = None,
    trail: int = 10,
    jpeg_quality: int = 90,
    world_coordinates: str | None = None,
    force: bool = False,
) -> RecordingPaths:
    """Write ``<out_dir>/rerun/{scene.rrd, instances/<name>.rrd, combined.rrd}``; skip what is current.

    ``tracks`` maps instance name -> its tracks; ``instances`` (optional) gives masks, ids and
    colours.  Each file is written atomically and recorded in ``rerun/manifest.json`` with a
    content key (scene/tracks/masks hashes + options); a re-run with the same inputs rewrites
    nothing, a changed instance rewrites only its file and the merged one.  ``force`` rewrites all.
    """
    import rerun as rr

    out_dir = Path(out_dir)
    root = out_dir / "rerun"
    (root / "instances").mkdir(parents=True, exist_ok=True)
    clean_temp_files(root)
    clean_temp_files(root / "instances")
    instances = dict(instances or {})
    names = list(tracks)
    styles = instance_styles(names, instances)
    world = world_coordinates or str(scene.meta.get("world_coordinates", "RIGHT_HAND_Z_UP"))
    if not hasattr(rr.ViewCoordinates, world):
        from masktrack.errors import SceneError

        raise SceneError(
            f"unknown world coordinate convention {world!r} (e.g. RIGHT_HAND_Z_UP, RIGHT_HAND_Y_UP)",
            path=scene.path,
            field="world_coordinates",
        )
    for name, tr in tracks.items():
        if tr.num_frames != scene.num_frames:
            from masktrack.errors import SceneError

            raise SceneError(
                f"tracks have {tr.num_frames} frames, the scene has {scene.num_frames}",
                path=scene.path,
                field=f"tracks[{name}]",
            )
    rid = recording_id(scene, out_dir)
    blueprint = scene_blueprint(list(scene.camera_ids), styles, trail=trail, image_size=scene.size)
    common = {
        "format": FORMAT_VERSION,
        "rerun": rr.__version__,
        "recording_id": rid,
        "cameras": list(scene.camera_ids),
        "instances": {n: [s.id, list(s.color)] for n, s in styles.items()},
        "trail": int(trail),
    }

    manifest_path = root / MANIFEST
    old = {} if force else _read_manifest(manifest_path)
    manifest: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "application_id": APPLICATION_ID,
        "recording_id": rid,
        "scene": None,
        "instances": {},
        "combined": None,
    }

    def save_manifest() -> None:
        atomic_write_json(manifest_path, manifest)

    # 1. the scene, once
    scene_path = root / "scene.rrd"
    scene_key = hash_json(
        {
            **common,
            "scene": scene_fingerprint(scene),
            "masks": {n: instance_fingerprint(i) for n, i in instances.items()},
            "jpeg_quality": int(jpeg_quality),
            "world": world,
        }
    )
    if _is_current(old.get("scene"), scene_path, scene_key):
        manifest["scene"] = old["scene"]
    else:
        with _recording_file(scene_path, rid, blueprint) as rec:
            if scene.path is not None:
                rec.send_recording_name(Path(scene.path).name)
            log_scene(
                rec,
                scene,
                instances=instances,
                styles=styles,
                jpeg_quality=jpeg_quality,
                world_coordinates=world,
            )
        manifest["scene"] = _file_entry(scene_path, scene_key, root)
    save_manifest()

    # 2. one recording per instance
    inst_paths: dict[str, Path] = {}
    cams_fp = cameras_fingerprint(scene)
    views = camera_views(scene)
    for name in names:
        path = root / "instances" / f"{name}.rrd"
        key = hash_json(
            {
                **common,
                "name": name,
                "tracks": tracks_fingerprint(tracks[name]),
                "cameras": cams_fp,
                "view2d": 1,
            }
        )
        if _is_current(old.get("instances", {}).get(name), path, key):
            manifest["instances"][name] = old["instances"][name]
        else:
            with _recording_file(path, rid, blueprint) as rec:
                log_instance_tracks(rec, name, tracks[name], styles[name].color, cameras=views)
            manifest["instances"][name] = _file_entry(path, key, root)
        inst_paths[name] = path
        save_manifest()
    for stale in (root / "instances").glob("*.rrd"):
        if stale not in inst_paths.values():
            stale.unlink()

    # 3. the merged recording
    combined = root / "combined.rrd"
    combined_key = hash_json(
        {"scene": scene_key, "instances": {n: manifest["instances"][n]["key"] for n in names}}
    )
    if _is_current(old.get("combined"), combined, combined_key):
        manifest["combined"] = old["combined"]
    else:
        merge_recordings([scene_path, *inst_paths.values()], combined, recording_id=rid, blueprint=blueprint)
        manifest["combined"] = _file_entry(combined, combined_key, root)
    save_manifest()
    reused = manifest["scene"] is old.get("scene") and manifest["combined"] is old.get("combined")
    reused = reused and all(manifest["instances"][n] is old.get("instances", {}).get(n) for n in names)
    return RecordingPaths(
        scene=scene_path,
        instances=inst_paths,
        combined=combined,
        status=Status.REUSED if reused else Status.COMPUTED,
    )


def find_recording(target: str | os.PathLike[str]) -> list[Path]:
    """What ``masktrack view`` opens: a .rrd file, an output folder's rerun/combined.rrd, or a folder's .rrd files."""
    from masktrack.errors import StoreError

    p = Path(target)
    if p.is_file():
        if p.suffix != ".rrd":
            raise StoreError("not a Rerun recording (expected a .rrd file or a folder)", path=p)
        return [p]
    if not p.is_dir():
        raise StoreError("no such file or folder", path=p)
    for cand in (p / "rerun" / "combined.rrd", p / "combined.rrd"):
        if cand.is_file():
            return [cand]
    for folder in (p / "rerun", p):
        files = (
            sorted(f for f in folder.rglob("*.rrd") if not f.name.startswith(".")) if folder.is_dir() else []
        )
        if files:
            return files
    raise StoreError("no Rerun recording here (looked for rerun/combined.rrd and *.rrd)", path=p)
