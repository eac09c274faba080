"""The dashboard in a real browser: Chromium (Debian's package) driven by Playwright.

`swan serve` runs in a subprocess over a small store (the real sample maps plus a
labelled simulated set); the tests load the page, count the UMAP's points, click a
point for its 3D view, and upload a map to search. Screenshots go to
``tests/artifacts/`` (or ``$SWAN_TEST_ARTIFACTS``).

Without ``/usr/bin/chromium`` these tests are skipped, unless
``SWAN_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which makes a missing browser fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dashboard.demo import DemoConfig, build_demo_store
from dashboard.testing import CHROMIUM, CHROMIUM_ARGS, start_serve
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


def test_dashboard_loads_with_every_point(page, server):
    page.wait_for_function(f"({UMAP_POINTS})() > 0", timeout=60_000)
    assert page.evaluate(UMAP_POINTS) == server[1]
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert not page.errors


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
    page.wait_for_function(
        """() => { const gd = document.querySelector('#iso-graph .js-plotly-plot');
                   return gd && gd.data && gd.data.some(t => t.type === 'mesh3d'); }""",
        timeout=60_000,
    )
    page.screenshot(path=str(ARTIFACTS / "entry_3d.png"), full_page=True)


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
    page.screenshot(path=str(ARTIFACTS / "upload_hits.png"), full_page=True)
