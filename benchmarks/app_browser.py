"""The app's interactions timed in a real browser: upload to drawn figure, then each control, first time and later.

    python benchmarks/app_browser.py                          # 30 s clip, bundled checkpoints, 3 rounds
    python benchmarks/app_browser.py --seconds 600 --rounds 1 # a 10-minute clip; prints the server's peak RSS
    python benchmarks/app_browser.py --checkpoints DIR        # other checkpoints (VRNN_CHECKPOINTS)

Starts `streamlit run app.py` on a free port, drives it in headless Debian Chromium (/usr/bin/chromium) with
playwright, and prints one line per interaction: the time from the input (click, drag, key, file) to the figure
redrawn in the page (the plotly graph div holds the expected rows and time range, its traces are drawn and the
script run has finished), both taken in the page with performance.now(): a capturing listener for the input
event, a requestAnimationFrame loop for the figure, so playwright's own round trips are not counted.
The clip is real speech: the bundled example clips end to end, repeated to the length asked for.
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

# In the page: the time of the input event (capturing listener) and of the first animation frame at which the
# figure is redrawn as expected, both from performance.now(), so playwright's own round trips are not counted.
ARM = """([rows, x0, x1, text]) => {
    const b = window.__bench = {t0: null, t1: null};
    if (!window.__benchListening) {
        window.__benchListening = true;
        for (const ev of ['pointerdown', 'keydown', 'change', 'dblclick'])
            document.addEventListener(ev, () => { const w = window.__bench;
                if (w && w.t0 === null) w.t0 = performance.now(); }, true);
    }
    const ok = () => {
        const g = [...document.querySelectorAll('.js-plotly-plot')].find(d => d.layout && d.layout.meta
            && d.layout.meta.rows);
        if (!g || !g._fullLayout) return false;
        const r = g.layout.xaxis.range;
        const endOk = x1 >= 0 ? Math.abs(r[1] - x1) < 0.004 : r[1] < -x1 - 0.001;  // x1 < 0: "ends before -x1"
        return g.layout.meta.rows.join() === rows.join() && Math.abs(r[0] - x0) < 0.004 && endOk
            && g.querySelectorAll('.scatterlayer .trace').length >= 3
            && !!document.querySelector('[data-test-script-state="notRunning"]')
            && (!text || [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
                .some(c => c.textContent.includes(text)));
    };
    const tick = () => { if (b.t0 !== null && ok()) { b.t1 = performance.now(); } else requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
}"""
DONE = "() => window.__bench.t1 !== null"


def clip(seconds: float, path: Path) -> Path:
    """The bundled example clips end to end (real speech), repeated to `seconds`, written as 16 kHz WAV."""
    from vrnn import load_audio

    parts = [load_audio(p)[0] for p in sorted((ROOT / "assets" / "examples").glob("*.wav"))]
    x = np.concatenate(parts)
    x = np.tile(x, int(np.ceil(seconds * 16_000 / len(x))))[: int(seconds * 16_000)]
    sf.write(path, x, 16_000, subtype="PCM_16")
    return path


def serve(env: dict) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(Path(tempfile.gettempdir()) / f"app_browser_{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless",
                             "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.fileWatcherType", "none", "--server.maxUploadSize", "1000"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="clip length")
    ap.add_argument("--rounds", type=int, default=3, help="times each interaction is repeated (round 1 = first)")
    ap.add_argument("--checkpoints", default=None, help="checkpoint folder (default: the bundled ones)")
    ap.add_argument("--width", type=int, default=1400, help="browser window width, px")
    ap.add_argument("--height", type=int, default=900, help="browser window height, px")
    ap.add_argument("--screenshot", default=None, help="save a screenshot after the upload to this PNG")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one interaction (the upload "
                    "of a long clip on a busy machine needs more)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", OMP_NUM_THREADS="1")
    if args.checkpoints:
        env["VRNN_CHECKPOINTS"] = args.checkpoints
    tmp = Path(tempfile.mkdtemp())
    wav = clip(args.seconds, tmp / f"speech-{args.seconds:g}s.wav")
    proc, url = serve(env)
    times: dict[str, list[float]] = {}

    def timed(name: str, act, rows: list[str], x0: float, x1: float, text: str = "") -> None:
        pg.evaluate(ARM, [rows, x0, x1, text])
        act()
        pg.wait_for_function(DONE, timeout=1000 * args.timeout, polling=50)
        dt = pg.evaluate("() => window.__bench.t1 - window.__bench.t0") / 1000
        times.setdefault(name, []).append(dt)
        print(f"{name:<34s} {1000 * dt:8.0f} ms", flush=True)

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": args.width, "height": args.height})
            pg.set_default_timeout(1000 * args.timeout)
            t0 = time.perf_counter()
            pg.goto(url)
            pg.wait_for_selector(".js-plotly-plot")
            print(f"{'first page (example clip)':<34s} {1000 * (time.perf_counter() - t0):8.0f} ms")
            pg.wait_for_selector('[data-test-script-state="notRunning"]')
            dur = (int(args.seconds * 16_000) // 200) * 200 / 16_000
            base = ["delta", "kl", "wave"]
            timed(f"upload {args.seconds:g} s clip to figure",
                  lambda: pg.locator('[data-testid="stSidebar"] input[type="file"]').set_input_files(str(wav)),
                  base, 0.0, dur)
            pg.wait_for_timeout(500)
            if args.screenshot:
                pg.screenshot(path=args.screenshot)
            print(f"server RSS after the upload: {rss_mb(proc.pid)[0]:.0f} MB (peak {rss_mb(proc.pid)[1]:.0f} MB)")

            def toggle(label: str) -> None:
                pg.locator('[data-testid="stCheckbox"]', has_text=label).locator("label").first.click()

            def plot_box() -> tuple[float, float, float, float]:
                return pg.evaluate("""() => {
                    const g = document.querySelector('.js-plotly-plot'); const b = g.getBoundingClientRect();
                    const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis;
                    return [b.left + xa._offset, b.top + ya._offset, xa._length, ya._length]; }""")

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
                for label, row in (("Spectrogram", "mel"), ("KL per dim", "kl_dims"), ("Means", "means")):
                    timed(f"{label} row on", lambda lbl=label: toggle(lbl), base + [row], 0.0, dur)
                    pg.wait_for_timeout(300)
                    timed(f"{label} row off", lambda lbl=label: toggle(lbl), base, 0.0, dur)
                    pg.wait_for_timeout(300)
                timed("drag-select a stretch", lambda: drag(0.25, 0.5), base, 0.0, dur, "Playing the selection")
                pg.wait_for_timeout(300)
                timed("double-click: clear the selection", dblclick, base, 0.0, dur, "Playing the whole clip")
                pg.wait_for_timeout(300)
                thumb = pg.locator('[data-testid="stSlider"]').first.locator("input").last  # the end thumb
                timed("slider: end one step left (key)", lambda th=thumb: th.press("ArrowLeft"),
                      base, 0.0, -dur)
                pg.wait_for_timeout(300)
                timed("slider: end back (key)", lambda th=thumb: th.press("ArrowRight"),
                      base, 0.0, dur)
                pg.wait_for_timeout(300)
            browser.close()
        now, peak = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\nserver RSS at the end: {now:.0f} MB, peak {peak:.0f} MB")
    print("\ninteraction                        first     later (min-max), ms")
    for name, ts in times.items():
        later = ts[1:]
        rest = f"{1000 * min(later):6.0f}-{1000 * max(later):.0f}" if later else "      -"
        print(f"{name:<34s} {1000 * ts[0]:6.0f}   {rest}")


if __name__ == "__main__":
    main()
