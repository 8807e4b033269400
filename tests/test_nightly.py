"""`robustbench-norm nightly` end to end: four nights of a tiny suite (three of unchanged code,
then a planted change of GN+), through the CLI, into one published history."""

import json
import sqlite3

import pytest
from test_faults import MINI

from robustbench_norm.cli import main
from robustbench_norm.reporting.pool import baseline_pool
from robustbench_norm.suites.nights import night_seeds, night_suite, nights_of
from robustbench_norm.suites.store import Store
from robustbench_norm.suites.suite import load_suite


def _edit(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return text


#: test_faults' mini suite (BN and GN+), trained long enough to leave chance: models that all
#: predict one class have no seed spread, and the gate then decides by sign alone
NIGHT = (
    _edit(
        MINI,
        ('name = "mini"', 'name = "tiny-nightly"'),
        ("batch_sizes = [64]", "batch_sizes = [32]"),
        ("test_limit = 50", "test_limit = 200"),
        ("steps = 6\nlr = 0.05\nlog_every = 2", "steps = 30\nlr = 0.1\nlog_every = 10"),
    )
    + "[check]\nalpha = 0.001                      # a false alarm on an unchanged night: ≤ 0.1 %\n"
)

#: GN+ with λ frozen at 1: plain GN under the gnplus label (the planted regression)
PLANTED = _edit(
    NIGHT,
    (
        "options = { groups = 2 }",
        "options = { groups = 2, learn_lambda = false, lambda_init = 1.0 }",
    ),
)


def nightly(root, suite_text, *extra):
    suite = root / "tiny-nightly.toml"
    suite.write_text(suite_text)
    return main([
        "nightly", str(suite), "--out", str(root / "board"), "--store", str(root / "work.sqlite"),
        "--workdir", str(root / "work"), "--threads", "1", "--quiet", *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly")
    codes = [nightly(root, NIGHT) for _ in range(3)]
    codes.append(nightly(root, PLANTED, "--json", str(root / "night3.json")))
    return root, codes


def test_night_seeds_are_fresh_blocks_of_the_suites_seeds():
    assert night_seeds([0, 1], 0) == (0, 1)
    assert night_seeds([0, 1], 3) == (6, 7)
    assert night_seeds([6, 8, 11], 1) == (12, 14, 17)  # span 6: no night repeats a seed


def test_the_night_suite_keeps_jobs_and_names_the_night(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(NIGHT)
    suite = load_suite(path)
    tonight = night_suite(suite, 2)
    assert sorted({j.train.seed for j in tonight.jobs}) == [4, 5]
    assert len(tonight.jobs) == len(suite.jobs)
    assert tonight.hash != suite.hash and "night 2" in tonight.text  # a run of its own
    # its text is the leaderboard's suite.toml: running it again trains the night's seeds
    again = tmp_path / "again.toml"
    again.write_text(tonight.text)
    assert sorted({j.train.seed for j in load_suite(again).jobs}) == [4, 5]


def test_three_unchanged_nights_pass_and_the_planted_one_fails(nights):
    root, codes = nights
    # the first night has nothing to compare with; unchanged nights never fail (2 runs a side:
    # a pass, or undecided where an estimate is worse than detect); the planted change does
    assert codes[0] == 0
    assert all(c in (0, 4) for c in codes[1:3])
    assert codes[3] == 1
    with Store.open(root / "board" / "store.sqlite", read_only=True) as history:
        kept = nights_of(history)
        assert [n.night for n in kept] == [0, 1, 2, 3]
        assert kept[0].verdict == "first" and kept[3].verdict == "regression"
        # each night trained fresh seeds: no night is a copy of another
        seeds = [sorted({j["seed"] for j in history.jobs_of_run(n.run_id)}) for n in kept]
        assert seeds == [[0, 1], [2, 3], [4, 5], [6, 7]]
        # the planted night was compared with every earlier night, pooled
        assert kept[3].baseline == tuple(n.run_id for n in kept[:3])
        assert any("layer changed: gnplus" in r for r in kept[3].summary["reasons"])
        # a failing night never becomes a baseline
        pool = baseline_pool(history, "tiny-nightly", history, kept[3].run_id)
        assert pool.runs == tuple(n.run_id for n in kept[:3])
        assert "night 3: its check did not pass (regression)" in pool.left_out


def test_the_history_holds_each_nights_results_exactly(nights):
    root, _ = nights
    with (
        Store.open(root / "work.sqlite", read_only=True) as work,
        Store.open(root / "board" / "store.sqlite", read_only=True) as history,
    ):
        for night in nights_of(history):
            copied = history.results_of_run(night.run_id)
            seeds = {r["seed"] for r in copied}
            original = next(
                r for r in reversed(work.runs("tiny-nightly"))
                if {x["seed"] for x in work.results_of_run(r["id"])} == seeds
            )  # fmt: skip

            def rows(store, run):
                return sorted(
                    (r["norm"], r["seed"], r["family"], r["name"], r["metric"],
                     r["parameter"] or -1.0, r["value"])
                    for r in store.results_of_run(run) if r["name"] != "wall_seconds"
                )  # fmt: skip

            assert rows(history, night.run_id) == rows(work, original["id"])
            assert history.fingerprints_of_run(night.run_id) == work.fingerprints_of_run(
                original["id"]
            )


def test_the_page_shows_the_nights_the_fingerprint_marker_and_the_failing_check(nights):
    root, _ = nights
    board = root / "board"
    readme = (board / "README.md").read_text()
    assert readme.splitlines()[2].startswith("Night 3: CHECK DID NOT PASS (regression)")
    history = readme[readme.index("## History") : readme.index("## Claims")]
    table = history[history.index("### clean/accuracy") :].split("\n\n")[1].splitlines()
    assert len(table) == 2 + 4  # header, rule, one row per night
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in table[2:]]
    assert [c[0] for c in cells] == ["0", "1", "2", "3"]
    assert [c[4] for c in cells] == ["—", "—", "—", "gnplus"]  # layers changed on night 3
    assert cells[0][3] == "first" and cells[3][3] == "regression"
    assert (board / "history.png").stat().st_size > 10_000
    html = (board / "index.html").read_text()
    assert "<h2 id='history'>History</h2>" in html and "CHECK DID NOT PASS" in html
    document = json.loads((board / "results.json").read_text())
    assert [n["verdict"] for n in document["history"]["nights"]][-1] == "regression"
    summary = json.loads((root / "night3.json").read_text())
    assert summary["verdict"] == "regression" and summary["night"] == 3
    earlier = [n["run_id"] for n in document["history"]["nights"][:3]]
    assert sorted(summary["check"]["pooled_runs"]) == earlier
    assert summary["check"]["baseline"].endswith(f"store.sqlite:{earlier[-1]} + 2 pooled")


def test_one_run_published_over_a_history_is_refused(nights, capsys):
    root, _ = nights
    held = root / "board" / "store.sqlite"
    before = held.read_bytes()
    code = main(["report", "--store", str(root / "work.sqlite"), "--out", str(root / "board")])
    assert code == 2
    assert "holds a nightly history of 4 night(s)" in capsys.readouterr().err
    assert held.read_bytes() == before
    with sqlite3.connect(held) as conn:  # one self-contained file, no WAL beside it
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_check_pools_a_nightly_history_on_request(nights, capsys):
    root, _ = nights
    board, work = root / "board" / "store.sqlite", root / "work.sqlite"
    code = main(["check", "--baseline", f"{board}:pooled", "--candidate", f"{work}:latest"])
    out = capsys.readouterr().out
    assert code == 1 and "layer changed: gnplus" in out  # the planted night, again
    assert "baseline: 6 finished runs per test, pooled from 3 runs" in out  # 3 nights × 2
    # an ordinary store has no nights to pool: a usage error naming the fix
    assert main(["check", "--baseline", f"{work}:pooled", "--candidate", f"{work}:latest"]) == 2
    assert "nightly` makes them" in capsys.readouterr().err


def test_the_history_in_a_real_browser(nights, browser):
    """Chromium renders the history first: four nights per metric, the failing night named,
    the plot loaded, no console errors."""
    from selenium.webdriver.common.by import By

    root, _ = nights
    browser.get((root / "board" / "index.html").as_uri())
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
    rows = browser.find_elements(By.CSS_SELECTOR, "#history-clean-accuracy tbody tr")
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    assert [c[0] for c in cells] == ["0", "1", "2", "3"]
    assert cells[3][3] == "regression" and cells[3][4] == "gnplus"
    assert (
        "CHECK DID NOT PASS"
        in browser.find_element(By.TAG_NAME, "h1")
        .find_element(By.XPATH, "following-sibling::p")
        .text
    )
    plot = browser.find_element(By.CSS_SELECTOR, "img[alt='history']")
    assert browser.execute_script("return arguments[0].naturalWidth", plot) > 0
