"""The words of a chart: title, axis titles, categories and series names that belong together.

Vary-base's charts carried semantically coherent text; random runs of corpus words ("Than any other",
"Algae and turns") teach a model little about how charts are labelled. Three sources, one interface
(`ChartTexts.draw`):
- `TopicTexts` (the embedded default): topics such as "Quarterly revenue by region (USD m)" whose
  categories are consecutive years, quarters or months, countries, cities, products..., whose series are
  regions, products, scenarios..., with units and a value range that suits the quantity;
- `RecordTexts`: a user's chart records (JSON lines: title, axis titles, categories, series names,
  optional values), read through the caller's `files` (local or remote);
- `CorpusTexts`: runs of words from a text corpus (what every chart drew before; kept for `corpus=`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from generators.base import GeneratorError
from generators.corpus import Corpus
from generators.sources import InputFiles, read_setup_file


@dataclass(frozen=True)
class Drawn:
    """The texts of one chart, and its values when the source has them (one list per series)."""

    title: str
    category_title: str | None
    value_title: str | None
    categories: list[str]
    names: list[str]
    magnitudes: tuple[int, ...] = (1, 10, 100, 1000, 10000)  # the scales the values may take
    values: list[list[float]] | None = None


class ChartTexts:
    def draw(self, rng: np.random.Generator, chart_type: str, n_cat: int, n_series: int) -> Drawn:
        raise NotImplementedError


def _pick(rng: np.random.Generator, seq: Any) -> Any:
    return seq[int(rng.integers(len(seq)))]


# -- the embedded default: topics ---------------------------------------------------------------------------
MONTHS = {"en": "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(),
          "zh": [f"{m}月" for m in range(1, 13)]}
WEEKDAYS = {"en": "Mon Tue Wed Thu Fri Sat Sun".split(), "zh": "周一 周二 周三 周四 周五 周六 周日".split()}
# Named pools: categories and series are drawn from one (distinct, in the pool's order where it has one).
POOLS: dict[str, dict[str, list[str]]] = {
    "countries": {
        "en": ["China", "India", "United States", "Indonesia", "Brazil", "Nigeria", "Japan", "Germany", "Mexico",
               "France", "United Kingdom", "Italy", "Canada", "South Korea", "Spain", "Australia", "Egypt",
               "Vietnam", "Turkey", "Poland", "Kenya", "Chile", "Sweden", "Norway", "Argentina"],
        "zh": ["中国", "印度", "美国", "印度尼西亚", "巴西", "尼日利亚", "日本", "德国", "墨西哥", "法国", "英国",
               "意大利", "加拿大", "韩国", "西班牙", "澳大利亚", "埃及", "越南", "土耳其", "波兰", "肯尼亚", "智利",
               "瑞典", "挪威", "阿根廷"],
    },
    "cities": {
        "en": ["Beijing", "Shanghai", "Tokyo", "Delhi", "London", "Paris", "New York", "Berlin", "Madrid", "Rome",
               "Sydney", "Toronto", "Cairo", "Lagos", "Lima", "Seoul", "Mumbai", "Chicago", "Vienna", "Oslo"],
        "zh": ["北京", "上海", "广州", "深圳", "成都", "杭州", "武汉", "西安", "南京", "重庆", "天津", "苏州", "长沙",
               "郑州", "青岛", "沈阳", "昆明", "大连", "厦门", "合肥"],
    },
    "regions": {"en": ["North", "South", "East", "West", "Central", "Northeast", "Southwest", "Overseas"],
                "zh": ["华北", "华东", "华南", "华中", "西南", "西北", "东北", "海外"]},
    "continents": {"en": ["Asia", "Europe", "Africa", "North America", "South America", "Oceania"],
                   "zh": ["亚洲", "欧洲", "非洲", "北美洲", "南美洲", "大洋洲"]},
    "products": {"en": ["Laptops", "Phones", "Tablets", "Monitors", "Printers", "Cameras", "Headphones", "Watches"],
                 "zh": ["笔记本电脑", "手机", "平板电脑", "显示器", "打印机", "相机", "耳机", "手表"]},
    "channels": {"en": ["Online", "Retail stores", "Wholesale", "Direct sales", "Partners"],
                 "zh": ["线上", "门店", "批发", "直销", "合作伙伴"]},
    "energy": {"en": ["Coal", "Natural gas", "Oil", "Nuclear", "Hydro", "Wind", "Solar", "Biomass"],
               "zh": ["煤炭", "天然气", "石油", "核能", "水电", "风电", "太阳能", "生物质"]},
    "ages": {"en": ["Under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"],
             "zh": ["18岁以下", "18-24岁", "25-34岁", "35-44岁", "45-54岁", "55-64岁", "65岁以上"]},
    "departments": {"en": ["Sales", "Marketing", "Engineering", "Finance", "Support", "Operations", "Legal"],
                    "zh": ["销售部", "市场部", "研发部", "财务部", "客服部", "运营部", "法务部"]},
    "transport": {"en": ["Car", "Bus", "Metro", "Bicycle", "Walking", "Train", "Taxi"],
                  "zh": ["汽车", "公交", "地铁", "自行车", "步行", "火车", "出租车"]},
    "crops": {"en": ["Wheat", "Rice", "Maize", "Soybeans", "Potatoes", "Barley", "Sugar cane"],
              "zh": ["小麦", "水稻", "玉米", "大豆", "马铃薯", "大麦", "甘蔗"]},
    "scenarios": {"en": ["Actual", "Forecast", "Target", "Last year"], "zh": ["实际", "预测", "目标", "去年同期"]},
    "sexes": {"en": ["Women", "Men"], "zh": ["女性", "男性"]},
    "companies": {"en": ["Company A", "Company B", "Company C", "Company D"], "zh": ["甲公司", "乙公司", "丙公司", "丁公司"]},
    "schools": {"en": ["Primary", "Secondary", "Vocational", "University"], "zh": ["小学", "中学", "职业学校", "大学"]},
    "subjects": {"en": ["Mathematics", "Reading", "Science", "History", "Art", "Music"],
                 "zh": ["数学", "语文", "科学", "历史", "美术", "音乐"]},
    "browsers": {"en": ["Chrome", "Safari", "Edge", "Firefox", "Opera", "Other"],
                 "zh": ["Chrome", "Safari", "Edge", "Firefox", "Opera", "其他"]},
}
# Ordered category kinds drawn as a consecutive run.
SEQUENCES = ("years", "quarters", "months", "weekdays")
PERCENT = (10, 100)  # values 1..100: shares, rates

# (title, category kind, category axis title, value axis title, series kind, magnitudes), per language.
# "{unit}"-style units sit in the value title; a title may name the first and last category ({first}, {last}).
TOPICS: dict[str, list[tuple[str, str, str, str, str, tuple[int, ...]]]] = {
    "en": [
        ("Quarterly revenue by region (USD m)", "quarters", "Quarter", "Revenue (USD m)", "regions", (100, 1000)),
        ("Annual sales by product, {first}-{last}", "years", "Year", "Units sold (thousands)", "products", (100, 1000)),
        ("Monthly average temperature", "months", "Month", "Temperature (°C)", "cities", (10,)),
        ("Monthly rainfall in selected cities", "months", "Month", "Rainfall (mm)", "cities", (100,)),
        ("Electricity generation by source, {first}-{last}", "years", "Year", "Generation (TWh)", "energy", (100, 1000)),
        ("Population by country (millions)", "countries", "Country", "Population (millions)", "sexes", (100, 1000)),
        ("GDP growth by country (%)", "countries", "Country", "GDP growth (%)", "scenarios", (10,)),
        ("Unemployment rate by age group", "ages", "Age group", "Unemployment rate (%)", "sexes", (10,)),
        ("Daily website visitors by browser", "weekdays", "Day", "Visitors (thousands)", "browsers", (10, 100)),
        ("Sales by channel and region (USD k)", "regions", "Region", "Sales (USD k)", "channels", (100, 1000)),
        ("Headcount by department", "departments", "Department", "Employees", "years", (10, 100)),
        ("Commuting by mode of transport", "transport", "Mode", "Share of trips (%)", "cities", PERCENT),
        ("Crop yields by country (t/ha)", "crops", "Crop", "Yield (t/ha)", "countries", (1, 10)),
        ("Household spending by month (CNY)", "months", "Month", "Spending (CNY)", "years", (1000, 10000)),
        ("Average test scores by subject", "subjects", "Subject", "Score (points)", "schools", (100,)),
        ("Carbon emissions by country, {first}-{last}", "years", "Year", "CO2 emissions (Mt)", "countries", (1000, 10000)),
        ("Market share by company, {first}-{last}", "years", "Year", "Market share (%)", "companies", PERCENT),
        ("Hospital admissions per week", "weekdays", "Day", "Admissions", "cities", (10, 100)),
        ("Online orders by quarter", "quarters", "Quarter", "Orders (thousands)", "channels", (10, 100)),
        ("Tourist arrivals by continent, {first}-{last}", "years", "Year", "Arrivals (millions)", "continents", (10, 100)),
    ],
    "zh": [
        ("各地区季度营业收入（百万元）", "quarters", "季度", "营业收入（百万元）", "regions", (100, 1000)),
        ("{first}-{last}年各产品年销量", "years", "年份", "销量（千台）", "products", (100, 1000)),
        ("主要城市月平均气温", "months", "月份", "气温（°C）", "cities", (10,)),
        ("主要城市月降水量", "months", "月份", "降水量（毫米）", "cities", (100,)),
        ("{first}-{last}年各类能源发电量", "years", "年份", "发电量（亿千瓦时）", "energy", (100, 1000)),
        ("各国人口（百万）", "countries", "国家", "人口（百万）", "sexes", (100, 1000)),
        ("各国经济增长率", "countries", "国家", "增长率（%）", "scenarios", (10,)),
        ("各年龄段失业率", "ages", "年龄段", "失业率（%）", "sexes", (10,)),
        ("各浏览器每日访问量", "weekdays", "星期", "访问量（千次）", "browsers", (10, 100)),
        ("各地区分渠道销售额（万元）", "regions", "地区", "销售额（万元）", "channels", (100, 1000)),
        ("各部门员工人数", "departments", "部门", "人数", "years", (10, 100)),
        ("城市居民出行方式构成", "transport", "出行方式", "占比（%）", "cities", PERCENT),
        ("主要作物单产（吨/公顷）", "crops", "作物", "单产（吨/公顷）", "countries", (1, 10)),
        ("居民月度消费支出（元）", "months", "月份", "支出（元）", "years", (1000, 10000)),
        ("各学段平均成绩", "subjects", "科目", "成绩（分）", "schools", (100,)),
        ("{first}-{last}年各国碳排放量", "years", "年份", "二氧化碳排放（百万吨）", "countries", (1000, 10000)),
        ("{first}-{last}年各公司市场份额", "years", "年份", "市场份额（%）", "companies", PERCENT),
        ("各城市每周住院人数", "weekdays", "星期", "住院人数", "cities", (10, 100)),
        ("各渠道季度订单量", "quarters", "季度", "订单量（千笔）", "channels", (10, 100)),
        ("{first}-{last}年各大洲入境游客", "years", "年份", "游客（百万人次）", "continents", (10, 100)),
    ],
}
# Scatter: (title, x title, y title, series kind, magnitudes).
SCATTER_TOPICS: dict[str, list[tuple[str, str, str, str, tuple[int, ...]]]] = {
    "en": [("Life expectancy and income", "GDP per capita (USD k)", "Life expectancy (years)", "continents", (100,)),
           ("Advertising spend and sales", "Advertising (USD k)", "Sales (USD k)", "channels", (100, 1000)),
           ("Study time and test scores", "Study time (hours per week)", "Score (points)", "schools", (10, 100)),
           ("Rainfall and crop yield", "Rainfall (mm)", "Yield (t/ha)", "crops", (1, 10)),
           ("House size and price", "Floor area (m²)", "Price (USD k)", "cities", (100, 1000))],
    "zh": [("人均收入与预期寿命", "人均GDP（千美元）", "预期寿命（岁）", "continents", (100,)),
           ("广告投入与销售额", "广告投入（万元）", "销售额（万元）", "channels", (100, 1000)),
           ("学习时长与考试成绩", "每周学习时长（小时）", "成绩（分）", "schools", (10, 100)),
           ("降水量与作物单产", "降水量（毫米）", "单产（吨/公顷）", "crops", (1, 10)),
           ("住房面积与价格", "建筑面积（平方米）", "价格（万元）", "cities", (100, 1000))],
}
PIE_TOPICS: dict[str, list[tuple[str, str, str]]] = {  # (title, category kind, series name)
    "en": [("Market share by browser ({year})", "browsers", "Share (%)"),
           ("Electricity generation by source ({year})", "energy", "Generation (TWh)"),
           ("Sales by channel ({year})", "channels", "Sales (USD m)"),
           ("Budget by department ({year})", "departments", "Budget (USD k)"),
           ("Trips by mode of transport ({year})", "transport", "Trips (%)"),
           ("Visitors by continent ({year})", "continents", "Visitors (millions)")],
    "zh": [("{year}年浏览器市场份额", "browsers", "份额（%）"),
           ("{year}年各类能源发电量", "energy", "发电量（亿千瓦时）"),
           ("{year}年各渠道销售额", "channels", "销售额（百万元）"),
           ("{year}年各部门预算", "departments", "预算（万元）"),
           ("{year}年出行方式构成", "transport", "出行（%）"),
           ("{year}年各大洲游客", "continents", "游客（百万人次）")],
}


class TopicTexts(ChartTexts):
    """The embedded default: coherent chart texts from `TOPICS`, `SCATTER_TOPICS` and `PIE_TOPICS`."""

    def __init__(self, lang: str):
        self.lang = lang

    def sequence(self, rng: np.random.Generator, kind: str, n: int) -> list[str]:
        zh = self.lang == "zh"
        if kind == "years":
            start = int(rng.integers(1990, 2025 - n + 1))
            return [str(y) for y in range(start, start + n)]
        if kind == "quarters":
            year, q = int(rng.integers(2015, 2024)), int(rng.integers(0, 4))
            return [(f"{year + (q + i) // 4}年Q{(q + i) % 4 + 1}" if zh else f"Q{(q + i) % 4 + 1} {year + (q + i) // 4}")
                    for i in range(n)]
        pool = MONTHS[self.lang] if kind == "months" else WEEKDAYS[self.lang]
        n = min(n, len(pool))
        start = int(rng.integers(0, len(pool) - n + 1))
        return pool[start: start + n]

    def members(self, rng: np.random.Generator, kind: str, n: int) -> list[str]:
        if kind in SEQUENCES:
            return self.sequence(rng, kind, n)
        pool = POOLS[kind][self.lang]
        n = min(n, len(pool))
        # In the pool's own order (age groups, scenarios read that way), a random subset.
        idx = sorted(rng.choice(len(pool), size=n, replace=False).tolist())
        return [pool[i] for i in idx]

    def draw(self, rng: np.random.Generator, chart_type: str, n_cat: int, n_series: int) -> Drawn:
        if chart_type == "scatter":
            title, x_title, y_title, series_kind, mags = _pick(rng, SCATTER_TOPICS[self.lang])
            return Drawn(title, x_title, y_title, [], self.members(rng, series_kind, n_series), mags)
        if chart_type == "pie":
            title, cat_kind, name = _pick(rng, PIE_TOPICS[self.lang])
            year = str(int(rng.integers(2010, 2025)))
            return Drawn(title.format(year=year), None, None, self.members(rng, cat_kind, n_cat), [name], (10, 100, 1000))
        title, cat_kind, cat_title, val_title, series_kind, mags = _pick(rng, TOPICS[self.lang])
        categories = self.members(rng, cat_kind, n_cat)
        names = self.members(rng, series_kind, n_series)
        title = title.format(first=categories[0], last=categories[-1])
        return Drawn(title, cat_title, val_title, categories, names, mags)


# -- a user's chart records ---------------------------------------------------------------------------------
class RecordTexts(ChartTexts):
    """Chart records from a JSON-lines file, one chart per line:
    {"title": str, "x_title"/"category_title": str, "y_title"/"value_title": str, "categories": [str],
     "series": [str | {"name": str, "values": [number]}]}. A record is drawn per sample; its categories
    and series are used as given (a chart type needing fewer takes the leading ones), and its values when
    every series has them, one per category."""

    def __init__(self, name: str, files: InputFiles | None = None, lang: str = "en"):
        data = read_setup_file(name, files, what="chart records file")
        self.records: list[dict[str, Any]] = []
        for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if line.strip():
                self.records.append(_check_record(name, n, line))
        if not self.records:
            raise GeneratorError(f"chart records file {name} holds no records")
        self.name, self.lang = name, lang

    def draw(self, rng: np.random.Generator, chart_type: str, n_cat: int, n_series: int) -> Drawn:
        rec = self.records[int(rng.integers(len(self.records)))]
        series = rec["series"]
        names = [s if isinstance(s, str) else s["name"] for s in series]
        values = [s["values"] for s in series] if all(isinstance(s, dict) and "values" in s for s in series) else None
        cats = list(rec.get("categories") or [])
        if chart_type == "pie":
            names, values = names[:1], values[:1] if values else None
        elif chart_type == "scatter":
            values = None  # a record's values are per category; a scatter's points are drawn
        cat_title = rec.get("category_title", rec.get("x_title"))
        val_title = rec.get("value_title", rec.get("y_title"))
        return Drawn(str(rec["title"]), cat_title, val_title, cats if chart_type != "scatter" else [], names,
                     values=values)


def _check_record(name: str, n: int, line: str) -> dict[str, Any]:
    where = f"chart records file {name}: line {n}"
    try:
        rec = json.loads(line)
    except ValueError as e:
        raise GeneratorError(f"{where} is not JSON ({e})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("title"), str) or not isinstance(rec.get("series"), list) \
            or not rec["series"]:
        raise GeneratorError(f"{where}: a record needs a 'title' and a non-empty 'series' list")
    cats = rec.get("categories") or []
    for s in rec["series"]:
        if isinstance(s, dict):
            if not isinstance(s.get("name"), str):
                raise GeneratorError(f"{where}: a series object needs a 'name'")
            vals = s.get("values")
            if vals is not None and (len(vals) != len(cats) or not all(isinstance(v, (int, float)) for v in vals)):
                raise GeneratorError(f"{where}: series {s['name']!r} needs one number per category")
        elif not isinstance(s, str):
            raise GeneratorError(f"{where}: a series is a name or {{'name': ..., 'values': [...]}}")
    return rec


# -- a text corpus ------------------------------------------------------------------------------------------
class CorpusTexts(ChartTexts):
    """Runs of corpus words (the texts of a user's `corpus=`)."""

    def __init__(self, corpus: Corpus):
        self.corpus = corpus

    def draw(self, rng: np.random.Generator, chart_type: str, n_cat: int, n_series: int) -> Drawn:
        from generators.chart_data import distinct

        c = self.corpus
        title = c.title(rng, max_words=6)
        cat_title = c.title(rng, max_words=3) if chart_type != "pie" else None
        val_title = c.title(rng, max_words=3) if chart_type != "pie" else None
        names = distinct(lambda: c.title(rng, max_words=2), n_series)
        categories: list[str] = []
        if chart_type != "scatter":
            # English function words ("the", "or") make poor labels; Chinese pieces are all 2-4 characters.
            min_len = 3 if c.lang == "en" else 2
            categories = distinct(lambda: next((w for w in c.words(rng, 4) if len(w) >= min_len), ""), n_cat)
        return Drawn(title, cat_title, val_title, categories, names)
