"""The CRM console in a real headless Chromium (Debian's, driven by Selenium through Debian's
chromedriver) against a real `patronage serve` on the session's trained sample store.

A marketer signs in with the keyboard, opens every page, filters, pages forward, downloads the
CSV and finds it equal to `patronage score` on the same champion; no page logs a console
error. Screenshots go to a pytest temporary directory (their path is printed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from models.score_columns import SCORE_COLUMNS
from tests.conftest import TrainedSampleStore
from tests.serving.console_server import (
    KEYS,
    ConsoleServer,
    running_console,
    score_with_the_cli,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1400",
)
NUMERIC = ("churn_probability", "loyalty_score", "p_alive", "expected_orders_90d",
           "predicted_clv_365d", "avg_days_between_orders", "satisfaction")  # fmt: skip


@dataclass
class Console:
    """The browser, the server, where downloads and screenshots go, and the CLI's table."""

    driver: object
    server: ConsoleServer
    downloads: Path
    screenshots: Path
    cli_scores: pd.DataFrame

    def open(self, path: str) -> None:
        """Go to `path` and fail on any browser console error it logged."""
        self.driver.get(self.server.url + path)  # type: ignore[attr-defined]
        self.check_console(path)

    def check_console(self, where: str, expected: str | None = None) -> None:
        """Fail when the browser logged a warning or an error since the last check (other
        than one containing `expected`, which must then be there)."""
        entries = self.driver.get_log("browser")  # type: ignore[attr-defined]
        bad = [e for e in entries if e.get("level") in ("SEVERE", "WARNING")]
        if expected is not None:
            assert any(expected in e["message"] for e in bad), (where, expected, bad)
            bad = [e for e in bad if expected not in e["message"]]
        assert bad == [], f"browser console on {where}: {bad}"

    def wait_for(self, path: str, query: str = "") -> None:
        """Wait (10 s at most) until the browser shows `path` (with `query` in its query
        string): key presses and clicks return before the navigation they start is done."""
        from selenium.webdriver.support.ui import WebDriverWait

        def arrived(driver: object) -> bool:
            url = urlparse(driver.current_url)  # type: ignore[attr-defined]
            ready = driver.execute_script("return document.readyState")  # type: ignore[attr-defined]
            return url.path == path and query in url.query and ready == "complete"

        WebDriverWait(self.driver, 10).until(arrived)

    def shoot(self, name: str) -> Path:
        """Save a full-window screenshot as NAME.png."""
        path = self.screenshots / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path  # type: ignore[attr-defined]
        return path


def _chromium(profile: Path, downloads: Path) -> object:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing: `make test` installs Debian's chromium "
            "and chromium-driver (apt-get) before running the tests"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.set_page_load_timeout(60)
    driver.implicitly_wait(5)  # find_element waits for a page still loading
    return driver


