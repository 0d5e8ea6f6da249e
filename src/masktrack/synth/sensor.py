"""Real RGB-D sensor effects for synthetic scenes: depth noise, holes, flying pixels, RGB noise, bad calibration.

The renderer gives exact, dense depth; real sensors do not.  A
:class:`SensorModel` degrades what the *tracker sees* (the scene's depth,
colour and extrinsics) while the ground truth (GT tracks, kinematics, masks)
stays exact, so a tracker is scored against the truth, not against its own
noisy input.  Per camera and frame, in this order:

1. **Edges.** A pixel is on a depth discontinuity when its 3x3 valid
   neighbourhood spans more than ``edge_jump_m + edge_jump_rel * z``.
2. **Lateral edge noise.** An edge pixel takes the depth of a pixel
   displaced by N(0, ``lateral_px``) (rounded): silhouettes wobble by a
   pixel or so, as stereo matching and ToF footprints do.
3. **Flying pixels.** With probability ``flying``, an edge pixel gets a depth
   between its neighbourhood's nearest and farthest (uniform): the smeared
   points between foreground and background.
4. **Axial noise.** N(0, sigma(z)) with ``sigma(z) = axial_base_m + axial_k * z^2``
   (stereo: disparity noise makes depth noise grow with z squared).
5. **Holes.** An edge pixel is invalid (0) with probability ``edge_invalid``
   (stereo occlusion shadow, ToF mixed pixels); a pixel whose clean colour is
   darker than ``dark_level`` (gray 0..1) with probability ``dark_invalid``
   (low-albedo surfaces return too little signal/texture); beyond
   ``max_range_m`` always.
6. **Quantisation** to ``quant_m`` (1 mm depth units).

Colour: Gaussian blur (sigma ``rgb_blur_px``) then noise ``rgb_noise`` (uint8
levels) on top of the renderer's own noise.  Calibration:
:func:`perturb_extrinsics` rotates each camera by exactly ``deg`` degrees
about a random axis and shifts it by exactly ``mm`` millimetres in a random
direction - the error a hand-eye or checkerboard calibration leaves.

Preset numbers are typical of the datasheets and published evaluations
(D435: ~2% of z at 2 m RMS, i.e. ~2.5 mm at 1 m; Azure Kinect NFOV: ~1-2 mm
plus ~0.1% of z, more flying pixels, fewer stereo holes); they are a model of
the *kind* of error, not a calibration of any unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SensorModel:
    """How one RGB-D sensor degrades depth and colour (see the module docstring for the order)."""

    name: str
    axial_base_m: float = 0.0  # depth noise sigma at z = 0
    axial_k: float = 0.0  # ... plus axial_k * z^2 (1/m)
    lateral_px: float = 0.0  # sigma of the pixel shift of edge pixels' depth
    edge_jump_m: float = 0.02  # a 3x3 depth span above edge_jump_m + edge_jump_rel * z is a discontinuity
    edge_jump_rel: float = 0.02
    flying: float = 0.0  # probability an edge pixel is a flying pixel
    edge_invalid: float = 0.0  # probability an edge pixel is a hole
    dark_level: float = 0.0  # clean gray (0..1) below which a pixel may be a hole
    dark_invalid: float = 0.0  # ... with this probability
    max_range_m: float = 100.0
    quant_m: float = 0.0  # depth unit (0 = none)
    rgb_noise: float = 0.0  # extra colour noise sigma (uint8 levels)
    rgb_blur_px: float = 0.0  # Gaussian blur sigma (pixels)

    @property
    def is_ideal(self) -> bool:
        return self.name == "none"

    def sigma(self, z: np.ndarray) -> np.ndarray:
        """Axial depth noise sigma (metres) at depth z."""
        return self.axial_base_m + self.axial_k * np.square(z)

    def apply_depth(self, depth: np.ndarray, gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of one exact depth image [H, W] (0 = invalid) given its clean gray image [H, W] in 0..1."""
        d = np.asarray(depth, np.float64)
        if self.is_ideal:
            return d.astype(np.float32)
        valid = d > 0
        lo, hi = _local_range(d, valid)
        z = np.where(valid, d, 0.0)
        edge = valid & (hi - lo > self.edge_jump_m + self.edge_jump_rel * z)
        out = d.copy()
        ey, ex = np.nonzero(edge)
        if ey.size and self.lateral_px > 0:
            h, w = d.shape
            sy = np.clip(ey + np.rint(rng.normal(0, self.lateral_px, ey.size)).astype(int), 0, h - 1)
            sx = np.clip(ex + np.rint(rng.normal(0, self.lateral_px, ex.size)).astype(int), 0, w - 1)
            out[ey, ex] = np.where(valid[sy, sx], d[sy, sx], d[ey, ex])
        if ey.size and self.flying > 0:
            fly = rng.random(ey.size) < self.flying
            u = rng.random(ey.size)
            blend = lo[ey, ex] + u * (hi[ey, ex] - lo[ey, ex])
            out[ey, ex] = np.where(fly, blend, out[ey, ex])
        noise = rng.normal(0.0, 1.0, d.shape) * self.sigma(out)
        out = np.where(valid, out + noise, 0.0)
        holes = ~valid | (out > self.max_range_m) | (out <= 0)
        if self.edge_invalid > 0:
            holes |= edge & (rng.random(d.shape) < self.edge_invalid)
        if self.dark_invalid > 0:
            holes |= (np.asarray(gray) < self.dark_level) & (rng.random(d.shape) < self.dark_invalid)
        out = np.where(holes, 0.0, out)
        if self.quant_m > 0:
            out = np.rint(out / self.quant_m) * self.quant_m
        return out.astype(np.float32)

    def apply_rgb(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Blurred, noisier colour [H, W, 3] float (uint8 scale, not clipped)."""
        if self.is_ideal:
            return img
        out = np.asarray(img, np.float64)
        if self.rgb_blur_px > 0:
            import cv2

            out = np.asarray(cv2.GaussianBlur(out, (0, 0), self.rgb_blur_px), np.float64)
        if self.rgb_noise > 0:
            out = out + rng.normal(0, self.rgb_noise, out.shape)
        return out


def _local_range(d: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of valid depth over each pixel's 3x3 neighbourhood (its own depth where none)."""
    import cv2

    k = np.ones((3, 3), np.uint8)
    big = np.where(valid, d, np.inf).astype(np.float32)
    small = np.where(valid, d, -np.inf).astype(np.float32)
    lo = cv2.erode(big, k, borderType=cv2.BORDER_REPLICATE).astype(np.float64)
    hi = cv2.dilate(small, k, borderType=cv2.BORDER_REPLICATE).astype(np.float64)
    lo = np.where(np.isfinite(lo), lo, d)
    hi = np.where(np.isfinite(hi), hi, d)
    return lo, hi


SENSORS: dict[str, SensorModel] = {
    "none": SensorModel("none"),
    # active stereo: noise ~ z^2 (2.5 mm at 1 m), occlusion-shadow holes at edges, dark/shiny holes
    "realsense-d435": SensorModel(
        "realsense-d435",
        axial_base_m=0.0005,
        axial_k=0.0025,
        lateral_px=0.7,
        flying=0.15,
        edge_invalid=0.35,
        dark_level=0.12,
        dark_invalid=0.5,
        max_range_m=6.0,
        quant_m=0.001,
        rgb_noise=2.0,
        rgb_blur_px=0.6,
    ),
    # time of flight: ~1.5 mm + small growth, many flying pixels at edges, holes on very dark surfaces
    "azure-kinect": SensorModel(
        "azure-kinect",
        axial_base_m=0.0012,
        axial_k=0.0008,
        lateral_px=0.5,
        flying=0.4,
        edge_invalid=0.15,
        dark_level=0.06,
        dark_invalid=0.6,
        max_range_m=3.86,
        quant_m=0.001,
        rgb_noise=1.5,
        rgb_blur_px=0.5,
    ),
}


def get_sensor(name: str) -> SensorModel:
    """The preset ``name`` (``none``, ``realsense-d435``, ``azure-kinect``); ValueError names the presets."""
    try:
        return SENSORS[name]
    except KeyError:
        raise ValueError(f"unknown sensor {name!r} (presets: {', '.join(SENSORS)})") from None


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def perturb_extrinsics(
    R: np.ndarray, t: np.ndarray, mm: float, deg: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A world-to-camera pose (R, t) as a calibration ``mm`` / ``deg`` off would report it.

    The camera's centre moves by exactly ``mm`` millimetres in a random
    direction and its orientation turns by exactly ``deg`` degrees about a
    random axis (through the centre).
    """
    center = -R.T @ t
    shift = rng.normal(size=3)
    center = center + shift / np.linalg.norm(shift) * mm * 1e-3
    dR = _rotation(rng.normal(size=3), np.deg2rad(deg))
    R2 = dR @ R
    return R2, -R2 @ center
