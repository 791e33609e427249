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


SERVER_PIDS: dict[str, int] = {}  # URL -> the streamlit server's process id (to pause it)


def serve_app(checkpoints: Path, examples: Path, log: Path):
    """Start `streamlit run app.py` on a free port with these checkpoint and example folders (VRNN_CHECKPOINTS,
    VRNN_EXAMPLES); yield its URL once /_stcore/health answers, stop it afterwards. Fails the test with the
    server's log if it does not start in 90 s. For `yield from` in module fixtures."""
    port = free_port()
    env = dict(os.environ, VRNN_CHECKPOINTS=str(checkpoints), VRNN_EXAMPLES=str(examples),
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[url] = proc.pid
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
def server(app_dirs, tmp_path_factory):
    """The app served on a free port with the test checkpoints and clips; yields its URL."""
    yield from serve_app(app_dirs["checkpoints"], app_dirs["examples"],
                         tmp_path_factory.mktemp("server") / "streamlit.log")


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as p:  # one per module: playwright's sync API cannot nest
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
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


GRAPH_FRAME = 'iframe[title="ui.plotly_graph"]'  # ui.plotly_graph: a plotly graph that stays mounted, in a frame
# In the page: every drawn plotly graph div in page order, st.plotly_chart's in the page and ui.plotly_graph's inside
# their (same-origin) frames.
GRAPHS = """[...document.querySelectorAll('.js-plotly-plot, iframe')].flatMap(e => e.tagName !== 'IFRAME' ? [e]
    : [...(e.contentDocument?.querySelectorAll('.js-plotly-plot') || [])]).filter(g => g.layout)"""
# A graph div's (left, top) offset in the page: its frame's, for a graph inside a frame
OFFSET = """g => { const f = g.ownerDocument.defaultView.frameElement; const o = f ? f.getBoundingClientRect() : null;
    return o ? [o.left, o.top] : [0, 0]; }"""


def graph(pg, i: int = 0):
    """Locator of the i-th plotly graph div of the page (-1: the last) in page order, whether st.plotly_chart drew it
    in the page or ui.plotly_graph inside its frame. Waits for its host (the div or the frame) to be attached."""
    hosts = pg.locator(f".js-plotly-plot, {GRAPH_FRAME}")
    host = hosts.last if i == -1 else hosts.nth(i)
    host.wait_for(state="attached")
    if host.evaluate("e => e.tagName") == "IFRAME":
        return host.content_frame.locator(".js-plotly-plot")
    return host


def n_graphs(pg) -> int:
    """How many plotly graphs are drawn on the page (in the page or in frames)."""
    return pg.evaluate(f"() => {GRAPHS}.length")


DRAWN = """end => {
    const g = """ + GRAPHS + """;  // Figure 2 first, the latent trajectory below it
    return g.length >= 1 && g[0].layout && Math.abs(g[0].layout.xaxis.range[1] - end) < 0.02
        && g[0].querySelectorAll('.scatterlayer .trace').length >= 3;
}"""


def x_end(pg) -> float:
    """End of the time axis of the first figure, read from the plotly graph div in the page."""
    return graph(pg).evaluate("gd => gd.layout.xaxis.range[1]")


def upload(pg, path: Path) -> None:
    pg.locator('[data-testid="stSidebar"] input[type="file"]').set_input_files(str(path))


def test_home_draws_figure2(server, page):
    page.goto(server)
    plot = graph(page)
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
    expect(graph(page)).to_be_visible()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    upload(page, junk)
    error = page.locator('[data-testid="stAlertContentError"]')
    expect(error).to_contain_text("junk.wav")
    expect(error).to_contain_text("could not be read")
    settle(page)
    assert_no_exception(page)
    assert n_graphs(page) == 0

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
    expect(graph(page)).to_be_visible()
    settle(page)
    upload(page, wav_file(tmp_path / "first.wav", speechlike(4.0)))  # an upload after an upload
    page.wait_for_function(DRAWN, arg=4.0, timeout=TIMEOUT_MS)
    settle(page)
    # Figure 2's frame is kept, not loaded again (with its 4.6 MB plotly.js), though the new clip's run draws a
    # progress bar above it: its place in the page does not move
    # and so is the latent trajectory's, which holds its place for the new clip's trajectory (plotly_graph_hold)
    page.locator(GRAPH_FRAME).nth(1).wait_for(state="attached")
    for i in (0, 1):
        page.locator(GRAPH_FRAME).nth(i).evaluate("f => { f.contentWindow.__kept = true; }")
    t0 = time.monotonic()
    upload(page, clip)
    page.wait_for_function(DRAWN, arg=30.0, timeout=TIMEOUT_MS)  # one figure, its axis 30 s, lines drawn
    seconds = time.monotonic() - t0
    print(f"\nupload to drawn figure, 30 s clip, tiny model: {seconds:.2f} s")
    settle(page)
    assert_no_exception(page)
    assert page.locator('[data-testid="stCaptionContainer"]', has_text="thirty.wav").count() == 1
    assert x_end(page) == pytest.approx(30.0, abs=0.0125)
    assert page.locator(GRAPH_FRAME).first.evaluate("f => f.contentWindow.__kept") is True
    page.wait_for_function("() => " + GRAPHS + ".length === 2")  # the new clip's trajectory, in the kept frame
    assert page.locator(GRAPH_FRAME).nth(1).evaluate("f => f.contentWindow.__kept") is True
    assert page.locator(GRAPH_FRAME).count() == 2


def test_trajectory_is_drawn_after_figure2_without_an_input(server, page, tmp_path):
    """A new clip: the script run that draws Figure 2 ends with the trajectory's place held (its graph emptied, at
    its height); once the browser has painted, the trajectory's fragment reruns by itself and draws it; a later
    run draws it at once."""
    from conftest import speechlike

    clip = wav_file(tmp_path / "later.wav", speechlike(6.0))
    page.goto(server)
    expect(graph(page, 1)).to_be_visible()  # the example clip's, drawn after paint too
    settle(page)
    page.evaluate("""() => { window.__seen = []; const seen = () => {  // per frame: Figure 2's end, trajectory's end
        requestAnimationFrame(seen);
        try {
            const g = """ + GRAPHS + """, t = g.find(d => d.layout && d.layout.meta && 'dims' in d.layout.meta);
            window.__seen.push([g.length && g[0].layout ? g[0].layout.xaxis.range[1] : null,
                                t ? Math.max(0, ...t.data.map(tr => (tr.marker && tr.marker.cmax) || 0)) : null,  // its colour bar's end
                                !!document.querySelector('[data-test-script-state="notRunning"]')]);
        } catch (e) { window.__seen.push([null, String(e), false]); }  // (a frame being replaced)
    }; requestAnimationFrame(seen); }""")
    upload(page, clip)
    page.wait_for_function("""() => { const g = """ + GRAPHS + """;
        return g.length === 2 && g[1].layout.meta.dims === 2 && Math.abs(g[0].layout.xaxis.range[1] - 6.0) < 0.02
            && g[1].data.some(tr => tr.marker && tr.marker.cmax > 5.9); }""",  # the new clip's trajectory
                           timeout=TIMEOUT_MS)
    settle(page)
    assert_no_exception(page)
    seen = page.evaluate("window.__seen")
    # some frame showed the new Figure 2 without the new clip's trajectory (its place held, or the old clip's still
    # there for a frame), before the one that has both
    first_new = next(i for i, (end, _, _) in enumerate(seen) if end is not None and abs(end - 6.0) < 0.02)
    assert seen[first_new][1] is None or seen[first_new][1] < 2.1, seen[first_new]  # (time colour bar: no labels)
    traj = graph(page, 1)
    assert traj.locator(".scatterlayer .trace").count() >= 4
    page.get_by_text("3-D").click()  # a later run: drawn at once
    page.wait_for_function("() => " + GRAPHS + "[1].layout.meta.dims === 3")
    assert_no_exception(page)


def test_csv_download_is_built_on_click(server, page):
    """The per-frame table is built when its button is clicked (deferred data), not with every new clip."""
    page.goto(server)
    expect(graph(page)).to_be_visible()
    settle(page)
    n_frames = int(page.evaluate("() => " + GRAPHS + "[0].layout.xaxis.range[1]") / 0.0125
                   + 0.5)
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name="Download the per-frame table (CSV)").click()
    rows = Path(info.value.path()).read_text().splitlines()
    assert info.value.suggested_filename.endswith("-frames.csv")
    assert rows[0] == "time_s,delta_t,kl_t_nats,log_px_t_nats" and len(rows) == n_frames + 1
    assert_no_exception(page)


