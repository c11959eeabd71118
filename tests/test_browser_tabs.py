"""Browser check of every feature tab in real Chromium, and one video-side feature run end to end.

``test_every_tab_renders`` clicks each tab by its accessible role and name and checks that the
tab's main controls (its primary button, inputs, status) are visible, that no console error was
logged, and saves a screenshot per tab under /tmp/browser_tabs/ (outside the repository).

``test_inpaint_extend_through_the_ui`` writes a small source clip, uploads it into the Inpaint
tab, picks mode "extend" and clicks Inpaint; then checks what a user sees (the status says
"Done", the result ``<video>`` loads) and, through the Python studio object, that the task's
result is an inpaint result at the extended size.
"""

from __future__ import annotations

import os

import re
import time
from pathlib import Path

import numpy as np
import pytest

from studio.media.video import Mp4Writer

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path("/tmp/browser_tabs")

# Tab name (as the UI shows it; "Admin › X" is tab X inside Admin) -> selectors of its main controls,
# primary button first.
TABS: dict[str, list[str]] = {
    "Generate": ["#gen-run", "#gen-stop", "#gen-prompt textarea", "#gen-status", "#gen-video"],
    "Library": ["#library-refresh", "#library-gallery", "#library-video", "#library-details", "#library-send-v2v"],
    "Batch": ["#batch-run", "#batch-prompts textarea", "#batch-totals", "#batch-table"],
    "Admin › Model Orchestrator": ["#orch-run", "#orch-prompt textarea", "#orch-resolution", "#orch-result"],
    "Scenes": ["#scene-run", "#scene-table", "#scene-status", "#scene-video"],
    "Inpaint": ["#inpaint-run", "#inpaint-upload", "#inpaint-task-id", "#inpaint-status", "#inpaint-video"],
    "Lip-Sync": ["#lipsync-run", "#lipsync-upload", "#lipsync-audio", "#lipsync-face", "#lipsync-status"],
    "Consistency": ["#consistency-run", "#consistency-register", "#consistency-reference", "#consistency-upload",
                    "#consistency-status"],
    "V2V": ["#v2v-run", "#v2v-upload", "#v2v-status", "#v2v-video"],
    "Admin › Monitor": ["#sla-level", "#sla-live", "#sla-badge", "#sla-latency-plot", "#sla-violations"],
}
# Buttons whose visible label is checked too (the primary action of each tab).
BUTTON_TEXT = {"#gen-run": "Generate", "#batch-run": "Submit batch", "#orch-run": "Recommend a model",
               "#scene-run": "Create edit", "#inpaint-run": "Inpaint", "#lipsync-run": "Lip-sync",
               "#consistency-run": "Track", "#v2v-run": "Transform"}

# Resolves once the <video> has its current frame decoded (readyState >= 2, HAVE_CURRENT_DATA: it
# can show a frame, not just its length), on an error, or after 10 s.
MEDIA_JS = """v => new Promise(resolve => {
  const report = () => resolve({src: v.currentSrc || v.src, readyState: v.readyState,
                                duration: v.duration, error: v.error && v.error.code});
  if (v.readyState >= 2) return report();
  v.preload = 'auto';
  v.addEventListener('loadeddata', report, {once: true});
  v.addEventListener('error', report, {once: true});
  setTimeout(report, 10000);
})"""


def require_chromium():
    """Playwright's sync API, with Debian's Chromium present. Without them the browser tests skip,
    except in CI, which installs both: there a missing browser is a failure, not a silent skip."""
    why = None if CHROMIUM.exists() else f"{CHROMIUM} is missing (Debian's chromium package); not downloading one"
    try:
        from playwright import sync_api
    except ImportError:
        why, sync_api = why or "playwright is not installed (requirements-dev.txt)", None
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return sync_api


@pytest.fixture(scope="module")
def browser():
    sync_api = require_chromium()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _open(browser, url: str, console_errors: list[str]):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(15_000)
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#gen-run")
    return page


def _real_errors(console_errors: list[str]) -> list[str]:
    return [e for e in console_errors if "favicon" not in e]


def _slug(name: str) -> str:
    return name.lower().replace(" › ", "-").replace(" ", "_")


