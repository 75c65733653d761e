"""The page in a real browser: Debian's chromium driven by Playwright against the real app
(uvicorn in a thread, GCS emulator, generated weights, espeak-ng). Upload the sample video,
type a word, submit, wait for the job, and check the result plays."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.dev.local_server import local_service
from service.settings import Settings

from .gcs_emulator import GCSEmulator

CHROMIUM = Path("/usr/bin/chromium")
SAMPLE = Path(__file__).resolve().parent.parent / "dev" / "gcs-seed" / "lipsync-dev" / "user.mp4"
# headless, offline and quiet: nothing reaches out to Google's services from the test
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JOB_TIMEOUT_MS = 50_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="/usr/bin/chromium is absent: `make system-packages` installs it")


def test_page_uploads_renders_and_plays(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    local = tmp_path / "local"
    local.mkdir()
    settings = Settings(weights_dir=weights_dir, device="cpu", local_storage_root=local,  # type: ignore[call-arg]
                        work_dir=tmp_path / "work", tts_cache_dir=tmp_path / "tts", resize_factor=1,
                        tts_engine="espeak-ng", overwrite_output=True)
    t0 = time.monotonic()
    with local_service(settings, gcs_emulator, ready_timeout_s=120) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS)
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.get_by_label("Upload a video").set_input_files(str(SAMPLE))
            page.get_by_label("Word or sentence").fill("Hello")
            page.get_by_label("Language").select_option("en")
            page.get_by_label("Speech engine").select_option("espeak-ng")
            page.get_by_label("Pipeline").select_option("optimized")
            unlabelled = page.eval_on_selector_all(
                "input:not([type=hidden]), select, textarea",
                "els => els.filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
                ".map(e => e.id || e.name || e.tagName)")
            assert unlabelled == [], unlabelled  # every control has a label
            # from the keyboard: Tab reaches the button, Enter submits the form
            page.get_by_label("Pipeline").focus()
            for _ in range(10):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.textContent") == "Make the video":
                    break
            assert page.evaluate("document.activeElement.textContent") == "Make the video"
            page.keyboard.press("Enter")
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('succeeded')"
                " || !document.getElementById('error').hidden", timeout=JOB_TIMEOUT_MS)
            assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
            page.wait_for_function("document.getElementById('result-video').readyState >= 2", timeout=15_000)
            duration = page.eval_on_selector("#result-video", "v => v.duration")
            assert 0 < duration < 60, duration  # finite: the whole file's length is known
            video_url = page.eval_on_selector("#result-video", "v => v.src")
            ranged = page.request.get(video_url, headers={"Range": "bytes=0-99"})
            assert ranged.status == 206 and len(ranged.body()) == 100
            assert page.locator("#timeline svg rect").count() == 6
            assert page.locator("#cache-hits li").count() >= 1
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 0
    assert list((local / "uploads").glob("out-*.mp4"))
    assert time.monotonic() - t0 < 120
