"""Per-instance views of a scene: only what is specific to the instance, never RGB or depth.

Stored inside the scene folder::

    instances/<name>/instance.json   {"name", "id", "color", "source", "shape": [C, T, H, W]}
    instances/<name>/masks.npy       uint8 [C, T, H, ceil(W/8)] = np.packbits(bool masks, axis=-1)
    instances/<name>/queries.npy     optional float32 [N, 4] (t, x, y, z): the instance's own queries
                                     (e.g. an imported NPZ's query_points; ``track --window given``)

An :class:`Instance` refers to its scene by path; loading it memory-maps the
packed masks.  Sampled queries and tracks live in the tracking output folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import Problem, SceneError
from masktrack.io.atomic import atomic_path, atomic_write_json

Color = tuple[int, int, int]
#: file name of an instance's own queries inside its folder (see the module docstring)
GIVEN_QUERIES = "queries.npy"


@dataclass
class Instance:
    """One object instance of a scene: its masks in every camera and frame."""

    name: str
    id: int
    color: Color
    scene_path: Path
    shape: tuple[int, int, int, int]  # C, T, H, W
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.scene_path / "instances" / self.name

    def packed(self) -> np.ndarray:
        """Memory-mapped packed masks uint8 [C, T, H, ceil(W/8)]."""
        p = self.folder / "masks.npy"
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SceneError(f"unreadable instance masks ({e})", path=p) from None

    def masks(self, camera: int | None = None, frame: int | None = None) -> np.ndarray:
        """Unpacked bool masks: [C, T, H, W], or one camera [T, H, W], or one frame [H, W]."""
        packed = self.packed()
        sel: Any = packed
        if camera is not None:
            sel = sel[camera]
            if frame is not None:
                sel = sel[frame]
        return np.unpackbits(np.asarray(sel), axis=-1, count=self.shape[3]).astype(bool)


def save_instance(
    scene_path: str | Path,
    name: str,
    masks: np.ndarray,
    *,
    id: int,
    color: Color,
    source: dict[str, Any] | None = None,
) -> Instance:
    """Store bool masks [C, T, H, W] as instance ``name`` of the scene (atomically)."""
    scene_path = Path(scene_path)
    if masks.ndim != 4 or masks.dtype != bool:
        raise SceneError(
            f"instance masks must be bool [C, T, H, W], got {masks.dtype} {masks.shape}", field=name
        )
    folder = scene_path / "instances" / name
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "masks.npy") as tmp:
        np.save(tmp, np.packbits(masks, axis=-1), allow_pickle=False)
    inst = Instance(
        name=name,
        id=int(id),
        color=(int(color[0]), int(color[1]), int(color[2])),
        scene_path=scene_path,
        shape=(int(masks.shape[0]), int(masks.shape[1]), int(masks.shape[2]), int(masks.shape[3])),
        source=source or {},
    )
    atomic_write_json(
        folder / "instance.json",
        {
            "name": name,
            "id": inst.id,
            "color": list(inst.color),
            "shape": list(inst.shape),
            "source": inst.source,
        },
    )
    return inst


def load_instance(scene_path: str | Path, name: str) -> Instance:
    scene_path = Path(scene_path)
    meta_path = scene_path / "instances" / name / "instance.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SceneError(
            f"scene has no instance {name!r} (instances: {', '.join(list_instances(scene_path)) or 'none'})",
            path=scene_path,
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise SceneError(f"invalid JSON ({e})", path=meta_path) from None
    probs = _instance_meta_problems(meta)
    if probs:
        raise SceneError(
            "invalid instance.json; re-add the instance (`masktrack instances add`)",
            path=meta_path,
            problems=probs,
        )
    return Instance(
        name=meta["name"],
        id=int(meta["id"]),
        color=tuple(meta["color"]),
        scene_path=scene_path,
        shape=tuple(meta["shape"]),
        source=meta.get("source", {}),
    )


def _instance_meta_problems(meta: Any) -> list[Problem]:
    """Every missing or mistyped field of an instance.json (hand edits fail here, not as a KeyError later)."""
    if not isinstance(meta, dict):
        return [Problem("", "expected a JSON object")]

    def ints(v: Any, n: int) -> bool:
        return (
            isinstance(v, list)
            and len(v) == n
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
        )

    probs = []
    if not isinstance(meta.get("name"), str):
        probs.append(Problem("name", "missing or not a string"))
    if not isinstance(meta.get("id"), int) or isinstance(meta.get("id"), bool):
        probs.append(Problem("id", "missing or not an integer"))
    if not ints(meta.get("color"), 3):
        probs.append(Problem("color", "missing or not 3 integers"))
    if not ints(meta.get("shape"), 4):
        probs.append(Problem("shape", "missing or not 4 integers [C, T, H, W]"))
    return probs


def list_instances(scene_path: str | Path) -> list[str]:
    root = Path(scene_path) / "instances"
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if (p / "instance.json").exists() and (p / "masks.npy").exists()
    )


def remove_instance(scene_path: str | Path, name: str) -> None:
    shutil.rmtree(Path(scene_path) / "instances" / name, ignore_errors=True)
