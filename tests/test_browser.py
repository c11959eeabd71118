"""Browser smoke test: the Generate tab driven end to end in real Chromium.

Types a prompt, picks a short 480p run (1 s at 12 fps, the default 50 steps on the tiny model),
clicks Generate and checks what a user sees: the live preview changes while it denoises, the
status goes from "Denoising step i/n" to "Done: ...", and the finished video loads in a
``<video>`` element that can play. A screenshot lands in the test's tmp_path and in
/tmp/browser_smoke.png.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.test_browser_tabs import CHROMIUM, LAUNCH_ARGS, MEDIA_JS, OVERFLOW_JS, require_chromium
from tests.test_browser_tabs import browser  # noqa: F401  (fixture)

SCREENSHOT_COPY = Path("/tmp/browser_smoke.png")

# Installed before clicking Generate: records every distinct preview <img> src and every status
# text, so that short-lived values between two polls are not missed.
OBSERVER_JS = """
() => {
  const seen = {previewSrcs: [], statuses: []};
  window.__smoke = seen;
  const preview = document.querySelector('#gen-strip');
  const status = document.querySelector('#gen-status');
  const record = () => {
    for (const img of preview.querySelectorAll('img')) {
      const src = img.getAttribute('src');
      if (src && !seen.previewSrcs.includes(src)) seen.previewSrcs.push(src);
    }
    const text = (status.querySelector('[data-testid="markdown"]') || status).innerText.trim();
    if (text && seen.statuses[seen.statuses.length - 1] !== text) seen.statuses.push(text);
  };
  const options = {subtree: true, childList: true, attributes: true, characterData: true};
  new MutationObserver(record).observe(preview, options);
  new MutationObserver(record).observe(status, options);
  record();
}
"""


def _set_slider(page, elem_id: str, value: float, attempts: int = 3) -> None:
    """Type into a Gradio slider's number box and commit it (Enter, then blur).

    A slider inside an accordion that has just opened can be re-rendered after the first fill,
    which puts its old value back; so the value is typed again until the range input shows it.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator(f"#{elem_id} input[data-testid='number-input']")
    range_input = page.locator(f"#{elem_id} input[type='range']")
    range_input.wait_for(state="visible")
    for attempt in range(1, attempts + 1):
        box.fill(str(value))
        box.press("Enter")
        box.blur()
        try:
            page.wait_for_function("([el, v]) => Number(el.value) === v",
                                   arg=[range_input.element_handle(), value], timeout=5_000)
            return
        except PlaywrightTimeout:
            if attempt == attempts:
                raise


def _pick_dropdown(page, elem_id: str, choice: str) -> None:
    combo = page.locator(f"#{elem_id} input[role='combobox']")
    combo.click()
    page.locator("ul[role='listbox'] li", has_text=choice).first.click()
    page.wait_for_function("([el, v]) => el.value === v", arg=[combo.element_handle(), choice], timeout=5_000)


def test_generate_in_chromium(live_server, tmp_path):
    sync_api = require_chromium()

    started = time.monotonic()
    console_errors: list[str] = []
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(15_000)
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
            page.goto(live_server.url, wait_until="domcontentloaded")
            page.wait_for_selector("#gen-run")
            expect = sync_api.expect

            page.locator("#gen-prompt textarea").fill("a red fox running through snow")
            _set_slider(page, "gen-duration", 1)
            _set_slider(page, "gen-fps", 12)
            _pick_dropdown(page, "gen-resolution", "480p")
            # Steps stay at the default 50 (inside the closed "Sampling" accordion): about 2 s on
            # the tiny model, long enough for several throttled previews.

            page.evaluate(OBSERVER_JS)
            page.locator("#gen-run").click()

            status = page.locator("#gen-status")
            expect(status).to_contain_text("Done", timeout=45_000)

            # The finished video: a <video> with a src that loads and has a duration.
            video = page.locator("#gen-video video")
            page.wait_for_function(
                "() => { const v = document.querySelector('#gen-video video');"
                " return v && v.getAttribute('src'); }", timeout=15_000)
            media = video.evaluate(MEDIA_JS)
            seen = page.evaluate("() => window.__smoke")
            filled = page.evaluate(OVERFLOW_JS)  # the frame strip full of frames stays inside the page

            task_id = page.locator("#gen-task-id textarea, #gen-task-id input").first.input_value()
            page.wait_for_timeout(300)  # let the video's first frame paint for the screenshot
            shot = tmp_path / "browser_smoke.png"
            page.screenshot(path=str(shot), full_page=True)
            shutil.copyfile(shot, SCREENSHOT_COPY)
        finally:
            chromium.close()

    statuses = seen["statuses"]
    assert any(s.startswith("Denoising step") for s in statuses), statuses
    assert statuses[-1].startswith("Done"), statuses
    assert len(seen["previewSrcs"]) >= 2, f"preview changed fewer than twice: {seen['previewSrcs']}"

    assert media["src"], media
    assert media["error"] is None, media
    assert media["readyState"] >= 2 and media["duration"] > 0, media
    assert filled["scroll"] <= filled["width"] + 1, filled

    # The run used what was set in the page, not the defaults.
    result = live_server.studio.result(task_id, live_server.studio.store.get(task_id).owner)
    assert result.metadata.fps == 12
    assert result.metadata.frames == 12
    assert result.metadata.height == 480
    assert result.metadata.num_inference_steps == 50
    assert not [e for e in console_errors if "favicon" not in e], console_errors
    assert time.monotonic() - started < 60


