"""Issue 13 in a real browser: an example clip with a TextGrid beside it gets reference lines on Figure 2 and a
score table; a bad reference upload shows its warning and the figure stays. Same setup as tests/test_browser.py
(headless Debian Chromium through playwright; skipped where either is missing)."""

from __future__ import annotations

import shutil

import pytest
from test_browser import (  # noqa: F401 (browser, page, playwright: fixtures)
    GRAPHS,
    assert_no_exception,
    browser,
    caption,
    drag_across_figure2,
    expect,
    graph,
    page,
    playwright,
    pytestmark,
    serve_app,
    settle,
)

from vrnn.segments import Reference, Segment, write_textgrid

PHONES = ["sil", "h", "eh", "l", "ow", "w", "er", "l", "d", "sil"]


@pytest.fixture(scope="module")
def server(app_dirs, tmp_path_factory):
    """The app on a free port; examples: clip0.wav with clip0.TextGrid (0.2 s segments), clip1.wav without."""
    ex = tmp_path_factory.mktemp("seg_examples")
    for f in ("clip0.wav", "clip1.wav"):
        shutil.copy(app_dirs["examples"] / f, ex / f)
    write_textgrid(Reference([Segment(round(0.2 * i, 3), round(0.2 * (i + 1), 3), p) for i, p in enumerate(PHONES)],
                             2.0), ex / "clip0.TextGrid")
    yield from serve_app(app_dirs["checkpoints"], ex, tmp_path_factory.mktemp("server") / "streamlit.log")


TRACE_NAMES = "gd => gd.data.map(t => t.name || '')"


def test_reference_lines_scores_and_a_bad_upload(server, page, tmp_path):  # noqa: F811 (the fixture)
    page.goto(server)
    plot = graph(page)
    expect(plot).to_be_visible()
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()  # the score table
    settle(page)
    assert_no_exception(page)
    names = plot.evaluate(TRACE_NAMES)
    assert names.count("reference boundaries") == 3 and names.count("reference phones") == 3  # every row
    assert "kl peaks" in names
    assert plot.locator(".textpoint").count() >= 3 * 8  # the 8 phone labels drawn on each row

    bad = tmp_path / "bad.csv"
    bad.write_text("0.0,0.5,a\n0.5,9.0,b\n")  # past the 2 s clip's end
    page.locator('[data-testid="stMain"] input[type="file"]').set_input_files(str(bad))
    warning = page.locator('[data-testid="stAlertContentWarning"]')
    expect(warning).to_contain_text("bad.csv")
    settle(page)
    assert_no_exception(page)
    expect(graph(page)).to_be_visible()  # the figure stays, without the reference
    page.wait_for_function("() => !" + GRAPHS + "[0].data.some(t => t.name === 'reference boundaries')")
    assert page.locator('[data-testid="stDataFrame"]').count() == 0


def test_tolerance_updates_the_table_alone(server, page):  # noqa: F811 (the fixture)
    """The tolerance reruns only the score table (its own fragment): Figure 2 and the trajectory are not drawn
    again, and a stretch selected on the figure stays selected."""
    page.goto(server)
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    expect(caption(page, "Scores at 20 ms")).to_be_visible()
    settle(page)
    drag_across_figure2(page, 0.25, 0.5)
    expect(caption(page, "Playing the selection")).to_be_visible()
    settle(page)
    page.wait_for_function("() => " + GRAPHS + ".length === 2")  # the trajectory too (drawn after Figure 2)
    # mark the drawn figures and count their draws: a figure drawn again would be drawn in place (Plotly.react) or
    # in a new graph div (st.plotly_chart remounts a changed chart)
    page.evaluate("() => " + GRAPHS + ".forEach((g, i) => { g.__mark = i + 1; g.__draws = 0;"
                  " g.on('plotly_afterplot', () => { g.__draws += 1; }); })")
    tol = page.locator('[data-testid="stNumberInput"]', has_text="Tolerance")
    tol.locator('[data-testid="stNumberInputStepUp"]').click()
    expect(caption(page, "Scores at 25 ms")).to_be_visible()
    settle(page)
    page.wait_for_timeout(500)
    assert page.evaluate("() => " + GRAPHS + ".map(g => [g.__mark, g.__draws])") == [[1, 0], [2, 0]]
    expect(caption(page, "Playing the selection")).to_be_visible()
    assert_no_exception(page)
