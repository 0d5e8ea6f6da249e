"""GPU benchmark of masktrack's SAM sessions against the raw predictors (random weights).

One run, one synthetic video (default 300 frames, 1280x720, JPEG folder):

1. **overhead**: raw predictor propagation FPS vs masktrack's session FPS,
   for SAM3's tracker (points, 2 objects), SAM3's text predictor, and SAM2.1
   tiny (points, 2 objects).  Both cold: the masktrack session decodes its
   frames and runs the image encoder during the pass (target: <= 10% slower).
   The raw SAM3 predictors run on the backend's model object, so they share
   its tracker sync fix and dense-PE memo (not the shared features).
2. **arm/gripper job**: a text session "robot and cable" (arm) + a points
   session (two grippers) as masktrack runs it (one backend, shared frames and
   encoder output, gripper session on SAM3's tracker with no bootstrap) vs the
   notebook's pass structure (a predictor per session, each loading the video;
   the gripper session bootstrapped by a text pass + propagation before its
   clicks and a second propagation).  Target: masktrack >= 2x faster.
3. **two sessions vs one**: two points sessions on the same video vs one,
   with shared features and CUDA graphs (target <= 1.3x); ``--repeat`` runs
   (default 3, caches and graphs emptied before each), the median reported.
   Run before 2. (the longest part), so a run cut short still has it.

Random weights are made to see objects (``random_weights`` in the sam2/sam3
backends): every clicked object is present on every frame, and SAM3's detector
reports ``--detections`` objects (default 3) for "robot and cable", of which
the arm session maps two and drops one.  The points measurements run with 2
and with 4 objects (``--objects``).  Each masktrack session's share of
non-empty object masks is reported (``nonempty``) so that a run on empty
outputs shows.

    python bench/sessions_gpu.py --json out.json [--frames 300] [--skip-sam2] [--sam2-sizes tiny,large]
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def make_video(folder: Path, frames: int, size: tuple[int, int] = (720, 1280), seed: int = 0) -> Path:
    """A textured background with three moving textured blobs, as numbered JPEGs."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    folder.mkdir(parents=True, exist_ok=True)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    blobs = [
        cv2.resize(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8), (s, s), interpolation=cv2.INTER_NEAREST)
        for s in (220, 120, 120)
    ]
    for t in range(frames):
        img = bg.copy()
        for k, b in enumerate(blobs):
            s = b.shape[0]
            x = int((w - s) * (0.5 + 0.4 * np.sin(0.02 * t + 2 * k)))
            y = int((h - s) * (0.5 + 0.4 * np.cos(0.015 * t + k)))
            img[y : y + s, x : x + s] = b
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def blob_center(t: int, k: int, size=(720, 1280)) -> tuple[float, float]:
    """Centre of blob ``k`` (0..2) on frame ``t``; k = 3 is a fixed point on the background."""
    h, w = size
    if k == 3:
        return 0.1 * w, 0.1 * h
    s = (220, 120, 120)[k]
    x = int((w - s) * (0.5 + 0.4 * np.sin(0.02 * t + 2 * k)))
    y = int((h - s) * (0.5 + 0.4 * np.cos(0.015 * t + k)))
    return x + s / 2, y + s / 2


_JSON_PATH: Path | None = None


def save(out: dict) -> None:
    """Print (and write to ``--json``) the results so far: a run cut short keeps what it measured."""
    print(json.dumps(out), flush=True)
    if _JSON_PATH is not None:
        _JSON_PATH.parent.mkdir(parents=True, exist_ok=True)
        _JSON_PATH.write_text(json.dumps(out, indent=1))


def sync() -> None:
    import torch

    torch.cuda.synchronize()


class Timer:
    def __enter__(self) -> Timer:
        sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        sync()
        self.s = time.perf_counter() - self.t0


def to_numpy_masks(video_res) -> np.ndarray:
    return (video_res[:, 0] > 0).cpu().numpy()


# --------------------------------------------------------------------------- masktrack side


def mt_session(backend, video, objects, prompts, start, *, text=None, both=True, info=None):
    """What the runner does with a session (minus mask-store writes): prompts, text, forward, backward.

    ``info`` (a dict) receives the share of non-empty object masks and, for text sessions, the detections.
    """
    n = nonempty = 0
    with backend.open_session(video, objects) as s:
        for p in prompts:
            s.add_prompt(p)
        if text is not None:
            s.add_text(text)
        for reverse in (False, True) if both else (False,):
            for _f, masks in s.propagate(start, reverse=reverse):
                n += 1
                nonempty += sum(bool(m.any()) for m in masks.values())
        if info is not None:
            info["nonempty"] = round(nonempty / max(1, n * len(objects)), 3)
            if text is not None:
                info["detections"] = len(s.detections)
                info["mapped"] = len(s.mapping)
                info["dropped"] = s.dropped_detections
    return n


