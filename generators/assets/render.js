// Static renderer page for generators/browser.py. Everything rendered arrives as JSON arguments of
// WebDriver calls; this file builds the DOM from them with textContent and typed properties only, so
// no piece of data is ever parsed as HTML or run as script.
"use strict";
(function () {
  const MATHML_NS = "http://www.w3.org/1998/Math/MathML";
  // MathML Core elements plus the few legacy ones latex2mathml emits; anything else is refused.
  const MATH_ELEMENTS = new Set([
    "math", "mi", "mn", "mo", "ms", "mtext", "mspace", "mrow", "mfrac", "msqrt", "mroot", "mstyle",
    "merror", "mpadded", "mphantom", "msub", "msup", "msubsup", "munder", "mover", "munderover",
    "mmultiscripts", "mprescripts", "none", "mtable", "mtr", "mtd", "mlabeledtr", "menclose", "mfenced",
    "semantics", "annotation", "maligngroup", "malignmark",
  ]);
  const stage = () => document.getElementById("stage");
  let chart = null;
  let chartSize = null;

  function clearStage() {
    const s = stage();
    while (s.firstChild) s.removeChild(s.firstChild);
    s.removeAttribute("style");
    return s;
  }

  function rectOf(el) {
    const r = el.getBoundingClientRect();
    return { x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height };
  }

  // The share of pixels far from the background grey level (the median), on a 128x128 reduction of the
  // canvas: the rule of generators.base.check_not_blank (PIL's integer grey weights, median and count
  // from the histogram), without shipping pixels to Python. 128 rather than 256: Chromium's 1/4 downscale
  // plus its readback cost a millisecond a chart (a twentieth of it), and on a sweep of 400 charts (seed 7,
  // en and zh) both sizes gave the same blank/not-blank verdict for every one (least ink 0.0047 vs 0.0049).
  let inkCanvas = null;
  function inkFraction(canvas) {
    const n = 128;
    if (!inkCanvas) {
      inkCanvas = document.createElement("canvas");
      inkCanvas.width = n; inkCanvas.height = n;
    }
    const ctx = inkCanvas.getContext("2d", { willReadFrequently: true });
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, n, n);
    ctx.drawImage(canvas, 0, 0, n, n);
    const px = ctx.getImageData(0, 0, n, n).data;
    const hist = new Uint32Array(256);
    for (let i = 0; i < px.length; i += 4) {
      hist[(px[i] * 19595 + px[i + 1] * 38470 + px[i + 2] * 7471 + 0x8000) >>> 16]++;
    }
    const total = n * n;
    // Median as check_not_blank takes it: the mean of the two middle values.
    let lo = -1, hi = -1;
    for (let g = 0, acc = 0; g < 256 && hi < 0; g++) {
      acc += hist[g];
      if (lo < 0 && acc >= ((total - 1) >> 1) + 1) lo = g;
      if (acc >= (total >> 1) + 1) hi = g;
    }
    const median = (lo + hi) / 2;
    let ink = 0;
    for (let g = 0; g < 256; g++) if (Math.abs(g - median) > 40) ink += hist[g];
    return ink / total;
  }

  // Text the chart cannot show as its target names it: a visible line of text that runs off the canvas,
  // two lines of text drawn over each other, or a required string (title, category, series, axis name)
  // that no visible line shows in full (ECharts hid it to avoid overlap, or truncated it).
  // zrender draws each line of a text element as a "tspan" in the display list, its text as drawn
  // (after any truncation) and its box in the element's local frame.
  function textProblems(chart, width, height, required) {
    const tol = 1;
    const lines = [];
    for (const el of chart.getZr().storage.getDisplayList(true)) {
      if (el.type !== "tspan" || el.invisible || !el.style || !el.style.text) continue;
      const r = el.getBoundingRect();
      const m = el.transform;
      const corners = [[r.x, r.y], [r.x + r.width, r.y], [r.x + r.width, r.y + r.height], [r.x, r.y + r.height]]
        .map(([x, y]) => (m ? [m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5]] : [x, y]));
      const xs = corners.map((c) => c[0]), ys = corners.map((c) => c[1]);
      lines.push({ text: String(el.style.text), corners: corners,
                   box: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] });
    }
    const problems = [];
    const shown = new Map();  // text -> how many visible lines show it
    for (const { text, box } of lines) {
      if (box[0] < -tol || box[1] < -tol || box[2] > width + tol || box[3] > height + tol) {
        problems.push({ text: text, why: "runs off the canvas" });
      } else {
        shown.set(text, (shown.get(text) || 0) + 1);
      }
    }
    // Most pairs lie apart: a sweep along x meets only the lines whose upright boxes overlap in x, and the
    // exact test runs only for those whose boxes meet. Pairs are reported in display-list order.
    const byLeft = lines.map((_, i) => i).sort((i, j) => lines[i].box[0] - lines[j].box[0]);
    const pairs = [];
    for (let s = 0; s < byLeft.length; s++) {
      const a = lines[byLeft[s]].box;
      for (let t = s + 1; t < byLeft.length; t++) {
        const b = lines[byLeft[t]].box;
        if (a[2] - tol <= b[0] + tol) break;  // this one and all after it start right of a's end
        if (b[2] - tol <= a[0] + tol || a[3] - tol <= b[1] + tol || b[3] - tol <= a[1] + tol) continue;
        const i = Math.min(byLeft[s], byLeft[t]), j = Math.max(byLeft[s], byLeft[t]);
        if (overlaps(lines[i].corners, lines[j].corners, tol)) pairs.push([i, j]);
      }
    }
    pairs.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
    for (const [i, j] of pairs) problems.push({ text: lines[i].text, why: "overlaps " + JSON.stringify(lines[j].text) });
    for (const text of required || []) {
      // Counted, so a hidden label is not covered by another element showing the same string (a legend
      // entry named like a category).
      const left = shown.get(String(text)) || 0;
      if (left > 0) shown.set(String(text), left - 1);
      else problems.push({ text: String(text), why: "is not drawn in full" });
    }
    return problems;
  }

  // Separating-axis test of two convex quadrilaterals, each shrunk by `tol` px along every axis.
  function overlaps(a, b, tol) {
    for (const poly of [a, b]) {
      for (let k = 0; k < 4; k++) {
        const p = poly[k], q = poly[(k + 1) % 4];
        const len = Math.hypot(q[0] - p[0], q[1] - p[1]);
        if (len === 0) continue;
        const nx = (p[1] - q[1]) / len, ny = (q[0] - p[0]) / len;
        const proj = (pts) => pts.map((c) => c[0] * nx + c[1] * ny);
        const pa = proj(a), pb = proj(b);
        if (Math.max(...pa) - tol <= Math.min(...pb) + tol || Math.max(...pb) - tol <= Math.min(...pa) + tol) return false;
      }
    }
    return true;
  }

  function safeAttribute(name, value) {
    const n = name.toLowerCase();
    if (n.startsWith("on") || n.includes(":") || n === "href" || n === "src" || n === "style" ||
        n === "class" || n === "id" || n === "xmlns") return false;
    const v = String(value).toLowerCase();
    return !(v.includes("url(") || v.includes("javascript:") || v.includes("data:"));
  }

  // A fresh MathML tree holding only allowed elements, safe attributes and text.
  function cleanMath(node) {
    if (node.namespaceURI !== MATHML_NS || !MATH_ELEMENTS.has(node.localName)) {
      throw new Error("element not allowed in MathML: " + node.nodeName);
    }
    const out = document.createElementNS(MATHML_NS, node.localName);
    for (const a of Array.from(node.attributes)) {
      if (safeAttribute(a.name, a.value)) out.setAttribute(a.name, a.value);
    }
    for (const child of Array.from(node.childNodes)) {
      if (child.nodeType === Node.ELEMENT_NODE) out.appendChild(cleanMath(child));
      else if (child.nodeType === Node.TEXT_NODE || child.nodeType === Node.CDATA_SECTION_NODE) {
        out.appendChild(document.createTextNode(child.nodeValue));
      }
      // comments and processing instructions are dropped
    }
    return out;
  }

  function applyStyle(el, style, keys) {
    for (const [key, prop] of keys) {
      if (style[key] !== undefined && style[key] !== null) el.style[prop] = String(style[key]);
    }
  }

  window.vf = {
    ready: true,

    loadScript(url, done) {
      const s = document.createElement("script");
      s.src = url;
      s.onload = () => done({ ok: true });
      s.onerror = () => done({ ok: false, error: "could not load " + url });
      document.head.appendChild(s);
    },

    loadFont(family, url, done) {
      const face = new FontFace(family, "url(" + JSON.stringify(url) + ")");
      face.load().then((f) => { document.fonts.add(f); done({ ok: true }); },
                       (e) => done({ ok: false, error: String(e) }));
    },

    // `required`: strings the target names, each of which must be drawn in full on the canvas.
    renderEchart(option, width, height, background, required) {
      if (typeof echarts === "undefined") return { error: "echarts not loaded" };
      if (!chart || chartSize[0] !== width || chartSize[1] !== height) {
        if (chart) chart.dispose();
        const box = document.getElementById("chart");
        box.style.width = width + "px";
        box.style.height = height + "px";
        chart = echarts.init(box, null, { renderer: "canvas", devicePixelRatio: 1, width: width, height: height });
        chartSize = [width, height];
      }
      option.animation = false;
      option.backgroundColor = background || "#ffffff";
      // notMerge alone rebuilds the model but reuses the views of series that look alike, and those
      // keep state: the same option drawn twice in a row gave other pixels. clear() drops every view.
      chart.clear();
      try {
        chart.setOption(option, { notMerge: true, lazyUpdate: false, silent: true });
      } catch (e) {
        return { error: "setOption failed: " + String(e) };
      }
      // setOption has painted the chart, background included, on zrender's canvas. With that one layer,
      // it holds the very pixels getDataURL would return (getDataURL repaints the whole chart into a fresh
      // canvas first: an eighth of the cost of a chart).
      const painter = chart.getZr().painter;
      const layers = painter.getLayers ? painter.getLayers() : {};
      const keys = Object.keys(layers);
      const canvas = keys.length === 1 && layers[keys[0]].__builtin__ && layers[keys[0]].dom
        ? layers[keys[0]].dom
        : chart.renderToCanvas({ pixelRatio: 1, backgroundColor: option.backgroundColor });
      return {
        url: canvas.toDataURL("image/png"),
        ink: inkFraction(canvas),
        text: textProblems(chart, width, height, required),
      };
    },

    renderMath(mathml, fontPx, color, background, padding) {
      const s = clearStage();
      const res = mathBox(mathml, fontPx, color, background, padding);
      if (res.error) return res;
      s.appendChild(res.box);
      return { rect: rectOf(res.box) };
    },

    // Many formulas in one layout, each box at a whole-pixel offset so its pixels match a lone render.
    // `fontPx` is one size for all, or an array with one size per item.
    renderMathMany(items, fontPx, color, background, padding) {
      const s = clearStage();
      const out = [];
      const boxes = [];
      for (const [i, mathml] of items.entries()) {
        const res = mathBox(mathml, Array.isArray(fontPx) ? fontPx[i] : fontPx, color, background, padding);
        out.push(res.error ? { error: res.error } : null);
        if (!res.error) { res.box.style.position = "absolute"; res.box.style.left = "0px"; s.appendChild(res.box); }
        boxes.push(res.box || null);
      }
      let y = 0;
      boxes.forEach((box, i) => {
        if (!box) return;
        box.style.top = y + "px";
        const r = rectOf(box);
        out[i] = { rect: r };
        y += Math.ceil(r.height) + 2;
      });
      return { items: out, height: y };
    },
  };

  function mathBox(mathml, fontPx, color, background, padding) {
      const doc = new DOMParser().parseFromString(mathml, "application/xml");
      if (doc.getElementsByTagName("parsererror").length) return { error: "MathML is not well-formed XML" };
      let math;
      try {
        math = cleanMath(doc.documentElement);
      } catch (e) {
        return { error: String(e.message) };
      }
      if (math.localName !== "math") return { error: "root element is not <math>" };
      math.setAttribute("display", "block");
      const box = document.createElement("div");
      box.className = "vf-math";
      box.style.fontSize = fontPx + "px";
      box.style.color = color || "#000000";
      box.style.backgroundColor = background || "#ffffff";
      box.style.padding = (padding || 0) + "px";
      box.style.width = "max-content";  // never squeezed by its container: the same box alone or in a batch
      box.appendChild(math);
      return { box: box };
  }

  // One table in its own box (margin, page background), built from JSON with textContent only.
  function tableBox(table, style) {
    style = style || {};
    const t = document.createElement("table");
    applyStyle(t, style, [["font_family", "fontFamily"], ["color", "color"], ["background", "backgroundColor"]]);
    t.style.fontSize = (Number(style.font_px) || 16) + "px";
    const pad = Number(style.cell_padding_px);
    const border = style.border || "all";
    const rule = (Number(style.rule_px) || 1) + "px solid " + (style.rule_color || "#000000");
    if (border === "booktabs" || border === "horizontal") { t.style.borderTop = rule; t.style.borderBottom = rule; }
    if (border === "box") t.style.border = rule;
    const rows = table && Array.isArray(table.rows) ? table.rows : [];
    rows.forEach((row, ri) => {
      const tr = document.createElement("tr");
      if (style.stripe_background && ri % 2 === 1) tr.style.backgroundColor = String(style.stripe_background);
      (Array.isArray(row) ? row : []).forEach((cell) => {
        cell = cell || {};
        const c = document.createElement(cell.header ? "th" : "td");
        c.textContent = String(cell.text === undefined || cell.text === null ? "" : cell.text);
        const rs = Math.trunc(Number(cell.rowspan) || 1), cs = Math.trunc(Number(cell.colspan) || 1);
        if (rs > 1 && rs <= 1000) c.rowSpan = rs;
        if (cs > 1 && cs <= 1000) c.colSpan = cs;
        c.style.padding = (Number.isFinite(pad) ? pad : 4) + "px " + (Number.isFinite(pad) ? pad * 2 : 8) + "px";
        c.style.textAlign = cell.align || style.align || "center";
        c.style.whiteSpace = "nowrap";
        if (cell.header) {
          c.style.fontWeight = style.header_bold === false ? "normal" : "bold";
          if (style.header_background) c.style.backgroundColor = String(style.header_background);
        }
        if (border === "all") c.style.border = rule;
        if (border === "booktabs" && cell.header && cell.rule_below !== false) c.style.borderBottom = rule;
        if (border === "horizontal") c.style.borderBottom = rule;
        tr.appendChild(c);
      });
      t.appendChild(tr);
    });
    const box = document.createElement("div");
    box.style.display = "inline-block";
    // Laid out at its own width wherever it sits: the same box alone or in a batch.
    box.style.width = "max-content";
    box.style.padding = (Number(style.margin_px) || 0) + "px";
    box.style.backgroundColor = String(style.page_background || "#ffffff");
    box.appendChild(t);
    return box;
  }

  // Sheets of a table batch; one is shown at a time, each fits the viewport (a capture beyond it costs 2x).
  let tableSheets = [];

  Object.assign(window.vf, {
    renderTable(table, style) {
      const res = this.renderTableMany([table], [style], 1 << 30, 1 << 30);
      return res.items[0];
    },

    // Many tables, each in its own absolutely placed box at a whole-pixel offset, so its pixels are those
    // of a lone render. Boxes are shelf-packed (tallest first) into sheets of at most sheetW x sheetH px
    // (a box bigger than that gets a sheet of its own); sheet 0 is shown, `showSheet` shows another.
    // Returns {items: [{rect, sheet} | {error}], sheets: [{width, height}]}.
    renderTableMany(tables, styles, sheetW, sheetH) {
      const s = clearStage();
      const gap = 2;
      const out = [], boxes = [];
      (Array.isArray(tables) ? tables : []).forEach((table, i) => {
        try {
          const box = tableBox(table, Array.isArray(styles) ? styles[i] : styles);
          box.style.position = "absolute";
          box.style.left = "0px";
          box.style.top = "0px";
          s.appendChild(box);
          boxes.push(box);
          out.push(null);
        } catch (e) {
          boxes.push(null);
          out.push({ error: String(e && e.message || e) });
        }
      });
      // Measure every box in one layout, then place them all.
      const size = boxes.map((b) => {
        if (!b) return null;
        const r = b.getBoundingClientRect();
        return [Math.ceil(r.width), Math.ceil(r.height)];
      });
      const order = boxes.map((_, i) => i).filter((i) => boxes[i]).sort((a, b) => size[b][1] - size[a][1] || a - b);
      const sheets = [];
      let x = 0, y = 0, shelf = 0;
      for (const i of order) {
        const [w, h] = size[i];
        if (sheets.length && x > 0 && x + w > sheetW) { x = 0; y += shelf + gap; shelf = 0; }
        if (!sheets.length || (y > 0 && y + h > sheetH)) {
          const el = document.createElement("div");
          el.style.position = "absolute";
          el.style.left = "0px";
          el.style.top = "0px";
          s.appendChild(el);
          sheets.push({ el: el, members: [] });
          x = 0; y = 0; shelf = 0;
        }
        const sh = sheets[sheets.length - 1];
        boxes[i].style.left = x + "px";
        boxes[i].style.top = y + "px";
        sh.el.appendChild(boxes[i]);
        sh.members.push(i);
        x += w + gap;
        shelf = Math.max(shelf, h);
      }
      const dims = sheets.map((sh, k) => {
        let width = 0, height = 0;
        for (const i of sh.members) {
          const r = rectOf(boxes[i]);
          out[i] = { sheet: k, rect: r };
          width = Math.max(width, Math.ceil(r.x + r.width));
          height = Math.max(height, Math.ceil(r.y + r.height));
        }
        return { width: width, height: height };
      });
      tableSheets = sheets.map((sh) => sh.el);
      this.showSheet(0);
      return { items: out, sheets: dims };
    },

    showSheet(k) {
      tableSheets.forEach((el, j) => { el.style.display = j === k ? "block" : "none"; });
      return true;
    },
  });
})();
