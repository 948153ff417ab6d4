"""`echart` generator vs the raw ECharts loop in the same Chromium, in the same run.

Samples per CPU-second of this process, chromedriver and Chromium (`benchmarks.render.cpu_seconds`), best of
three alternating rounds. Rows: ours against (a) the raw loop doing the same work — the same pyecharts options,
`setOption` in one open page, the canvas it painted encoded as PNG (what ours returns), no sampling, checks or
meta: the compared row; (b) the same with `getDataURL`, which repaints the chart (more work than ours, so only a
reference); (c) the one-page-per-chart path that pyecharts' `make_snapshot` takes (load a page with
echarts.min.js per chart, then render), measured on a few charts.
"""
from __future__ import annotations

GOAL = ">= 0.9x raw and >= 25/s/core"

_RAW_JS = """
const box = document.getElementById('vf-raw') || Object.assign(document.body.appendChild(document.createElement('div')),
  {id: 'vf-raw'});
box.style.cssText = 'position:absolute;left:-30000px;width:' + arguments[1] + 'px;height:' + arguments[1] + 'px';
window.__raw = window.__raw || echarts.init(box, null, {renderer: 'canvas', devicePixelRatio: 1});
window.__raw.setOption(arguments[0], true);
return window.__raw.getDataURL({type: 'png', pixelRatio: 1});
"""

# The same, encoding the canvas setOption painted (what ours does) instead of getDataURL's repaint.
_RAW_CANVAS_JS = _RAW_JS.replace(
    "return window.__raw.getDataURL({type: 'png', pixelRatio: 1});",
    "const layers = window.__raw.getZr().painter.getLayers();\n"
    "return layers[Object.keys(layers)[0]].dom.toDataURL('image/png');")

_PAGE_PER_CHART_JS = """
const done = arguments[arguments.length - 1];
const s = document.createElement('script');
s.src = arguments[0];
s.onload = () => {
  const box = document.body.appendChild(document.createElement('div'));
  box.style.cssText = 'width:' + arguments[2] + 'px;height:' + arguments[2] + 'px';
  const c = echarts.init(box, null, {devicePixelRatio: 1});
  c.setOption(arguments[1]);
  done(c.getDataURL({type: 'png'}));
};
document.head.appendChild(s);
"""


def bench(n: int = 40) -> list[dict]:
    from benchmarks.render import best_rates, samples
    from generators.base import Sample
    from generators.browser import ASSETS, BrowserRenderer, echarts_js_path
    from generators.echart import EChartGenerator

    def raw(options: list, js: str = _RAW_JS) -> int:
        for opt in options:
            driver.execute_script(js, opt, gen.size)
        return len(options)

    def page_per_chart(options: list) -> int:
        for opt in options:
            driver.get((ASSETS / "render.html").as_uri())
            driver.execute_async_script(_PAGE_PER_CHART_JS, js, opt, gen.size)
        driver.get((ASSETS / "render.html").as_uri())
        return len(options)

    rows = []
    with BrowserRenderer() as browser:
        driver = browser._driver
        js = echarts_js_path().as_uri()
        for lang in ("en", "zh"):
            gen = EChartGenerator(lang=lang, renderer=browser)
            list(gen.items(1, 10_000, 10_003))  # warm: echarts loaded, fonts cached
            options = [gen.build_option(*gen.draw(1, i)[3:]) for i in range(n)]
            items = list(gen.items(1, 0, n))
            accepted = [opt for opt, item in zip(options, items) if isinstance(item, Sample)]  # what raw draws
            raw(options[:1])
            rates = best_rates({"raw": lambda: raw(accepted), "ours": lambda: samples(gen.items(1, 0, n)),
                                "canvas": lambda: raw(accepted, _RAW_CANVAS_JS)})
            rows.append({"kind": f"echart ({lang})", "ours_per_s": round(rates["ours"], 2),
                         "raw_per_s": round(rates["canvas"], 2),
                         "raw_label": "same options, setOption in one open page, the painted canvas as PNG "
                                      "(the same work as ours)", "goal": GOAL,
                         "rejects": len(items) - len(accepted)})
            rows.append({"kind": f"echart ({lang})", "ours_per_s": round(rates["ours"], 2),
                         "raw_per_s": round(rates["raw"], 2),
                         "raw_label": "the same with getDataURL, which repaints the chart (more work than ours)",
                         "goal": "(reference)"})
        # make_snapshot's shape: a fresh page (and echarts.min.js parse) per chart; a few charts suffice. It
        # navigates away from the generator's page, so it runs last.
        page = best_rates({"page": lambda: page_per_chart(options[: min(n, 4)])}, rounds=1)["page"]
        rows.append({"kind": "echart (zh)", "ours_per_s": round(rates["ours"], 2), "raw_per_s": round(page, 2),
                     "raw_label": "one page load per chart (make_snapshot's shape, browser already running)",
                     "goal": GOAL})
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in bench(int(sys.argv[1]) if len(sys.argv) > 1 else 40):
        print(json.dumps(row, ensure_ascii=False))
