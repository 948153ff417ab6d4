"""One persistent, offline headless Chromium that renders ECharts options, MathML and HTML tables.

Starting Chromium costs seconds; rendering in an already-open page costs milliseconds (docs/measured-figures.md: 31
charts/s with `setOption` + `getDataURL`, against 2.5 s per chart for pyecharts' `make_snapshot`). So a
`BrowserRenderer` starts the browser once, loads the static page `assets/render.html` once, and is reused
for many samples.

Containment: the data to draw reaches the page only as JSON arguments of WebDriver calls, and the page's
own script builds the DOM with `textContent` and typed properties, so a title such as `<img onerror=...>`
is drawn as text. The browser has no network: hosts resolve to nothing, a dead proxy catches the rest
(loopback included), every http(s)/ws URL is blocked over CDP, and the page's Content-Security-Policy
allows only local scripts and fonts.
"""
from __future__ import annotations

import base64
import io
import contextlib
import math
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

from generators.base import GeneratorError, Reject, decode_png

CHROMIUM = os.environ.get("VARYFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VARYFLOW_CHROMEDRIVER", "/usr/bin/chromedriver")
ASSETS = Path(__file__).resolve().parent / "assets"
REPO_ROOT = Path(__file__).resolve().parent.parent
MATH_FONT = "/usr/share/texmf/fonts/opentype/public/lm-math/latinmodern-math.otf"

# Flags that keep the browser offline and its pixels the same from run to run.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--disable-gpu",
    "--force-device-scale-factor=1",
    "--font-render-hinting=none",
    "--disable-lcd-text",
    "--hide-scrollbars",
    "--mute-audio",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    # Chromium sends loopback traffic around the proxy unless told otherwise.
    "--proxy-bypass-list=<-loopback>",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication",
    "--window-size=1600,1200",
    # Screenshots otherwise wait for the next vsync'd frame: ~50 ms each instead of ~20 ms.
    "--disable-frame-rate-limit",
    "--disable-gpu-vsync",
)
# A fresh Chromium, and its one-off loads (echarts.min.js, the math font), get at least this long whatever the per-call
# limit: on a busy machine its first answers take seconds, and a start that timed out would fail the whole render.
START_TIMEOUT_S = 30.0
BLOCKED_URLS = ["http://*", "https://*", "ws://*", "wss://*", "ftp://*", "*://*:*"]


def echarts_js_path() -> Path:
    """Where echarts.min.js lives: $VARYFLOW_ECHARTS_JS, else the copy infra/setup.sh takes from npm."""
    env = os.environ.get("VARYFLOW_ECHARTS_JS")
    path = Path(env) if env else REPO_ROOT / "infra" / "vendor" / "echarts" / "dist" / "echarts.min.js"
    if not path.is_file():
        raise GeneratorError(
            f"echarts.min.js not found at {path}: run infra/setup.sh (it copies dist/echarts.min.js from the npm "
            "package `echarts`) or point VARYFLOW_ECHARTS_JS at that file"
        )
    return path


def _clip(rect: dict[str, float]) -> tuple[int, int, int, int]:
    """A layout box as whole pixels (x, y, w, h), covering every partly painted pixel."""
    x, y = int(rect["x"]), int(rect["y"])
    return x, y, max(1, math.ceil(rect["x"] + rect["width"]) - x), max(1, math.ceil(rect["y"] + rect["height"]) - y)


