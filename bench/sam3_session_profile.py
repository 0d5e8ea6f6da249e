"""Where a SAM3 points session's time goes once the image features are cached (GPU, random weights).

Same video and prompts as ``bench/sessions_gpu.py`` (two grippers, the second
session starting mid-video, both directions).  Reports:

1. **A/B of the tracker speed-ups** (:mod:`masktrack.segment.sam3_tracker`
   and the CUDA graphs of :mod:`masktrack.segment.cuda_graphs`), each toggled on the same loaded model: warm (second) session seconds, and
   the two-sessions-vs-one ratio with all of them off and all on;
2. **per component** of one warm pass: wall time, GPU kernel time, host-device
   syncs, from ``torch.profiler`` ranges around the tracker's parts;
3. optionally, ``compile: true`` (torch.compile of memory attention): compile
   time, then warm-session seconds.

    python bench/sam3_session_profile.py --json out.json [--frames 300] [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sessions_gpu as sg


class Toggles:
    """Switch the installed tracker speed-ups off and on again (they are instance attributes)."""

    def __init__(self, backend) -> None:
        tracker = backend.model.tracker
        self.slots = {
            "frame_filter": [(tracker, "frame_filter")],
            "dense_pe": [(tracker.sam_prompt_encoder, "get_dense_pe")],
            "shared_first_self_attention": [(tracker.transformer.encoder, "forward")],
        }
        self.saved = {k: [o.__dict__.get(a) for o, a in v] for k, v in self.slots.items()}
        self.graphs = getattr(backend, "graphs", None)
        self.names = set(self.slots) | ({"cuda_graphs"} if self.graphs is not None else set())

    def set(self, on: set[str]) -> None:
        if self.graphs is not None:
            self.graphs.enabled = "cuda_graphs" in on
        for name, slots in self.slots.items():
            for (obj, attr), saved in zip(slots, self.saved[name]):
                if name in on and saved is not None:
                    setattr(obj, attr, saved)
                elif attr in obj.__dict__:
                    delattr(obj, attr)


def timed_session(backend, video, objs, prompts, start) -> float:
    with sg.Timer() as t:
        sg.mt_session(backend, video, objs, prompts, start)
    return round(t.s, 3)


def component_profile(backend, video, objs, prompts, start, frames_to_track: int) -> dict:
    """One warm forward pass under the profiler, with named ranges around the tracker's parts."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    tracker = backend.model.tracker
    wrapped = []

    def wrap(obj, attr, label):
        fn = getattr(obj, attr)
        had = attr in obj.__dict__

        def run(*a, **k):
            with record_function(label):
                return fn(*a, **k)

        setattr(obj, attr, run)
        wrapped.append((obj, attr, fn if had else None))

    lengths = Counter()
    ff = tracker.frame_filter

    def counting_filter(*a, **k):
        with record_function("mt::frame_filter"):
            out = ff(*a, **k)
        lengths[len(out)] += 1
        return out

    tracker.frame_filter = counting_filter
    wrap(tracker, "_get_image_feature", "mt::image_features(cache)")
    wrap(tracker, "_prepare_memory_conditioned_features", "mt::memory_conditioning")
    wrap(tracker.transformer.encoder, "forward", "mt::memory_attention")
    wrap(tracker, "_forward_sam_heads", "mt::sam_heads(prompt enc + mask decoder)")
    wrap(tracker, "_encode_new_memory", "mt::memory_encoder")
    wrap(tracker, "_get_orig_video_res_output", "mt::video_res_output")
    n = 0
    try:
        with backend.open_session(video, objs) as s:
            for p in prompts:
                s.add_prompt(p)
            it = s.propagate(start, reverse=False)
            next(it)  # prompts applied, first frame out
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                t0 = time.perf_counter()
                for _ in range(frames_to_track):
                    with record_function("mt::frame"):
                        if next(it, None) is None:
                            break
                    n += 1
                torch.cuda.synchronize()
                wall = time.perf_counter() - t0
            it.close()
    finally:
        tracker.frame_filter = ff
        for obj, attr, fn in reversed(wrapped):
            if fn is None:
                delattr(obj, attr)
            else:
                setattr(obj, attr, fn)
    events = prof.key_averages()
    rows = {}
    kernels_us = 0.0
    syncs = Counter()
    for e in events:
        dev = getattr(e, "device_time_total", None)
        if dev is None:
            dev = getattr(e, "cuda_time_total", 0.0)
        self_dev = getattr(e, "self_device_time_total", None)
        if self_dev is None:
            self_dev = getattr(e, "self_cuda_time_total", 0.0)
        if e.key.startswith("mt::"):
            rows[e.key] = {
                "calls": e.count,
                "cpu_ms_per_frame": round(e.cpu_time_total / 1000 / max(n, 1), 3),
                "gpu_ms_per_frame": round(dev / 1000 / max(n, 1), 3),
            }
        kernels_us += self_dev if e.device_type == torch.autograd.DeviceType.CUDA else 0.0
        if e.key in (
            "cudaStreamSynchronize",
            "cudaDeviceSynchronize",
            "cudaEventSynchronize",
            "cudaMemcpyAsync",
            "cudaLaunchKernel",
            "cuLaunchKernel",
            "cuLaunchKernelEx",
            "cudaLaunchKernelExC",
        ):
            syncs[e.key] += e.count
    top = sorted(
        (e for e in events if e.device_type == torch.autograd.DeviceType.CUDA),
        key=lambda e: (
            -(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0))
        ),
    )[:15]
    return {
        "frames": n,
        "wall_ms_per_frame": round(wall * 1000 / max(n, 1), 3),
        "gpu_kernel_ms_per_frame": round(kernels_us / 1000 / max(n, 1), 3),
        "components": rows,
        "runtime_calls_per_frame": {k: round(v / max(n, 1), 2) for k, v in syncs.items()},
        "memory_frames_selected": dict(sorted(lengths.items())),
        "top_kernels_ms_per_frame": [
            [
                e.key[:90],
                round(
                    (getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0))
                    / 1000
                    / max(n, 1),
                    3,
                ),
            ]
            for e in top
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--compile", action="store_true", help="also measure compile: true")
    ap.add_argument("--profile-frames", type=int, default=100)
    args = ap.parse_args()
    import os

    import torch

    from masktrack.io.video import open_video
    from masktrack.segment.registry import load_backend

    os.environ.setdefault("TQDM_DISABLE", "1")
    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "frames": args.frames}

    def dump(final: bool = False) -> None:
        if final:
            print(json.dumps(out, indent=1), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        folder = sg.make_video(Path(tmp) / "frames", args.frames)
        video = open_video(folder)
        backend = load_backend("sam3", random_weights=True, device="cuda")
        out["installed"] = backend.tracker_speedups
        toggles = Toggles(backend)
        everything = set(toggles.names)
        objs, prompts = sg.gripper_prompts(0)
        objs2, prompts2 = sg.gripper_prompts(args.frames // 2)

        # warm-up (cuDNN/cuBLAS heuristics, allocator) on a few frames, not timed
        toggles.set(everything)
        sg.mt_session(backend, video, objs, prompts, args.frames - 8, both=False)

        ab: dict = {}
        for label, on in (("all_off", set()), ("all_on", everything)):
            toggles.set(on)
            backend.cache.clear()
            cold = timed_session(backend, video, objs, prompts, 0)
            warm = timed_session(backend, video, objs2, prompts2, args.frames // 2)
            ab[label] = {
                "one_session_s": cold,
                "second_session_s": warm,
                "ratio_two_vs_one": round((cold + warm) / cold, 3),
            }
            out["ab"] = ab
            dump()
        # each speed-up alone on the warm cache (the cache holds everything now)
        warm_each = {}
        for label, on in (
            ("none", set()),
            ("frame_filter", {"frame_filter"}),
            ("frame_filter+dense_pe", {"frame_filter", "dense_pe"}),
            ("all_but_cuda_graphs", everything - {"cuda_graphs"}),
            ("all", everything),
        ):
            toggles.set(on)
            warm_each[label] = timed_session(backend, video, objs2, prompts2, args.frames // 2)
        out["warm_second_session_s"] = warm_each
        dump()

        # cuDNN attention first (a process-wide choice, measured, not installed)
        toggles.set(everything)
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            order = [
                SDPBackend.CUDNN_ATTENTION,
                SDPBackend.FLASH_ATTENTION,
                SDPBackend.EFFICIENT_ATTENTION,
                SDPBackend.MATH,
            ]
            with sdpa_kernel(order, set_priority=True):
                out["warm_second_session_cudnn_attention_first_s"] = timed_session(
                    backend, video, objs2, prompts2, args.frames // 2
                )
        except Exception as e:
            out["warm_second_session_cudnn_attention_first_s"] = f"{type(e).__name__}: {e}"
        dump()

        out["cuda_graphs"] = backend.cache_stats().get("cuda_graphs")
        for label, on in (("all_on", everything), ("all_but_cuda_graphs", everything - {"cuda_graphs"})):
            toggles.set(on)
            try:
                out[f"profile_{label}"] = component_profile(
                    backend, video, objs2, prompts2, args.frames // 2, args.profile_frames
                )
            except Exception as e:
                import traceback

                traceback.print_exc()
                out[f"profile_{label}"] = f"{type(e).__name__}: {e}"
            dump()
        toggles.set(everything)
        backend.close()

        if args.compile:
            with contextlib.suppress(Exception):
                torch._dynamo.reset()
            b = load_backend("sam3", random_weights=True, device="cuda", compile=True)
            res: dict = {"installed": b.tracker_speedups}
            with sg.Timer() as t:
                sg.mt_session(b, video, objs, prompts, 0)
            res["first_session_incl_compile_s"] = round(t.s, 2)
            b.cache.clear()
            cold = timed_session(b, video, objs, prompts, 0)
            warm = timed_session(b, video, objs2, prompts2, args.frames // 2)
            res.update(
                one_session_s=cold, second_session_s=warm, ratio_two_vs_one=round((cold + warm) / cold, 3)
            )
            out["compile"] = res
            b.close()
            dump()
        video.close()
    dump(final=True)


if __name__ == "__main__":
    main()