@pytest.fixture(scope="module")
def console(
    trained_sample_store: TrainedSampleStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    """The browser, then the server; `patronage score` runs (in this process) while the server
    loads its models."""
    root = tmp_path_factory.mktemp("crm_browser")
    for name in ("server", "profile", "downloads", "screenshots", "score"):
        (root / name).mkdir()
    score_out = root / "score" / "scores.csv"
    driver = _chromium(root / "profile", root / "downloads")
    try:
        with running_console(
            trained_sample_store,
            root / "server",
            while_loading=lambda: score_with_the_cli(trained_sample_store, score_out),
        ) as server:
            cli = pd.read_csv(score_out, dtype={"customer_id": str})
            print(f"CRM console screenshots: {root / 'screenshots'}")
            yield Console(driver, server, root / "downloads", root / "screenshots", cli)
    finally:
        driver.quit()  # type: ignore[attr-defined]


def _by(css: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    return (By.CSS_SELECTOR, css)


def _text(console: Console, css: str) -> str:
    return str(console.driver.find_element(*_by(css)).text)  # type: ignore[attr-defined]


def _all(console: Console, css: str) -> list[object]:
    return list(console.driver.find_elements(*_by(css)))  # type: ignore[attr-defined]


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").strip())


def test_1_sign_in_with_the_keyboard(console: Console) -> None:
    from selenium.webdriver.common.keys import Keys

    console.open("/crm/customers")
    assert "/crm/login" in console.driver.current_url  # type: ignore[attr-defined]
    console.shoot("sign-in")
    field = console.driver.find_element(*_by("#api_key"))  # type: ignore[attr-defined]
    field.send_keys(KEYS["storefront"] + Keys.ENTER)
    console.wait_for("/crm/login")
    assert "needs a crm key" in _text(console, "[role=alert]")
    # the refused sign-in answers 401, which the browser reports; nothing else may be logged
    console.check_console("refused sign-in", expected="/crm/login - Failed to load resource")
    field = console.driver.find_element(*_by("#api_key"))  # type: ignore[attr-defined]
    field.send_keys(KEYS["crm"] + Keys.ENTER)
    console.wait_for("/crm/customers")  # back to the page asked for
    console.check_console("after sign-in")
    cookies = {c["name"]: c for c in console.driver.get_cookies()}  # type: ignore[attr-defined]
    session = cookies["patronage_crm_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"


def test_2_overview_numbers_and_charts(console: Console) -> None:
    console.open("/crm/")
    assert _text(console, "h1") == "Overview"
    tiles = {
        str(t.find_element(*_by("dt")).text).split("\n")[0]: _number(
            t.find_element(*_by("dd")).text
        )  # type: ignore[attr-defined]
        for t in _all(console, ".tiles div")
    }
    cli = console.cli_scores
    assert tiles["Customers"] == len(cli)
    assert tiles["At high churn risk"] == int((cli["churn_risk"] == "high").sum())
    images = _all(console, "figure.chart img")
    assert len(images) == 6
    for image in images:
        assert image.get_attribute("alt")  # type: ignore[attr-defined]
        assert int(image.get_property("naturalWidth")) > 0, image.get_attribute("src")  # type: ignore[attr-defined]
    segment_rows = _all(console, "#segments-title ~ table tbody tr")
    assert len(segment_rows) == cli["segment"].nunique()
    console.check_console("overview images")
    console.shoot("overview")


def test_3_filter_and_page_forward(console: Console) -> None:
    from selenium.webdriver.common.keys import Keys

    console.open("/crm/customers")
    high = console.driver.find_element(*_by("input[name=risk][value=high]"))  # type: ignore[attr-defined]
    high.send_keys(Keys.SPACE)  # keyboard, not a mouse click
    per_page = console.driver.find_element(*_by("#per_page"))  # type: ignore[attr-defined]
    from selenium.webdriver.support.ui import Select

    Select(per_page).select_by_value("25")
    console.driver.find_element(*_by("#apply-filters")).send_keys(Keys.ENTER)  # type: ignore[attr-defined]
    console.wait_for("/crm/customers", "risk=high")
    query = parse_qs(urlparse(console.driver.current_url).query)  # type: ignore[attr-defined]
    assert query["risk"] == ["high"] and query["per_page"] == ["25"]
    expected = console.cli_scores[console.cli_scores["churn_risk"] == "high"]
    assert _number(_text(console, "#result-count strong")) == len(expected)
    assert len(expected) > 25, "the sample shop must have a second page of high-risk customers"
    first_page = _page_rows(console)
    assert len(first_page) == 25 and {r[2] for r in first_page} == {"high"}
    console.shoot("customers-high-risk")
    console.driver.find_element(*_by("#next-page")).click()  # type: ignore[attr-defined]
    console.wait_for("/crm/customers", "page=2")
    console.check_console("page 2")
    assert "Page 2 of" in _text(console, ".pages span")
    second_page = _page_rows(console)
    assert {r[2] for r in second_page} == {"high"}
    assert not {r[0] for r in first_page} & {r[0] for r in second_page}
    # sorted by value at risk, highest first, across the page break
    values = [r[5] for r in first_page + second_page]
    assert values == sorted(values, reverse=True)
    by_value_at_risk = expected.assign(
        value_at_risk=expected["churn_probability"] * expected["predicted_clv_365d"]
    ).sort_values("value_at_risk", ascending=False, kind="stable")
    assert [r[0] for r in first_page] == by_value_at_risk["customer_id"].head(25).tolist()


def _page_rows(console: Console) -> list[tuple[str, str, str, float, float, float]]:
    rows = []
    for row in _all(console, "table.customers tbody tr"):
        cells = [str(c.text) for c in row.find_elements(*_by("th, td"))]  # type: ignore[attr-defined]
        rows.append(
            (cells[0], cells[1], cells[2], _number(cells[3]), _number(cells[4]), _number(cells[5]))
        )
    return rows


def _download(console: Console, css: str) -> pd.DataFrame:
    for old in console.downloads.iterdir():
        old.unlink()
    console.driver.find_element(*_by(css)).click()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = [p for p in console.downloads.iterdir() if p.suffix == ".csv"]
        if done and not any(p.suffix == ".crdownload" for p in console.downloads.iterdir()):
            return pd.read_csv(done[0], dtype={"customer_id": str})
        time.sleep(0.1)
    pytest.fail(f"no CSV downloaded within 30 s: {list(console.downloads.iterdir())}")


def _assert_same_scores(exported: pd.DataFrame, cli: pd.DataFrame) -> None:
    """The export's score columns equal `patronage score`'s table, customer by customer."""
    assert list(exported.columns[: len(SCORE_COLUMNS)]) == list(SCORE_COLUMNS)
    left = exported.sort_values("customer_id").reset_index(drop=True)
    right = cli.sort_values("customer_id").reset_index(drop=True)
    assert left["customer_id"].tolist() == right["customer_id"].tolist()
    for column in NUMERIC:
        np.testing.assert_allclose(
            left[column].to_numpy(float), right[column].to_numpy(float), rtol=1e-9, err_msg=column
        )
    for column in ("churn_risk", "churn_reasons", "segment"):
        assert left[column].fillna("").tolist() == right[column].fillna("").tolist(), column
    assert pd.to_datetime(left["expected_next_order_at"], utc=True).equals(
        pd.to_datetime(right["expected_next_order_at"], utc=True)
    )


def test_4_csv_download_equals_patronage_score(console: Console) -> None:
    console.open("/crm/customers")
    exported = _download(console, "#download-csv")
    cli = console.cli_scores
    _assert_same_scores(exported, cli)
    # with reasons (every high- and medium-risk customer has some) and three win-back items
    at_risk = exported["churn_risk"].isin(["high", "medium"])
    assert at_risk.any() and exported.loc[at_risk, "churn_reasons"].notna().all()
    items = exported["winback_item_ids"].str.split("; ")
    assert (items.str.len() == 3).all()
    assert exported["winback_item_names"].str.split("; ").str.len().eq(3).all()
    # a filtered export holds exactly the filtered customers, in the page's order
    console.open("/crm/customers?view=at_risk")
    risky = _download(console, "#download-csv")
    expected = cli[cli["churn_risk"].isin(["high", "medium"])]
    _assert_same_scores(risky, expected)
    value_at_risk = risky["value_at_risk"].to_numpy()
    assert (np.diff(value_at_risk) <= 1e-12).all()


def test_5_customer_profile(console: Console, trained_sample_store: TrainedSampleStore) -> None:
    console.open("/crm/customers?view=at_risk")
    link = console.driver.find_element(*_by("table.customers tbody th a"))  # type: ignore[attr-defined]
    customer_id = str(link.text)
    link.click()
    console.wait_for(f"/crm/customers/{customer_id}")
    console.check_console("profile")
    assert _text(console, "h1") == f"Customer {customer_id}"
    row = console.cli_scores.set_index("customer_id").loc[customer_id]
    reasons = [str(li.text) for li in _all(console, "ul.reasons li")]
    assert reasons and reasons == str(row["churn_reasons"]).split("; ")
    # orders timeline: every order before as_of, newest first, with item names
    shop = trained_sample_store.shop_dir
    purchases = pd.read_csv(shop / "purchases.csv", dtype={"customer_id": str, "item_id": str})
    purchases["ordered_at"] = pd.to_datetime(purchases["ordered_at"], utc=True)
    mine = purchases[
        (purchases["customer_id"] == customer_id)
        & (purchases["ordered_at"] < pd.Timestamp(trained_sample_store.as_of))
    ]
    entries = _all(console, "ol.timeline li")
    assert len(entries) == mine["order_id"].nunique()
    items = pd.read_csv(shop / "items.csv", dtype={"item_id": str}).set_index("item_id")
    latest = mine.sort_values("ordered_at").iloc[-1]
    assert str(items.loc[latest["item_id"], "name"]) in str(entries[0].text)  # type: ignore[attr-defined]
    recommended = _all(console, "#recommendations-title ~ table")
    assert recommended, "recommendations are shown"
    names = [str(td.text) for td in recommended[0].find_elements(*_by("tbody td:nth-child(2)"))]  # type: ignore[attr-defined]
    assert len(names) == 5 and all(n in set(items["name"].astype(str)) for n in names)
    console.shoot("profile")


def test_6_models_page_and_training_report(console: Console) -> None:
    console.open("/crm/models")
    text = _text(console, "main")
    for role in ("recommender", "churn", "loyalty"):
        assert f"patronage.sample.{role}" in text
    assert "@champion" in text
    console.shoot("models")
    console.driver.find_element(*_by("a[href^='/crm/models/report']")).click()  # type: ignore[attr-defined]
    console.wait_for("/crm/models/report")
    console.check_console("training report")
    assert "<img" in console.driver.page_source  # type: ignore[attr-defined]


def test_7_sign_out(console: Console) -> None:
    console.open("/crm/")
    console.driver.find_element(*_by("form.sign-out button")).click()  # type: ignore[attr-defined]
    console.wait_for("/crm/login")
    console.open("/crm/models")
    assert urlparse(console.driver.current_url).path == "/crm/login"  # type: ignore[attr-defined]


def test_8_screenshots_were_saved(console: Console) -> None:
    saved = {p.name: p for p in console.screenshots.iterdir()}
    assert {"sign-in.png", "overview.png", "profile.png", "models.png"} <= set(saved), saved
    for path in saved.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
