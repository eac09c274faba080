"""The dashboard in a real browser: Chromium (Debian's package) driven by Playwright.

`swan serve` runs in a subprocess over a small store (the real sample maps plus a
labelled simulated set); the tests load the page, count the UMAP's points and check
that no plot offers to send itself anywhere, click a point for its 3D views (and
turn one coarse-to-fine view: the others follow), and upload a map to search (its
hits numbered on the map, linked to EMDB, their key columns in view at 1280 and
1600 px). Screenshots go to ``tests/artifacts/`` (or ``$SWAN_TEST_ARTIFACTS``).

Without ``/usr/bin/chromium`` these tests are skipped, unless
``SWAN_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which makes a missing browser fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dashboard.demo import DemoConfig, build_demo_store
from dashboard.testing import CHROMIUM, CHROMIUM_ARGS, start_serve
from ingest import read_map
from swan_index.map_encoder import MapEncoder
from swan_index.store import Store

from .conftest import MAPS, ROOT

ARTIFACTS = Path(os.environ.get("SWAN_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))

if not CHROMIUM.exists() and not os.environ.get("SWAN_REQUIRE_BROWSER"):
    pytest.skip(
        "no /usr/bin/chromium (apt-get install chromium)", allow_module_level=True
    )

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


def _pca_layout(store: Store) -> None:
    """A 2D layout without UMAP (its compilation is kept out of tests)."""
    parts = []
    for side in store.encoder.scales:
        ids, vecs = store.vectors(side)
        parts.append(vecs - vecs.mean(0))
    x = np.concatenate(parts, axis=1)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    labels = store.entries(("id", "label"))["label"]
    names = sorted({str(v) for v in labels if v})
    cluster = np.array([names.index(str(v)) if v else -1 for v in labels])
    store.set_layout(ids, u[:, :2] * s[:2], cluster)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base url, number of entries) of a running `swan serve`."""
    path = tmp_path_factory.mktemp("browser") / "store"
    encoder = MapEncoder()
    build_demo_store(path, encoder, DemoConfig(synthetic_families=2, variants=6), False)
    with Store.open(path) as store:
        _pca_layout(store)
        n = store.count()
    proc, url = start_serve(path, tmp_path_factory.mktemp("log") / "serve.log")
    yield url, n
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1500, "height": 1100})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(server[0], wait_until="networkidle", timeout=60_000)
        pg.errors = errors
        yield pg
        browser.close()


#: Traces drawn over the map (search hits, the chosen entry), not entries.
OVERLAYS = "['search hits', 'selected entry']"
UMAP_POINTS = f"""() => {{
  const gd = document.querySelector('#umap-graph .js-plotly-plot');
  if (!gd || !gd._fullData) return -1;
  return gd._fullData.filter(t => !{OVERLAYS}.includes(t.name))
                     .reduce((n, t) => n + (t._length || 0), 0);
}}"""


MODEBAR_TITLES = """() => Array.from(document.querySelectorAll('.modebar-btn'))
                          .map(b => b.getAttribute('data-title') || '')"""


def test_dashboard_loads_with_every_point(page, server):
    page.wait_for_function(f"({UMAP_POINTS})() > 0", timeout=60_000)
    assert page.evaluate(UMAP_POINTS) == server[1]
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert not page.errors
    # nothing in any toolbar sends a plot off the machine
    titles = page.evaluate(MODEBAR_TITLES)
    assert "Download plot as a PNG" in titles
    assert not [t for t in titles if "Share" in t or "Chart Studio" in t]
    # hits per search out of range: clamped where the user sees it, and said
    page.fill("#k-input", "1000")
    page.press("#k-input", "Enter")
    page.wait_for_function(
        "() => document.querySelector('#k-input').value === '100'", timeout=10_000
    )
    assert "using 100" in page.inner_text("#k-message")
    page.fill("#k-input", "10")
    page.press("#k-input", "Enter")


