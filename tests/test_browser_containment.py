"""The offline Chromium renderer draws hostile strings as text and never reaches the network."""
from __future__ import annotations

import http.server
import io
import threading
import time
import urllib.request

import pytest
from PIL import Image

from generators.base import Reject
from generators.browser import BrowserRenderer

MATHML_NS = "http://www.w3.org/1998/Math/MathML"


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    port = srv.server_address[1]
    # The counter itself works: a request from this process is counted (then forgotten).
    urllib.request.urlopen(f"http://127.0.0.1:{port}/probe", timeout=5).read()
    assert _Counter.hits == ["/probe"]
    _Counter.hits.clear()
    yield port
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    with BrowserRenderer() as b:
        yield b


def hostile(port: int) -> list[str]:
    return [
        f'<img src=http://127.0.0.1:{port}/img onerror="window.__pwned=1">',
        f"</script><script>window.__pwned=2;fetch('http://127.0.0.1:{port}/fetch')</script>",
        f'<link rel=stylesheet href="http://127.0.0.1:{port}/css"><iframe src="http://127.0.0.1:{port}/frame">',
        "\"');window.__pwned=3;//{a|x}",
    ]


def settle_and_count() -> int:
    time.sleep(0.5)  # give any (wrongly) triggered request time to arrive before counting
    return len(_Counter.hits)


