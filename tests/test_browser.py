"""The app in a real browser: `streamlit run app.py` in a subprocess, driven in headless Debian Chromium by
playwright. Skipped with a reason where /usr/bin/chromium or playwright is missing. A failing test leaves a
screenshot in test-artifacts/ (git-ignored).

Install the browser on Debian/Ubuntu (as root): apt-get install -y chromium
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 90_000  # the 2 CPU cores may be busy

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

if sync_playwright is not None:
    expect.set_options(timeout=TIMEOUT_MS)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None, reason="the playwright Python package is not installed"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no browser at {CHROMIUM} (apt-get install -y chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wav_file(path: Path, x: np.ndarray, sr: int = 16_000) -> Path:
    sf.write(path, x, sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def server(app_dirs, tmp_path_factory):
    """The app served on a free port with the test checkpoints and clips; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = dict(os.environ, VRNN_CHECKPOINTS=str(app_dirs["checkpoints"]), VRNN_EXAMPLES=str(app_dirs["examples"]),
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser tab (a new app session); a screenshot of it is kept when the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    failed_before = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def settle(pg) -> None:
    """Wait until the script run that the last action started has finished."""
    pg.wait_for_timeout(300)
    pg.wait_for_selector('[data-test-script-state="notRunning"]', timeout=TIMEOUT_MS)


def assert_no_exception(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator('[data-testid="stException"]').first.inner_text()


DRAWN = """end => {
    const g = document.querySelectorAll('.js-plotly-plot');
    return g.length === 1 && g[0].layout && Math.abs(g[0].layout.xaxis.range[1] - end) < 0.02
        && g[0].querySelectorAll('.scatterlayer .trace').length >= 3;
}"""


def x_end(pg) -> float:
    """End of the time axis of the first figure, read from the plotly graph div in the page."""
    return pg.locator(".js-plotly-plot").first.evaluate("gd => gd.layout.xaxis.range[1]")


def upload(pg, path: Path) -> None:
    pg.locator('[data-testid="stSidebar"] input[type="file"]').set_input_files(str(path))


def test_home_draws_figure2(server, page):
    page.goto(server)
    plot = page.locator(".js-plotly-plot")
    expect(plot).to_be_visible()
    settle(page)
    assert_no_exception(page)
    assert plot.locator("g.subplot.xy, g.subplot.x2y2, g.subplot.x3y3").count() == 3  # three rows
    assert plot.locator(".scatterlayer .trace").count() >= 3  # drawn as SVG lines
    assert plot.locator("canvas.gl-canvas-context, .gl-container canvas").count() == 0  # no WebGL
    assert page.locator('audio[data-testid="stAudio"]').count() == 1


def test_bad_upload_shows_its_message_then_a_good_upload_works(server, page, tmp_path):
    from conftest import speechlike

    page.goto(server)
    expect(page.locator(".js-plotly-plot")).to_be_visible()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    upload(page, junk)
    error = page.locator('[data-testid="stAlertContentError"]')
    expect(error).to_contain_text("junk.wav")
    expect(error).to_contain_text("could not be read")
    settle(page)
    assert_no_exception(page)
    assert page.locator(".js-plotly-plot").count() == 0

    upload(page, wav_file(tmp_path / "good voice.wav", speechlike(1.25, f0=180)))
    page.wait_for_function(DRAWN, arg=1.25, timeout=TIMEOUT_MS)
    settle(page)
    expect(page.locator('[data-testid="stCaptionContainer"]', has_text="good voice.wav")).to_be_visible()
    assert_no_exception(page)
    assert error.count() == 0
    assert x_end(page) == pytest.approx(1.25, abs=0.0125)  # the time axis is the upload's, not the example's


def test_upload_of_30_s_clip_is_drawn(server, page, tmp_path):
    from conftest import speechlike

    clip = wav_file(tmp_path / "thirty.wav", speechlike(30.0))
    page.goto(server)
    expect(page.locator(".js-plotly-plot")).to_be_visible()
    settle(page)
    t0 = time.monotonic()
    upload(page, clip)
    page.wait_for_function(DRAWN, arg=30.0, timeout=TIMEOUT_MS)  # one figure, its axis 30 s, lines drawn
    seconds = time.monotonic() - t0
    print(f"\nupload to drawn figure, 30 s clip, tiny model: {seconds:.2f} s")
    settle(page)
    assert_no_exception(page)
    assert page.locator('[data-testid="stCaptionContainer"]', has_text="thirty.wav").count() == 1
    assert x_end(page) == pytest.approx(30.0, abs=0.0125)


def test_upload_names_are_shown_as_typed_not_as_markdown(server, page, tmp_path):
    """Issue 15, reproduction 7: a file named like a Markdown link (and bold, a colour directive, LaTeX) is
    shown as typed in the error and in the caption, with no link, bold or colour made of it."""
    from conftest import speechlike

    name = "[x](evil.html) **b** :red[r] $y$ a_b.wav"
    page.goto(server)
    expect(page.locator(".js-plotly-plot")).to_be_visible()
    settle(page)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / name).write_bytes(b"not audio at all")
    upload(page, junk / name)
    error = page.locator('[data-testid="stAlertContentError"]')
    expect(error).to_contain_text(name)
    assert error.locator("a, strong, em, .katex, [style*=color]").count() == 0
    good = tmp_path / "good"
    good.mkdir()
    upload(page, wav_file(good / name, speechlike(1.0)))
    page.wait_for_function(DRAWN, arg=1.0, timeout=TIMEOUT_MS)
    settle(page)
    caption = page.locator('[data-testid="stCaptionContainer"]', has_text="frames of").first
    expect(caption).to_contain_text(name)
    assert caption.locator("a, em, .katex").count() == 0
    assert caption.locator("strong").first.inner_text() == name  # the page's own bold, around the name as typed
    assert_no_exception(page)


def test_every_page_opens_without_an_error(server, page):
    for path, heading in [("", "Figure 2"), ("compare", "Compare checkpoints"), ("generate", "Generate"),
                          ("about", "About VRNN Explorer")]:
        page.goto(f"{server}/{path}")
        expect(page.locator("h1", has_text=heading)).to_be_visible()
        settle(page)
        assert_no_exception(page)
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0, path


def test_compare_page_draws_two_checkpoints(server, page):
    page.goto(f"{server}/compare")
    plot = page.locator(".js-plotly-plot").first
    expect(plot).to_be_visible()
    settle(page)
    assert_no_exception(page)
    assert plot.evaluate("gd => gd.layout.meta.columns") == ["vrnn-gauss", "rnn-gauss"]
    titles = plot.locator("text.annotation-text").evaluate_all("els => els.map(e => e.textContent)")
    assert "vrnn-gauss" in titles and "rnn-gauss" in titles  # the column titles are drawn
    assert plot.locator("g.subplot").count() == 6  # 3 rows x 2 checkpoints


def test_generate_page_gives_playable_audio(server, page):
    page.goto(f"{server}/generate")
    page.get_by_role("button", name="Generate").click()
    audio = page.locator('audio[data-testid="stAudio"]')
    expect(audio).to_have_count(2)  # two samples by default
    settle(page)
    assert_no_exception(page)
    duration = audio.first.evaluate(
        "a => a.readyState >= 1 ? a.duration : new Promise(r => a.addEventListener('loadedmetadata', () => r(a.duration)))")
    assert duration == pytest.approx(2.0, abs=0.02)  # the default length, decoded by the browser
    assert page.get_by_role("button", name="Download seed 0, sample 1 (WAV)").count() == 1