def test_every_tab_renders(live_server, browser):
    from playwright.sync_api import expect

    started = time.monotonic()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []
    page = _open(browser, live_server.url, console_errors)
    try:
        tabs = page.get_by_role("tab")
        expect(tabs).to_have_count(len({name.split(" › ")[0] for name in TABS}))  # the visible, top-level ones
        for name, selectors in TABS.items():
            for level in name.split(" › "):  # Admin first, then its inner tab
                tab = page.get_by_role("tab", name=level, exact=True)
                tab.click()
                expect(tab).to_have_attribute("aria-selected", "true")
            for selector in selectors:
                expect(page.locator(selector).first, f"{name}: {selector}").to_be_visible()
                if selector in BUTTON_TEXT:
                    button = page.locator(selector)
                    expect(button).to_have_text(BUTTON_TEXT[selector])
                    expect(button).to_be_enabled()
            # Another tab's primary button is hidden while this one shows.
            for other, other_selectors in TABS.items():
                if other != name and other_selectors[0] in BUTTON_TEXT:
                    expect(page.locator(other_selectors[0])).to_be_hidden()
            # No error toast on any tab.
            expect(page.locator(".toast-body.error, [data-testid='toast-body'].error")).to_have_count(0)
            if name.endswith("Monitor"):
                # The Live timer's first tick (every 2 s once the tab is shown) fills the badge
                # and the plots.
                expect(page.locator("#sla-badge")).to_contain_text(re.compile("(MEETS|VIOLATES) .* SLA"),
                                                                   timeout=15_000)
                expect(page.locator("#sla-latency-plot").locator("canvas, svg").first).to_be_visible()
            page.wait_for_timeout(200)  # let plots and uploads finish painting for the screenshot
            page.screenshot(path=str(SCREENSHOTS / f"{_slug(name)}.png"), full_page=True)
    finally:
        page.close()

    assert not _real_errors(console_errors), console_errors
    assert time.monotonic() - started < 60


#: Content wider than the viewport (CSS px): (tab, element id or tag, its right edge, the viewport's width).
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.height > 0 && box.right > width + 1 && getComputedStyle(el).position !== 'fixed') {
      wide.push([el.id || el.tagName.toLowerCase(), Math.round(box.right), width]);
    }
  }
  return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 5)};
}"""


def _open_tab(page, name: str) -> None:
    """Click tab ``name``, through the "More tabs" menu where a narrow screen folded it away."""
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.first.is_visible():
        tab.first.click()
    else:
        menu = page.locator(".overflow-menu:visible").first
        menu.get_by_role("button", name="More tabs").click()
        menu.locator(".overflow-dropdown button", has_text=name).first.click()
    from playwright.sync_api import expect

    expect(page.get_by_role("tab", name=name, exact=True).first).to_have_attribute("aria-selected", "true")


@pytest.mark.parametrize("width, height", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_no_tab_overflows_a_desktop_or_a_phone_screen(live_server, browser, width, height):
    """Every tab at a 1280 px desktop and a 390 px phone: nothing wider than the screen (no
    sideways scrolling); a screenshot of each at that width lands in /tmp/browser_tabs/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(15_000)
    overflowing = {}
    try:
        page.goto(live_server.url, wait_until="domcontentloaded")
        page.wait_for_selector("#gen-run")
        # The check itself: a 3000 px strip is caught, and gone again.
        page.evaluate("() => { const strip = document.createElement('div'); strip.id = 'too-wide'; "
                      "strip.style.cssText = 'width: 3000px; height: 4px'; document.body.appendChild(strip); }")
        assert page.evaluate(OVERFLOW_JS)["scroll"] > width
        page.evaluate("() => document.getElementById('too-wide').remove()")
        for name in TABS:
            for level in name.split(" › "):
                _open_tab(page, level)
            page.wait_for_timeout(300)
            found = page.evaluate(OVERFLOW_JS)
            if found["scroll"] > found["width"] + 1:
                overflowing[name] = found
            page.screenshot(path=str(SCREENSHOTS / f"{_slug(name)}-{width}px.png"), full_page=True)
    finally:
        page.close()
    assert not overflowing, overflowing


def _source_clip(path: Path, width: int = 192, height: int = 128, frames: int = 8, fps: int = 8) -> Path:
    """A textured background with a bright square moving right, as an H.264 mp4."""
    import cv2

    rng = np.random.default_rng(0)
    background = cv2.resize(rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8), (width, height),
                            interpolation=cv2.INTER_CUBIC)
    writer = Mp4Writer(path, width, height, fps)
    for i in range(frames):
        frame = background.copy()
        x = 20 + 4 * i
        frame[40:72, x:x + 32] = (240, 60, 40)
        writer.write(frame)
    return writer.close()


