"""Stop in real Chromium: the status line ends in "Cancelled." (not the last denoising step),
the task is cancelled, and Stop no longer warns about its outputs (issue 10 items 18, 19)."""

from __future__ import annotations

import warnings

from tests.test_browser import _set_slider
from tests.test_browser_tabs import _open, _real_errors, browser  # noqa: F401  (fixture)


def test_stop_ends_the_status_line_in_cancelled(live_server, browser):  # noqa: F811
    from playwright.sync_api import expect

    console_errors: list[str] = []
    page = _open(browser, live_server.url, console_errors)
    try:
        page.locator("#gen-prompt textarea").fill("a slow lighthouse in a storm")
        _set_slider(page, "gen-duration", 1)
        _set_slider(page, "gen-fps", 12)
        page.get_by_text("Sampling").click()
        _set_slider(page, "gen-steps", 150)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            page.locator("#gen-run").click()
            status = page.locator("#gen-status")
            expect(status).to_contain_text("Denoising step", timeout=45_000)
            page.locator("#gen-stop").click()
            expect(status).to_have_text("Cancelled.", timeout=20_000)
            task_id = page.locator("#gen-task-id textarea, #gen-task-id input").first.input_value()
            page.wait_for_timeout(500)  # nothing may overwrite it afterwards
            expect(status).to_have_text("Cancelled.")
    finally:
        page.close()
    task = live_server.studio.store.get(task_id)
    assert task.status == "cancelled" and task.owner.startswith("ui:")
    assert not [w for w in caught if "too many output values" in str(w.message)]
    assert not _real_errors(console_errors), console_errors