def test_upload_names_are_shown_as_typed_not_as_markdown(server, page, tmp_path):
    """Issue 15, reproduction 7: a file named like a Markdown link (and bold, a colour directive, LaTeX) is
    shown as typed in the error and in the caption, with no link, bold or colour made of it."""
    from conftest import speechlike

    name = "[x](evil.html) **b** :red[r] $y$ a_b.wav"
    page.goto(server)
    expect(graph(page)).to_be_visible()  # Figure 2; the trajectory below
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
    plot = graph(page)
    expect(plot).to_be_visible()
    settle(page)
    assert_no_exception(page)
    assert plot.evaluate("gd => gd.layout.meta.columns") == ["vrnn-gauss", "run-b/best"]  # both have latents
    titles = plot.locator("text.annotation-text").evaluate_all("els => els.map(e => e.textContent)")
    assert "vrnn-gauss" in titles and "run-b/best" in titles  # the column titles are drawn
    assert plot.locator("g.subplot").count() == 6  # 3 rows x 2 checkpoints
    # the right-hand column has its own tick labels, inside the figure and not overlapping the left column
    assert plot.locator(".yaxislayer-above g.y2tick text").count() >= 2
    left_end = plot.evaluate("gd => gd.getBoundingClientRect().left + gd._fullLayout.xaxis._offset"
                             " + gd._fullLayout.xaxis._length")
    for label in plot.locator(".yaxislayer-above g.y2tick text").all():
        assert label.bounding_box()["x"] > left_end, "a right-hand tick label overlaps the left column"


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


