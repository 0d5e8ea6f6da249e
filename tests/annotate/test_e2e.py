"""The annotation app driven in real headless Chromium (Debian's package) through Playwright.

Skips when no chromium binary is installed (CI installs it).  The screenshot
goes to ``$MASKTRACK_ARTIFACTS/annotate.png`` or ``test-artifacts/annotate.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from masktrack.annotate.app import create_app
from masktrack.prompts.model import load_prompts

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next(
    (
        p
        for p in (
            os.environ.get("MASKTRACK_CHROMIUM"),
            "/usr/bin/chromium",
            shutil.which("chromium"),
            shutil.which("chromium-browser"),
        )
        if p and Path(p).is_file()
    ),
    None,
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
]


def artifacts_dir() -> Path:
    d = Path(os.environ.get("MASKTRACK_ARTIFACTS") or REPO / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture()
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """Clicks in image coordinates, whatever the zoom and pan."""

    def __init__(self, page, url):
        self.p = page
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    def js(self, expr, arg=None):
        return self.p.evaluate(expr, arg)

    def screen(self, x, y):
        sx, sy = self.js("([x, y]) => window.masktrack.toScreen(x, y)", [x, y])
        box = self.p.locator("#canvas").bounding_box()
        return box["x"] + sx, box["y"] + sy

    def click(self, x, y, button="left", shift=False, alt=False):
        sx, sy = self.screen(x, y)
        mods = [m for m, on in (("Shift", shift), ("Alt", alt)) if on]
        for m in mods:
            self.p.keyboard.down(m)
        self.p.mouse.click(sx, sy, button=button)
        for m in reversed(mods):
            self.p.keyboard.up(m)

    def drag(self, x0, y0, x1, y1, button="left"):
        a, b = self.screen(x0, y0)
        c, d = self.screen(x1, y1)
        self.p.mouse.move(a, b)
        self.p.mouse.down(button=button)
        self.p.mouse.move(c, d, steps=6)
        self.p.mouse.up(button=button)

    def state(self):
        return self.js(
            "() => ({frame: window.masktrack.state.frame, current: window.masktrack.state.current, dirty: window.masktrack.state.dirty, view: window.masktrack.state.view, prompts: window.masktrack.exportPrompts()})"
        )

    def kf(self, obj, frame):
        for o in self.state()["prompts"]["objects"]:
            if o["name"] == obj:
                for k in o["keyframes"]:
                    if k["frame"] == frame:
                        return k
        return None

    def key(self, k):
        self.p.keyboard.press(k)


def test_annotate_in_chromium(browser, square_video, tmp_path, make_config, disk_backend, live):
    video = square_video[0]  # 12 frames of 96x128
    prompts = tmp_path / "prompts.json"
    app = create_app(video, prompts, config=make_config(video, objects=["gripper_left", "cup"]))
    errors: list[str] = []
    with live(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.on("pageerror", lambda e: errors.append(str(e)))
        expected = ("status of 409", "status of 422")  # the refused saves below
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and not any(x in m.text for x in expected)
                else None
            ),
        )
        ui = Page(page, url)
        assert page.locator("#object-list li").count() == 2
        assert ui.state()["frame"] == 0

        # gripper_left on frame 0: two positives, one negative (right click), one negative (shift-click), a box
        ui.click(20, 40)
        ui.click(30, 45)
        ui.click(60, 50, button="right")
        ui.click(50, 20, shift=True)
        ui.drag(10, 20, 45, 60)
        k = ui.kf("gripper_left", 0)
        assert k["points"] == [[20, 40], [30, 45], [60, 50], [50, 20]]
        assert k["labels"] == [1, 1, 0, 0]
        assert k["boxes"] == [[10, 20, 45, 60]]

        # undo one point (Ctrl+Z) and delete another with its × button in the list
        ui.click(33, 52)
        ui.key("Control+z")
        assert ui.kf("gripper_left", 0)["points"] == [[20, 40], [30, 45], [60, 50], [50, 20]]
        page.locator("#frame-prompts li[data-kind=point] button.x").nth(3).click()
        assert ui.kf("gripper_left", 0)["labels"] == [1, 1, 0]
        ui.click(12, 12, alt=False)
        ui.click(12, 12, alt=True)  # alt-click deletes the point under the cursor
        assert len(ui.kf("gripper_left", 0)["points"]) == 3

        # cup (key 2) on frame 0 and frame 3 (→ three times)
        ui.key("2")
        ui.click(80, 60)
        ui.click(90, 20, shift=True)
        for _ in range(3):
            ui.key("ArrowRight")
        assert ui.state()["frame"] == 3
        ui.click(85, 65)
        # gripper_left (key 1) on frame 3
        ui.key("1")
        ui.click(25, 50)
        ui.click(33, 52)
        page.locator("#undo-btn").click()  # undo via the button this time
        assert ui.kf("gripper_left", 3)["points"] == [[25, 50]]

        # keyboard stepping with shift (±10) clamps to the video
        ui.key("Shift+ArrowRight")
        assert ui.state()["frame"] == 11
        ui.key("Shift+ArrowLeft")
        assert ui.state()["frame"] == 1
        # the keyframe list jumps
        page.locator("#keyframe-list li[data-frame='3']").click()
        assert ui.state()["frame"] == 3

        # zoom with the wheel and pan with space-drag: clicks still land on the right image pixel
        scale0 = ui.state()["view"]["scale"]
        sx, sy = ui.screen(40, 30)
        page.mouse.move(sx, sy)
        page.mouse.wheel(0, -600)
        view = ui.state()["view"]
        assert view["scale"] > 1.5 * scale0
        page.keyboard.down("Space")
        page.mouse.move(sx, sy)
        page.mouse.down()
        page.mouse.move(sx - 120, sy - 40, steps=4)
        page.mouse.up()
        page.keyboard.up("Space")
        moved = ui.state()["view"]
        assert moved["ox"] == pytest.approx(view["ox"] - 120, abs=1) and moved["oy"] == pytest.approx(
            view["oy"] - 40, abs=1
        )
        ui.click(41.5, 31.25)  # sub-pixel precision under zoom and pan
        (x, y) = ui.kf("gripper_left", 3)["points"][-1]
        assert x == pytest.approx(41.5, abs=0.05) and y == pytest.approx(31.25, abs=0.05)
        ui.key("Control+z")  # (we only wanted the coordinates)
        ui.key("f")  # fit the frame to the view again
        assert ui.state()["view"]["scale"] == pytest.approx(scale0)

        # the left/right swap warning appears while clicking, and goes away with undo
        ui.click(110, 10)
        ui.click(115, 15)
        assert "left/right swapped" in page.locator("#warnings").inner_text()
        ui.key("Control+z")
        ui.key("Control+z")
        assert page.locator("#warnings li").count() == 0

        # live preview with the configured backend
        page.locator("#preview-toggle").check()
        page.wait_for_function(
            "() => document.querySelector('#preview-status').textContent.includes('test_disk')",
            timeout=10_000,
        )
        assert "px" in page.locator("#preview-status").inner_text()
        assert page.locator("#preview-status.error").count() == 0

        # add an object in the page
        page.fill("#new-object", "gripper_right")
        page.press("#new-object", "Enter")
        assert page.locator("#object-list li").count() == 3 and ui.state()["current"] == 2
        page.fill("#new-object", "not ok!")
        page.press("#new-object", "Enter")
        assert page.locator("#object-list li").count() == 3  # refused in the page
        page.fill("#new-object", "cup")
        page.locator("#add-object button").click()
        assert page.locator("#object-list li").count() == 3  # a duplicate name too
        assert page.input_value("#new-object") == "cup"  # kept for correction
        page.fill("#new-object", "")

        # the server's validation errors are shown in the page and nothing is written
        page.evaluate("() => { window.masktrack.state.objects[2].id = 1 }")
        page.locator("#save-btn").click()
        page.wait_for_selector("#errors li")
        assert "duplicate object id" in page.locator("#errors").inner_text()
        assert not prompts.exists()
        page.evaluate("() => { window.masktrack.state.objects[2].id = 3 }")
        ui.key("1")

        # save
        assert ui.state()["dirty"]
        page.locator("#save-btn").click()
        page.wait_for_function(
            "() => !window.masktrack.state.dirty && !window.masktrack.state.saving", timeout=10_000
        )
        assert page.locator("#save-state").inner_text() == "saved"
        saved = load_prompts(prompts)
        gl, cup = saved.object("gripper_left"), saved.object("cup")
        assert [k.frame for k in gl.keyframes] == [0, 3] and [k.frame for k in cup.keyframes] == [0, 3]
        assert gl.keyframes[0].points == [(20, 40), (30, 45), (60, 50)] and gl.keyframes[0].labels == [
            1,
            1,
            0,
        ]
        assert gl.keyframes[0].boxes == [(10, 20, 45, 60)]
        assert gl.keyframes[1].points == [(25, 50)] and gl.keyframes[1].labels == [1]
        assert cup.keyframes[0].points == [(80, 60), (90, 20)] and cup.keyframes[0].labels == [1, 0]
        assert cup.keyframes[1].points == [(85, 65)]
        assert not saved.problems(num_frames=12, size=(96, 128))
        assert (
            saved.names() == ["gripper_left", "cup", "gripper_right"]
            and saved.object("gripper_right").keyframes == []
        )
        assert page.locator("#errors li").count() == 0

        # screenshot on frame 0 (both objects, box, negatives) with the preview of gripper_left
        page.locator("#keyframe-list li[data-frame='0']").click()
        page.wait_for_function("() => window.masktrack.state.preview.frame === 0", timeout=10_000)
        shot = artifacts_dir() / "annotate.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000

        # reload: the saved clicks come back
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        reloaded = ui.state()["prompts"]
        assert reloaded["objects"][0]["keyframes"][0]["points"] == [[20, 40], [30, 45], [60, 50]]
        assert ui.state()["frame"] == 0  # opens on the first keyframe
        assert page.locator("#frame-prompts li[data-kind=point]").count() == 3
        assert page.locator("#frame-prompts li[data-kind=box]").count() == 1
        assert page.locator("#keyframe-list li").count() == 2
        assert {o["name"]: [k["frame"] for k in o["keyframes"]] for o in reloaded["objects"]} == {
            "gripper_left": [0, 3],
            "cup": [0, 3],
            "gripper_right": [],
        }

        # a second tab saves; this tab's save is refused and the page asks
        other = Page(browser.new_page(viewport={"width": 1000, "height": 700}), url)
        other.click(70, 70)
        other.p.locator("#save-btn").click()
        other.p.wait_for_function("() => !window.masktrack.state.dirty")
        before = prompts.read_bytes()
        ui.click(5, 90)
        page.locator("#save-btn").click()
        page.wait_for_selector("#conflict:not(.hidden)")
        assert prompts.read_bytes() == before
        page.locator("#conflict-reload").click()
        page.wait_for_function("() => !window.masktrack.state.dirty")
        assert [70, 70] in ui.kf("gripper_left", 0)["points"]  # the other tab's click
        assert [5, 90] not in ui.kf("gripper_left", 0)["points"]
    assert not errors, errors
