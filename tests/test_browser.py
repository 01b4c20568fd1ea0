"""The real page in headless Chromium (Debian ``chromium``) driven by Playwright.

Skips cleanly when ``playwright`` or ``/usr/bin/chromium`` is missing (Playwright never
downloads a browser here: it drives Debian's through ``executable_path``).  The
microphone is Chromium's fake capture device fed by a speech clip: a real SAVEE or TESS
clip from ``../shared/data`` when present, else one of the project's synthetic voices.

Pages are served over the fake pipeline of ``test_web`` (every result field filled,
including ``uncertain``, per-painting neighbours and provenance) and over the
``tiny_run`` fixture (a real trained run).  Screenshots are written to
``$SOUND2SIGHT_SCREENSHOT_DIR`` (default ``tests/artifacts/``, ignored by git); their
paths are printed.
"""

from __future__ import annotations

import dataclasses
import os
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
ARTIFACTS = Path(
    os.environ.get("SOUND2SIGHT_SCREENSHOT_DIR", Path(__file__).resolve().parent / "artifacts")
)


def _screenshot(page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    assert path.stat().st_size > 10_000
    return path


def _speech_clip(out: Path) -> Path:
    """A 16-bit WAV of speech for the fake microphone (real when ../shared/data has it)."""
    import soundfile as sf

    from conftest import SHARED_DATA
    from sound2sight.synthetic import synth_voice

    for pattern in ("SAVEE/DC_a0[1-3].flac", "TESS/OAF_*_angry.flac"):
        clips = sorted((SHARED_DATA / "audio").glob(pattern))
        if clips:
            wave, sr = sf.read(clips[0], dtype="float32", always_2d=False)
            break
    else:
        wave, sr = synth_voice("angry", speaker=2, seed=5, duration=3.0), 16000
    sf.write(out, wave, sr, subtype="PCM_16")
    return out


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    return _speech_clip(tmp_path_factory.mktemp("mic") / "speech.wav")


@pytest.fixture(scope="module")
def browser(speech_wav):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={speech_wav}"]
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        yield b
        b.close()


class UncertainFake:
    """The fake pipeline, always torn between the two likeliest emotions."""

    def __init__(self) -> None:
        from test_web import FakePipeline

        self.fake = FakePipeline()

    def __call__(self, audio, **kw):
        r = self.fake(audio, **kw)
        p = dict(sorted(r.probabilities.items(), key=lambda kv: -kv[1]))
        return dataclasses.replace(r, uncertain=tuple(list(p)[:2]))


@pytest.fixture(scope="module", params=["fake", "tiny_run"])
def site(request):
    """``(base_url, which pipeline)`` of a running server."""
    from test_web import running

    if request.param == "fake":
        pipe = UncertainFake()
    else:
        from sound2sight.pipeline import Sound2Sight

        pipe = Sound2Sight.from_run(request.getfixturevalue("tiny_run"))
    with running(pipe) as (host, port):
        yield f"http://{host}:{port}/", request.param


def _open(browser, url: str, *, width: int = 1100):
    context = browser.new_context(
        viewport={"width": width, "height": 900}, permissions=["microphone"]
    )
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_selector("#limits:not(:empty)")  # /health answered, scripts ran
    return pg


@pytest.fixture()
def page(browser, site):
    pg = _open(browser, site[0])
    yield pg
    pg.context.close()
    assert not pg.errors, pg.errors


def _wait_answer(page) -> None:
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=90_000)
    assert page.is_hidden("#error"), page.inner_text("#error")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")


def _shown_widths(page, selector: str) -> list[float]:
    return page.eval_on_selector_all(
        selector, "els => els.map(e => e.naturalWidth ? e.getBoundingClientRect().width : 0)"
    )


def test_record_with_the_fake_microphone_shows_the_answer(page, site):
    page.click("#record")
    page.wait_for_function("() => document.querySelector('#record').textContent.includes('Stop')")
    page.wait_for_timeout(2500)
    page.click("#record")
    _wait_answer(page)
    assert page.inner_text("#emotion").strip() in EMOTIONS
    assert page.locator("#bars .bar").count() == 3
    assert "s of audio" in page.inner_text("#meta")
    # what was recorded can be played back
    assert page.is_visible("#playback")
    assert page.eval_on_selector("#playback", "a => a.src").startswith("blob:")
    page.wait_for_function("() => document.querySelector('#playback').duration > 1")
    assert all(w >= 256 for w in _shown_widths(page, "#paintings img.painting"))
    _screenshot(page, f"web_record_{site[1]}")


def test_upload_shows_paintings_artworks_and_provenance(page, site, tmp_path):
    page.set_input_files("#file", str(_speech_clip(tmp_path / "my voice.wav")))
    _wait_answer(page)
    assert page.is_hidden("#status")
    assert page.inner_text("#emotion").strip() in EMOTIONS
    widths = _shown_widths(page, "#paintings img.painting")
    assert len(widths) == 4 and all(w >= 256 for w in widths)
    rendering = page.eval_on_selector("img.painting", "i => getComputedStyle(i).imageRendering")
    assert rendering in ("auto", "smooth")
    assert " px" in page.inner_text("#paintings .res")  # labelled with its true resolution
    assert page.locator("#neighbours img").count() >= 1
    assert "Nearest artworks" in page.inner_text("#nearest")
    assert "real artworks" not in page.inner_text("body").lower()  # provenance says what they are
    if site[1] == "fake":
        text = page.inner_text("#result")
        assert "uncertain between" in page.inner_text("#uncertain")
        assert "Claude Monet" in text and "Water Lilies 1916" in text  # parsed from the file name
        assert page.locator("#paintings .strip img").count() == 4 * 3
        assert "procedural demo paintings" in page.inner_text("#provenance")
        assert "procedural demo paintings" in page.inner_text("#art-source")
    _screenshot(page, f"web_upload_{site[1]}")