def test_click_opens_the_3d_view(page):
    page.wait_for_function(f"({UMAP_POINTS})() > 0", timeout=60_000)
    # the pixel position of the first point, from Plotly's own axes
    x, y = page.evaluate(
        """() => {
      const gd = document.querySelector('#umap-graph .js-plotly-plot');
      const fl = gd._fullLayout, t = gd._fullData.find(t => t._length > 0);
      const box = gd.getBoundingClientRect();
      return [box.left + fl._size.l + fl.xaxis.l2p(t.x[0]),
              box.top + fl._size.t + fl.yaxis.l2p(t.y[0])];
    }"""
    )
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    for graph in ("iso-graph", "c2f-graph"):
        page.wait_for_function(
            f"""() => {{ const gd = document.querySelector('#{graph} .js-plotly-plot');
                return gd && gd.data && gd.data.some(t => t.type === 'mesh3d'); }}""",
            timeout=180_000,  # decoding four scales on a loaded 2-core machine
        )
    # one drag on the first coarse-to-fine view turns every view alike (once the
    # similar maps are listed above it: the table moves the views down)
    page.wait_for_function(
        "() => document.querySelectorAll('#similar-table td').length > 0",
        timeout=120_000,
    )
    page.locator("#c2f-graph").scroll_into_view_if_needed()
    eyes = """() => { const gd = document.querySelector('#c2f-graph .js-plotly-plot');
        return Object.keys(gd._fullLayout).filter(k => /^scene\\d*$/.test(k)).map(
            k => JSON.stringify(gd._fullLayout[k].camera.eye)); }"""
    before = page.evaluate(eyes)
    assert len(before) == 4 and len(set(before)) == 1
    x, y = page.evaluate(
        """() => { const gd = document.querySelector('#c2f-graph .js-plotly-plot');
                   const d = gd._fullLayout.scene.domain;
                   const r = gd.getBoundingClientRect();
                   const s = gd._fullLayout._size;
                   return [r.left + s.l + s.w * (d.x[0] + d.x[1]) / 2,
                           r.top + s.t + s.h * (1 - (d.y[0] + d.y[1]) / 2)]; }"""
    )
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 9):
        page.mouse.move(x + 12 * step, y + 3 * step)
    page.mouse.up()
    page.wait_for_function(
        f"""() => {{ const now = ({eyes})();
            return now[0] !== {json.dumps(before[0])} &&
                   now.every(e => e === now[0]); }}""",
        timeout=30_000,
    )
    page.locator("#detail-panel").screenshot(path=str(ARTIFACTS / "entry_3d.png"))


