"""Deterministic synthetic multi-view robot scenes with exact ground truth.

``generate(SynthConfig(), "out/")`` renders a textured table, an articulated arm
with a two-finger gripper pushing a box, seen by up to 4 RGB-D cameras, and
writes frame folders, a masktrack scene, GT instance masks and GT 3D tracks.
"""

from masktrack.synth.generate import (
    GTTracks,
    SynthConfig,
    SynthRender,
    SynthScene,
    generate,
    load_gt_tracks,
    render_scene,
)

__all__ = [
    "GTTracks",
    "SynthConfig",
    "SynthRender",
    "SynthScene",
    "generate",
    "load_gt_tracks",
    "render_scene",
]
