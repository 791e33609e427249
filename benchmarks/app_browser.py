"""The app's interactions timed in a real browser: upload to drawn figure, then each control, first time and later.

    python benchmarks/app_browser.py                          # 30 s clip, bundled checkpoints, 3 rounds
    python benchmarks/app_browser.py --seconds 600 --rounds 1 # a 10-minute clip; prints the server's peak RSS
    python benchmarks/app_browser.py --checkpoints DIR        # other checkpoints (VRNN_CHECKPOINTS)
    python benchmarks/app_browser.py --upload-only --uploads 6 # the upload alone, 6 times (a fresh page each)
    git archive HEAD~3 | tar -x -C /tmp/before                # before/after, alternated interaction by
    python benchmarks/app_browser.py --ab /tmp/before         #   interaction ('A' = before, 'B' = this checkout)

Starts `streamlit run app.py` on a free port, drives it in headless Debian Chromium (/usr/bin/chromium) with
playwright, and prints one line per interaction: the time from the input (click, drag, key, file) to the figure
redrawn in the page (the plotly graph div holds the expected rows and time range, its traces are drawn, the
latent trajectory shows the expected highlight, the script run has finished and a caption says what changed;
for a row toggle, which Figure 2's graph draws itself, the run's end is not waited for but printed beside it),
both taken in the page with performance.now(): a capturing listener for the input
event, a requestAnimationFrame loop for the figure, so playwright's own round trips are not counted.
The clip is real speech: the bundled example clips end to end, repeated to the length asked for; its reference
segmentation (their TextGrids laid end to end the same way, uploaded as CSV) for the tolerance steps.
Interactions: each extra row on and off, a drag-selection and the double click that clears it, a step of the
view slider and back, a scroll to the latent trajectory (below the fold: its graph draws the figure it was last
sent when it comes on the screen, so the steps before it are checked on the trajectory only where it is on the
screen), the trajectory's projection (fixed, then PCA), then the scoring tolerance up and down.
After an upload it also prints the time to the whole page (the latent trajectory's figure sent too: the app sends
it after Figure 2 is on the screen). `--uploads N` uploads N clips of the same length and other content
(the speech started 1 s later each time, so the model runs each time), each on a freshly loaded page.
Target (issue 14): each interaction under 300 ms for a 30 s clip, the first time as well as later; upload to
figure under 2 s. The server's resident memory (now and peak, from /proc) is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-extensions", "--mute-audio"]

# Every plotly graph div in page order: in the page itself (st.plotly_chart) and inside the app's same-origin
# component frames (ui.plotly_graph keeps Figure 2 and the trajectory in iframes). `docs()`: the page's document
# and those frames' documents, where the input listeners go.
PLOTS = """const docs = () => [document, ...[...document.querySelectorAll('iframe')]
        .map(f => { try { return f.contentDocument; } catch (e) { return null; } }).filter(Boolean)];
    const allPlots = () => [...document.querySelectorAll('.js-plotly-plot, iframe')].flatMap(e => e.tagName !== 'IFRAME'
        ? [e] : [...((() => { try { return e.contentDocument; } catch (x) { return null; } })()
                     ?.querySelectorAll('.js-plotly-plot') || [])]);"""

# The latent trajectory's frame (ui.plotly_graph's second), drawn or not
TRAJ_FRAME = """const trajFrame = () => document.querySelectorAll('iframe[title="ui.plotly_graph"]')[1];"""

# In the page: the time of the input event (capturing listener) and of the first animation frame at which the
# figures are redrawn as expected, both from performance.now(), so playwright's own round trips are not counted.
# Expected: Figure 2's rows and time range, the script run finished, a caption holding `text`, and the latent
# trajectory's highlight (`traj`: [start, end] s, true for any, null for none, 'any-or-none': not checked).
# The input is the pointerdown of a click (`on`), the pointerup that ends a drag, a key or a file chosen.
ARM = """([rows, x0, x1, text, traj, on, script]) => {
    const b = window.__bench = {t0: null, t1: null, on: on || 'pointerdown'};
    """ + PLOTS + TRAJ_FRAME + """
    for (const d of docs()) {  // the page and each frame (a drag on Figure 2 happens inside its frame)
        if (d.__benchListening) continue;
        d.__benchListening = true;
        for (const ev of ['pointerdown', 'pointerup', 'keydown', 'change', 'dblclick'])
            d.addEventListener(ev, () => { const w = window.__bench;
                if (w && w.t0 === null && (ev === w.on || !['pointerdown', 'pointerup'].includes(ev)))
                    w.t0 = performance.now(); }, true);
    }
    const near = (a, b) => Math.abs(a - b) < 0.004;
    const ok = () => {
        const plots = allPlots();
        const g = plots.find(d => d.layout && d.layout.meta && d.layout.meta.rows);
        if (!g || !g._fullLayout) return false;
        const r = g.layout.xaxis.range;
        const endOk = x1 >= 0 ? near(r[1], x1) : r[1] < -x1 - 0.001;  // x1 < 0: "ends before -x1"
        if (!(g.layout.meta.rows.join() === rows.join() && near(r[0], x0) && endOk
              && g.querySelectorAll('.scatterlayer .trace').length >= 3)) return false;
        // the trajectory is checked where it is drawn at once: on the screen (the graph component draws a figure
        // off the screen only when it scrolls in: "scroll to the trajectory")
        const tf = trajFrame();
        const on_screen = f => { const q = f.getBoundingClientRect(); return q.bottom > 0 && q.top < innerHeight; };
        if (traj !== 'any-or-none' && (!tf || on_screen(tf))) {
            const tg = plots.find(d => d.layout && d.layout.meta && 'highlight' in d.layout.meta);
            if (!tg || !tg._fullLayout || !tg.querySelector('.scatterlayer .trace')) return false;
            const h = tg.layout.meta.highlight;
            if (traj === true ? !h : traj === null ? h !== null : !(h && near(h[0], traj[0]) && (traj[1] < 0 ? h[1] < -traj[1] - 0.001
                                                                           : near(h[1], traj[1])))) return false;
        }
        return (!script || !!document.querySelector('[data-test-script-state="notRunning"]'))
            && (!text || text.startsWith('!') !== [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
                .some(c => c.textContent.includes(text.replace(/^!/, ''))));  // "!...": no caption holds it
    };
    const tick = () => { if (b.t0 !== null && ok()) { b.t1 = performance.now(); } else requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
}"""
DONE = "() => window.__bench.t1 !== null"
# After an input whose figure is drawn without the server (a row toggle): the time (from the same input) to the
# end of the script run it started, in animation frames (the run may have ended before the figure was drawn)
RUN_DONE = """() => new Promise(done => { const b = window.__bench;
    const tick = () => document.querySelector('[data-test-script-state="notRunning"]')
        ? done(performance.now() - b.t0) : requestAnimationFrame(tick);
    setTimeout(tick, 100); })"""
ANY_PLOT = "() => { " + PLOTS + " return allPlots().length > 0; }"
# After an upload: the time (from the same input) to the whole page: the latent trajectory's figure below the fold
# sent too (the app sends it in a rerun of its fragment after Figure 2 is on the screen; its frame draws it when it
# scrolls in) and no script running.
WHOLE = """() => new Promise(done => { const b = window.__bench;
    """ + TRAJ_FRAME + """
    const tick = () => {
        const tf = trajFrame();
        const tg = tf && tf.contentDocument && tf.contentDocument.getElementById('graph');
        if (tg && (tg.dataset.revision || tg.layout)  // (.layout: drawn, by a component that draws off the screen)
            && document.querySelector('[data-test-script-state="notRunning"]'))
            done(performance.now() - b.t0);
        else requestAnimationFrame(tick);
    };
    tick(); })"""
SCROLL_TO_TOP = """() => { for (const e of [window, document.querySelector('[data-testid="stMain"]')]) e?.scrollTo(0, 0); }"""
# The input of "scroll to the trajectory": the page scrolled (no pointer or key event) so that its frame is on the screen
SCROLL_TO_TRAJECTORY = """() => { """ + TRAJ_FRAME + """ window.__bench.t0 = performance.now();
    trajFrame().scrollIntoView({block: 'center'}); }"""
PCA_CAPTION = "Projection fitted on the posterior means of this clip"

# --breakdown: every WebSocket message (time, direction, bytes) and every long task (main thread busy > 50 ms),
# recorded from the first script on, so an interaction's time splits into browser -> server, server,
# server -> browser and drawing.
HOOK = """(() => {
    const W = window.WebSocket; window.__ws = []; window.__long = [];
    const size = d => d ? (d.byteLength ?? d.size ?? d.length ?? 0) : 0;
    window.WebSocket = function (...args) {
        const ws = new W(...args); const send = ws.send.bind(ws);
        ws.send = d => { window.__ws.push(['s', performance.now(), size(d)]); return send(d); };
        ws.addEventListener('message', e => window.__ws.push(['r', performance.now(), size(e.data)]));
        return ws;
    };
    window.WebSocket.prototype = W.prototype;
    for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) window.WebSocket[k] = W[k];
    new PerformanceObserver(l => { for (const e of l.getEntries()) window.__long.push([e.startTime, e.duration]); })
        .observe({type: 'longtask', buffered: true});
})();"""
SPLIT = """() => { const b = window.__bench, t0 = b.t0, t1 = b.t1;
    const ws = window.__ws.filter(m => m[1] >= t0 && m[1] <= t1);
    const sent = ws.filter(m => m[0] === 's'), got = ws.filter(m => m[0] === 'r');
    const busy = window.__long.filter(e => e[0] + e[1] >= t0 && e[0] <= t1)
        .reduce((s, e) => s + Math.min(e[0] + e[1], t1) - Math.max(e[0], t0), 0);
    return {send: sent.length ? sent[0][1] - t0 : null, first: got.length ? got[0][1] - t0 : null,
            last: got.length ? got[got.length - 1][1] - t0 : null, bytes: got.reduce((s, m) => s + m[2], 0),
            msgs: got.length, busy: busy, total: t1 - t0}; }"""


def clip(seconds: float, path: Path, start: float = 0.0) -> Path:
    """The bundled example clips end to end (real speech), repeated to `seconds` from `start` s on, written as
    16 kHz WAV (another `start` gives other content, so the app runs the model again)."""
    from vrnn import load_audio

    parts = [load_audio(p)[0] for p in sorted((ROOT / "assets" / "examples").glob("*.wav"))]
    x = np.concatenate(parts)
    i0 = int(start * 16_000) % len(x)
    x = np.tile(x, int(np.ceil((i0 + seconds * 16_000) / len(x))))[i0: i0 + int(seconds * 16_000)]
    sf.write(path, x, 16_000, subtype="PCM_16")
    return path


def reference_csv(seconds: float, path: Path) -> Path:
    """Phone segments of `clip(seconds)` as CSV rows (start, end, label in s): the example clips' TextGrids laid
    end to end the same way, cut at `seconds`."""
    from vrnn import load_audio
    from vrnn.segments import read_reference

    parts = []
    for wav in sorted((ROOT / "assets" / "examples").glob("*.wav")):
        n = len(load_audio(wav)[0]) / 16_000
        parts.append((n, read_reference(wav.with_suffix(".TextGrid"), n).phones))
    rows, offset = [], 0.0
    while offset < seconds:
        for n, phones in parts:
            rows += [(offset + p.start, min(offset + p.end, seconds), p.label) for p in phones
                     if offset + p.start < seconds]
            offset += n
    path.write_text("".join(f"{a:.4f},{b:.4f},{lab}\n" for a, b, lab in rows if b > a))
    return path


def serve(env: dict, app: Path = ROOT) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(Path(tempfile.gettempdir()) / f"app_browser_{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app / "app.py"), "--server.headless",
                             "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.fileWatcherType", "none", "--server.maxUploadSize", "1000"],
                            cwd=app, env=dict(env, PYTHONPATH=str(app)), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"streamlit did not start; see {log.name}")


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process in MB, from /proc/PID/status (VmRSS, VmHWM)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def session(pg, args, wav: Path, ref_csv: Path, times: dict[str, list[float]], label: str = ""):
    """The interactions on one page (a generator: one interaction per step, so that two apps can be driven in
    lockstep, interaction by interaction, under the same load); their times (s) go to `times[name]`."""

    def timed(name: str, act, rows: list[str], x0: float, x1: float, text: str = "", traj=...,
              on: str = "pointerdown", whole: bool = False, script: bool = True) -> None:
        """script=False: the figure counts as redrawn without waiting for the script run to finish (a row toggle,
        which the graph draws itself); the run's end is then printed beside it."""
        pg.evaluate(ARM, [rows, x0, x1, text, "any-or-none" if traj is ... else traj, on, script])
        act()
        pg.wait_for_function(DONE, timeout=1000 * args.timeout, polling=50)
        dt = pg.evaluate("() => window.__bench.t1 - window.__bench.t0") / 1000
        times.setdefault(name, []).append(dt)
        rerun = "" if script else f"   (script run done {pg.evaluate(RUN_DONE):.0f} ms)"
        if whole:  # the whole page, below the fold included, from the same input
            times.setdefault(f"{name}: whole page", []).append(pg.evaluate(WHOLE) / 1000)
        extra = ""
        if args.breakdown:
            b = pg.evaluate(SPLIT)
            ms = lambda v: "   -" if v is None else f"{v:4.0f}"  # noqa: E731
            extra = (f"   sent {ms(b['send'])}, reply {ms(b['first'])}-{ms(b['last'])} ms ({b['msgs']} msgs, "
                     f"{b['bytes'] / 1e3:.0f} kB), main thread busy {b['busy']:.0f} ms")
        if whole:
            extra += f"   whole page (trajectory drawn) {1000 * times[f'{name}: whole page'][-1]:.0f} ms"
        print(f"{label}{name:<34s} {1000 * dt:8.0f} ms{rerun}{extra}", flush=True)
        pg.wait_for_timeout(300)

    dur = (int(args.seconds * 16_000) // 200) * 200 / 16_000
    base = ["delta", "kl", "wave"]
    timed(f"upload {args.seconds:g} s clip to figure",
          lambda: pg.locator('[data-testid="stSidebar"] input[type="file"]').set_input_files(str(wav)),
          base, 0.0, dur, whole=True)
    yield
    if args.screenshot:
        pg.screenshot(path=args.screenshot)
    for k in range(1, args.uploads):  # the page reloaded (a new session), a clip of other content: the model runs
        other = clip(args.seconds, wav.with_name(f"speech-{args.seconds:g}s-{k}.wav"), start=1.0 * k)
        pg.reload()
        pg.wait_for_function(ANY_PLOT)
        pg.wait_for_selector('[data-test-script-state="notRunning"]')
        pg.wait_for_timeout(1000)
        timed(f"upload another {args.seconds:g} s clip", lambda o=other: pg.locator(
              '[data-testid="stSidebar"] input[type="file"]').set_input_files(str(o)), base, 0.0, dur, other.name,
              whole=True)
        yield
    if args.upload_only:
        return

    def toggle(label: str) -> None:
        pg.locator('[data-testid="stCheckbox"]', has_text=label).locator("label").first.click()

    def plot_box() -> tuple[float, float, float, float]:
        return pg.evaluate("""() => { """ + PLOTS + """
            const g = allPlots()[0], b = g.getBoundingClientRect(), xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis;
            const f = g.ownerDocument === document ? null : g.ownerDocument.defaultView.frameElement;
            const o = f ? f.getBoundingClientRect() : {left: 0, top: 0};  // a frame's content is offset by the frame
            return [o.left + b.left + xa._offset, o.top + b.top + ya._offset, xa._length, ya._length]; }""")

    def drag(f0: float, f1: float) -> None:
        x, y, w, h = plot_box()
        pg.mouse.move(x + f0 * w, y + h / 2)
        pg.mouse.down()
        pg.mouse.move(x + (f0 + f1) / 2 * w, y + h / 2, steps=2)
        pg.mouse.move(x + f1 * w, y + h / 2, steps=2)
        pg.mouse.up()

    def dblclick() -> None:
        x, y, w, h = plot_box()
        pg.mouse.dblclick(x + 0.75 * w, y + h / 2)  # off the selection box: its edge takes the click

    for _ in range(args.rounds):
        for name, row in (("Spectrogram", "mel"), ("KL per dim", "kl_dims"), ("Means", "means")):
            timed(f"{name} row on", lambda n=name: toggle(n), base + [row], 0.0, dur, script=False)
            yield
            timed(f"{name} row off", lambda n=name: toggle(n), base, 0.0, dur, script=False)
            yield
        timed("drag-select a stretch (from release)", lambda: drag(0.25, 0.5), base, 0.0, dur,
              "Playing the selection", traj=True, on="pointerup")
        yield
        timed("double-click: clear the selection", dblclick, base, 0.0, dur, "Playing the whole clip", traj=None)
        yield
        thumb = pg.locator('[data-testid="stSlider"]').first.locator("input").last  # the end thumb
        timed("slider: end one step left (key)", lambda th=thumb: th.press("ArrowLeft"), base, 0.0, -dur,
              traj=[0.0, -dur])
        yield
        timed("slider: end back (key)", lambda th=thumb: th.press("ArrowRight"), base, 0.0, dur, traj=None)
        yield
        timed("scroll to the trajectory", lambda: pg.evaluate(SCROLL_TO_TRAJECTORY), base, 0.0, dur, traj=None,
              on="scroll")
        yield
        timed("projection: fixed", lambda: pg.get_by_text("Fixed for this checkpoint").click(), base, 0.0, dur,
              "!" + PCA_CAPTION, traj=None)
        yield
        timed("projection: PCA of the clip", lambda: pg.get_by_text("PCA of this clip").click(), base, 0.0, dur,
              PCA_CAPTION, traj=None)
        pg.evaluate(SCROLL_TO_TOP)  # back to Figure 2 (not timed), where the next round starts
        yield

    # a reference segmentation (the examples' TextGrids laid end to end as the clip is): scores, tolerance
    timed("reference upload to scores", lambda: pg.locator('[data-testid="stFileUploader"]', has_text="Reference "
          "segmentation").locator('input[type="file"]').set_input_files(str(ref_csv)), base, 0.0, dur,
          "Scores at 20 ms")
    yield
    tol = pg.locator('[data-testid="stNumberInput"]', has_text="Tolerance")
    steps = [("up", 25, "new"), ("down", 20, "seen")]
    steps += [("up", 25, "seen"), ("up", 30, "new"), ("down", 25, "seen"), ("down", 20, "seen")] * (args.rounds > 1)
    steps += [("up", 25, "seen"), ("down", 20, "seen")] * max(0, args.rounds - 2)
    for way, ms, seen in steps:
        timed(f"tolerance {way} ({seen})", lambda w=way: tol.locator(f'[data-testid="stNumberInputStep{w.title()}"]')
              .click(), base, 0.0, dur, f"Scores at {ms} ms")
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="clip length")
    ap.add_argument("--rounds", type=int, default=3, help="times each interaction is repeated (round 1 = first)")
    ap.add_argument("--uploads", type=int, default=1, help="clips uploaded one after the other (each new content "
                    "of the same length, so the model runs each time), before the other interactions")
    ap.add_argument("--upload-only", action="store_true", help="time the uploads only")
    ap.add_argument("--checkpoints", default=None, help="checkpoint folder (default: the bundled ones)")
    ap.add_argument("--width", type=int, default=1400, help="browser window width, px")
    ap.add_argument("--height", type=int, default=900, help="browser window height, px")
    ap.add_argument("--screenshot", default=None, help="save a screenshot after the upload to this PNG")
    ap.add_argument("--app", type=Path, default=ROOT, help="serve the app of this checkout")
    ap.add_argument("--ab", type=Path, default=None, help="also serve the app of this checkout (e.g. an exported "
                    "older revision: `git archive REV | tar -x -C DIR`) in a second browser, and alternate: each "
                    "interaction on it ('A'), then on --app ('B'), so both meet the same load")
    ap.add_argument("--breakdown", action="store_true", help="split each interaction: input -> message sent, "
                    "-> first and last reply received, bytes received, main thread busy (long tasks), -> drawn")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one interaction (the upload "
                    "of a long clip on a busy machine needs more)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", OMP_NUM_THREADS="1")
    if args.checkpoints:
        env["VRNN_CHECKPOINTS"] = args.checkpoints
    tmp = Path(tempfile.mkdtemp())
    wav = clip(args.seconds, tmp / f"speech-{args.seconds:g}s.wav")
    ref_csv = reference_csv(args.seconds, tmp / f"speech-{args.seconds:g}s.csv")
    apps = {"": args.app} if args.ab is None else {"A ": args.ab, "B ": args.app}
    servers = {k: serve(env, app.resolve()) for k, app in apps.items()}
    times: dict[str, dict[str, list[float]]] = {k: {} for k in apps}
    rss: dict[str, tuple[float, float]] = {}
    try:
        with sync_playwright() as p:
            runs = []
            for k, (_proc, url) in servers.items():
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                pg = browser.new_page(viewport={"width": args.width, "height": args.height})
                pg.set_default_timeout(1000 * args.timeout)
                if args.breakdown:
                    pg.add_init_script(HOOK)
                t0 = time.perf_counter()
                pg.goto(url)
                pg.wait_for_function(ANY_PLOT)
                print(f"{k}{'first page (example clip)':<34s} {1000 * (time.perf_counter() - t0):8.0f} ms")
                pg.wait_for_selector('[data-test-script-state="notRunning"]')
                runs.append(session(pg, args, wav, ref_csv, times[k], k))
            for steps in zip(*runs, strict=True):  # one interaction on each app in turn
                del steps
            for k, (proc, _) in servers.items():
                rss[k] = rss_mb(proc.pid)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    for k, (now, peak) in rss.items():
        print(f"{k}server RSS at the end: {now:.0f} MB, peak {peak:.0f} MB")
    head = "   ".join(f"{k or ''}first     {k or ''}later (min-max), ms" for k in apps)
    print(f"\n{'interaction':<40s} {head}")
    for name in times[next(iter(apps))]:
        cols = []
        for k in apps:
            ts = times[k][name]
            later = ts[1:]
            rest = f"{1000 * min(later):6.0f}-{1000 * max(later):<6.0f}" if later else "      -      "
            cols.append(f"{1000 * ts[0]:{len(k) + 6}.0f}   {rest}")
        print(f"{name:<40s} " + "   ".join(cols))


if __name__ == "__main__":
    main()