def test_upload_lists_hits(page):
    page.set_input_files("#upload-map input[type=file]", str(MAPS["emd_6824"]))
    page.wait_for_function(
        """() => { const t = document.querySelector('#hits-table');
                   return t && t.innerText.includes('EMD-6824'); }""",
        timeout=90_000,
    )
    text = page.inner_text("#hits-table")
    assert text.index("EMD-6824") >= 0
    # ... and the hits are marked on the map
    page.wait_for_function(
        """() => { const gd = document.querySelector('#umap-graph .js-plotly-plot');
                   const t = gd._fullData.find(t => t.name === 'search hits');
                   return t && t._length >= 10; }""",
        timeout=30_000,
    )
    # ... each with a numbered label that has its own hover
    labels = page.locator("#umap-graph .annotation")
    assert labels.count() == 10
    texts = labels.evaluate_all("els => els.map(e => e.textContent)")
    assert sorted(int(t) for t in texts) == list(range(1, 11))
    page.locator("#umap-graph .annotation-text-g").nth(texts.index("1")).hover()
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('#umap-graph .hoverlayer'))
                      .some(h => h.textContent.includes('hit 1: EMD-6824'))""",
        timeout=10_000,
    )
    # EMDB ids link to their EMDB pages
    link = page.locator("#hits-table a", has_text="EMD-6824").first
    assert link.get_attribute("href") == "https://www.ebi.ac.uk/emdb/EMD-6824"
    # rank, name, EMDB and score of the best hit in view at 1280 and 1600 px
    for width in (1280, 1600):
        page.set_viewport_size({"width": width, "height": 1000})
        page.locator("#hits-table").scroll_into_view_if_needed()
        seen = page.evaluate(
            """() => {
          const t = document.querySelector('#hits-table .dash-spreadsheet-container');
          const box = t.getBoundingClientRect();
          const row = Array.from(t.querySelectorAll('tr'))
                           .find(r => r.innerText.includes('EMD-6824'));
          return ['rank', 'name', 'emdb', 'score'].map(c => {
            const r = row.querySelector(`td[data-dash-column="${c}"]`)
                         .getBoundingClientRect();
            return r.width > 0 && r.left >= box.left - 1 && r.right <= box.right + 1;
          });
        }"""
        )
        assert seen == [True] * 4, (width, seen)
        page.screenshot(
            path=str(ARTIFACTS / f"upload_hits_{width}.png"), full_page=True
        )


def test_the_query_is_denoised_and_downloaded(page, tmp_path):
    page.set_input_files("#upload-map input[type=file]", str(MAPS["emd_5625"]))
    page.wait_for_function(
        """() => { const t = document.querySelector('#hits-heading');
                   return t && t.innerText.includes('emd_5625'); }""",
        timeout=90_000,
    )
    page.fill("#denoise-strength", "0.3")
    page.click("#denoise-go")
    page.wait_for_function(
        """() => {
            const gd = document.querySelector('#denoise-graph .js-plotly-plot');
            return gd && gd.data && gd.data.filter(t => t.type === 'mesh3d').length
                === 2;
        }""",
        timeout=120_000,
    )
    page.wait_for_function(
        "() => document.querySelector('#denoise-message').innerText.includes('0.3')",
        timeout=30_000,
    )
    text = page.inner_text("#denoise-message")
    assert "strength 0.3" in text and "not measured" in text
    with page.expect_download(timeout=60_000) as info:
        page.click("#denoise-save")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.name == "denoised_emd_5625.mrc"
    made = read_map(saved)
    assert made.generated and made.shape == read_map(MAPS["emd_5625"]).shape
    page.locator("#denoise-graph").scroll_into_view_if_needed()
    page.locator("#denoise-graph").screenshot(path=str(ARTIFACTS / "denoise.png"))


def test_api_docs_render_with_no_internet(page, server):
    """/api/docs draws the whole API with every request outside the server
    refused (its Swagger UI assets come from the server, not from a CDN)."""
    context = page.context.browser.new_context()
    docs = context.new_page()
    outside: list[str] = []

    def only_local(route) -> None:
        url = route.request.url
        if url.startswith(server[0].rstrip("/")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    docs.route("**/*", only_local)
    try:
        docs.goto(server[0].rstrip("/") + "/api/docs", wait_until="networkidle")
        docs.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "Cryo-SWAN search" in docs.inner_text(".swagger-ui .info .title")
        paths = docs.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/entries" in [p.strip() for p in paths]
        docs.screenshot(path=str(ARTIFACTS / "api_docs.png"))
        assert outside == []
    finally:
        context.close()


def test_an_entry_is_opened_by_its_emdb_id(page):
    box = page.locator("#entry-id-input")
    box.fill("EMD-99999999")
    box.press("Enter")
    page.wait_for_function(
        """() => document.querySelector('#entry-id-message .swan-error') !== null""",
        timeout=60_000,
    )
    assert "EMD-99999999" in page.inner_text("#entry-id-message")
    box.fill("EMD-1832")
    page.click("#entry-id-go")
    page.wait_for_function(
        """() => document.querySelector('#detail-meta').innerText.includes('EMD-1832')
                 && !document.querySelector('#entry-id-message .swan-error')""",
        timeout=60_000,
    )
    page.locator("#detail-panel").screenshot(path=str(ARTIFACTS / "entry_by_id.png"))


def test_variations_of_an_entry_are_drawn_and_labelled(page):
    box = page.locator("#entry-id-input")
    box.fill("EMD-1832")
    page.click("#entry-id-go")
    page.wait_for_function(
        "() => document.querySelector('#detail-meta').innerText.includes('EMD-1832')",
        timeout=60_000,
    )
    page.click("#variations-go")
    page.wait_for_function(
        """() => {
            const gd = document.querySelector('#variations-graph .js-plotly-plot');
            return gd && gd.data && gd.data.filter(t => t.type === 'mesh3d').length
                === 4 && document.querySelector('#variations-download') !== null;
        }""",
        timeout=120_000,
    )
    page.wait_for_function(
        """() => document.querySelector('#variations-message').innerText
                 .includes('not measured')""",
        timeout=30_000,
    )
    text = page.inner_text("#variations-message")
    assert "generated, not measured" in text and "EMD-1832" in text
    titles = page.evaluate(
        """() => document.querySelector('#variations-graph .js-plotly-plot')
            .layout.annotations.map(a => a.text)"""
    )
    variations = ["variation 1", "variation 2", "variation 3"]
    assert titles == ["the entry (decoded)", *variations]
    href = page.get_attribute("#variations-download", "href")
    assert href.startswith("/api/entries/") and "keep_scales=3" in href
    page.locator("#variations-graph").scroll_into_view_if_needed()
    page.locator("#variations-graph").screenshot(path=str(ARTIFACTS / "variations.png"))
    controls = page.locator("#variations-go").locator("..")
    assert "strength" in controls.inner_text()  # 0.6 (closer) by default
    assert "0.6" in page.inner_text("#variations-strength")
    assert "strength=0.6" in href
    controls.screenshot(path=str(ARTIFACTS / "variations_controls.png"))


#: In the page: what the view shows (the filters, hits per search, colouring and
#: the chosen entry), to compare two pages.
VIEW_STATE = """() => ({
  where: document.querySelector('#where-input').value,
  res: Array.from(document.querySelectorAll('#resolution-slider input'))
            .map(i => i.value),
  keep: document.querySelector('#keep-unresolved input').checked,
  methods: Array.from(document.querySelectorAll('#method-filter .Select-value-label,'
           + ' #method-filter [class*="multiValue"] [class*="label"],'
           + ' #method-filter .dash-dropdown-value-item'))
            .map(e => e.textContent.trim()),
  k: document.querySelector('#k-input').value,
  color: ((document.querySelector('#color-by') || {}).innerText || '').trim(),
  filter: document.querySelector('#filter-message').innerText,
  entry: (document.querySelector('#detail-meta h4') || {}).innerText || null,
})"""


def _points(page) -> int:  # noqa: ANN001
    return page.evaluate(UMAP_POINTS)


def _view_state(page, expected: dict, timeout_s: float = 30.0) -> dict:  # noqa: ANN001
    """The page's VIEW_STATE once it equals ``expected``, or the last one read
    after ``timeout_s``. A fresh page draws its dropdowns from a script loaded
    on first use (Dash's async components): until it arrives they are not in
    the page, so the state is read again until it settles."""
    state = page.evaluate(VIEW_STATE)
    for _ in range(int(timeout_s / 0.25)):
        if state == expected:
            break
        page.wait_for_timeout(250)
        state = page.evaluate(VIEW_STATE)
    return state


def test_the_address_restores_the_view(page, server):
    """Filters set and an entry chosen in one page; its address opened in a new
    page gives the same view."""
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.fill("#where-input", "rg > 20")
    page.press("#where-input", "Enter")
    page.wait_for_function(
        "() => document.querySelector('#filter-message').innerText.includes('rg > 20')",
        timeout=90_000,
    )
    page.fill("#k-input", "25")
    page.press("#k-input", "Enter")
    page.locator("#entry-id-input").fill("EMD-6824")
    page.click("#entry-id-go")
    page.wait_for_function(
        "() => document.querySelector('#detail-meta').innerText.includes('EMD-6824')",
        timeout=60_000,
    )
    page.wait_for_function(
        "() => location.search.includes('entry=EMD-6824') && "
        "location.search.includes('k=25')",
        timeout=90_000,
    )
    address = page.url
    assert "where=rg+%3E+20" in address
    page.wait_for_function(f"({UMAP_POINTS})() > 0", timeout=60_000)
    before, points = page.evaluate(VIEW_STATE), _points(page)
    assert 0 < points < server[1]
    assert before["color"] and before["k"] == "25"

    context = page.context.browser.new_context(viewport={"width": 1280, "height": 1000})
    other = context.new_page()
    try:
        other.goto(address, wait_until="networkidle", timeout=60_000)
        other.wait_for_function(
            "() => document.querySelector('#detail-meta').innerText"
            ".includes('EMD-6824')",
            timeout=60_000,
        )
        other.wait_for_function(f"({UMAP_POINTS})() === {points}", timeout=60_000)
        assert _view_state(other, before) == before
        assert other.url == address  # the address is not rewritten on load
        assert other.inner_text("#permalink-message") == ""
        other.wait_for_function(  # the entry's similar maps, under the filter
            "() => document.querySelector('#similar-message').innerText"
            ".includes('filter: (rg > 20)')",
            timeout=120_000,
        )
        assert "uploaded map cannot be part of an address" in other.inner_text(
            ".swan-address"
        )
        other.screenshot(path=str(ARTIFACTS / "permalink_1280.png"), full_page=True)
        # another filter, then the browser's back button: the shared view again
        other.fill("#where-input", "rg > 40")
        other.press("#where-input", "Enter")
        other.wait_for_function(
            "() => location.search.includes('rg+%3E+40')", timeout=90_000
        )
        other.go_back()
        other.wait_for_function(
            "() => document.querySelector('#where-input').value === 'rg > 20' && "
            "document.querySelector('#filter-message').innerText.includes('rg > 20')",
            timeout=90_000,
        )
        assert other.url == address
    finally:
        context.close()
    # back to the full view for the tests that follow
    page.fill("#where-input", "")
    page.press("#where-input", "Enter")
    page.fill("#k-input", "10")
    page.press("#k-input", "Enter")


#: In the page: (page width the document needs, window width) and the first
#: element that sticks out to the right, if any.
OVERFLOW_JS = """() => {
  const w = document.documentElement.clientWidth;
  let worst = null;
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > w + 1) {
      let p = el.parentElement, clipped = false;
      while (p) {  // inside a scrolling box (a wide table): not the page's width
        const s = getComputedStyle(p);
        if (['auto', 'scroll', 'hidden'].includes(s.overflowX)) {
          const pr = p.getBoundingClientRect();
          if (pr.right <= w + 1) { clipped = true; break; }
        }
        p = p.parentElement;
      }
      if (!clipped) { worst = (el.id || el.className || el.tagName) + ''; break; }
    }
  }
  return {scroll: document.documentElement.scrollWidth, width: w, worst: worst};
}"""


@pytest.mark.parametrize("width, height", [(1280, 900), (390, 844)])
def test_the_page_fits_the_screen(page, server, width, height):
    """At 1280 px and on a 390 px phone: no sideways scrolling of the page, the
    map fills its column and is redrawn to it, the key columns of a table in
    view, and the columns stack on the phone."""
    context = page.context.browser.new_context(
        viewport={"width": width, "height": height}
    )
    try:
        pg = context.new_page()
        pg.goto(f"{server[0]}/?entry=EMD-6824", wait_until="networkidle")
        pg.wait_for_function(f"({UMAP_POINTS})() > 0", timeout=60_000)
        pg.wait_for_function(
            "() => document.querySelectorAll('#similar-table td').length > 0",
            timeout=120_000,
        )
        fit = pg.evaluate(OVERFLOW_JS)
        assert fit["scroll"] <= fit["width"] and fit["worst"] is None, fit
        boxes = pg.evaluate(
            """() => Object.fromEntries(['umap-graph', 'detail-panel',
                'filter-message', 'upload-map'].map(id => {
              const r = document.getElementById(id).getBoundingClientRect();
              return [id, [r.left, r.top, r.width, r.height]]; }))"""
        )
        svg = pg.evaluate(
            """() => document.querySelector('#umap-graph .main-svg')
                          .getBoundingClientRect().width"""
        )
        map_box, panel = boxes["umap-graph"], boxes["detail-panel"]
        assert abs(svg - map_box[2]) < 2  # plot redrawn to its box
        plot_width = """() => {
            const gd = document.querySelector('#umap-graph .js-plotly-plot');
            return [gd._fullLayout._size.w, gd._fullLayout.legend.orientation];
        }"""
        if width < 600:  # one column: the panel under the map, full width
            assert panel[1] > map_box[1] + map_box[3]
            assert map_box[2] > 0.8 * width and panel[2] > 0.85 * width
            # the legend under the map, the points across its width
            pg.wait_for_function(f"() => ({plot_width})()[1] === 'h'", timeout=90_000)
            assert pg.evaluate(plot_width)[0] > 0.8 * map_box[2]
        else:  # two columns side by side, the legend at the map's right
            assert panel[0] > map_box[0] + map_box[2]
            assert pg.evaluate(plot_width)[1] == "v"
        # the similar maps' rank, name and EMDB columns in view
        seen = pg.evaluate(
            """() => {
          const t = document.querySelector(
              '#similar-table .dash-spreadsheet-container');
          const box = t.getBoundingClientRect();
          const row = t.querySelector('tr:nth-child(2)');
          return ['rank', 'name', 'emdb'].map(c => {
            const r = row.querySelector(`td[data-dash-column="${c}"]`)
                         .getBoundingClientRect();
            return r.width > 0 && r.left >= box.left - 1
                   && r.right <= box.right + 1;
          });
        }"""
        )
        assert seen == [True] * 3, seen
        pg.screenshot(path=str(ARTIFACTS / f"layout_{width}.png"), full_page=True)
        pg.screenshot(path=str(ARTIFACTS / f"layout_{width}_top.png"))
        pg.locator("#umap-graph").screenshot(
            path=str(ARTIFACTS / f"layout_{width}_map.png")
        )
    finally:
        context.close()


@pytest.mark.parametrize("emdb, says", [("EMD-3197", "box cuts"), ("EMD-21457", "")])
def test_previews_a_user_recognises(page, emdb, says):
    """EMD-21457 (a fragment at a fixed level) drawn in one piece; EMD-3197 (a
    membrane patch cut by its box) drawn as it is, saying so."""
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.locator("#entry-id-input").fill(emdb)
    page.click("#entry-id-go")
    page.wait_for_function(
        f"""() => {{ const gd = document.querySelector('#iso-graph .js-plotly-plot');
            return gd && gd.layout.title && gd.layout.title.text.includes('{emdb}')
                   && gd.data.some(t => t.type === 'mesh3d'); }}""",
        timeout=60_000,
    )
    title = page.evaluate(
        "() => document.querySelector('#iso-graph .js-plotly-plot').layout.title.text"
    )
    assert says in title
    if emdb == "EMD-21457":
        assert "separate parts" not in title
    page.locator("#iso-graph").screenshot(path=str(ARTIFACTS / f"preview_{emdb}.png"))


def _filter_says(page, text: str) -> str:  # noqa: ANN001
    page.wait_for_function(
        f"() => document.querySelector('#filter-message').innerText"
        f".includes({json.dumps(text)})",
        timeout=90_000,
    )
    return page.inner_text("#filter-message")


def test_filters_say_what_they_do(page):
    """``cluster`` works in the SQL box; a refused filter says which one still
    applies; a narrowed resolution range says whom it hides, and keeps them
    when asked."""
    page.set_viewport_size({"width": 1280, "height": 1000})
    box = page.locator("#where-input")
    box.fill("cluster = 1")
    box.press("Enter")
    assert "6 entries match: (cluster = 1)" in _filter_says(page, "(cluster = 1)")
    page.wait_for_function(f"({UMAP_POINTS})() === 6", timeout=60_000)
    box.fill("no_such_column > 1")
    box.press("Enter")
    text = _filter_says(page, "no_such_column")
    assert "still use the previous filter: (cluster = 1)" in text
    assert page.locator("#filter-message .swan-error").count() == 1
    assert _points(page) == 6
    box.fill("")
    box.press("Enter")
    _filter_says(page, "no filter")
    # the slider's upper handle moved down with the keyboard
    top = page.locator("#resolution-slider [role=slider]").last
    top.focus()
    for _ in range(3):
        top.press("PageDown")
    text = _filter_says(page, "resolution BETWEEN")
    assert "with no resolution" in text and "hidden" in text
    page.locator("#keep-unresolved input").check()
    text = _filter_says(page, "OR resolution IS NULL")
    assert "kept" in text
    page.locator("#filter-message").locator("..").screenshot(  # the filters' card
        path=str(ARTIFACTS / "filters.png")
    )
    page.locator("#keep-unresolved input").uncheck()
    page.goto(page.url.split("?")[0], wait_until="networkidle")


MESHES = """(id) => { const gd = document.querySelector('#' + id + ' .js-plotly-plot');
    return gd && gd.data ? gd.data.filter(t => t.type === 'mesh3d').length : 0; }"""


def test_the_query_beside_its_hits_and_a_hit_superposed(page, tmp_path):
    """Upload a real map: its name shows at once, then its isosurface and its
    place on the archive map; picking a hit superposes it on the query; the
    pair downloads as a zip for ChimeraX, the hits as CSV; a cancelled search
    leaves the hits as they were; a failed upload clears them."""
    page.set_input_files("#upload-map input[type=file]", str(MAPS["emd_5625"]))
    page.wait_for_function(
        """() => document.querySelector('#upload-progress').innerText
                 .includes('Searching emd_5625.map')""",
        timeout=10_000,
    )
    assert page.locator("#upload-cancel").is_visible()
    page.wait_for_function(
        """() => document.querySelector('#hits-heading').innerText
                 .includes('emd_5625.map')""",
        timeout=90_000,
    )
    page.wait_for_function(f"({MESHES})('query-graph') > 0", timeout=60_000)
    page.wait_for_function(
        """() => { const gd = document.querySelector('#query-map .js-plotly-plot');
                   return gd && gd.data.some(
                       t => (t.name || '').startsWith('query')); }""",
        timeout=30_000,
    )
    assert not page.locator("#upload-cancel").is_visible()
    page.locator("#query-panel").screenshot(path=str(ARTIFACTS / "search_query.png"))
    # pick the best hit (EMD-5625 itself): the pair is drawn in two colours
    cell = "#hits-table td[data-dash-column='score']:not(.phantom-cell)"
    page.locator(cell).first.click()
    page.wait_for_function(f"({MESHES})('pair-graph') == 2", timeout=120_000)
    page.wait_for_function(
        "() => document.querySelector('#pair-message').innerText"
        ".includes('correlation')",
        timeout=30_000,
    )
    page.locator("#pair-panel").screenshot(path=str(ARTIFACTS / "search_pair.png"))
    # ... and downloads as a zip: the resampled query, the hit, a .cxc
    with page.expect_download(timeout=60_000) as got:
        page.click("#pair-download")
    saved = tmp_path / got.value.suggested_filename
    got.value.save_as(saved)
    import zipfile

    with zipfile.ZipFile(saved) as zf:
        names = zf.namelist()
    assert sum(n.endswith(".mrc") for n in names) == 2
    assert sum(n.endswith(".cxc") for n in names) == 1
    # another real map among the hits: two colours, one scale
    emdb = page.locator(
        "#hits-table td[data-dash-column='emdb']:not(.phantom-cell)"
    ).all_inner_texts()
    other = next(
        i for i, t in enumerate(emdb) if t.startswith("EMD-") and t != "EMD-5625"
    )
    page.locator(cell).nth(other).click()
    page.wait_for_function(
        f"""() => document.querySelector('#pair-message').innerText
                  .includes('hit {emdb[other]}')""",
        timeout=120_000,
    )
    page.wait_for_function(f"({MESHES})('pair-graph') == 2", timeout=30_000)
    page.locator("#pair-panel").screenshot(
        path=str(ARTIFACTS / "search_pair_other.png")
    )
    page.screenshot(path=str(ARTIFACTS / "search_page.png"), full_page=True)
    # the hits export as CSV
    with page.expect_download(timeout=30_000) as got:
        page.click("#hits-csv")
    assert got.value.suggested_filename == "emd_5625-hits.csv"
    # a search cancelled: its result is dropped, the hits shown stay
    page.set_input_files("#upload-map input[type=file]", str(MAPS["emd_6824"]))
    page.locator("#upload-cancel").click(timeout=10_000)
    page.wait_for_function(
        """() => document.querySelector('#upload-message').innerText
                 .includes('emd_6824.mrc: search cancelled')""",
        timeout=90_000,
    )
    assert "emd_5625.map" in page.inner_text("#hits-heading")
    assert not page.locator("#upload-cancel").is_visible()
    # a failed upload clears the hits and says so
    bad = tmp_path / "not_a_map.map"
    bad.write_bytes(b"not a map at all" * 8)
    page.set_input_files("#upload-map input[type=file]", str(bad))
    page.wait_for_function(
        """() => { const m = document.querySelector('#upload-message');
                   return m && m.innerText.includes('cleared'); }""",
        timeout=60_000,
    )
    assert "not_a_map.map" in page.inner_text("#upload-message")
    assert page.locator("#hits-table td").count() == 0
    assert page.inner_text("#hits-heading") == ""
    assert not page.locator("#pair-panel").is_visible()
    page.locator("#upload-message").screenshot(
        path=str(ARTIFACTS / "search_failed.png")
    )
    assert not page.errors