def _last_task_id(studio, kind: str) -> str:
    store = studio.store
    with store.database.connect() as db:
        row = db.exec_driver_sql("SELECT id FROM tasks WHERE kind = ? ORDER BY created_at DESC, seq DESC LIMIT 1",
                                 (kind,)).first()
    assert row is not None, f"no {kind} task was created"
    return row.id


def test_inpaint_extend_through_the_ui(live_server, browser, tmp_path):
    from playwright.sync_api import expect

    started = time.monotonic()
    source = _source_clip(tmp_path / "source.mp4")
    console_errors: list[str] = []
    page = _open(browser, live_server.url, console_errors)
    try:
        page.get_by_role("tab", name="Inpaint", exact=True).click()
        expect(page.locator("#inpaint-run")).to_be_visible()

        page.locator("#inpaint-upload input[type='file']").set_input_files(str(source))
        # The upload is done when the component previews it in a <video> of its own.
        page.wait_for_function(
            "() => { const v = document.querySelector('#inpaint-upload video');"
            " return v && v.getAttribute('src'); }", timeout=20_000)

        mode = page.get_by_role("radio", name="extend", exact=True)
        mode.check()
        expect(mode).to_be_checked()
        page.locator("#inpaint-run").click()

        expect(page.locator("#inpaint-status")).to_contain_text("Done", timeout=60_000)
        page.wait_for_function(
            "() => { const v = document.querySelector('#inpaint-video video');"
            " return v && v.getAttribute('src'); }", timeout=15_000)
        media = page.locator("#inpaint-video video").evaluate(MEDIA_JS)
        status_text = page.locator("#inpaint-status").inner_text()
        page.wait_for_timeout(300)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "inpaint_extend_result.png"), full_page=True)
    finally:
        page.close()

    assert media["src"], media
    assert media["error"] is None, media
    assert media["readyState"] >= 2 and media["duration"] > 0, media
    # 192x128 grown to the default 1:1 aspect: the height grows to match the width.
    assert "192x192" in status_text, status_text

    task_id = _last_task_id(live_server.studio, "inpaint")
    result = live_server.studio.result(task_id, live_server.studio.store.get(task_id).owner)
    meta = result.metadata
    assert meta.feature == "inpaint"
    assert (meta.width, meta.height) == (192, 192)
    assert meta.frames == 8
    assert meta.source and meta.source.get("upload"), meta.source
    assert not _real_errors(console_errors), console_errors
    assert time.monotonic() - started < 75


def test_the_inpaint_box_is_drawn_on_a_frame_not_typed(live_server, browser, tmp_path):
    """Upload a clip to Inpaint, show its first frame, paint over the red square: the box fields
    become the painted region (in the clip's own pixels), no coordinate typed."""
    from playwright.sync_api import expect

    source = _source_clip(tmp_path / "source.mp4")  # 192 x 128; the square covers x 20-52, y 40-72 at first
    console_errors: list[str] = []
    page = _open(browser, live_server.url, console_errors)
    try:
        _open_tab(page, "Inpaint")
        page.locator("#inpaint-upload input[type='file']").set_input_files(str(source))
        page.wait_for_function(
            "() => { const v = document.querySelector('#inpaint-upload video');"
            " return v && v.getAttribute('src'); }", timeout=20_000)
        page.locator("#inpaint-draw").get_by_text("Draw the object").click()
        page.locator("#inpaint-draw-show").click()
        canvas = page.locator("#inpaint-draw-editor canvas").first
        expect(canvas).to_be_visible(timeout=15_000)
        zoom = page.locator("#inpaint-draw-editor .zoom-number span")
        expect(zoom).to_contain_text("%")
        page.wait_for_timeout(1000)  # the frame is painted into the canvas
        page.locator("#inpaint-draw-editor button[aria-label='Brush']").first.click()
        # The frame sits centred in the canvas at the shown zoom: frame pixel (x, y) is on screen at
        # origin + (x, y) * scale.
        box, scale = canvas.bounding_box(), float(zoom.inner_text().rstrip("%")) / 100
        origin = (box["x"] + box["width"] / 2 - 96 * scale, box["y"] + box["height"] / 2 - 64 * scale)
        page.mouse.move(origin[0] + 26 * scale, origin[1] + 46 * scale)
        page.mouse.down()
        for x, y in ((46, 46), (46, 66), (26, 66), (36, 56)):
            page.mouse.move(origin[0] + x * scale, origin[1] + y * scale, steps=8)
        page.mouse.up()
        fields = [page.locator(f"#inpaint-{name} input") for name in ("x1", "y1", "x2", "y2")]
        # The fields start at (20, 20, 80, 80). Wait on y1: a 12 px brush at 100 % zoom puts the
        # stroke's x1 at 26 - 6 = 20, the default itself, but its y1 at 40 or more.
        expect(fields[1]).not_to_have_value("20", timeout=15_000)
        x1, y1, x2, y2 = (float(field.input_value()) for field in fields)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "inpaint_drawn_box.png"), full_page=True)
    finally:
        page.close()
    # A stroke over 26-46 x 46-66 with a brush of about 12-24 px: the box covers the stroke, and not
    # much more (its own clip's pixels, whatever the zoom on screen).
    assert 10 <= x1 <= 26 and 30 <= y1 <= 46 and 46 <= x2 <= 62 and 66 <= y2 <= 82, (x1, y1, x2, y2)