# -- issue 14: instant controls, selection, layout, trajectory, hearing, the microphone ---------------------------

def caption(pg, text: str):
    return pg.locator('[data-testid="stCaptionContainer"]', has_text=text)


def figure2_box(pg, row: int = 1) -> tuple[float, float, float, float]:
    """(left, top, width, height) in the page of the plot area of Figure 2's `row` (1: the top row)."""
    g = graph(pg)
    ox, oy = g.evaluate(OFFSET)
    x, y, w, h = g.evaluate("""(g, row) => { const b = g.getBoundingClientRect();
        const xa = g._fullLayout.xaxis, ya = g._fullLayout[row > 1 ? `yaxis${row}` : 'yaxis'];
        return [b.left + xa._offset, b.top + ya._offset, xa._length, ya._length]; }""", row)
    return ox + x, oy + y, w, h


def drag_across_figure2(pg, start: float = 0.25, end: float = 0.5, row: int = 1) -> None:
    """A box-select drag across Figure 2's `row`, from `start` to `end` of its plot width (in three moves, as a
    hand would)."""
    x, y, w, h = figure2_box(pg, row)
    pg.mouse.move(x + start * w, y + h / 2)
    pg.mouse.down()
    pg.mouse.move(x + (start + end) / 2 * w, y + h / 2, steps=3)
    pg.mouse.move(x + end * w, y + h / 2, steps=3)
    pg.mouse.up()