def test_page_is_usable_at_phone_width(browser, site, tmp_path):
    if site[1] != "fake":
        pytest.skip("layout is the same for every pipeline")
    pg = _open(browser, site[0], width=375)
    try:
        pg.set_input_files("#file", str(_speech_clip(tmp_path / "v.wav")))
        _wait_answer(pg)
        overflow = pg.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"page is {overflow}px wider than the phone"
        assert all(w >= 256 for w in _shown_widths(pg, "#paintings img.painting"))
        _screenshot(pg, "web_phone")
        assert not pg.errors, pg.errors
    finally:
        pg.context.close()


def test_bad_file_shows_the_servers_message(page, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not audio\n" * 20)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    text = page.inner_text("#error")
    assert "422" in text and "cannot decode audio" in text
    assert page.is_hidden("#result")


def test_report_reads_as_a_summary_first(browser, tiny_run):
    import re

    from sound2sight.report import write_report

    report = write_report(tiny_run)
    pg = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        pg.goto(report.as_uri())
        first_screen = pg.evaluate(
            "() => [...document.querySelectorAll('h2')].filter("
            "h => h.getBoundingClientRect().top < 900).map(h => h.textContent)"
        )
        assert first_screen[:2] == ["What was trained on what", "Headline figures"]
        headline = pg.inner_text("table.headline")
        for name in ("accuracy", "macro-F1", "retrieval top-1", "retrieval mAP", "consistency"):
            assert name in headline
        assert "real-image ceiling" in headline and "Fréchet" in headline
        assert pg.locator(".figs img").count() >= 3  # confusion, embedding map, grids
        visible = pg.inner_text("body")  # collapsed <details> bodies are not visible text
        # decimals carry at most 3 significant figures (0.00163 is rounded; 0.8555555 is not)
        unrounded = [
            x for x in re.findall(r"\d+\.\d+", visible) if len(x.replace(".", "").lstrip("0")) > 3
        ]
        assert not unrounded, f"numbers are rounded to 3 figures: {unrounded[:5]}"
        assert pg.locator("details pre").count() >= 3
        assert not pg.locator("details[open]").count()
        _screenshot(pg, "report_first_screen", full_page=False)
        _screenshot(pg, "report_full")
    finally:
        pg.close()


@pytest.fixture(scope="module")
def speaker_site(tiny_run):
    """A real pipeline that can calibrate: ``tiny_run`` with the shipped speaker-normalised
    voice head (the page calibrates from the third recording on once its checkbox is ticked,
    the default)."""
    from sound2sight.pipeline import Sound2Sight
    from sound2sight.voice.pretrained import load_shipped
    from test_web import running

    pipe = Sound2Sight.from_run(tiny_run)
    head, cfg, _ = load_shipped("voice-cremad-tiny-speaker")
    pipe.classifier, pipe.cfg.classifier = head, cfg.classifier
    with running(pipe) as (host, port):
        yield f"http://{host}:{port}/"


def _upload_and_wait(pg, path, n: int) -> str:
    """Upload ``path`` as the session's ``n``-th recording; the voice line once it says so."""
    pg.set_input_files("#file", str(path))
    pg.wait_for_function(
        "n => { const t = document.querySelector('#voice-state').textContent;"
        " return t.includes(`(${n} recording`) || t.startsWith(`${n} recording`); }",
        arg=n,
        timeout=90_000,
    )
    assert pg.is_hidden("#error"), pg.inner_text("#error")
    return pg.inner_text("#voice-state")


def test_calibrated_to_your_voice_from_the_third_recording(browser, speaker_site):
    from conftest import EXAMPLE_VOICES

    clips = [p for p in EXAMPLE_VOICES if p.name.startswith("1009_")]  # one actor, 3 emotions
    pg, other = _open(browser, speaker_site), _open(browser, speaker_site)
    try:
        assert pg.is_visible("#voice") and "memory" in pg.inner_text("#voice-notice")
        assert pg.is_visible("#calibrate-label")  # opt-in, the default: tick it
        pg.check("#calibrate")
        assert "not calibrated" in _upload_and_wait(pg, clips[0], 1)
        assert "not calibrated" in _upload_and_wait(pg, clips[1], 2)
        third = _upload_and_wait(pg, clips[2], 3)
        assert third == "Calibrated to your voice (3 recordings)."
        _screenshot(pg, "web_calibrated")
        # another browser (context) has its own session: nothing of this voice
        assert "not calibrated" in _upload_and_wait(other, clips[0], 1)
        # "forget my voice": back to nothing kept, and the next answer is uncalibrated
        pg.click("#forget")
        pg.wait_for_function(
            "() => document.querySelector('#voice-state').textContent.includes('forgotten')"
        )
        assert "not calibrated" in _upload_and_wait(pg, clips[0], 1)
        assert not pg.errors and not other.errors, (pg.errors, other.errors)
    finally:
        pg.context.close()
        other.context.close()