def test_shots_are_added_picked_and_moved_with_buttons(live_server, browser):
    """Scenes: Add shot appends a row (and a segment to the timeline strip); clicking a shot and
    Move up reorders the table, and the strip follows."""
    from playwright.sync_api import expect

    console_errors: list[str] = []
    page = _open(browser, live_server.url, console_errors)
    try:
        _open_tab(page, "Scenes")
        table = page.locator("#scene-table")
        rows = table.locator("[role='row']")  # the header row, then one per shot
        segments = page.locator("#scene-timeline .scene-shot")
        expect(rows).to_have_count(4)
        expect(segments).to_have_count(3)
        page.locator("#scene-add").click()
        expect(rows).to_have_count(5)
        expect(segments).to_have_count(4)
        table.get_by_text("Action: knight rides through forest").click()
        page.keyboard.press("Escape")  # leave the cell's editor: the click was only to pick the shot
        page.locator("#scene-up").click()
        expect(rows.nth(2)).to_contain_text("Action: knight rides through forest")
        expect(rows.nth(3)).to_contain_text("Close-up: knight preparing armor")
        expect(segments.nth(1)).to_contain_text("Action: knight rides through forest")
    finally:
        page.close()
    assert not _real_errors(console_errors), console_errors


def test_a_batch_result_plays_in_the_batch_tab(live_server, browser):
    """Batch: two prompts run; picking a result in the gallery plays its video (not a thumbnail only)."""
    from playwright.sync_api import expect

    console_errors: list[str] = []
    page = _open(browser, live_server.url, console_errors)
    try:
        _open_tab(page, "Batch")
        page.locator("#batch-prompts textarea").fill("a paper crane in the wind\na glass whale at night")
        page.locator("#batch-run").click()
        expect(page.locator("#batch-totals")).to_contain_text("2/2 finished", timeout=90_000)
        page.locator("#batch-gallery button img").first.click()
        video = page.locator("#batch-video video")
        expect(video).to_be_visible(timeout=15_000)
        media = video.evaluate(MEDIA_JS)
    finally:
        page.close()
    assert media["readyState"] >= 2 and media["duration"] > 0 and not media["error"], media
    assert not _real_errors(console_errors), console_errors


def test_an_example_fills_the_tab_and_runs(live_server, browser):
    """Inpaint: one click on the example puts its clip and the blue box in the form; Inpaint
    then removes the box (issue 14, part 3: gr.Examples on the creative tabs)."""
    from playwright.sync_api import expect

    from components import examples

    console_errors: list[str] = []
    page = _open(browser, live_server.url, console_errors)
    try:
        _open_tab(page, "Inpaint")
        page.get_by_text("Try an example (removes the blue box)").locator("..").locator("tbody tr, button").first.click()
        page.wait_for_function(
            "() => { const v = document.querySelector('#inpaint-upload video');"
            " return v && v.getAttribute('src'); }", timeout=20_000)
        expect(page.locator("#inpaint-x2 input")).to_have_value(str(examples.BOX[2]))
        page.locator("#inpaint-run").click()
        expect(page.locator("#inpaint-status")).to_contain_text("Done", timeout=60_000)
    finally:
        page.close()
    task_id = _last_task_id(live_server.studio, "inpaint")
    spec = live_server.studio.store.get(task_id).request
    x1, y1, x2, y2 = examples.BOX
    assert (spec["mode"], list(spec["bbox_xywh"])) == ("remove", [x1, y1, x2 - x1, y2 - y1]), spec
    assert not _real_errors(console_errors), console_errors
