"""Every page of the app through streamlit.testing.v1.AppTest: the figure, uploads good and bad, page switches,
downloads, generation, checkpoint uploads, caching. The app reads tiny checkpoints and synthetic clips from
the `app_dirs` fixture (VRNN_CHECKPOINTS / VRNN_EXAMPLES), never the bundled assets."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

import vrnn
from vrnn.plots import show_rows

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
PAGES = ["pages/figure2.py", "pages/compare.py", "pages/generate.py", "pages/about.py"]
TIMEOUT = 120  # s per script run; the 2 CPU cores may be busy


def wav_bytes(x: np.ndarray, sr: int = 16_000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def all_figures(at: AppTest) -> list[dict]:
    """Every plotly figure on the page in page order, as shown: st.plotly_chart's and ui.plotly_graph's (a custom
    component whose arguments hold the figure's JSON and, for Figure 2, the rows it shows: `show_rows`)."""
    found = []
    def walk(node):
        if getattr(node, "type", None) == "plotly_chart":
            found.append(json.loads(node.proto.spec))
        elif getattr(node, "type", None) == "component_instance":
            args = json.loads(node.proto.json_args)
            if node.proto.component_name == "ui.plotly_graph":
                if args.get("figure") is not None:  # (None: its place held, the figure to come: plotly_graph_hold)
                    fig = json.loads(args["figure"])
                    found.append(fig if "rows" not in args else show_rows(fig, args["rows"]).to_plotly_json())
        for child in (getattr(node, "children", None) or {}).values():
            walk(child)
    walk(at._tree)
    return found


def figures(at: AppTest) -> list[dict]:
    """The page's main figures (Figure 2, compare, generate, training curves): all but the latent trajectory and
    the 'hear' figure below Figure 2."""
    def extra(f: dict) -> bool:
        meta = f["layout"].get("meta") or {}
        return "dims" in meta or meta.get("rows", [None])[0] in ("reconstruction", "continuation")

    return [f for f in all_figures(at) if not extra(f)]


def unescape(markdown: str) -> str:
    """The text a Markdown body shows, as far as backslash escapes go (`ui.plain` escapes user-chosen names)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture(autouse=True)
def navigation_mode(monkeypatch):
    """Run app.py on every rerun, as a server does.

    AppTest (streamlit 1.67) resets PagesManager.uses_pages_directory before each run, so an app that calls
    st.navigation and keeps its page scripts in pages/ is rerun in the legacy multipage mode, which executes
    the page script alone, without app.py and its sidebar. A server clears the flag at the first
    st.navigation call and keeps it cleared; this does the same.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def app_env(app_dirs, monkeypatch):
    monkeypatch.setenv("VRNN_CHECKPOINTS", str(app_dirs["checkpoints"]))
    monkeypatch.setenv("VRNN_EXAMPLES", str(app_dirs["examples"]))
    return app_dirs


@pytest.fixture
def at(app_env) -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()


def upload(at: AppTest, name: str, data: bytes, mime: str = "audio/wav") -> AppTest:
    at.file_uploader(key="upload").set_value((name, data, mime))
    return at.run()


# -- home page ---------------------------------------------------------------------------------------------------

def test_home_shows_figure2_with_three_rows(at):
    assert_clean(at)
    assert not at.error
    (spec,) = figures(at)
    assert spec["layout"]["meta"]["rows"] == ["delta", "kl", "wave"]
    assert {k for k in spec["layout"] if k.startswith("yaxis")} == {"yaxis", "yaxis2", "yaxis3"}
    assert spec["layout"]["xaxis2"]["matches"] == spec["layout"]["xaxis3"]["matches"] == "x"  # one time axis
    assert [spec["layout"][f"xaxis{i}"]["showticklabels"] for i in ("", 2, 3)] == [False, False, True]
    assert spec["layout"]["xaxis3"]["range"][1] == pytest.approx(2.0)  # the 2 s example clip
    assert len(at.get("audio")) == 1  # the clip plays
    assert at.selectbox(key="checkpoint").value == "vrnn-gauss"  # the preferred model is chosen first
    assert any("δ" in m.value and "KL" in m.value for m in at.markdown)  # the rows are explained


def test_uploaded_wav_is_analysed(at):
    from conftest import speechlike

    x = speechlike(1.5, sr=44_100)
    stereo = np.stack([x, 0.5 * x], axis=1)
    upload(at, "my voice.wav", wav_bytes(stereo, 44_100, "PCM_24"))
    assert_clean(at)
    assert not at.error
    (spec,) = figures(at)
    assert spec["layout"]["xaxis3"]["range"][1] == pytest.approx(1.5, abs=0.0125)  # the upload, not the example
    assert any("my voice.wav" in unescape(c.value) for c in at.caption)


def test_uploaded_wav_cut_short_is_analysed_with_a_warning(at):
    """A WAV whose header promises more than the file holds: the part there is analysed, and a warning names
    both numbers (vrnn.load_audio reads it; the app shows its sentence)."""
    data = wav_bytes(np.zeros(32_000, np.float32) + 0.01)[:44 + 2 * 12_000]  # header: 2 s; file: 0.75 s
    upload(at, "cut.wav", data)
    assert_clean(at)
    assert not at.error
    assert [w.value for w in at.warning] == ["'cut.wav' is cut short: its header declares 32000 samples (2.00 s) "
                                             "but the file holds 12000 (0.75 s); reading the 12000 there are."]
    (spec,) = figures(at)
    assert spec["layout"]["xaxis3"]["range"][1] == pytest.approx(0.75, abs=0.0125)


def _nan_wav() -> bytes:
    x = np.zeros(4000, np.float32)
    x[100] = np.nan
    return wav_bytes(x, subtype="FLOAT")


BAD_UPLOADS = {
    "text renamed .wav": ("notes.wav", b"This is not audio, just some text.\n" * 20, "could not be read"),
    "text file": ("notes.txt", b"hello\n", "could not be read"),
    "random bytes": ("noise.wav", np.random.default_rng(0).bytes(5000), "could not be read"),
    "empty": ("empty.wav", b"", "empty"),
    "NaN samples": ("nan.wav", None, "NaN"),
    "shorter than a frame": ("short.wav", wav_bytes(np.zeros(100, np.float32)), "ms long"),
    "header only": ("cut.wav", wav_bytes(np.zeros(16000, np.float32))[:44], ""),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_shows_a_message_then_a_good_upload_works(at, case):
    name, data, words = BAD_UPLOADS[case]
    if data is None:
        data = _nan_wav()
    upload(at, name, data)
    assert_clean(at)
    assert len(at.error) == 1, "a bad file gets exactly one message"
    msg = unescape(at.error[0].value)
    assert name in msg and words in msg
    assert "0x" not in msg  # no object addresses in a message meant for people
    assert not figures(at)
    # the app goes on working: the sidebar is intact and the next (good) upload is analysed
    assert at.selectbox(key="checkpoint").value == "vrnn-gauss"
    from conftest import speechlike

    upload(at, "good.wav", wav_bytes(speechlike(1.0)))
    assert_clean(at)
    assert not at.error and len(figures(at)) == 1


def _encoded(fmt: str, subtype: str, sr: int, channels: int) -> bytes:
    from conftest import speechlike

    x = speechlike(1.0, sr=sr)
    x = np.stack([x] * channels, axis=1) if channels > 1 else x
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("name,fmt,subtype,sr,channels", [
    ("a.flac", "FLAC", "PCM_S8", 8_000, 1),
    ("b.ogg", "OGG", "VORBIS", 48_000, 2),
    ("c.mp3", "MP3", "MPEG_LAYER_III", 44_100, 1),
    ("d.wav", "WAV", "FLOAT", 96_000, 6),
])
def test_uploads_in_other_formats_rates_and_channel_counts(at, name, fmt, subtype, sr, channels):
    upload(at, name, _encoded(fmt, subtype, sr, channels), "application/octet-stream")
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    (spec,) = figures(at)
    assert spec["layout"]["xaxis3"]["range"][1] == pytest.approx(1.0, abs=0.06)  # mp3 adds encoder padding


def test_too_long_upload_names_the_limit(at):
    x = np.zeros(8_000 * 601, np.int16)  # 601 s at 8 kHz, 9.6 MB
    upload(at, "long.wav", wav_bytes(x, 8_000))
    assert_clean(at)
    assert len(at.error) == 1 and "600 s" in unescape(at.error[0].value)


def test_silence_is_analysed(at):
    upload(at, "silence.wav", wav_bytes(np.zeros(16_000, np.float32)))
    assert_clean(at)
    assert not at.error
    (spec,) = figures(at)
    assert spec["layout"]["meta"]["rows"] == ["delta", "kl", "wave"]


def record(at: AppTest, data: bytes | None) -> AppTest:
    """A microphone recording, as st.audio_input delivers it (16 kHz WAV), or None to remove it."""
    at.get("audio_input")[0].set_value(None if data is None else ("recording.wav", data, "audio/wav"))
    return at.run()


def test_recording_is_analysed_and_the_newer_source_wins(at):
    from conftest import speechlike

    assert at.get("audio_input")[0].sample_rate == 16_000
    record(at, wav_bytes(speechlike(1.5, f0=200)))
    assert_clean(at)
    assert not at.error and not at.warning
    (spec,) = figures(at)
    assert spec["layout"]["xaxis3"]["range"][1] == pytest.approx(1.5)
    assert any("microphone recording" in c.value for c in at.caption)
    upload(at, "later.wav", wav_bytes(speechlike(1.25)))  # the upload came later: it is analysed
    assert figures(at)[0]["layout"]["xaxis3"]["range"][1] == pytest.approx(1.25)
    record(at, wav_bytes(speechlike(1.75)))  # then a new recording
    assert figures(at)[0]["layout"]["xaxis3"]["range"][1] == pytest.approx(1.75)
    record(at, None)  # removing the recording falls back to the upload, then to the example
    assert figures(at)[0]["layout"]["xaxis3"]["range"][1] == pytest.approx(1.25)
    at.file_uploader(key="upload").set_value(None).run()
    assert figures(at)[0]["layout"]["xaxis3"]["range"][1] == pytest.approx(2.0)


def _clipped() -> np.ndarray:
    from conftest import speechlike

    return np.clip(8 * speechlike(1.0), -1, 1)


# name, audio, what the page says: an error stops the page, a warning leaves the figure
BAD_RECORDINGS = {
    "silence": (np.zeros(16_000, np.float32), "warning", "silent"),
    "shorter than a frame": (np.zeros(100, np.float32), "error", "ms long"),
    "clipping": (None, "warning", "clipped"),
}


@pytest.mark.parametrize("source", ["upload", "recording"])
@pytest.mark.parametrize("case", list(BAD_RECORDINGS))
def test_bad_recordings_and_uploads_get_the_same_message(at, source, case):
    x, kind, words = BAD_RECORDINGS[case]
    data = wav_bytes(_clipped() if x is None else x)
    if source == "upload":
        upload(at, "recording.wav", data)
        name = "recording.wav"
    else:
        record(at, data)
        name = "microphone recording.wav"
    assert_clean(at)
    msgs = at.error if kind == "error" else at.warning
    assert len(msgs) == 1, [m.value for m in msgs]
    assert name in unescape(msgs[0].value) and words in unescape(msgs[0].value)
    assert len(figures(at)) == (0 if kind == "error" else 1)
    if kind == "warning":
        assert not at.error


def test_csv_download_matches_the_analysis(at, app_env):
    import ui

    labels = [b.label for b in at.download_button]
    assert any("CSV" in lbl for lbl in labels)
    # the table itself, against an analysis computed here without the app
    model = vrnn.load_checkpoint(app_env["checkpoints"] / "vrnn-gauss.safetensors")
    wave, sr = vrnn.load_audio(app_env["examples"] / "clip0.wav")
    a = vrnn.analyze(model, wave, sr)
    rows = list(csv.DictReader(io.StringIO(ui.frames_csv(a).decode())))
    assert list(rows[0]) == ["time_s", "delta_t", "kl_t_nats", "log_px_t_nats"]
    assert len(rows) == a.n_frames == 160
    np.testing.assert_allclose([float(r["kl_t_nats"]) for r in rows], a.kl, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose([float(r["log_px_t_nats"]) for r in rows], a.log_px, rtol=1e-4)
    assert float(rows[0]["delta_t"]) == 0.0 and float(rows[-1]["time_s"]) == pytest.approx(a.times[-1])


def test_rows_toggle_and_zoom_without_rerunning_the_model(at, monkeypatch):
    calls = []
    real = vrnn.analyze
    monkeypatch.setattr(vrnn, "analyze", lambda *a, **k: calls.append(1) or real(*a, **k))
    at.run()
    calls.clear()
    at.toggle(key="row_mel").set_value(True)
    at.toggle(key="row_kl_dims").set_value(True)
    at.toggle(key="row_means").set_value(True).run()
    assert_clean(at)
    (spec,) = figures(at)
    assert spec["layout"]["meta"]["rows"] == ["delta", "kl", "wave", "mel", "kl_dims", "means"]
    (zoom,) = [s for s in at.slider if s.label.startswith("View")]
    zoom.set_value((0.5, 1.0)).run()
    (spec,) = figures(at)
    assert spec["layout"]["xaxis"]["range"] == pytest.approx([0.5, 1.0])
    assert any("0.500–1.000 s" in c.value for c in at.caption)  # and just that stretch plays
    at.switch_page("pages/about.py").run()
    at.switch_page("pages/figure2.py").run()
    assert_clean(at)
    assert calls == [], "toggling rows, zooming or switching pages must not rerun the model"


def test_generate_button_plays_audio(at):
    n_audio = len(at.get("audio"))
    at.button(key="home_generate").click().run()
    assert_clean(at)
    assert len(at.get("audio")) == n_audio + 1


def test_rnn_checkpoint_says_there_are_no_latent_rows(at):
    at.selectbox(key="checkpoint").set_value("rnn-gauss").run()
    assert_clean(at)
    assert any("no" in i.value and "latent" in i.value for i in at.info)
    (spec,) = figures(at)
    assert spec["layout"]["meta"]["rows"] == ["log_px", "wave"]


# -- every page --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(at, page):
    at.switch_page(page).run()
    assert_clean(at)
    assert not at.error
    assert at.title and at.selectbox(key="checkpoint").value  # the shared sidebar is on every page


def test_compare_page_draws_two_checkpoints_and_a_table(at, app_env):
    at.switch_page("pages/compare.py").run()
    assert_clean(at)
    figs = figures(at)
    cols = figs[0]["layout"]["meta"]["columns"]
    assert cols == ["vrnn-gauss", "run-b/best"]  # two models with latent variables, not the RNN baseline
    (table,) = at.dataframe
    df = table.value
    assert list(df.index) == cols and "ELBO on this clip (nats)" in df.columns
    # each row's ELBO is its own model's on the shown clip (the first example), not another row's or clip's
    waveform, _ = vrnn.load_audio(app_env["examples"] / "clip0.wav")
    for key in cols:
        model = vrnn.load_checkpoint(app_env["checkpoints"] / f"{key}.safetensors")
        assert df.loc[key, "ELBO on this clip (nats)"] == pytest.approx(vrnn.analyze(model, waveform).elbo, rel=1e-4)
    # choose the run with a metrics log: its training curves appear
    at.multiselect(key="compare_ckpts").set_value(["vrnn-gauss", "run-b/best", "rnn-gauss"]).run()
    assert_clean(at)
    figs = figures(at)
    assert figs[0]["layout"]["meta"]["columns"] == ["vrnn-gauss", "run-b/best", "rnn-gauss"]
    assert len(figs) == 2 and figs[1]["data"][0]["name"].startswith("run-b")


def test_compare_page_accepts_uploaded_checkpoints_and_rejects_bad_ones(at, app_env):
    at.switch_page("pages/compare.py").run()
    good = (app_env["checkpoints"] / "run-b" / "best.safetensors").read_bytes()
    at.file_uploader(key="compare_uploads").set_value([
        ("mine.safetensors", good, "application/octet-stream"),
        ("broken.safetensors", good[:200], "application/octet-stream"),
        ("model.pt", b"\x80\x04pickle", "application/octet-stream"),
    ]).run()
    assert_clean(at)
    errors = " ".join(unescape(e.value) for e in at.error)
    assert "model.pt" in errors and ".safetensors" in errors
    assert "truncated" in errors or "not a readable" in errors
    cols = figures(at)[0]["layout"]["meta"]["columns"]
    assert cols[-1] == "mine (uploaded)" and len(cols) == 3


def test_generate_page_gives_audio_and_downloads(at):
    at.switch_page("pages/generate.py").run()
    at.multiselect(key="gen_ckpts").set_value(["vrnn-gauss", "rnn-gauss"])
    at.slider(key="gen_seconds").set_value(1.0)
    at.number_input(key="gen_n").set_value(2)
    at.button[0].click().run()
    assert_clean(at)
    assert len(at.get("audio")) == 4  # 2 checkpoints x 2 samples
    assert sum("WAV" in b.label for b in at.download_button) == 4
    specs = figures(at)
    assert len(specs) == 2 and all(len(s["layout"]["meta"]["rows"]) == 2 for s in specs)
    assert all("sample" in b.label for b in at.download_button)
    at.radio(key="gen_output").set_value("Decoder mean (no output noise)")
    at.button[0].click().run()
    assert_clean(at)
    assert len(at.get("audio")) == 4 and "decoder mean" in " ".join(c.value for c in at.caption)
    assert sum("WAV" in b.label and "mean" in b.label for b in at.download_button) == 4


def test_about_page_has_the_equations(at):
    at.switch_page("pages/about.py").run()
    assert_clean(at)
    latex = " ".join(el.value for el in at.latex)
    assert len(at.latex) >= 5 and r"\mathrm{KL}" in latex and r"\delta_t" in latex


# -- no or broken checkpoints ------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES[:3])
def test_without_checkpoints_the_page_says_how_to_train(app_env, monkeypatch, tmp_path, page):
    monkeypatch.setenv("VRNN_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page(page).run()
    assert_clean(at)
    assert any("No checkpoint" in i.value for i in at.info)
    assert any("python -m vrnn train" in c.value for c in at.code)
    assert not figures(at)


def test_corrupt_checkpoint_in_the_folder_shows_its_message(app_env, monkeypatch, tmp_path):
    (tmp_path / "aaa-broken.safetensors").write_bytes(b"\x00" * 64)
    monkeypatch.setenv("VRNN_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert_clean(at)
    assert len(at.error) == 1 and "aaa-broken" in unescape(at.error[0].value)
    at.switch_page("pages/about.py").run()  # the rest of the app still works
    assert_clean(at)
    assert at.latex


# -- where checkpoints come from ---------------------------------------------------------------------------------

def test_checkpoint_folders_from_env_and_command_line(tmp_path, monkeypatch, app_dirs):
    import ui

    run = tmp_path / "runs" / "vrnn-gauss"
    for rel in ("best.safetensors", "last.safetensors", "snapshots/step-000500.safetensors",
                "snapshots/.step-000600.safetensors.tmp", "snapshots/.hidden.safetensors"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(b"x")
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "valid_elbo_per_frame": -1}\n{broken\n')
    monkeypatch.setenv("VRNN_CHECKPOINTS", str(app_dirs["checkpoints"]))
    monkeypatch.setattr(sys, "argv", ["app.py", "--checkpoints", str(tmp_path / "runs")])
    found = ui.find_checkpoints()
    assert list(found)[:1] == ["vrnn-gauss"]  # the preferred model first
    assert {"vrnn-gauss", "vrnn-gauss/best", "vrnn-gauss/last", "vrnn-gauss/snapshots/step-000500", "run-b/best",
            "rnn-gauss"} == set(found)
    snap = found["vrnn-gauss/snapshots/step-000500"]
    assert snap.metrics_path() == run / "metrics.jsonl"  # a snapshot's log is its run's
    assert [r["step"] for r in ui.metrics(snap)] == [1, 2]  # a half-written line is skipped
    logs = ui.training_logs([found["vrnn-gauss/best"], found["vrnn-gauss/last"], snap])
    assert list(logs) == ["vrnn-gauss"]  # one run, one curve
    assert ui.default_pair(found, "vrnn-gauss/best")[1] != "vrnn-gauss/last"  # another run by default


def test_selected_range_from_a_dragged_box():
    import ui

    box = lambda x0, x1: {"selection": {"points": [], "box": [{"xref": "x3", "yref": "y3", "x": [x0, x1],  # noqa: E731
                                                               "y": [-1, 1]}], "lasso": []}}
    assert ui.selected_range(box(0.51, 1.0), 2.0) == (0.5, 1.0)  # snapped outward to whole frames
    assert ui.selected_range(box(1.3, 0.2), 2.0) == (0.2, 1.3)  # dragged right to left
    assert ui.selected_range(box(-5.0, 9.0), 2.0) == (0.0, 2.0)  # clamped to the clip
    assert ui.selected_range(box(1.99, 5.0), 2.0) == (1.9875, 2.0)  # at least one frame
    assert ui.selected_range({"selection": {"points": [], "box": [], "lasso": []}}, 2.0) is None  # double click
    assert ui.selected_range(None, 2.0) is None


# -- latent trajectory and what the model hears ------------------------------------------------------------------

def test_trajectory_is_drawn_after_figure2_the_first_time(at):
    """The first time a clip is shown, the trajectory's graph (below the fold) holds its place without a figure and
    asks, once the browser has painted Figure 2, for a rerun of the trajectory's fragment (tests/test_browser.py
    checks that in a browser); the next run draws it, and from then on it is drawn at once."""
    assert not [f for f in all_figures(at) if f["layout"].get("meta", {}).get("dims")]
    assert len(figures(at)) == 1  # Figure 2 is drawn in the first run
    (held,) = [a for a in graph_args(at, "trajectory") if "rows" not in a]  # the trajectory's graph, holding its place
    assert held["figure"] is None and held["hold"] == 420 and held["after_paint"]
    at.run()
    assert_clean(at)
    assert len([f for f in all_figures(at) if f["layout"].get("meta", {}).get("dims")]) == 1
    at.toggle(key="row_mel").set_value(True).run()  # a later run draws it at once
    assert len([f for f in all_figures(at) if f["layout"].get("meta", {}).get("dims")]) == 1
    upload(at, "other.wav", wav_bytes(np.sin(np.arange(16_000) / 9.0).astype(np.float32) * 0.3))
    assert not [f for f in all_figures(at) if f["layout"].get("meta", {}).get("dims")]  # a new clip: after paint
    at.run()
    assert len([f for f in all_figures(at) if f["layout"].get("meta", {}).get("dims")]) == 1


def test_trajectory_follows_projection_dimensions_and_selection(at):
    at.run()  # the trajectory is drawn from the second run on (after Figure 2 is painted, in a browser)
    figs = all_figures(at)
    traj = [f for f in figs if f["layout"].get("meta", {}).get("dims")]
    assert len(traj) == 1 and traj[0]["layout"]["meta"]["dims"] == 2
    assert traj[0]["layout"]["meta"]["panels"][0].startswith("posterior")
    assert any("posterior means of this clip" in c.value for c in at.caption)
    at.radio(key="traj_proj").set_value("Fixed for this checkpoint").run()
    assert_clean(at)
    # the tiny test checkpoints have no projection file: fitted on the example clips, and it says so
    assert any("example clips" in c.value for c in at.caption)
    at.radio(key="traj_dims").set_value("3-D").run()
    traj = [f for f in all_figures(at) if f["layout"].get("meta", {}).get("dims")]
    assert traj[0]["layout"]["meta"]["dims"] == 3 and traj[0]["data"][0]["type"] == "scatter3d"
    (view,) = [s for s in at.slider if s.label.startswith("View")]
    view.set_value((0.5, 1.0)).run()
    traj = [f for f in all_figures(at) if f["layout"].get("meta", {}).get("dims")]
    assert traj[0]["layout"]["meta"]["highlight"] == [0.5, 1.0]  # the view is drawn solid


def test_fixed_projection_file_is_used_when_it_matches_the_checkpoint(app_env, tmp_path, monkeypatch):
    import hashlib
    import shutil

    from vrnn.latent import Projection

    ck = tmp_path / "vrnn-gauss.safetensors"
    shutil.copy(app_env["checkpoints"] / "vrnn-gauss.safetensors", ck)
    z = vrnn.load_checkpoint(ck).config.z_dim
    p = Projection(np.zeros(z), np.eye(z)[:3], np.array([0.5, 0.3, 0.1]), "forty training windows")
    p.save(ck.with_suffix(".projection.json"), checkpoint_sha256=hashlib.sha256(ck.read_bytes()).hexdigest())
    monkeypatch.setenv("VRNN_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.radio(key="traj_proj").set_value("Fixed for this checkpoint").run()
    assert_clean(at)
    assert any("forty training windows" in c.value for c in at.caption)
    p.save(ck.with_suffix(".projection.json"), checkpoint_sha256="0" * 64)  # stale: not used
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.radio(key="traj_proj").set_value("Fixed for this checkpoint").run()
    assert not any("forty training windows" in c.value for c in at.caption)


def test_reconstruct_and_continue_play_and_plot(at, monkeypatch):
    calls = []
    real = vrnn.analyze
    monkeypatch.setattr(vrnn, "analyze", lambda *a, **k: calls.append(1) or real(*a, **k))
    n_audio = len(at.get("audio"))
    at.button(key="hear_reconstruct").click().run()
    assert_clean(at)
    hear = [f for f in all_figures(at) if f["layout"].get("meta", {}).get("rows") == ["reconstruction"]]
    assert len(hear) == 1
    assert len(at.get("audio")) == n_audio + 2  # the clip and its reconstruction
    (start,) = [n for n in at.number_input if n.label.startswith("Continue from")]
    start.set_value(0.5)
    at.number_input(key="hear_seed").set_value(3)
    at.button(key="hear_continue").click().run()
    assert_clean(at)
    (spec,) = [f for f in all_figures(at) if f["layout"].get("meta", {}).get("rows") == ["reconstruction",
                                                                                      "continuation"]]
    assert spec["layout"]["shapes"][0]["x0"] == pytest.approx(0.5)  # the continuation point on both rows
    assert spec["layout"]["xaxis2"]["range"] == pytest.approx([0.0, 2.5])  # 0.5 s of clip + 2 s continued
    assert len(at.get("audio")) == n_audio + 3
    assert calls == [], "hearing reuses the analysis; it never reruns analyze"


def test_the_same_seed_continues_the_same_way(app_env):
    from vrnn.latent import continue_clip

    model = vrnn.load_checkpoint(app_env["checkpoints"] / "vrnn-gauss.safetensors")
    w, _ = vrnn.load_audio(app_env["examples"] / "clip0.wav")
    a, b = (continue_clip(model, w, 1.0, 0.5, seed=4) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_trajectory_is_coloured_by_reference_phones_from_a_textgrid(app_env, tmp_path, monkeypatch):
    import shutil

    from vrnn.segments import Reference, Segment, write_textgrid

    shutil.copy(app_env["examples"] / "clip0.wav", tmp_path / "clip0.wav")
    write_textgrid(Reference([Segment(0.0, 0.6, "sil"), Segment(0.6, 1.2, "ah"), Segment(1.2, 2.0, "s")], 2.0),
                   tmp_path / "clip0.TextGrid")
    monkeypatch.setenv("VRNN_EXAMPLES", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run().run()  # drawn from the second run on
    assert_clean(at)
    (traj,) = [f for f in all_figures(at) if f["layout"].get("meta", {}).get("dims")]
    names = [d["name"] for d in traj["data"] if d.get("showlegend")]
    assert {"ah", "s"} <= set(names)
    assert any("Coloured by reference phone" in c.value for c in at.caption)


# -- hostile uploads (issue 15, reproductions 3 and 7) ----------------------------------------------------------

EVIL = "[x](http:evil) **b** :red[r] $y$.wav"  # Markdown, a Streamlit colour directive and LaTeX in a file name


def test_plain_escapes_every_markdown_character():
    import ui

    for text in (EVIL, "a\\b`c`<i>&amp;#1. ~~s~~ |t| {u} !v", "line\nbreak"):
        out = ui.plain(text)
        assert unescape(out) == " ".join(text.splitlines())
        assert not re.search(r"(?<!\\)[\[\]()*_`<>&:$#|~!]", out.replace("\\\\", "")), out


def test_upload_names_are_shown_as_plain_text(at):
    from conftest import speechlike

    import ui

    upload(at, EVIL, b"not audio at all")
    assert_clean(at)
    assert len(at.error) == 1 and ui.plain(EVIL) in at.error[0].value
    upload(at, EVIL, wav_bytes(speechlike(1.0)))
    assert_clean(at)
    caption = next(c.value for c in at.caption if "frames of 12.5 ms" in c.value)
    assert f"**{ui.plain(EVIL)}**" in caption


def _huge_config_checkpoint(path: Path, salt: int) -> bytes:
    """The issue's ~1.3 KB file: two small tensors and a config claiming an 8000-unit LSTM (`salt` makes the
    bytes, so the cache key, unique to the test)."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        smallest = sorted(f.keys(), key=lambda k: f.get_slice(k).get_shape())[:2]  # e.g. 0-dim x_mean, x_std
        tensors = {k: f.get_tensor(k) for k in smallest}
    config = json.loads(meta["config"])
    meta["config"] = json.dumps({**config, "h_dim": 8000})
    meta["training"] = json.dumps({"steps": salt, "epochs": 0, "data": "none"})
    return save(tensors, metadata=meta)


def test_bad_checkpoint_upload_is_checked_once_and_named_by_its_name(at, app_env, monkeypatch):
    import time

    calls = []
    real = vrnn.load_checkpoint
    monkeypatch.setattr(vrnn, "load_checkpoint", lambda *a, **k: calls.append(k.get("name")) or real(*a, **k))
    data = _huge_config_checkpoint(app_env["checkpoints"] / "vrnn-gauss.safetensors", time.time_ns())
    assert len(data) < 3000
    name = "[evil](http:x) model.safetensors"
    at.switch_page("pages/compare.py").run()
    t0 = time.perf_counter()
    at.file_uploader(key="compare_uploads").set_value([(name, data, "application/octet-stream")]).run()
    first = time.perf_counter() - t0
    assert_clean(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "h_dim 8000" in unescape(errors[0])
    assert ui_plain(name) in errors[0] and "/tmp" not in errors[0]  # the upload's own name, as text
    for _ in range(3):  # reruns (any widget change) reuse the cached refusal
        at.run()
        assert [e.value for e in at.error] == errors
    assert calls.count(name) == 1, "a bad upload is checked once"
    assert first < 30  # the check itself is < 1 s (tests/test_checkpoint_validation.py); AppTest adds its own


def ui_plain(text: str) -> str:
    import ui

    return ui.plain(text)


def test_plotly_graph_serves_its_page_beside_plotlys_own_script():
    """The folder the graph component is served from: components/plotly_graph/index.html and the plotly package's
    plotly.min.js, byte for byte (the same plotly.js that st.plotly_chart's figures were made for)."""
    import plotly

    import ui

    folder = Path(ui._graph_folder())
    assert (folder / "index.html").read_bytes() == (ui.GRAPH_SOURCE / "index.html").read_bytes()
    script = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert (folder / "plotly.min.js").read_bytes() == script.read_bytes()
    assert 'src="plotly.min.js"' in (folder / "index.html").read_text()
    import shutil

    shutil.rmtree(folder)  # cleaned away while the app runs (a temporary-folder sweep): put together again
    assert ui._graph_folder() == str(folder) and (folder / "plotly.min.js").is_file()


def test_figure_revision_follows_the_figure():
    """A graph is redrawn only when its revision changes: the same figure object keeps its JSON and revision (no
    second serialisation), an equal figure gets the same revision, a changed one a new revision."""
    import plotly.graph_objects as go

    import ui

    a = go.Figure(go.Scatter(x=[0, 1], y=[1, 2]))
    text, rev = ui.figure_json(a)
    assert json.loads(text)["data"][0]["y"] == [1, 2]
    assert ui.figure_json(a) is ui.figure_json(a)  # cached on the object
    assert ui.figure_json(go.Figure(go.Scatter(x=[0, 1], y=[1, 2])))[1] == rev
    assert ui.figure_json(go.Figure(go.Scatter(x=[0, 1], y=[1, 3])))[1] != rev


def test_no_full_garbage_collection_after_each_script_run():
    """Streamlit's runner.postScriptGC (default true) runs gc.collect(2) after every rerun, holding the GIL: with
    torch and the cached figures loaded that was ~0.4 s of each interaction (benchmarks/README.md, issue 14)."""
    import tomllib

    config = tomllib.loads((APP.parent / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_figure2_falls_back_to_st_plotly_chart_without_a_component_folder(app_env, monkeypatch):
    """Where the component's folder cannot be written (a read-only temporary folder), Figure 2 and the trajectory
    are still drawn, by st.plotly_chart, with the drag selection."""
    import ui

    monkeypatch.setattr(ui, "_graph_folder", lambda: None)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.run()  # the trajectory is drawn from the second run on
    assert_clean(at)
    charts = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    assert [c["layout"]["meta"].get("rows", ["trajectory"])[:1] for c in charts[:2]] == [["delta"], ["trajectory"]]
    assert at.get("plotly_chart")[0].proto.selection_mode  # Figure 2 box-selects


def graph_args(at: AppTest, key: str = "figure2") -> dict:
    """The arguments of the ui.plotly_graph component with this key (what its frame receives)."""
    found = []

    def walk(node):
        if getattr(node, "type", None) == "component_instance" and node.proto.component_name == "ui.plotly_graph":
            found.append(json.loads(node.proto.json_args))
        for child in (getattr(node, "children", None) or {}).values():
            walk(child)

    walk(at._tree)
    return next(a for a in found if "rows" in a) if key == "figure2" else found


def test_a_row_toggle_sends_the_same_figure_with_other_rows_and_the_other_projection_is_ready(app_env):
    """Figure 2 holds every row: a row toggle sends the same figure (same revision: the frame does not redraw it
    from the server's message, it has already shown the row when the toggle flipped) with the rows to show, and
    builds no figure. When a new clip's trajectory is drawn (the rerun after Figure 2 is painted), the trajectory in
    the other projection is built and serialised in advance; before that nothing is built ahead."""
    import ui

    for name in ("figure2", "trajectory"):
        ui._memo_store()[0].pop(name, None)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert len(ui._memo_store()[0]["figure2"]) == 1
    assert not ui._memo_store()[0].get("trajectory")
    first = graph_args(at)
    assert first["rows"] == [] and first["row_toggles"] == {"row_mel": "mel", "row_kl_dims": "kl_dims",
                                                            "row_means": "means"}
    assert json.loads(first["figure"])["layout"]["meta"]["rows"] == ["delta", "kl", "wave", "mel", "kl_dims", "means"]
    at.run()  # the trajectory's rerun after paint
    assert_clean(at)
    kinds = sorted(k[2] for k in ui._memo_store()[0]["trajectory"])
    assert kinds == ["Fixed for this checkpoint", "PCA of this clip"]
    assert all(getattr(f, "_vrnn_json", None) for f in ui._memo_store()[0]["trajectory"].values())
    at.toggle(key="row_means").set_value(True).run()
    at.toggle(key="row_mel").set_value(True).run()
    assert_clean(at)
    now = graph_args(at)
    assert now["rows"] == ["mel", "means"] and now["revision"] == first["revision"]
    assert len(ui._memo_store()[0]["figure2"]) == 1  # nothing built for the toggles
    (spec,) = figures(at)
    assert spec["layout"]["meta"]["rows"] == ["delta", "kl", "wave", "mel", "means"]
