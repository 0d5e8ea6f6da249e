"""Previews a person opens before spending GPU hours: a contact sheet and an overlay video.

The drawing functions are pure (arrays in, arrays out) so the demo and the
annotate app can reuse them: :func:`overlay`, :func:`legend_bar`,
:func:`label`, :func:`contact_sheet`.  :func:`preview_session` and
:func:`preview_composed` read the mask store and the video and write
``<output>/previews/{session,composed}_<name>.{png,mp4}`` atomically.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masktrack.errors import StoreError
from masktrack.io.atomic import atomic_path

Color = tuple[int, int, int]
BG = (32, 32, 32)
FONT_SCALE = 0.6


def palette(n: int) -> list[Color]:
    """``n`` well-separated saturated RGB colours (golden-ratio hues)."""
    out = []
    for i in range(n):
        h = (0.03 + i * 0.618034) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def overlay(
    frame: np.ndarray,
    masks: Sequence[np.ndarray] | np.ndarray,
    colors: Sequence[Color],
    alpha: float = 0.5,
    *,
    outline: int = 2,
) -> np.ndarray:
    """RGB uint8 frame with each mask tinted in its colour and outlined.

    The outline keeps thin or overlapping masks visible where the tint alone
    would wash out; later masks are drawn over earlier ones.
    """
    import cv2

    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    layer = frame.copy()
    for m, c in zip(masks, colors):
        layer[np.asarray(m, bool)] = c
    out = cv2.addWeighted(frame, 1.0 - alpha, layer, alpha, 0.0)
    if outline > 0:
        for m, c in zip(masks, colors):
            m8 = np.asarray(m, np.uint8)
            if not m8.any():
                continue
            contours, _ = cv2.findContours(m8, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, tuple(int(v) for v in c), outline, cv2.LINE_AA)
    return out


def label(
    img: np.ndarray,
    text: str,
    org: tuple[int, int] = (6, 6),
    *,
    scale: float = FONT_SCALE,
    color: Color = (255, 255, 255),
) -> np.ndarray:
    """Draw ``text`` on a dark box at top-left ``org`` (in place; returns ``img``)."""
    import cv2

    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    pad = 4
    cv2.rectangle(img, (x, y), (x + tw + 2 * pad, y + th + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(
        img, text, (x + pad, y + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA
    )
    return img


def legend_bar(
    names: Sequence[str], colors: Sequence[Color], width: int, *, title: str = "", scale: float = FONT_SCALE
) -> np.ndarray:
    """A dark strip: optional title, then a colour swatch and name per object, wrapping lines."""
    import cv2

    thick = max(1, int(round(scale * 2)))
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    line_h = th + base + 12
    items: list[tuple[str, Color | None]] = ([(title, None)] if title else []) + list(zip(names, colors))
    # Lay out first to know the height.
    rows: list[list[tuple[int, str, Color | None]]] = [[]]
    x = 10
    for text, c in items:
        tw = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0]
        w = tw + (th + 8 if c is not None else 0) + 24
        if x + w > width and rows[-1]:
            rows.append([])
            x = 10
        rows[-1].append((x, text, c))
        x += w
    bar = np.full((len(rows) * line_h + 8, width, 3), BG, np.uint8)
    for r, row in enumerate(rows):
        y = 4 + r * line_h + 6
        for x, text, c in row:
            tx = x
            if c is not None:
                cv2.rectangle(bar, (x, y), (x + th, y + th), tuple(int(v) for v in c), -1)
                cv2.rectangle(bar, (x, y), (x + th, y + th), (255, 255, 255), 1)
                tx = x + th + 8
            col = (255, 255, 255) if c is not None else (200, 200, 200)
            cv2.putText(bar, text, (tx, y + th), cv2.FONT_HERSHEY_SIMPLEX, scale, col, thick, cv2.LINE_AA)
    return bar


def _resize(img: np.ndarray, width: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    height = max(1, int(round(h * width / w)))
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if width < w else cv2.INTER_LINEAR)


def tile(
    frame: np.ndarray,
    masks: Sequence[np.ndarray],
    colors: Sequence[Color],
    index: int,
    *,
    width: int,
    alpha: float = 0.5,
    note: str = "",
) -> np.ndarray:
    """Original | overlay side by side, each ``width`` wide, labelled with the frame number."""
    left = _resize(frame, width)
    right = _resize(
        overlay(frame, masks, colors, alpha, outline=max(2, int(round(2 * frame.shape[1] / width)))), width
    )
    gap = np.full((left.shape[0], 4, 3), BG, np.uint8)
    t = np.concatenate([left, gap, right], axis=1)
    label(t, f"frame {index}")
    if note:
        label(t, note, (width + 4 + 6, 6))
    return t


def pick_frames(num_frames: int, every: int | None, max_tiles: int) -> list[int]:
    """Every ``every``-th frame, thinned evenly to at most ``max_tiles``; auto spacing if ``every`` is None."""
    if num_frames <= 0 or max_tiles <= 0:
        return []
    if every is None:
        every = max(1, int(np.ceil(num_frames / max_tiles)))
    idx = list(range(0, num_frames, max(1, every)))
    if len(idx) > max_tiles:
        pos = np.linspace(0, len(idx) - 1, max_tiles).round().astype(int)
        idx = [idx[p] for p in pos]
    return idx


def contact_sheet(
    tiles: Sequence[np.ndarray],
    names: Sequence[str],
    colors: Sequence[Color],
    *,
    title: str = "",
    columns: int = 3,
) -> np.ndarray:
    """Tiles in a grid under a legend bar (RGB uint8)."""
    if not tiles:
        raise ValueError("no tiles")
    columns = max(1, min(columns, len(tiles)))
    th, tw = tiles[0].shape[:2]
    gap = 16  # wider than the gap inside a tile, so original|overlay pairs read as one
    rows = (len(tiles) + columns - 1) // columns
    width = columns * tw + (columns + 1) * gap
    grid = np.full((rows * th + (rows + 1) * gap, width, 3), BG, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        grid[y - 2 : y + t.shape[0] + 2, x - 2 : x + t.shape[1] + 2] = (110, 110, 110)
        grid[y : y + t.shape[0], x : x + t.shape[1]] = t
    return np.concatenate([legend_bar(names, colors, width, title=title, scale=0.8), grid], axis=0)


# --------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------
def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    import cv2

    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")
    return path


def _codec() -> str:
    import av

    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise RuntimeError("no h264 or mpeg4 encoder in this FFmpeg build")


def write_video(path: str | Path, frames: Iterable[np.ndarray], *, fps: float = 30.0) -> tuple[Path, str]:
    """Encode RGB frames to MP4 (h264 if available, else mpeg4), atomically. Returns (path, codec)."""
    import av

    path = Path(path)
    codec = _codec()
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream: Any = None  # av.VideoStream (add_stream is typed as any stream kind)
            for img in frames:
                if stream is None:
                    h, w = img.shape[:2]
                    stream = container.add_stream(codec, rate=max(1, int(round(fps))))
                    stream.width, stream.height = w - w % 2, h - h % 2
                    stream.pix_fmt = "yuv420p"
                    if codec == "libx264":
                        stream.options = {"preset": "veryfast", "crf": "23"}
                    elif codec == "mpeg4":
                        stream.bit_rate = 4_000_000
                img = np.ascontiguousarray(img[: stream.height, : stream.width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            if stream is None:
                raise ValueError("no frames to encode")
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
    return path, codec


# --------------------------------------------------------------------------
# Previews of stored masks
# --------------------------------------------------------------------------
@dataclass
class Preview:
    """What a preview wrote."""

    name: str
    sheet: Path
    tiles: list[int]
    video: Path | None = None
    codec: str | None = None


MaskReader = Callable[[int], Sequence[np.ndarray]]


def render_preview(
    video_path: str | Path,
    read_masks: MaskReader,
    names: Sequence[str],
    colors: Sequence[Color],
    *,
    name: str,
    title: str,
    num_frames: int,
    size: tuple[int, int],
    sheet_path: Path,
    video_out: Path | None,
    every: int | None = None,
    max_tiles: int = 12,
    tile_width: int = 360,
    columns: int = 3,
    video_width: int = 960,
    alpha: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> Preview:
    """Contact sheet (and overlay video) of masks given by ``read_masks(frame)`` over the video.

    ``progress(done, total)`` is called per rendered frame (sheet tiles, then video frames).
    """
    from masktrack.io.video import open_video

    with open_video(video_path) as video:
        if video.num_frames != num_frames or video.size != size:
            raise StoreError(
                f"video has {video.num_frames} frames of {video.width}x{video.height} but the masks of {name!r} "
                f"have {num_frames} of {size[1]}x{size[0]}",
                path=video.path,
            )
        picked = pick_frames(num_frames, every, max_tiles)
        total = len(picked) + (num_frames if video_out is not None else 0)
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        tiles = []
        for f in picked:
            masks = read_masks(f)
            note = (
                " ".join(f"{n}:{int(np.count_nonzero(m))}px" for n, m in zip(names, masks))
                if len(names) <= 3
                else ""
            )
            tiles.append(tile(video.read(f), masks, colors, f, width=tile_width, alpha=alpha, note=note))
            tick()
        write_png(sheet_path, contact_sheet(tiles, names, colors, title=title, columns=columns))
        out = Preview(name, sheet_path, picked)
        if video_out is not None:
            legend = legend_bar(names, colors, min(video_width, size[1]))
            fps = float(getattr(getattr(video, "_stream", None), "average_rate", None) or 30.0)

            def frames() -> Iterable[np.ndarray]:
                for f in range(num_frames):
                    img = overlay(video.read(f), read_masks(f), colors, alpha)
                    if img.shape[1] > video_width:
                        img = _resize(img, video_width)
                    label(img, f"frame {f}")
                    lh = min(legend.shape[0], img.shape[0])
                    img[img.shape[0] - lh :, : legend.shape[1]] = legend[:lh, : img.shape[1]]
                    tick()
                    yield img

            out.video, out.codec = write_video(video_out, frames(), fps=fps)
    return out


def preview_session(cfg, session: str, *, video: bool = True, out_dir: Path | None = None, **kw) -> Preview:
    """Preview one session's objects (colours from its manifest)."""
    from masktrack.masks.store import MaskStore

    store = MaskStore(cfg.output).session(session)
    m = store.require_manifest()
    out_dir = Path(out_dir or Path(cfg.output) / "previews")
    colors = [tuple(o.color) for o in m.objects]
    return render_preview(
        cfg.video,
        lambda f: list(store.read_stack(f, m)),
        m.names,
        colors,  # type: ignore[arg-type]
        name=session,
        title=f"session {session} ({m.backend})",
        num_frames=m.num_frames,
        size=(m.height, m.width),
        sheet_path=out_dir / f"session_{session}.png",
        video_out=out_dir / f"session_{session}.mp4" if video else None,
        **kw,
    )


def preview_composed(
    cfg, name: str, *, video: bool = True, out_dir: Path | None = None, color: Color = (255, 0, 200), **kw
) -> Preview:
    """Preview one composed output (the holes an inpainter will fill)."""
    from masktrack.masks.export import ComposedStore

    store = ComposedStore(cfg.output, name)
    m = store.require_manifest()
    out_dir = Path(out_dir or Path(cfg.output) / "previews")
    return render_preview(
        cfg.video,
        lambda f: [store.read_frame(f, m)],
        [name],
        [color],
        name=name,
        title=f"composed {name} = {m['expr']}",
        num_frames=m["num_frames"],
        size=(m["height"], m["width"]),
        sheet_path=out_dir / f"composed_{name}.png",
        video_out=out_dir / f"composed_{name}.mp4" if video else None,
        **kw,
    )
