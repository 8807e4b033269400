"""The leaderboard page in a real headless Chromium: loads clean, shows every norm, sorts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustbench_norm.reporting.report import publish
from robustbench_norm.suites.execute import RunSettings, run_suite
from robustbench_norm.suites.store import Store
from robustbench_norm.suites.suite import load_suite

SUITE = """
name = "page"
models = ["resnet20"]
width = 4
batch_sizes = [128]
seeds = [0]
test_limit = 60
[[norms]]
name = "bn"
[[norms]]
name = "gn"
options = { groups = 2 }
[[norms]]
name = "gnplus"
options = { groups = 2 }
[train]
steps = 8
[evaluate.noise]
sigmas = [0.1, 0.2]
[[evaluate.attacks]]
name = "apgd_ce"
steps = 3
epsilons = [0, "2/255"]
limit = 20
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    (root / "page.toml").write_text(SUITE)
    with Store.open(root / "s.sqlite") as store:
        run = run_suite(load_suite(root / "page.toml"), store,
                        RunSettings(workdir=str(root / "w"), quiet=True)).run_id  # fmt: skip
        publish(store, run, root / "lb")
    return root / "lb" / "index.html"


def column(driver, table_id: str, index: int) -> list[str]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [r.find_elements(By.TAG_NAME, "td")[index].text for r in rows]


def test_page_loads_without_console_errors_and_shows_every_norm(page, browser):
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    assert "robustbench-norm leaderboard: page" in browser.title
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    text = browser.find_element(By.TAG_NAME, "body").text
    for norm in ("bn", "gn", "gnplus"):
        assert norm in column(browser, "table-clean", 1)
    assert "Claims of the GN+ paper" in text
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0
                          for i in images)  # fmt: skip


def test_clicking_a_header_sorts_the_column(page, browser):
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    header = browser.find_elements(By.CSS_SELECTOR, "#table-noise-sigma thead th")[2]  # σ=0.1
    values = lambda: [float(v.split()[0]) for v in column(browser, "table-noise-sigma", 2)]  # noqa: E731
    assert len(set(values())) > 1  # distinct values: the sort has something to do
    header.click()
    assert values() == sorted(values())
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert values() == sorted(values(), reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    norms = browser.find_elements(By.CSS_SELECTOR, "#table-noise-sigma thead th")[1]
    norms.click()
    assert column(browser, "table-noise-sigma", 1) == sorted(
        column(browser, "table-noise-sigma", 1)
    )


def test_the_page_links_its_sources_and_shows_provenance_and_threat_models(page, browser):
    """Links to the paper and to every file beside the page (each of which exists), the
    provenance as a table, and each robust-accuracy table labelled with its attack's norm,
    steps, restarts and image count."""
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    links = {
        a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#links a")
    }
    assert any("2207.01972" in href for href in links.values())
    for name in ("results.csv", "results.json", "suite.toml", "store.sqlite", "README.md"):
        assert name in links and (page.parent / name).exists(), name
    rows = browser.find_elements(By.CSS_SELECTOR, "#provenance tr")
    keys = [r.find_element(By.TAG_NAME, "th").text for r in rows]
    assert {"run", "code", "machine", "torch", "packages"} <= set(keys)
    label = browser.find_element(By.CSS_SELECTOR, "#attack-apgd_ce + p").text
    assert "apgd_ce (L∞), 3 steps, 1 restart, 20 test images" in label
    assert "ε=2/255" in browser.find_element(By.ID, "table-attack-apgd_ce").text


def test_the_standard_page_reads_at_1400_pixels_without_scrolling_sideways(browser, tmp_path):
    """The published standard leaderboard, regenerated from its store, in the real browser at
    1400 × 900: no horizontal scrolling (wide tables come in parts), each claim one short row
    with its details folded, and the forest plot of the claims on the page."""
    from selenium.webdriver.common.by import By

    from robustbench_norm.reporting.report import write_report

    root = Path(__file__).resolve().parents[1]
    with Store.open(root / "leaderboards/standard/store.sqlite", read_only=True) as store:
        write_report(store, store.resolve_run("latest"), tmp_path / "lb")
    browser.set_window_size(1400, 900)
    browser.get((tmp_path / "lb" / "index.html").as_uri())
    width = browser.execute_script("return document.documentElement.scrollWidth")
    viewport = browser.execute_script("return window.innerWidth")
    assert width <= viewport, f"the page is {width} px wide in a {viewport} px window"
    rows = browser.find_elements(By.CSS_SELECTOR, "#table-claims tbody tr")
    claims = json.loads((tmp_path / "lb" / "results.json").read_text())["claims"]
    assert len(rows) == len(claims) == 7  # the six claims and the noise claim under test-batch
    for row in rows:  # one or two lines of text, not a wall: the evidence is folded away
        assert row.size["height"] < 90, row.text
        details = row.find_element(By.TAG_NAME, "details")
        assert details.get_attribute("open") is None
    assert browser.find_elements(By.CSS_SELECTOR, "img[alt=claims]")
    browser.save_screenshot(str(tmp_path / "standard.png"))  # kept with the test's tmp files
    parts = browser.find_elements(By.CSS_SELECTOR, "h3")
    assert any("part 1 of" in h.text for h in parts)  # e.g. accuracy per σ, one per setting