def _table_args(table: dict[str, Any], style: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON arguments of the page's table renderers: the rows, and `style` over the table's own."""
    return {"rows": table.get("rows", [])}, dict(table.get("style") or {}, **(style or {}))


class BrowserRenderer:
    """A headless Chromium with the renderer page open; calls are serialised by a lock.

    A call that runs past `timeout_s` (a runaway option, a hung page) or a browser that died is that one
    sample's `Reject("timeout")` / `Reject("browser_crash")`; the browser is restarted for the next call."""

    def __init__(self, window: tuple[int, int] = (1600, 1200), math_font: str | None = MATH_FONT, timeout_s: float = 30.0):
        for tool, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
            if not os.access(tool, os.X_OK):
                raise GeneratorError(f"{tool} not found: install the Debian package `{pkg}` (infra/setup.sh does)")
        self._lock = threading.Lock()
        self._window = window
        self._math_font = math_font
        self._timeout_s = float(timeout_s)
        self._driver = None
        self._pgid: int | None = None
        self._profile: str | None = None
        self.restarts = 0
        self.screenshots = 0
        self._start()

    def _start(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self._profile = tempfile.mkdtemp(prefix="varyflow-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self._profile}")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            opts.add_argument("--no-sandbox")  # Chromium refuses to start its sandbox as root
        # Its own session (process group), so a hung browser can be killed whole, and only it.
        service = Service(CHROMEDRIVER, popen_kw={"start_new_session": True})
        try:
            self._driver = webdriver.Chrome(service=service, options=opts)
        except Exception as e:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None
            raise GeneratorError(f"could not start Chromium: {e}") from e
        self._pgid = service.process.pid
        try:
            with self._start_limits():
                self._cdp("Network.enable", {})
                self._cdp("Network.setBlockedURLs", {"urls": BLOCKED_URLS})
                self._cdp(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": self._window[0], "height": self._window[1], "deviceScaleFactor": 1, "mobile": False},
                )
                self._driver.get((ASSETS / "render.html").as_uri())
                if not self._driver.execute_script("return !!(window.vf && window.vf.ready)"):
                    raise GeneratorError("renderer page did not load")
            self._echarts_loaded = False
            self._math_font_loaded = False
        except BaseException:
            self.close()
            raise

    def _limit(self, seconds: float) -> None:
        # chromedriver never answers while page script spins, so the HTTP client needs its own limit.
        self._driver.command_executor._client_config.timeout = seconds + 5
        self._driver.set_script_timeout(seconds)
        self._driver.set_page_load_timeout(seconds)

    @contextlib.contextmanager
    def _start_limits(self):
        """`START_TIMEOUT_S` (or the per-call limit, if longer) inside the block, the per-call limit after it. Not
        restored when the block fails: a browser that timed out is restarted or closed, never asked again."""
        self._limit(max(self._timeout_s, START_TIMEOUT_S))
        yield
        self._limit(self._timeout_s)

    @contextlib.contextmanager
    def _guard(self):
        """Serialise a call; turn a timeout or a dead browser into that sample's Reject and restart."""
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from urllib3.exceptions import HTTPError as DriverConnectionError

        with self._lock:
            if self._driver is None:
                raise GeneratorError("BrowserRenderer is closed")
            try:
                yield
            except (TimeoutException, DriverConnectionError, TimeoutError) as e:
                self._restart()
                raise Reject("timeout", f"browser call exceeded {self._timeout_s:.0f} s ({type(e).__name__})") from None
            except WebDriverException as e:
                self._restart()
                raise Reject("browser_crash", (e.msg or str(e))[:300]) from None

    def _restart(self) -> None:
        self.close(hard=True)
        self.restarts += 1
        self._start()

    # -- plumbing ---------------------------------------------------------------------------------
    def _cdp(self, cmd: str, args: dict[str, Any]) -> Any:
        return self._driver.execute_cdp_cmd(cmd, args)

    def _async(self, method: str, *args: Any) -> Any:
        # The last argument of an async script is its callback; page methods take it as `done`.
        return self._driver.execute_async_script(f"window.vf.{method}(...arguments)", *args)

    def _ensure_echarts(self) -> None:
        if self._echarts_loaded:
            return
        with self._start_limits():
            res = self._async("loadScript", echarts_js_path().as_uri())
        if not res.get("ok") or not self._driver.execute_script("return typeof echarts !== 'undefined'"):
            raise GeneratorError(f"could not load echarts.min.js: {res.get('error')}")
        self._echarts_loaded = True

    def _ensure_math_font(self) -> None:
        if self._math_font_loaded or not self._math_font:
            return
        if not Path(self._math_font).is_file():
            raise GeneratorError(
                f"math font {self._math_font} not found: install the Debian package `fonts-lmodern` "
                "(infra/setup.sh does)"
            )
        with self._start_limits():
            res = self._async("loadFont", "VF Math", Path(self._math_font).as_uri())
        if not res.get("ok"):
            raise GeneratorError(f"could not load math font {self._math_font}: {res.get('error')}")
        self._math_font_loaded = True

    def _capture(self, rect: dict[str, float]) -> bytes:
        # CDP capture of just the element's box; whole-pixel clip so the same input yields the same bytes.
        x, y, w, h = _clip(rect)
        # Capturing beyond the viewport resizes the page for the shot and halves the speed: only when needed.
        beyond = x + w > self._window[0] or y + h > self._window[1]
        shot = self._cdp(
            "Page.captureScreenshot",
            {
                "format": "png",
                "clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1},
                "captureBeyondViewport": beyond,
                "fromSurface": True,
                "optimizeForSpeed": True,
            },
        )
        self.screenshots += 1
        return base64.b64decode(shot["data"])

    # -- public API -------------------------------------------------------------------------------
    def render_echart(
        self,
        option: dict[str, Any],
        width: int,
        height: int,
        background: str = "#ffffff",
        min_ink_fraction: float = 0.002,
        required_text: Sequence[str] = (),
    ) -> bytes:
        """PNG bytes of an ECharts option drawn at width×height on `background` (animation off, pixel
        ratio 1). Gates, each a `Reject`: "blank" for a chart with almost no ink (the rule of
        `base.check_not_blank`, applied in the page to a 256² reduction so no pixels travel to Python);
        "overflow" for a line of text that runs off the canvas or is drawn over another, or a string
        of `required_text` (what the target names) that no visible text shows in full."""
        with self._guard():
            self._ensure_echarts()
            res = self._driver.execute_script(
                "return window.vf.renderEchart(arguments[0], arguments[1], arguments[2], arguments[3], arguments[4])",
                option, int(width), int(height), background, [str(t) for t in required_text],
            )
        if "error" in res:
            raise Reject("render_error", res["error"])
        if res["ink"] < min_ink_fraction:
            raise Reject("blank", f"ink fraction {res['ink']:.4f} < {min_ink_fraction}")
        if res["text"]:
            shown = "; ".join(f"{p['text'][:60]!r} {p['why'][:80]}" for p in res["text"][:3])
            more = f" (+{len(res['text']) - 3} more)" if len(res["text"]) > 3 else ""
            raise Reject("overflow", shown + more)
        head, _, data = res["url"].partition(",")
        if head != "data:image/png;base64":
            raise Reject("render_error", f"unexpected image data URL header {head[:40]!r}")
        return base64.b64decode(data)

    def render_mathml(
        self,
        mathml: str,
        font_px: int = 32,
        color: str = "#000000",
        background: str = "#ffffff",
        padding: int = 8,
    ) -> bytes:
        """PNG bytes of a MathML formula, cropped to it plus `padding` px. The MathML is parsed as XML and
        rebuilt from MathML elements and harmless attributes only; anything else is `Reject("unsafe_mathml")`,
        malformed XML is `Reject("mathml_parse")`."""
        with self._guard():
            self._ensure_math_font()
            res = self._driver.execute_script(
                "return window.vf.renderMath(arguments[0], arguments[1], arguments[2], arguments[3], arguments[4])",
                mathml, int(font_px), color, background, int(padding),
            )
            if "error" in res:
                reason = "mathml_parse" if "well-formed" in res["error"] else "unsafe_mathml"
                raise Reject(reason, res["error"])
            return self._capture(res["rect"])

    def render_mathml_many(
        self,
        mathmls: list[str],
        font_px: int | list[int] = 32,
        color: str = "#000000",
        background: str = "#ffffff",
        padding: int = 8,
    ) -> list[Any]:
        """`render_mathml` for a batch in one layout and one screenshot (the screenshot is most of the cost
        of a lone formula). Returns, per input, an RGB PIL image cropped like `render_mathml`'s (same
        pixels) or the `Reject` that formula earned; one bad formula never sinks the batch. `font_px` is one
        size for all or a list with one size per formula."""
        from PIL import Image

        sizes = [int(f) for f in font_px] if isinstance(font_px, (list, tuple)) else int(font_px)
        if isinstance(sizes, list) and len(sizes) != len(mathmls):
            raise ValueError(f"font_px has {len(sizes)} sizes for {len(mathmls)} formulas")

        with self._guard():
            self._ensure_math_font()
            res = self._driver.execute_script(
                "return window.vf.renderMathMany(arguments[0], arguments[1], arguments[2], arguments[3], arguments[4])",
                list(mathmls), sizes, color, background, int(padding),
            )
            rects = [r["rect"] for r in res["items"] if "rect" in r]
            sheet = None
            if rects:
                right = max(math.ceil(r["x"] + r["width"]) for r in rects)
                sheet = Image.open(io.BytesIO(self._capture({"x": 0, "y": 0, "width": right, "height": res["height"]})))
                sheet = sheet.convert("RGB")
        out: list[Any] = []
        for r in res["items"]:
            if "error" in r:
                reason = "mathml_parse" if "well-formed" in r["error"] else "unsafe_mathml"
                out.append(Reject(reason, r["error"]))
                continue
            x, y, w, h = _clip(r["rect"])
            out.append(sheet.crop((x, y, x + w, y + h)))
        return out

    def render_table(self, table: dict[str, Any], style: dict[str, Any] | None = None) -> bytes:
        """PNG bytes of an HTML table, cropped to it. `table` = {"rows": [[{"text", "header", "rowspan",
        "colspan", "align"?}, ...], ...], "style"?: {...}}; `style` (or table["style"]) keys: font_px,
        font_family, color, background, page_background, margin_px, cell_padding_px, border ("all" |
        "booktabs" | "horizontal" | "box" | "none"), rule_px, rule_color, align, header_bold,
        header_background, stripe_background. Cell text is set with textContent: never parsed as HTML.
        The generator renders through `render_table_many`; this one-table path is the reference its
        batches are tested against."""
        with self._guard():
            res = self._driver.execute_script(
                "return window.vf.renderTable(arguments[0], arguments[1])", *_table_args(table, style)
            )
            if "error" in res:
                raise Reject("render_error", res["error"])
            return self._capture(res["rect"])

    def render_table_many(
        self,
        tables: Sequence[dict[str, Any]],
        styles: Sequence[dict[str, Any] | None] | None = None,
        mode: str = "RGB",
    ) -> list[Any]:
        """`render_table` for a batch: the tables are packed into viewport-sized sheets, one layout for all
        and one screenshot per sheet (the screenshot is most of the cost of a lone table), each sheet
        decoded once and cropped per table. Returns, per input, a PIL image in `mode` with the pixels of
        `render_table`'s PNG, or the `Reject` that table earned; one bad table never sinks the batch.
        `styles` holds one style per table (None: each table's own "style")."""

        styles = list(styles) if styles is not None else [None] * len(tables)
        if len(styles) != len(tables):
            raise ValueError(f"{len(styles)} styles for {len(tables)} tables")
        args = [_table_args(t, st) for t, st in zip(tables, styles)]
        with self._guard():
            res = self._driver.execute_script(
                "return window.vf.renderTableMany(arguments[0], arguments[1], arguments[2], arguments[3])",
                [a[0] for a in args], [a[1] for a in args], self._window[0], self._window[1],
            )
            shots = []
            for k, sheet in enumerate(res["sheets"]):
                if k:
                    self._driver.execute_script("return window.vf.showSheet(arguments[0])", k)
                shots.append(self._capture({"x": 0, "y": 0, **sheet}))
        sheets = [decode_png(png, mode) for png in shots]
        out: list[Any] = []
        for r in res["items"]:
            if r is None or "error" in r:
                out.append(Reject("render_error", (r or {}).get("error", "table was not laid out")))
                continue
            x, y, w, h = _clip(r["rect"])
            out.append(sheets[r["sheet"]].crop((x, y, x + w, y + h)))
        return out

    def page_state(self, expression: str) -> Any:
        """Evaluate a trusted expression in the page — tests use it to check that nothing ran. Never pass
        data here: data goes only through the render_* methods, as arguments."""
        with self._guard():
            return self._driver.execute_script(f"return ({expression})")

    def close(self, hard: bool = False) -> None:
        """Quit the browser (kill it when `hard`, or when it does not quit) and remove its profile."""
        driver, self._driver = getattr(self, "_driver", None), None
        if driver is not None and not hard:
            try:
                driver.command_executor._client_config.timeout = 10
                driver.quit()
            except Exception:
                pass
        pgid = getattr(self, "_pgid", None)
        if pgid:
            # Whatever of this browser's group is left (a hung renderer, crashpad helpers) goes too.
            self._pgid = None
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if driver is not None:
                try:
                    driver.service.process.wait(timeout=5)
                except Exception:
                    pass
        if getattr(self, "_profile", None):
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> "BrowserRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