def test_three_rows_fit_a_1400_by_900_window(server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    try:
        pg.goto(server)
        plot = graph(pg)
        expect(plot).to_be_visible()
        settle(pg)
        # the bottom row (the waveform) and the time axis's labels are inside the window without scrolling
        oy = plot.evaluate(OFFSET)[1]
        bottom = oy + plot.evaluate("""g => { const b = g.getBoundingClientRect(); const ya = g._fullLayout.yaxis3;
            return b.top + ya._offset + ya._length; }""")
        assert pg.evaluate("() => window.scrollY") == 0
        ticks = [oy + b for b in plot.locator(".xaxislayer-above text").evaluate_all(  # only the bottom row has them
            "els => els.map(e => e.getBoundingClientRect().bottom)")]
        assert bottom < 900 and ticks and max(ticks) < 900, (bottom, ticks)
    finally:
        context.close()


TRAJ_GRAPH = """() => document.querySelectorAll('iframe[title="ui.plotly_graph"]')[1]?.contentDocument
    ?.getElementById('graph')"""  # the latent trajectory's graph div, drawn or not


def test_trajectory_below_the_fold_is_drawn_when_it_scrolls_in(server, browser):
    """In a 1400 x 900 window the trajectory is below the fold: its place is held at its height, and a selection
    on Figure 2 sends it a new figure that it does not draw; scrolled into view, it draws the last one it was sent
    (the selection highlighted)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    state = "() => { const g = (" + TRAJ_GRAPH + ")(); return g ? [g.dataset.revision || null, g.dataset.drawn || null, " \
            "g.layout ? g.layout.meta.highlight : 'none', g.ownerDocument.defaultView.frameElement.offsetHeight] : null; }"
    try:
        pg.goto(server)
        expect(graph(pg)).to_be_visible()
        pg.wait_for_function("() => !!(" + TRAJ_GRAPH + ")()?.dataset.revision")  # sent after Figure 2's paint
        settle(pg)
        sent, _, _, height = pg.evaluate(state)  # (drawn or not: while the page loads, it may be on the screen)
        assert height >= 400  # its place held
        drag_across_figure2(pg, 0.25, 0.5)
        expect(caption(pg, "Playing the selection")).to_be_visible()
        settle(pg)
        sent2, drawn2, _, _ = pg.evaluate(state)
        assert sent2 != sent and drawn2 != sent2  # a new figure, not drawn
        text = caption(pg, "Playing the selection").inner_text()
        lo = float(text.split(", ")[1].split("–")[0])
        pg.locator(GRAPH_FRAME).nth(1).scroll_into_view_if_needed()
        pg.wait_for_function("() => (" + TRAJ_GRAPH + ")()?.dataset.drawn === (" + TRAJ_GRAPH + ")().dataset.revision")
        _, drawn3, highlight, _ = pg.evaluate(state)
        assert drawn3 == sent2 and highlight[0] == pytest.approx(lo)
        assert_no_exception(pg)
    finally:
        context.close()


def test_row_toggles_redraw_the_figure(server, page):
    page.goto(server)
    expect(graph(page)).to_be_visible()
    settle(page)
    rows = "() => " + GRAPHS + "[0].layout.meta.rows.join()"
    # the graph stays mounted and each new figure is drawn once (Plotly.react at the known width; st.plotly_chart
    # remounted a changed chart and drew it twice, the second time for the width it measured after mounting)
    graph(page).evaluate("g => { g.__kept = true; g.__draws = 0; g.on('plotly_afterplot', () => { g.__draws += 1; }); }")
    for label, row in (("Spectrogram", "mel"), ("KL per dim", "kl_dims"), ("Means", "means")):
        graph(page).evaluate("g => { g.__draws = 0; }")
        page.locator('[data-testid="stCheckbox"]', has_text=label).locator("label").first.click()
        page.wait_for_function(f"() => {rows[6:]}.includes('{row}')")
        settle(page)
        page.wait_for_timeout(500)  # room for a second draw, were there one
        assert graph(page).evaluate("g => [g.__kept, g.__draws]") == [True, 1], label
    assert page.evaluate(rows) == "delta,kl,wave,mel,kl_dims,means"
    assert graph(page).locator(".heatmaplayer image").count() == 2  # drawn
    # laid out once: the margins that vrnn.plots presets are those plotly.js ends with, so it never has to
    # grow them and draw the figure a second time (Figure 2 with every row; the trajectory's axis title)
    size = "g => { const z = g._fullLayout._size, m = g.layout.margin; return [[z.l, z.r, z.t, z.b], [m.l, m.r, m.t, m.b]]; }"
    got, preset = graph(page).evaluate(size)
    assert got == preset
    got, preset = graph(page, 1).evaluate(size)
    assert got[3] == preset[3]
    assert_no_exception(page)


def test_a_row_toggle_is_drawn_by_the_graph_without_waiting_for_the_server(server, page):
    """Figure 2's graph holds every row and follows the row toggles itself: with the server paused (SIGSTOP), a
    toggle still shows its row, laid out as figure2 lays out those rows (each main row FIG_ROW_PX tall, an extra
    row 1.4 times that, the time axis's ticks on the bottom row); the server's rerun then changes nothing."""
    import signal

    page.goto(server)
    expect(graph(page)).to_be_visible()
    settle(page)
    pid = SERVER_PIDS[server]
    layout = """g => { const fl = g._fullLayout, rows = g.layout.meta.rows;  // the rows' y axes top to bottom
        const ys = Object.keys(g.layout).filter(k => /^yaxis\\d*$/.test(k)).sort((a, b) => fl[b].domain[0] - fl[a].domain[0]);
        return [rows, ys.map(k => Math.round(fl[k]._length)), ys.map(k => fl['x' + k.slice(1)].showticklabels),
                g.dataset.drawn, g.ownerDocument.defaultView.frameElement.getBoundingClientRect().height, fl.height]; }"""
    for label, expect_rows in (("Spectrogram", ["delta", "kl", "wave", "mel"]),
                               ("Means", ["delta", "kl", "wave", "mel", "means"]),
                               ("Spectrogram", ["delta", "kl", "wave", "means"])):
        os.kill(pid, signal.SIGSTOP)
        try:
            page.locator('[data-testid="stCheckbox"]', has_text=label).locator("label").first.click()
            graph(page).evaluate("(g, want) => new Promise((ok, fail) => { const t0 = Date.now(); const tick = () => "
                                 "g.layout.meta.rows.join() === want ? ok() : Date.now() - t0 > 15000 ? fail('not drawn') "
                                 ": requestAnimationFrame(tick); tick(); })", ",".join(expect_rows))
            rows, heights, ticks, drawn, frame_h, fig_h = graph(page).evaluate(layout)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert rows == expect_rows
        assert heights == pytest.approx([182 if r in ("mel", "kl_dims", "means") else 130 for r in rows], abs=1)
        assert ticks == [False] * (len(rows) - 1) + [True]
        settle(page)
        after = graph(page).evaluate(layout)
        assert after[3] == drawn and after[0] == rows  # the rerun sent the same figure and rows: not drawn again
        assert after[4] == pytest.approx(fig_h, abs=1)  # the frame took the figure's new height
    assert_no_exception(page)


def test_drag_selects_a_stretch_and_double_click_clears_it(server, page):
    page.goto(server)
    expect(graph(page)).to_be_visible()
    settle(page)
    expect(caption(page, "Playing the whole clip")).to_be_visible()
    drag_across_figure2(page, 0.25, 0.5)  # across the delta_t row from 0.5 s to 1.0 s of the 2 s clip
    expect(caption(page, "Playing the selection")).to_be_visible()
    settle(page)
    text = caption(page, "Playing the selection").inner_text()
    lo, hi = (float(v) for v in text.split(", ")[1].split(" s")[0].split("–"))
    assert lo == pytest.approx(0.5, abs=0.05) and hi == pytest.approx(1.0, abs=0.05)
    traj = graph(page, 1)  # the latent trajectory highlights the selection
    page.wait_for_function("() => (" + GRAPHS + "[1].layout.meta.highlight || [])"
                           ".length === 2")
    assert traj.evaluate("g => g.layout.meta.highlight")[0] == pytest.approx(lo)
    x, y, w, h = figure2_box(page)
    page.mouse.dblclick(x + 0.75 * w, y + h / 2)
    expect(caption(page, "Playing the whole clip")).to_be_visible()
    settle(page)
    drag_across_figure2(page, 0.5, 0.75, row=3)  # any row: the waveform, from 1.0 s to 1.5 s
    expect(caption(page, "Playing the selection")).to_be_visible()
    settle(page)
    text = caption(page, "Playing the selection").inner_text()
    lo, hi = (float(v) for v in text.split(", ")[1].split(" s")[0].split("–"))
    assert lo == pytest.approx(1.0, abs=0.05) and hi == pytest.approx(1.5, abs=0.05)
    assert_no_exception(page)


def test_trajectory_projection_and_dimensions(server, page):
    page.goto(server)
    expect(graph(page, 1)).to_be_visible()
    settle(page)
    traj = graph(page, 1)
    assert traj.evaluate("g => g.layout.meta.dims") == 2
    assert traj.locator(".scatterlayer .trace").count() >= 4  # both paths: lines and points
    page.get_by_text("Fixed for this checkpoint").click()
    expect(caption(page, "example clips")).to_be_visible()
    settle(page)
    page.get_by_text("3-D").click()
    page.wait_for_function("() => " + GRAPHS + "[1].layout.meta.dims === 3")
    settle(page)
    assert graph(page, 1).evaluate("g => g.data[0].type") == "scatter3d"
    assert_no_exception(page)


def test_reconstruct_and_continue_give_audio(server, page):
    page.goto(server)
    expect(graph(page)).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Reconstruct the clip").click()
    expect(caption(page, "Reconstruction (decoder mean)")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Continue", exact=True).click()
    expect(caption(page, "then the model (seed 0)")).to_be_visible()
    settle(page)
    audio = page.locator('audio[data-testid="stAudio"]')
    expect(audio).to_have_count(4)  # the selection player, the clip, its reconstruction, the continuation
    durations = audio.evaluate_all("""els => Promise.all(els.map(a => a.readyState >= 1 ? a.duration :
        new Promise(r => a.addEventListener('loadedmetadata', () => r(a.duration)))))""")
    assert durations[2] == pytest.approx(2.0, abs=0.02)  # the reconstruction is as long as the clip
    assert durations[3] == pytest.approx(1.0 + 2.0, abs=0.02)  # clip to 1.0 s (half), then 2 s of the model
    hear = graph(page, -1)
    assert hear.evaluate("g => g.layout.meta.rows") == ["reconstruction", "continuation"]
    assert_no_exception(page)


@pytest.fixture(scope="module")
def mic_browser(playwright, tmp_path_factory):
    """Chromium whose microphone plays a speech-like WAV file (Chromium's fake media device)."""
    from conftest import speechlike

    wav = wav_file(tmp_path_factory.mktemp("mic") / "mic.wav", speechlike(3.0, f0=170), 48_000)
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={wav}"]
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    yield b
    b.close()


def test_microphone_recording_is_analysed(server, mic_browser):
    context = mic_browser.new_context(viewport={"width": 1400, "height": 1600})
    context.grant_permissions(["microphone"], origin=server)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(server)
        expect(graph(pg)).to_be_visible()
        settle(pg)
        recorder = pg.locator('[data-testid="stAudioInput"]')
        button = recorder.get_by_test_id("stAudioInputActionButton")
        expect(button).to_have_attribute("aria-label", "Record")
        button.click()
        pg.wait_for_timeout(1500)
        expect(button).not_to_have_attribute("aria-label", "Record")  # recording: the same button stops it
        button.click()
        expect(caption(pg, "microphone recording.wav")).to_be_visible()
        settle(pg)
        assert_no_exception(pg)
        assert pg.locator('[data-testid="stAlertContentError"]').count() == 0
        assert 0.5 < x_end(pg) < 5.0  # about the recorded second and a half, not the 2 s example
    finally:
        context.close()