def decode(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


def test_echart_hostile_titles_and_series_are_plain_text(browser, server):
    evil = hostile(server)
    option = {
        "title": {"text": evil[0], "subtext": evil[1]},
        "legend": {"data": evil[1:]},
        "xAxis": {"type": "category", "data": evil},
        "yAxis": {"type": "value", "name": evil[2]},
        "series": [{"type": "bar", "name": name, "data": [1, 2, 3, 4]} for name in evil[1:]],
    }
    # Strings this long cannot fit an 800x600 chart, so the text gate rejects it; its detail quotes them as
    # the laid-out text ECharts drew on the canvas, markup and all.
    with pytest.raises(Reject) as e:
        browser.render_echart(option, 800, 600)
    assert e.value.reason == "overflow" and evil[0][:60] in e.value.detail
    assert browser.page_state("window.__pwned === undefined")
    assert browser.page_state("document.querySelectorAll('img, iframe, link[href^=\"http\"]').length") == 0
    assert settle_and_count() == 0


def test_table_cells_are_text_not_markup(browser, server):
    evil = hostile(server)
    table = {"rows": [[{"text": e, "header": True} for e in evil[:2]], [{"text": e} for e in evil[2:]]]}
    png = browser.render_table(table, {"border": "all", "font_px": 14})
    w, h = decode(png).size
    assert w > 100 and h > 20
    cells = browser.page_state("Array.from(document.querySelectorAll('#stage th, #stage td')).map(c => c.textContent)")
    assert cells == evil
    assert browser.page_state("document.querySelectorAll('#stage img, #stage script, #stage iframe, #stage link').length") == 0
    assert browser.page_state("window.__pwned === undefined")
    assert settle_and_count() == 0


def test_mathml_is_sanitised(browser, server):
    port = server
    # Text that looks like markup stays text; event handlers and links are stripped, not run.
    ok = (f'<math xmlns="{MATHML_NS}"><mi href="http://127.0.0.1:{port}/href" onclick="window.__pwned=4" '
          f'style="background:url(http://127.0.0.1:{port}/bg)">x</mi><mo>=</mo>'
          f'<mtext>&lt;img src=http://127.0.0.1:{port}/t onerror=window.__pwned=5&gt;</mtext></math>')
    png = browser.render_mathml(ok, font_px=28)
    assert decode(png).width > 50
    attrs = browser.page_state("Array.from(document.querySelectorAll('#stage math, #stage math *'))"
                               ".flatMap(e => Array.from(e.attributes).map(a => a.name))")
    assert not {"href", "onclick", "style"} & set(attrs)
    assert browser.page_state("document.querySelector('#stage mtext').textContent").startswith("<img src=")
    # A foreign element inside MathML is refused outright; so is malformed XML.
    with pytest.raises(Reject) as e:
        browser.render_mathml(f'<math xmlns="{MATHML_NS}"><img xmlns="http://www.w3.org/1999/xhtml" '
                              f'src="http://127.0.0.1:{port}/foreign"/></math>')
    assert e.value.reason == "unsafe_mathml"
    with pytest.raises(Reject) as e:
        browser.render_mathml("<math><mi>x</mi>")
    assert e.value.reason == "mathml_parse"
    assert browser.page_state("window.__pwned === undefined")
    assert settle_and_count() == 0


def test_network_is_blocked_even_for_script_in_the_page(browser, server):
    # Were data ever to run as script, the browser layer still has no route out (CSP, blocked URLs,
    # dead proxy that also covers loopback).
    browser.page_state(
        f"(function(){{ const i = new Image(); i.src = 'http://127.0.0.1:{server}/direct-img';"
        f" document.body.appendChild(i); fetch('http://127.0.0.1:{server}/direct-fetch').catch(() => 0);"
        f" return 1; }})()"
    )
    assert settle_and_count() == 0


def test_same_input_same_bytes(browser):
    option = {"title": {"text": "Same 同样"}, "xAxis": {"type": "category", "data": ["a", "b"]},
              "yAxis": {"type": "value"}, "series": [{"type": "line", "data": [3, 1]}]}
    assert browser.render_echart(option, 640, 480) == browser.render_echart(option, 640, 480)
    table = {"rows": [[{"text": "h", "header": True}], [{"text": "1"}]]}
    assert browser.render_table(table) == browser.render_table(table)


def test_blank_chart_is_rejected(browser):
    with pytest.raises(Reject) as e:
        browser.render_echart({"series": []}, 400, 300)
    assert e.value.reason == "blank"


def test_runaway_page_is_a_timeout_reject_and_the_browser_recovers():
    with BrowserRenderer(timeout_s=2) as b:
        with pytest.raises(Reject) as e:
            b.page_state("(() => { while (true) {} })()")
        assert e.value.reason == "timeout"
        assert b.restarts == 1
        option = {"xAxis": {"type": "category", "data": ["a"]}, "yAxis": {"type": "value"},
                  "series": [{"type": "bar", "data": [1]}]}
        assert decode(b.render_echart(option, 320, 240)).size == (320, 240)


def test_mathml_batch_gives_the_pixels_of_lone_renders(browser):
    import numpy as np
    from latex2mathml.converter import convert

    formulas = [convert(f) for f in (r"\frac{a^2+b}{\sqrt{x}}", r"\sum_{i=0}^{n} i^2", r"\int_0^1 f(x)\,dx")]
    lone = [np.asarray(decode(browser.render_mathml(m, font_px=30)).convert("RGB")) for m in formulas]
    batch = browser.render_mathml_many([formulas[0], "<math><mi>x</mi>", formulas[1], formulas[2]], font_px=30)
    assert isinstance(batch[1], Reject) and batch[1].reason == "mathml_parse"
    for single, img in zip(lone, [batch[0], batch[2], batch[3]]):
        assert np.array_equal(single, np.asarray(img))
    # A formula's pixels do not depend on what else is in its batch.
    alone = browser.render_mathml_many([formulas[2]], font_px=30)[0]
    assert np.array_equal(np.asarray(alone), lone[2])


def _table(n_rows: int, n_cols: int, word: str) -> dict:
    header = [{"text": f"{word} {c}", "header": True} for c in range(n_cols)]
    return {"rows": [header] + [[{"text": f"{r * c}.{c}"} for c in range(n_cols)] for r in range(n_rows)]}


def test_table_batch_gives_the_pixels_of_lone_renders(server):
    import numpy as np

    evil = hostile(server)
    merged = {"rows": [[{"text": "组 group", "header": True, "colspan": 2}, {"text": "x", "header": True, "rowspan": 2}],
                       [{"text": "a", "header": True}, {"text": "b", "header": True}],
                       [{"text": "1"}, {"text": "2"}, {"text": "3"}]]}
    tables = [_table(3, 3, "alpha"), {"rows": [[{"text": e} for e in evil]]}, merged, _table(6, 4, "beta"),
              _table(2, 40, "wide"),  # wider than the viewport: a sheet of its own, captured beyond it
              _table(12, 2, "tall"), _table(1, 2, "tiny"), _table(4, 5, "gamma")]
    borders = ["all", "booktabs", "horizontal", "box", "all", "none", "all", "booktabs"]
    families = ["serif", "sans-serif", "WenQuanYi Micro Hei, sans-serif", "DejaVu Serif"] * 2
    backgrounds = ["#ffffff", "#f4f4f4", "#ffffff", "#ffffee"] * 2
    styles = [{"border": b, "font_px": f, "font_family": fam, "margin_px": m, "page_background": bg}
              for b, f, fam, m, bg in zip(borders, [14, 17, 22, 15, 16, 19, 13, 21], families, [0, 3, 0, 5, 0, 1, 0, 2],
                                          backgrounds)]
    # A small viewport, so the batch needs several sheets and a shelf holds more than one table.
    with BrowserRenderer(window=(600, 400)) as b:
        lone = [np.asarray(decode(b.render_table(t, s)).convert("RGB")) for t, s in zip(tables, styles)]
        assert lone[4].shape[1] > 600
        shots = b.screenshots
        batch = b.render_table_many(tables, styles)
        assert len(batch) == len(tables)
        assert 3 <= b.screenshots - shots < len(tables)  # several sheets, fewer shots than tables
        for single, img in zip(lone, batch):
            assert np.array_equal(single, np.asarray(img))
        # Cells in a batch are text too, and nothing ran or was fetched.
        cells = b.page_state("Array.from(document.querySelectorAll('#stage td')).map(c => c.textContent)")
        assert all(e in cells for e in evil)
        markup = "document.querySelectorAll('#stage img, #stage script, #stage iframe, #stage link').length"
        assert b.page_state(markup) == 0
        assert b.page_state("window.__pwned === undefined")
        # A table's pixels do not depend on what else is in its batch, nor where it lands.
        alone = b.render_table_many(tables[3:4], styles[3:4], mode="L")[0]
        reordered = b.render_table_many(tables[::-1], styles[::-1], mode="L")
        assert np.array_equal(np.asarray(alone), np.asarray(decode(b.render_table(tables[3], styles[3])).convert("L")))
        assert np.array_equal(np.asarray(alone), np.asarray(reordered[len(tables) - 4]))
    assert settle_and_count() == 0