def _short_run_page(browser, url: str):  # noqa: F811
    """The studio's page with a prompt and a short 480p run set (1 s at 12 fps)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(15_000)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#gen-run")
    page.locator("#gen-prompt textarea").fill("a red fox running through snow")
    _set_slider(page, "gen-duration", 1)
    _set_slider(page, "gen-fps", 12)
    _pick_dropdown(page, "gen-resolution", "480p")
    return page


def test_fast_mode_and_a_first_frame_from_the_page(live_server, browser, tmp_path):  # noqa: F811
    """The Generate tab's newer controls, as a user works them: the Fast mode radio, then a first
    frame uploaded in "Start from an image" (the model follows the picture)."""
    import cv2
    from playwright.sync_api import expect
    from skimage import data

    picture = tmp_path / "astronaut.png"
    cv2.imwrite(str(picture), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    task_ids = []
    page = _short_run_page(browser, live_server.url)
    try:
        status = page.locator("#gen-status")
        task_box = page.locator("#gen-task-id textarea, #gen-task-id input").first

        page.locator("#gen-mode label", has_text="Fast").click()
        page.locator("#gen-run").click()
        expect(status).to_contain_text("Done", timeout=45_000)
        task_ids.append(task_box.input_value())

        page.locator("#gen-mode label", has_text="Standard").click()
        page.locator("#gen-images").get_by_text("Start from an image").click()
        page.locator("#gen-first-image input[type='file']").set_input_files(str(picture))
        page.wait_for_selector("#gen-first-image img", timeout=15_000)
        page.locator("#gen-run").click()
        expect(status).not_to_contain_text("Done", timeout=15_000)  # the new run took over the line
        expect(status).to_contain_text("Done", timeout=60_000)
        task_ids.append(task_box.input_value())
    finally:
        page.close()

    studio = live_server.studio
    fast, pictured = (studio.result(t, studio.store.get(t).owner).metadata for t in task_ids)
    assert (fast.mode, fast.num_inference_steps, fast.guidance_scale) == ("fast", 4, 1.0)
    assert (pictured.model, pictured.conditioning) == ("tiny-i2v-first", "first frame")


def test_a_lora_added_and_picked_in_the_page_is_applied(live_server, browser, tmp_path):  # noqa: F811
    """The LoRAs accordion: upload a file, name it, add it (it is picked at once), generate."""
    from playwright.sync_api import expect
    from safetensors.torch import save_file

    from studio.models.tiny import tiny_attention_lora

    lora = tmp_path / "page-style.safetensors"
    save_file(tiny_attention_lora(11, 0.5), lora)
    page = _short_run_page(browser, live_server.url)
    try:
        page.locator("#gen-loras").get_by_text("LoRAs").first.click()
        page.locator("#gen-lora-file input[type='file']").set_input_files(str(lora))
        page.locator("#gen-lora-name textarea, #gen-lora-name input").first.fill("page-style")
        page.locator("#gen-lora-add").click()
        expect(page.locator("#gen-lora-status")).to_contain_text("Added page-style", timeout=20_000)
        expect(page.locator("#gen-lora-pick")).to_contain_text("page-style")
        page.locator("#gen-run").click()
        expect(page.locator("#gen-status")).to_contain_text("Done", timeout=45_000)
        task_id = page.locator("#gen-task-id textarea, #gen-task-id input").first.input_value()
    finally:
        page.close()
    studio = live_server.studio
    meta = studio.result(task_id, studio.store.get(task_id).owner).metadata
    assert [(lora["name"], lora["scale"]) for lora in meta.loras] == [("page-style", 1.0)]


def test_the_library_survives_a_reload_and_sends_a_video_on(live_server, browser):  # noqa: F811
    """Make a clip, reload the page: it is in the Library. Pick it: it plays; "Send to V2V" opens
    V2V with the clip as its source; "Reuse settings" fills Generate again; "Continue video" starts
    Generate from its last frame; "Send to Scenes" makes its prompt a shot. No id is typed."""
    from playwright.sync_api import expect

    page = _short_run_page(browser, live_server.url)
    try:
        page.locator("#gen-prompt textarea").fill("a lantern drifting on a lake")
        page.locator("#gen-run").click()
        expect(page.locator("#gen-status")).to_contain_text("Done", timeout=45_000)
        task_id = page.locator("#gen-task-id textarea, #gen-task-id input").first.input_value()

        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector("#gen-run")
        page.get_by_role("tab", name="Library", exact=True).click()
        thumbnail = page.locator("#library-gallery button img").first
        expect(thumbnail).to_be_visible(timeout=15_000)
        expect(page.locator("#library-gallery")).to_contain_text("a lantern drifting on a lake")
        thumbnail.click()
        expect(page.locator("#library-task-id textarea, #library-task-id input").first).to_have_value(task_id)
        expect(page.locator("#library-details")).to_contain_text("a lantern drifting on a lake")
        video = page.locator("#library-video video")
        expect(video).to_be_visible(timeout=15_000)
        media = video.evaluate(MEDIA_JS)
        assert media["readyState"] >= 2 and media["duration"] > 0 and not media["error"], media

        page.locator("#library-send-v2v").click()
        expect(page.get_by_role("tab", name="V2V", exact=True)).to_have_attribute("aria-selected", "true")
        expect(page.locator("#v2v-task-id textarea, #v2v-task-id input").first).to_have_value(task_id)

        page.get_by_role("tab", name="Library", exact=True).click()
        page.locator("#library-reuse").click()
        expect(page.get_by_role("tab", name="Generate", exact=True)).to_have_attribute("aria-selected", "true")
        expect(page.locator("#gen-prompt textarea")).to_have_value("a lantern drifting on a lake")

        page.get_by_role("tab", name="Library", exact=True).click()
        page.locator("#library-continue").click()
        expect(page.get_by_role("tab", name="Generate", exact=True)).to_have_attribute("aria-selected", "true")
        expect(page.locator("#gen-first-image img")).to_be_visible()  # the clip's last frame, to go on from

        page.get_by_role("tab", name="Library", exact=True).click()
        page.locator("#library-send-scene").click()
        expect(page.get_by_role("tab", name="Scenes", exact=True)).to_have_attribute("aria-selected", "true")
        rows = page.locator("#scene-table [role='row']")
        expect(rows).to_have_count(2)  # the header, and the sent shot in place of the examples
        expect(rows.nth(1)).to_contain_text("a lantern drifting on a lake")
    finally:
        page.close()


def test_a_preset_sets_the_run_and_the_estimate_follows(live_server, browser):  # noqa: F811
    """Generate opens with an estimate for the form as it is; the Draft preset makes the run small,
    and the estimate follows before anything is submitted."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(15_000)
    try:
        page.goto(live_server.url, wait_until="domcontentloaded")
        estimate = page.locator("#gen-estimate")
        expect(estimate).to_contain_text("Estimated time: about", timeout=15_000)
        standard = estimate.inner_text()
        page.locator("#gen-preset label", has_text="Draft").click()
        expect(page.locator("#gen-duration input[data-testid='number-input']")).to_have_value("2")
        expect(page.locator("#gen-fps input[data-testid='number-input']")).to_have_value("12")
        expect(page.locator("#gen-resolution input[role='combobox']")).to_have_value("480p")
        expect(estimate).not_to_have_text(standard, timeout=15_000)
        expect(estimate).to_contain_text("on tiny")
    finally:
        page.close()
