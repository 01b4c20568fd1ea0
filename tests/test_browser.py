"""The real page in headless Chromium (Debian ``chromium``) driven by Playwright.

Skips cleanly when ``playwright`` or ``/usr/bin/chromium`` is missing.  The pipeline is,
in order of preference: the run named by ``$SOUND2SIGHT_WEB_RUN`` (e.g. ``runs/demo``),
the ``tiny_run`` fixture, or the fake pipeline of ``test_web``.  A screenshot of the page
after an upload is saved in the test's tmp dir and copied to ``$SOUND2SIGHT_SCREENSHOT_DIR``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
EMOTIONS = ("angry", "happy", "sad")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(request):
    """``(base_url, which pipeline)`` of a running server."""
    from test_web import FakePipeline, running

    run_dir, which = os.environ.get("SOUND2SIGHT_WEB_RUN"), "env"
    if not run_dir:
        try:
            run_dir, which = request.getfixturevalue("tiny_run"), "tiny_run"
        except pytest.FixtureLookupError:
            run_dir, which = None, "fake"
    if run_dir:
        from sound2sight.pipeline import Sound2Sight

        pipe = Sound2Sight.from_run(run_dir)
    else:
        pipe = FakePipeline()
    with running(pipe) as (host, port):
        yield f"http://{host}:{port}/", which


@pytest.fixture()
def page(browser, site):
    context = browser.new_context(
        viewport={"width": 1100, "height": 900}, permissions=["microphone"]
    )
    pg = context.new_page()
    messages = []
    pg.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    pg.goto(site[0])
    pg.wait_for_selector("#limits:not(:empty)")  # /health answered, scripts ran
    yield pg
    context.close()
    assert not [m for m in messages if m.startswith("pageerror")], messages


def _write_voice(path: Path, emotion: str = "angry") -> Path:
    import soundfile as sf

    from sound2sight.synthetic import synth_voice

    sf.write(path, synth_voice(emotion, speaker=2, seed=5, duration=3.0), 16000)
    return path


def _image_widths(page, selector: str) -> list[int]:
    return page.eval_on_selector_all(
        selector, "els => els.map(e => e.complete ? e.naturalWidth : 0)"
    )


def test_upload_shows_emotion_paintings_and_neighbours(page, site, tmp_path):
    page.set_input_files("#file", str(_write_voice(tmp_path / "angry voice.wav")))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.is_hidden("#error") and page.is_hidden("#status")
    emotion = page.inner_text("#emotion").strip()
    assert emotion in EMOTIONS
    assert page.locator("#bars .bar").count() == 3
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    paintings, neighbours = (
        _image_widths(page, "#paintings img"),
        _image_widths(page, "#neighbours img"),
    )
    assert len(paintings) == 4 and all(w > 0 for w in paintings)
    assert len(neighbours) >= 1 and all(w > 0 for w in neighbours)
    assert any(e in page.inner_text("#neighbours") for e in EMOTIONS)
    shot = tmp_path / "web_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if out := os.environ.get("SOUND2SIGHT_SCREENSHOT_DIR"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / f"web_page_{site[1]}.png")


def test_bad_file_shows_the_servers_message(page, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not audio\n" * 20)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    text = page.inner_text("#error")
    assert "422" in text and "cannot decode audio" in text
    assert page.is_hidden("#result")


def test_microphone_record_and_stop(page):
    page.click("#record")
    page.wait_for_function("() => document.querySelector('#record').textContent.includes('Stop')")
    page.wait_for_timeout(1500)
    page.click("#record")
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=60_000)
    if page.is_visible("#error"):  # the fake device plays beeps; silence is also a correct answer
        assert "no speech detected" in page.inner_text("#error"), page.inner_text("#error")
    else:
        assert page.inner_text("#emotion").strip() in EMOTIONS
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert all(w > 0 for w in _image_widths(page, "#paintings img"))