def two_sessions(backend, video, first, second, repeat: int) -> dict:
    """A cold session, then a second one on the same video: ``repeat`` times, caches and graphs emptied each time."""
    t1s, t2s = [], []
    for _ in range(repeat):
        backend.cache.clear()
        if getattr(backend, "graphs", None) is not None:
            backend.graphs.clear()
        with Timer() as t1:
            mt_session(backend, video, *first)
        with Timer() as t2:
            mt_session(backend, video, *second)
        t1s.append(t1.s)
        t2s.append(t2.s)
    ratios = [round((a + b) / a, 3) for a, b in zip(t1s, t2s)]
    mid = sorted(range(repeat), key=lambda i: ratios[i])[repeat // 2]
    return {
        "one_session_s": round(t1s[mid], 2),
        "second_session_s": round(t2s[mid], 2),
        "ratio_two_vs_one": ratios[mid],  # the median run
        "ratios": ratios,
        "cache": backend.cache_stats(),
    }


BLOBS = (1, 2, 0, 3)  # the blobs the 1st, 2nd, ... object of a points session is clicked on


def gripper_prompts(t: int = 0, n: int = 2):
    from masktrack.segment.base import FramePrompt, SessionObject

    names = ("gripper_left", "gripper_right", "cube", "table")[:n]
    objs = tuple(SessionObject(name, i + 1, (255, 0, 0)) for i, name in enumerate(names))
    prompts = [
        FramePrompt(
            frame=t,
            object=o.name,
            points=np.array([blob_center(t, BLOBS[k])], np.float32),
            labels=np.array([1]),
        )
        for k, o in enumerate(objs)
    ]
    return objs, prompts


# --------------------------------------------------------------------------- SAM3


def bench_sam3(
    folder: Path,
    frames: int,
    out: dict,
    repeat: int = 3,
    objects: tuple[int, ...] = (2, 4),
    detections: int = 3,
) -> None:
    import torch

    from masktrack.io.video import open_video
    from masktrack.segment.base import SessionObject, TextPrompt
    from masktrack.segment.registry import load_backend

    video = open_video(folder)
    with Timer() as t:
        backend = load_backend("sam3", random_weights=True, random_detections=detections, device="cuda")
    out["sam3_build_s"] = round(t.s, 2)
    out["sam3_tracker_speedups"] = getattr(backend, "tracker_speedups", [])
    model = backend.model
    tracker = model.tracker
    H, W = video.height, video.width
    res: dict = {}

    # -- raw tracker API, as a user calls it (tracker.backbone = detector.backbone, init_state(video_path)),
    # then the masktrack points session, cold cache (decodes + encodes during the pass); 2 and 4 objects
    for n_obj in objects:
        tracker.backbone = model.detector.backbone
        with Timer() as t_load:
            state = tracker.init_state(video_path=str(folder))
        for k in range(n_obj):
            x, y = blob_center(0, BLOBS[k])
            tracker.add_new_points_or_box(
                state,
                frame_idx=0,
                obj_id=k + 1,
                points=torch.tensor([[x / W, y / H]]),
                labels=torch.tensor([1], dtype=torch.int32),
                rel_coordinates=True,
            )
        raw_on = 0
        with Timer() as t_prop:
            for _f, _ids, _low, vr, _sc in tracker.propagate_in_video(
                state,
                start_frame_idx=0,
                max_frame_num_to_track=frames,
                reverse=False,
                propagate_preflight=True,
                tqdm_disable=True,
            ):
                raw_on += int(to_numpy_masks(vr).any(axis=(1, 2)).sum())
        del state
        tracker.backbone = None
        sfx = "" if n_obj == 2 else f"_{n_obj}obj"
        res[f"raw_tracker_load_s{sfx}"] = round(t_load.s, 2)
        res[f"raw_tracker_fps{sfx}"] = round(frames / t_prop.s, 2)
        res[f"raw_tracker_fps_with_load{sfx}"] = round(frames / (t_prop.s + t_load.s), 2)
        res[f"raw_tracker_nonempty{sfx}"] = round(raw_on / (frames * n_obj), 3)
        objs_n, prompts_n = gripper_prompts(0, n_obj)
        backend.cache.clear()
        info: dict = {}
        with Timer() as t_mt:
            mt_session(backend, video, objs_n, prompts_n, 0, both=False, info=info)
        res[f"masktrack_points_session_fps{sfx}"] = round(frames / t_mt.s, 2)
        res[f"masktrack_points_nonempty{sfx}"] = info["nonempty"]
        res[f"points_overhead{sfx}"] = round(
            res[f"raw_tracker_fps{sfx}"] / res[f"masktrack_points_session_fps{sfx}"] - 1, 3
        )
    out["sam3_overhead"] = res
    save(out)
    objs, prompts = gripper_prompts(0)

    # -- raw text predictor (request API on the same model)
    pred = backend.predictor
    with Timer() as t_load:
        sid = pred.handle_request({"type": "start_session", "resource_path": str(folder)})["session_id"]
    pred.handle_request(
        {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "robot and cable"}
    )
    raw_objects = []
    with Timer() as t_prop:
        for item in pred.handle_stream_request(
            {
                "type": "propagate_in_video",
                "session_id": sid,
                "propagation_direction": "forward",
                "start_frame_index": 0,
            }
        ):
            raw_objects.append(len(item["outputs"]["out_obj_ids"]))
    pred.handle_request({"type": "close_session", "session_id": sid})
    res["raw_text_objects_per_frame"] = [min(raw_objects), max(raw_objects)] if raw_objects else [0, 0]
    res["raw_text_load_s"] = round(t_load.s, 2)
    res["raw_text_fps"] = round(frames / t_prop.s, 2)
    res["raw_text_fps_with_load"] = round(frames / (t_prop.s + t_load.s), 2)

    arm = (SessionObject("arm", 1, (0, 255, 0)), SessionObject("arm_2", 2, (0, 255, 255)))
    text = TextPrompt(frame=0, text="robot and cable")
    backend.cache.clear()
    info = {}
    with Timer() as t_mt:
        mt_session(backend, video, arm, [], 0, text=text, both=False, info=info)
    res["masktrack_text_session_fps"] = round(frames / t_mt.s, 2)
    res["masktrack_text_session"] = info
    res["text_overhead"] = round(res["raw_text_fps"] / res["masktrack_text_session_fps"] - 1, 3)
    out["sam3_overhead"] = res
    save(out)

    # -- two sessions vs one (points, shared features), 2 and 4 objects per session
    from masktrack.segment.base import FramePrompt, SessionObject

    for n_obj in objects:
        objs, prompts = gripper_prompts(0, n_obj)
        objs2, prompts2 = gripper_prompts(frames // 2, n_obj)
        two = two_sessions(backend, video, (objs, prompts, 0), (objs2, prompts2, frames // 2), repeat)
        # the cost of isolation: the same objects in one session (cold) vs split into the two sessions
        merged = tuple(
            SessionObject(f"{o.name}_{i}", 1 + len(objs) * i + j, o.color)
            for i, os_ in enumerate((objs, objs2))
            for j, o in enumerate(os_)
        )
        mprompts = [
            FramePrompt(frame=p.frame, object=f"{p.object}_{i}", points=p.points, labels=p.labels)
            for i, ps in enumerate((prompts, prompts2))
            for p in ps
        ]
        backend.cache.clear()
        with Timer() as t_all:
            mt_session(backend, video, merged, mprompts, 0)
        two[f"one_session_all_{2 * n_obj}_objects_s"] = round(t_all.s, 2)
        two["ratio_two_sessions_vs_one_merged_session"] = round(
            (two["one_session_s"] + two["second_session_s"]) / t_all.s, 3
        )
        out["sam3_two_sessions" if n_obj == 2 else f"sam3_two_sessions_{n_obj}obj"] = two
        save(out)

    # -- the arm/gripper job (last: the notebook's passes are the longest part of a run)
    objs, prompts = gripper_prompts(0)
    job: dict = {}
    backend.cache.clear()
    with Timer() as t_arm:
        mt_session(backend, video, arm, [], 0, text=text)
    with Timer() as t_grip:
        mt_session(backend, video, objs, prompts, 0)
    job["masktrack_arm_s"] = round(t_arm.s, 2)
    job["masktrack_gripper_s"] = round(t_grip.s, 2)
    job["masktrack_total_s"] = round(t_arm.s + t_grip.s, 2)

    def notebook_session(clicks: bool) -> None:
        sid = pred.handle_request({"type": "start_session", "resource_path": str(folder)})["session_id"]
        pred.handle_request(
            {"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": "robot and cable"}
        )
        for _ in pred.handle_stream_request(
            {
                "type": "propagate_in_video",
                "session_id": sid,
                "propagation_direction": "both",
                "start_frame_index": 0,
            }
        ):
            pass
        if clicks:
            base = 1000
            for k in (1, 2):
                x, y = blob_center(0, k)
                pred.handle_request(
                    {
                        "type": "add_prompt",
                        "session_id": sid,
                        "frame_index": 0,
                        "points": torch.tensor([[x / W, y / H]]),
                        "point_labels": torch.tensor([1], dtype=torch.int32),
                        "obj_id": base + k,
                    }
                )
            for _ in pred.handle_stream_request(
                {
                    "type": "propagate_in_video",
                    "session_id": sid,
                    "propagation_direction": "both",
                    "start_frame_index": 0,
                }
            ):
                pass
        pred.handle_request({"type": "close_session", "session_id": sid})

    with Timer() as t_arm:
        notebook_session(False)
    with Timer() as t_grip:
        notebook_session(True)
    job["notebook_arm_s"] = round(t_arm.s, 2)
    job["notebook_gripper_s"] = round(t_grip.s, 2)
    job["notebook_total_s"] = round(t_arm.s + t_grip.s, 2)
    job["notebook_predictor_builds_s"] = round(2 * out["sam3_build_s"], 2)  # not counted in the ratio
    job["speedup"] = round(job["notebook_total_s"] / job["masktrack_total_s"], 2)
    out["sam3_arm_gripper_job"] = job
    save(out)
    backend.close()
    video.close()


# --------------------------------------------------------------------------- SAM2


SAM2_CONFIGS = {"tiny": "configs/sam2.1/sam2.1_hiera_t.yaml", "large": "configs/sam2.1/sam2.1_hiera_l.yaml"}


def bench_sam2(folder: Path, frames: int, out: dict, repeat: int = 3, size: str = "tiny") -> None:
    import torch

    from masktrack.io.video import open_video
    from masktrack.segment.registry import load_backend

    video = open_video(folder)
    backend = load_backend("sam2", random_weights=True, device="cuda", config=SAM2_CONFIGS[size])
    pred = backend.predictor
    res: dict = {}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        with Timer() as t_load:
            state = type(pred).init_state(pred, video_path=str(folder))
        for k in (1, 2):
            x, y = blob_center(0, k)
            pred.add_new_points_or_box(
                state,
                frame_idx=0,
                obj_id=k,
                points=np.array([[x, y]], np.float32),
                labels=np.array([1], np.int32),
            )
        with Timer() as t_prop:
            for _f, _ids, vr in pred.propagate_in_video(state, start_frame_idx=0):
                to_numpy_masks(vr)
    del state
    res["raw_load_s"] = round(t_load.s, 2)
    res["raw_fps"] = round(frames / t_prop.s, 2)
    res["raw_fps_with_load"] = round(frames / (t_prop.s + t_load.s), 2)
    objs, prompts = gripper_prompts(0)
    backend.cache.clear()
    info: dict = {}
    with Timer() as t_mt:
        mt_session(backend, video, objs, prompts, 0, both=False, info=info)
    res["masktrack_nonempty"] = info["nonempty"]
    res["masktrack_session_fps"] = round(frames / t_mt.s, 2)
    res["overhead"] = round(res["raw_fps"] / res["masktrack_session_fps"] - 1, 3)
    objs2, prompts2 = gripper_prompts(frames // 2)
    res.update(two_sessions(backend, video, (objs, prompts, 0), (objs2, prompts2, frames // 2), repeat))
    out[f"sam2_{size}"] = res
    backend.close()
    video.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--skip-sam2", action="store_true")
    ap.add_argument("--skip-sam3", action="store_true")
    ap.add_argument("--objects", default="2,4", help="objects per points session (comma-separated counts)")
    ap.add_argument(
        "--detections", type=int, default=3, help="detections random SAM3 reports per text prompt"
    )
    ap.add_argument("--sam2-sizes", default="tiny", help="comma-separated SAM2.1 sizes to run: tiny,large")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of the two-sessions-vs-one measurement (median reported)"
    )
    args = ap.parse_args()
    global _JSON_PATH
    _JSON_PATH = args.json
    import os

    import torch

    os.environ.setdefault("TQDM_DISABLE", "1")
    out: dict = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "frames": args.frames,
        "size": "1280x720",
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_video(Path(tmp) / "frames", args.frames)
        runs = [
            (f"sam2_{size}", functools.partial(bench_sam2, size=size), args.skip_sam2)
            for size in args.sam2_sizes.split(",")
        ]
        sam3 = functools.partial(
            bench_sam3, objects=tuple(int(n) for n in args.objects.split(",")), detections=args.detections
        )
        for name, fn, skip in (*runs, ("sam3", sam3, args.skip_sam3)):
            if skip:
                continue
            try:
                fn(folder, args.frames, out, args.repeat)
            except Exception as e:  # keep the other backend's numbers
                import traceback

                traceback.print_exc()
                out[f"{name}_error"] = f"{type(e).__name__}: {e}"
            print(json.dumps(out, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
