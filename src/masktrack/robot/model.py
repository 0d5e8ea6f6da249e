"""Robot models: links, joints, visual geometry and forward kinematics.

A :class:`RobotModel` is loaded once from a URDF (our own small parser: the
kinematic tree, mimic joints, visual origins, mesh and primitive geometries),
from an MJCF file through the optional ``mujoco`` package, or by name
(``"panda"``: the Franka Emika Panda with the visual meshes that the
``example-robot-data`` wheel ships, or, without it, the ``pybullet`` wheel's
``pybullet_data/franka_panda``; nothing is downloaded at run time).

Why our own URDF parser: the renderer needs only the tree, the joint motion and
each link's triangles; a 200-line parser has no dependency beyond ``trimesh``
(for mesh files) and handles primitives, ``package://`` paths and mimic joints
the same way for every robot.  Meshes are decimated once at load (vertex
clustering on a ``mesh_resolution`` grid, default 3 mm) and cached in memory,
because the rasteriser's cost is per triangle and a 3 mm error is below a pixel
at working distances.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import MasktrackError

JOINT_TYPES = {"revolute", "continuous", "prismatic", "fixed", "floating", "planar"}


class RobotModelError(MasktrackError):
    """A robot description that cannot be loaded, or joint data that does not fit it."""


# --------------------------------------------------------------------------- geometry helpers


def rpy_matrix(rpy: np.ndarray) -> np.ndarray:
    """URDF roll-pitch-yaw (fixed axes X, Y, Z) -> rotation [3, 3]: R = Rz(y) Ry(p) Rx(r)."""
    r, p, y = (float(a) for a in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def make_transform(xyz=(0.0, 0.0, 0.0), rpy=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rpy_matrix(np.asarray(rpy, float))
    T[:3, 3] = np.asarray(xyz, float)
    return T


def axis_angle_matrices(axis: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotations about a unit ``axis`` by ``angles`` [T] -> [T, 3, 3] (Rodrigues, vectorised)."""
    a = np.asarray(axis, float)
    a = a / max(np.linalg.norm(a), 1e-12)
    Kx = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    th = np.asarray(angles, float)[:, None, None]
    return np.eye(3)[None] + np.sin(th) * Kx[None] + (1 - np.cos(th)) * (Kx @ Kx)[None]


def box_mesh(size) -> tuple[np.ndarray, np.ndarray]:
    """Box centred at the origin, outward (counter-clockwise seen from outside) faces."""
    sx, sy, sz = (float(s) / 2 for s in size)
    v = np.array(
        [[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)], float
    )  # index = 4*ix + 2*iy + iz
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = []
    for a, b, c, d in quads:
        f += [(a, b, c), (a, c, d)]
    return v, np.array(f, np.int64)


def cylinder_mesh(radius: float, length: float, segments: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Cylinder along z centred at the origin (URDF convention), outward faces."""
    th = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([radius * np.cos(th), radius * np.sin(th)], 1)
    h = length / 2
    v = np.concatenate(
        [np.c_[ring, np.full(segments, -h)], np.c_[ring, np.full(segments, h)], [[0, 0, -h], [0, 0, h]]]
    )
    f = []
    bc, tc = 2 * segments, 2 * segments + 1
    for i in range(segments):
        j = (i + 1) % segments
        f += [(i, j, segments + j), (i, segments + j, segments + i)]  # side
        f += [(bc, j, i), (tc, segments + i, segments + j)]  # bottom (-z), top (+z)
    return v, np.array(f, np.int64)


def sphere_mesh(radius: float, rings: int = 12, segments: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere centred at the origin, outward faces."""
    v = [[0, 0, radius]]
    for i in range(1, rings):
        ph = np.pi * i / rings
        for j in range(segments):
            th = 2 * np.pi * j / segments
            v.append(
                [radius * np.sin(ph) * np.cos(th), radius * np.sin(ph) * np.sin(th), radius * np.cos(ph)]
            )
    v.append([0, 0, -radius])
    f = []
    last = len(v) - 1

    def idx(i: int, j: int) -> int:
        return 1 + (i - 1) * segments + (j % segments)

    for j in range(segments):
        f.append((0, idx(1, j), idx(1, j + 1)))
        f.append((last, idx(rings - 1, j + 1), idx(rings - 1, j)))
    for i in range(1, rings - 1):
        for j in range(segments):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j + 1), idx(i + 1, j)
            f += [(a, d, c), (a, c, b)]
    return np.array(v, float), np.array(f, np.int64)


def decimate(vertices: np.ndarray, faces: np.ndarray, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering on a ``resolution`` grid: merged vertices at cluster means, degenerate faces dropped.

    Crude next to quadric decimation but dependency-free, deterministic and fast;
    its error is bounded by the grid cell, which is what a mask cares about.
    """
    if resolution <= 0 or len(faces) == 0:
        return vertices, faces
    keys = np.floor(vertices / resolution).astype(np.int64)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, inv, vertices)
    v = sums / counts[:, None]
    f = inv[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = f[ok]
    f = np.unique(f, axis=0)
    return v, f


def fibonacci_directions(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    th = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)


def outer_shell(
    vertices: np.ndarray, faces: np.ndarray, *, views: int = 48, pixel: float = 0.0008
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the triangles seen from outside (any of ``views`` directions at ``pixel`` metres), wound outward.

    Visual meshes are unions of parts with hidden inner surfaces; every one of
    them costs the rasteriser without ever winning a pixel.  Each kept triangle
    is also re-oriented by majority vote of the views that saw it (so back-face
    culling cannot punch holes where a file's winding is inconsistent).
    """
    from masktrack.robot.render import rasterize

    if len(faces) == 0:
        return vertices, faces
    c = (vertices.max(0) + vertices.min(0)) / 2
    ext = float(np.linalg.norm(vertices.max(0) - vertices.min(0))) + 1e-6
    dist = 50 * ext
    f = dist / pixel
    size = int(np.ceil(ext / pixel)) + 4
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    votes = np.zeros(len(faces), np.int64)  # >0: seen front-facing, <0: seen back-facing
    seen = np.zeros(len(faces), bool)
    for d in fibonacci_directions(views):
        z = -d  # camera looks along -d from outside
        x = np.cross(z, [0.0, 0.0, 1.0] if abs(z[2]) < 0.9 else [1.0, 0.0, 0.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])
        vc = (vertices - c) @ R.T + np.array([0, 0, dist])
        fid, _ = rasterize(vc, faces, K, size, size, cull=False)
        hit = np.unique(fid[fid >= 0])
        if len(hit) == 0:
            continue
        seen[hit] = True
        uv = vc[:, :2] / vc[:, 2:3]
        a, b, cc = uv[faces[hit, 0]], uv[faces[hit, 1]], uv[faces[hit, 2]]
        area = (b[:, 0] - a[:, 0]) * (cc[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (cc[:, 0] - a[:, 0])
        votes[hit] += np.where(area < 0, 1, -1)
    out = faces[seen].copy()
    flip = votes[seen] < 0
    out[flip] = out[flip][:, ::-1]
    used = np.unique(out)
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[out]


MESH_CACHE_VERSION = 1
_MESH_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _cache_dir() -> Path:
    base = os.environ.get("MASKTRACK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "masktrack"
    )
    return Path(base) / "robot-meshes"


def load_mesh_file(
    path: Path, scale=(1.0, 1.0, 1.0), resolution: float = 0.003
) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of a mesh file (OBJ, STL, PLY, DAE, ...) through trimesh, scaled and decimated (cached)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, tuple(float(s) for s in scale), float(resolution))
    if key in _MESH_CACHE:
        return _MESH_CACHE[key]
    import hashlib

    digest = hashlib.sha256(repr((MESH_CACHE_VERSION, *key)).encode()).hexdigest()[:24]
    disk = _cache_dir() / f"{path.stem}-{digest}.npz"
    if disk.is_file():
        try:
            with np.load(disk) as z:
                out = (z["vertices"].astype(float), z["faces"].astype(np.int64))
            _MESH_CACHE[key] = out
            return out
        except Exception:  # a damaged cache entry is rebuilt below
            pass
    try:
        import trimesh
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RobotModelError(
            f"loading mesh files needs the 'trimesh' package (pip install 'masktrack[robot]'): {e}",
            path=path,
        ) from None
    try:
        m = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:
        raise RobotModelError(f"cannot read mesh: {type(e).__name__}: {e}", path=path) from None
    mesh: Any = m
    v = np.asarray(mesh.vertices, np.float64) * np.asarray(scale, np.float64)
    f = np.asarray(mesh.faces, np.int64).reshape(-1, 3)
    out = outer_shell(*decimate(v, f, resolution))
    _MESH_CACHE[key] = out
    try:  # the shell costs seconds; later processes reuse it (atomic: never a half-written file)
        import io

        from masktrack.io.atomic import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, vertices=out[0].astype(np.float32), faces=out[1].astype(np.int32))
        atomic_write_bytes(disk, buf.getvalue(), fsync=False)
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------- model


@dataclass
class Joint:
    name: str
    type: str
    parent: str
    child: str
    origin: np.ndarray  # [4,4] parent-from-joint at q = 0
    axis: np.ndarray  # [3] in the joint frame
    lower: float | None = None
    upper: float | None = None
    mimic: tuple[str, float, float] | None = None  # (master, multiplier, offset)


@dataclass
class Visual:
    """One link's triangles in the link frame (visual origin applied)."""

    vertices: np.ndarray  # [N,3] float64
    faces: np.ndarray  # [F,3] int64


@dataclass
class RobotModel:
    """A robot's kinematic tree with per-link triangle meshes.

    ``joint_names`` lists the actuated joints (revolute, continuous, prismatic;
    not mimic) in file order: that is the column order ``fk`` expects when no
    names are given.  ``link_groups`` names sets of links (for the Panda:
    ``arm``, ``gripper``, ``gripper_left``, ``gripper_right``); other models get
    theirs from the caller or the config.
    """

    name: str
    root: str
    links: dict[str, Visual | None]
    joints: list[Joint]  # topological order (parents before children)
    link_groups: dict[str, list[str]] = field(default_factory=dict)
    default_positions: dict[str, float] = field(default_factory=dict)
    source: str = ""
    ee_link: str | None = None  # the link an end-effector pose track refers to (Panda: panda_hand)
    tool_from_ee: np.ndarray | None = None  # nominal ee-link-from-tool (Panda: TCP 0.1034 m along z)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, ref: str | os.PathLike[str], *, mesh_resolution: float = 0.003) -> RobotModel:
        """``"panda"``, a ``.urdf`` path or an MJCF ``.xml`` path -> model."""
        s = str(ref)
        if s.lower() in BUILTIN:
            return BUILTIN[s.lower()](mesh_resolution)
        p = Path(s)
        if not p.is_file():
            known = ", ".join(sorted(BUILTIN))
            raise RobotModelError(f"no such robot model file (built-in names: {known})", path=p)
        if p.suffix.lower() == ".urdf":
            return load_urdf(p, mesh_resolution=mesh_resolution)
        if p.suffix.lower() in (".xml", ".mjcf"):
            from masktrack.robot.mjcf import load_mjcf

            return load_mjcf(p, mesh_resolution=mesh_resolution)
        raise RobotModelError("unknown robot model format (expected .urdf or MJCF .xml)", path=p)

    def coarse(self, resolution: float) -> RobotModel:
        """The same robot with every link re-clustered on a ``resolution`` grid (cached; for ICP renders).

        Calibration renders the robot dozens of times at low resolution, where
        the rasteriser's cost is per triangle; a coarser mesh costs a fraction
        and moves the surface by less than the grid cell.
        """
        cache = self.__dict__.setdefault("_coarse", {})
        if resolution not in cache:
            links = {
                n: None if v is None else Visual(*decimate(v.vertices, v.faces, resolution))
                for n, v in self.links.items()
            }
            cache[resolution] = replace(self, links=links)
            cache[resolution].__dict__["_coarse"] = {}
        return cache[resolution]

    # ------------------------------------------------------------------ names
    @property
    def joint_names(self) -> list[str]:
        return [
            j.name for j in self.joints if j.type in ("revolute", "continuous", "prismatic") and not j.mimic
        ]

    @property
    def link_names(self) -> list[str]:
        return list(self.links)

    def links_of(self, groups: dict[str, list[str]] | list[str] | None) -> list[str]:
        """Links named by ``groups`` (dict or list of group names), or every link with geometry."""
        if groups is None:
            return [n for n, v in self.links.items() if v is not None]
        gd = groups if isinstance(groups, dict) else {g: self.link_groups[g] for g in groups}
        out: list[str] = []
        bad = [(g, ln) for g, lst in gd.items() for ln in lst if ln not in self.links]
        if bad:
            raise RobotModelError(
                "link group names unknown links: " + ", ".join(f"{g}: {ln}" for g, ln in bad),
                field="link_groups",
            )
        for lst in gd.values():
            for ln in lst:
                if ln not in out:
                    out.append(ln)
        return out

    def _ancestors_joints(self, links: list[str]) -> set[str]:
        by_child = {j.child: j for j in self.joints}
        need: set[str] = set()
        for ln in links:
            while ln in by_child:
                j = by_child[ln]
                need.add(j.name)
                ln = j.parent
        return need

    # ------------------------------------------------------------------ kinematics
    def fk(
        self,
        q: np.ndarray,
        joint_names: list[str] | None = None,
        *,
        links: list[str] | None = None,
        defaults: dict[str, float] | None = None,
    ) -> dict[str, np.ndarray]:
        """Forward kinematics: joint positions [J] or [T, J] -> {link: base-from-link [T, 4, 4]}.

        Columns of ``q`` follow ``joint_names`` (default: :attr:`joint_names`).
        A joint that is not in ``q`` takes its value from ``defaults``, then from
        :attr:`default_positions`, then 0 -- unless it moves one of the requested
        ``links`` and has no value from anywhere, which is an error naming it (a
        silently folded arm makes wrong masks).  Mimic joints follow their master.
        """
        q = np.asarray(q, float)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2:
            raise RobotModelError(f"joint positions must be [J] or [T, J], got shape {q.shape}")
        names = list(joint_names) if joint_names is not None else self.joint_names
        if q.shape[1] != len(names):
            raise RobotModelError(f"joint positions have {q.shape[1]} columns but {len(names)} joint names")
        T = q.shape[0]
        jmap = {j.name: j for j in self.joints}
        unknown = [n for n in names if n not in jmap]
        if unknown:
            raise RobotModelError(f"joint names not in model '{self.name}': {', '.join(unknown)}")
        values: dict[str, np.ndarray] = {n: q[:, i] for i, n in enumerate(names)}
        want = list(self.links) if links is None else list(links)
        needed = self._ancestors_joints(want)
        fallback = dict(self.default_positions)
        fallback.update(defaults or {})
        missing = []

        def value(j: Joint, need: bool) -> np.ndarray:
            if j.name in values:
                return values[j.name]
            if j.mimic and j.mimic[0] in jmap:
                m, mul, off = j.mimic
                return value(jmap[m], need) * mul + off
            if j.name in fallback:
                return np.full(T, float(fallback[j.name]))
            if need and j.name not in missing:
                missing.append(j.name)
            return np.zeros(T)

        poses: dict[str, np.ndarray] = {self.root: np.broadcast_to(np.eye(4), (T, 4, 4)).copy()}
        for j in self.joints:
            if j.parent not in poses:
                continue
            M = np.broadcast_to(j.origin, (T, 4, 4)).copy()
            if j.type in ("revolute", "continuous"):
                R = axis_angle_matrices(j.axis, value(j, j.name in needed))
                M[:, :3, :3] = j.origin[:3, :3] @ R
            elif j.type == "prismatic":
                M[:, :3, 3] = (
                    j.origin[:3, 3] + (j.origin[:3, :3] @ j.axis)[None] * value(j, j.name in needed)[:, None]
                )
            poses[j.child] = poses[j.parent] @ M
        if missing:
            raise RobotModelError(
                "joint positions missing for joints that move the requested links: "
                + ", ".join(sorted(missing)),
                field="joint_names",
            )
        return {n: poses[n] for n in want if n in poses}


# --------------------------------------------------------------------------- URDF


def _floats(s: str | None, n: int, default: float = 0.0) -> np.ndarray:
    if not s:
        return np.full(n, default)
    vals = [float(x) for x in s.split()]
    if len(vals) != n:
        raise ValueError(f"expected {n} numbers, got {s!r}")
    return np.array(vals)


def _origin(el: ET.Element | None) -> np.ndarray:
    if el is None:
        return np.eye(4)
    return make_transform(_floats(el.get("xyz"), 3), _floats(el.get("rpy"), 3))


def resolve_mesh_path(filename: str, urdf_path: Path) -> Path | None:
    """``package://pkg/a/b.obj``, ``file://`` or relative paths -> an existing file near the URDF, or None."""
    name = filename
    for pre in ("file://", "model://"):
        if name.startswith(pre):
            name = name[len(pre) :]
    tails = [name]
    if filename.startswith("package://"):
        rest = filename[len("package://") :]
        parts = rest.split("/")
        tails = [rest, "/".join(parts[1:])] if len(parts) > 1 else [rest]
    p = Path(name)
    if p.is_absolute() and p.is_file():
        return p
    for base in [urdf_path.parent, *urdf_path.parent.parents][:4]:
        for t in tails:
            c = base / t
            if c.is_file():
                return c
    return None


def load_urdf(path: str | os.PathLike[str], *, mesh_resolution: float = 0.003) -> RobotModel:
    """Parse a URDF file: tree, joints (with mimic), visual geometry (meshes and box/cylinder/sphere)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise RobotModelError(f"cannot parse URDF: {e}", path=path) from None
    if root.tag != "robot":
        raise RobotModelError(f"root element is <{root.tag}>, expected <robot>", path=path)
    problems: list[str] = []
    links: dict[str, Visual | None] = {}
    for le in root.findall("link"):
        name = le.get("name")
        if not name:
            problems.append("a <link> without a name")
            continue
        parts_v, parts_f, n = [], [], 0
        for vi, ve in enumerate(le.findall("visual")):
            g = ve.find("geometry")
            if g is None or len(g) == 0:
                continue
            geo = g[0]
            try:
                if geo.tag == "mesh":
                    fn = geo.get("filename", "")
                    mp = resolve_mesh_path(fn, path)
                    if mp is None:
                        problems.append(f"link {name} visual[{vi}]: mesh file not found: {fn}")
                        continue
                    v, f = load_mesh_file(mp, tuple(_floats(geo.get("scale"), 3, 1.0)), mesh_resolution)
                elif geo.tag == "box":
                    v, f = box_mesh(_floats(geo.get("size"), 3))
                elif geo.tag == "cylinder":
                    v, f = cylinder_mesh(float(geo.get("radius", "0")), float(geo.get("length", "0")))
                elif geo.tag == "sphere":
                    v, f = sphere_mesh(float(geo.get("radius", "0")))
                else:
                    problems.append(f"link {name} visual[{vi}]: unsupported geometry <{geo.tag}>")
                    continue
            except (ValueError, TypeError) as e:
                problems.append(f"link {name} visual[{vi}]: {e}")
                continue
            except RobotModelError as e:
                problems.append(f"link {name} visual[{vi}]: {e.message}")
                continue
            T = _origin(ve.find("origin"))
            parts_v.append(v @ T[:3, :3].T + T[:3, 3])
            parts_f.append(f + n)
            n += len(v)
        links[name] = Visual(np.concatenate(parts_v), np.concatenate(parts_f)) if parts_v else None
    joints: list[Joint] = []
    for je in root.findall("joint"):
        name, jt = je.get("name", ""), je.get("type", "")
        pe, ce = je.find("parent"), je.find("child")
        if jt not in JOINT_TYPES:
            problems.append(f"joint {name}: unknown type {jt!r}")
            continue
        if pe is None or ce is None:
            problems.append(f"joint {name}: needs <parent> and <child>")
            continue
        parent, child = pe.get("link", ""), ce.get("link", "")
        for ln in (parent, child):
            if ln not in links:
                problems.append(f"joint {name}: unknown link {ln!r}")
        ax = je.find("axis")
        try:
            axis = (
                _floats(ax.get("xyz") if ax is not None else None, 3)
                if ax is not None
                else np.array([1.0, 0, 0])
            )
            lim = je.find("limit")
            lo_s = lim.get("lower") if lim is not None else None
            hi_s = lim.get("upper") if lim is not None else None
            lower = float(lo_s) if lo_s else None
            upper = float(hi_s) if hi_s else None
            mi = je.find("mimic")
            mimic = (
                (mi.get("joint", ""), float(mi.get("multiplier", "1")), float(mi.get("offset", "0")))
                if mi is not None
                else None
            )
            origin = _origin(je.find("origin"))
        except ValueError as e:
            problems.append(f"joint {name}: {e}")
            continue
        if jt in ("floating", "planar"):
            jt = "fixed"  # no joint data describes them in a recording; the base pose does
        joints.append(Joint(name, jt, parent, child, origin, axis, lower, upper, mimic))
    if problems:
        raise RobotModelError("invalid URDF", path=path, problems=[_problem(p) for p in problems])
    children = {j.child for j in joints}
    roots = [n for n in links if n not in children]
    if len(roots) != 1:
        raise RobotModelError(
            f"URDF must form one tree, found roots: {', '.join(roots) or 'none'}", path=path
        )
    order, frontier = [], [roots[0]]
    by_parent: dict[str, list[Joint]] = {}
    for j in joints:
        by_parent.setdefault(j.parent, []).append(j)
    while frontier:
        ln = frontier.pop(0)
        for j in by_parent.get(ln, []):
            order.append(j)
            frontier.append(j.child)
    return RobotModel(
        name=root.get("name", path.stem), root=roots[0], links=links, joints=order, source=str(path)
    )


def _problem(text: str):
    from masktrack.errors import Problem

    return Problem("", text)


# --------------------------------------------------------------------------- built-ins

PANDA_GROUPS = {
    "arm": [f"panda_link{i}" for i in range(8)],
    "gripper": ["panda_hand", "panda_leftfinger", "panda_rightfinger"],
    "gripper_left": ["panda_leftfinger"],
    "gripper_right": ["panda_rightfinger"],
}


def panda_urdf_path() -> Path:
    """The Franka Panda URDF of an installed package that ships its meshes (no download at run time).

    Preferred: ``example-robot-data`` (franka_description's visual meshes for every link, COLLADA, read
    through ``pycollada``).  Fallback: the ``pybullet`` wheel's ``pybullet_data/franka_panda`` (OBJ;
    its link0 and link7 are the coarser collision meshes, which costs about 0.03 gripper J&F on RLBench).
    """
    import importlib.metadata
    import importlib.util

    try:
        dist = importlib.metadata.distribution("example-robot-data")
        p = Path(
            str(
                dist.locate_file(
                    "cmeel.prefix/share/example-robot-data/robots/panda_description/urdf/panda.urdf"
                )
            )
        )
        if p.is_file():
            return p
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("pybullet_data")
    if spec is None or not spec.submodule_search_locations:
        raise RobotModelError(
            "the built-in 'panda' model needs a package that ships the Franka Panda URDF and meshes: "
            "'example-robot-data' (with 'pycollada') or 'pybullet' (pip install 'masktrack[robot]')",
            field="model",
        )
    p = Path(list(spec.submodule_search_locations)[0]) / "franka_panda" / "panda.urdf"
    if not p.is_file():
        raise RobotModelError("pybullet_data has no franka_panda/panda.urdf", path=p)
    return p


def _load_panda(mesh_resolution: float) -> RobotModel:
    m = load_urdf(panda_urdf_path(), mesh_resolution=mesh_resolution)
    m.name = "panda"
    m.link_groups = {k: list(v) for k, v in PANDA_GROUPS.items()}
    m.ee_link = "panda_hand"
    m.tool_from_ee = make_transform((0, 0, 0.1034))  # Franka's documented flange-to-TCP offset minus 0.107
    return m


BUILTIN = {"panda": _load_panda}
