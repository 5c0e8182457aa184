"""The leaderboard page in a real headless browser (Debian's chromium and its driver; `.ci/run` installs them
when missing and then sets UNLEARN_BENCH_REQUIRE_BROWSER=1, so a missing browser fails there): it loads without console
errors, holds every section of the Markdown report, sorts a table by a click on a column header, styles the
reference rows apart, and leaves a screenshot for a person to look at (outputs/screenshots/)."""

import os
import shutil
from pathlib import Path

import pytest

from unlearn_bench.report import leaderboard

from .test_verdicts import write_record

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("UNLEARN_BENCH_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromedriver are required here (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium / chromedriver on this machine (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)  # a local driver: nothing is downloaded


def test_the_leaderboard_page_loads_holds_every_section_and_sorts(tmp_path):
    folder = tmp_path / "records"
    for seed in range(3):
        for rate, order in ((0.1, ("ft", "ga", "rl")), (0.5, ("rl", "ga", "ft"))):
            for place, method in enumerate(order):
                write_record(folder, f"{method}-{rate}-{seed}", seed, 1.0 + 2 * place + 0.1 * seed, method=method,
                             forget_rate__rate=rate)
    out = tmp_path / "board"
    assert leaderboard.main(["--records", str(folder), "--out", str(out), "--title", "Page test"]) == 0
    sections = [line[3:] for line in (out / "leaderboard.md").read_text().splitlines() if line.startswith("## ")]
    assert len(sections) == 3  # two settings and the ranking across them
    driver = browser()
    try:
        driver.get((out / "leaderboard.html").as_uri())
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
        assert driver.title == "Page test"
        headings = [h.text for h in driver.find_elements("css selector", "h2")]
        assert headings == sections
        image = driver.find_element("css selector", "figure img")
        assert driver.execute_script("return arguments[0].naturalWidth", image) > 500  # the plot, embedded
        table = driver.find_elements("css selector", "table")[0]
        references = [row.find_element("css selector", "td").text
                      for row in table.find_elements("css selector", "tbody tr.ref")]
        assert references == ["retrain", "retrain floor", "original"]

        def column(index: int) -> list[str]:
            return [row.find_elements("css selector", "td")[index].text
                    for row in table.find_elements("css selector", "tbody tr")]

        headers = [h.text.strip() for h in table.find_elements("css selector", "thead th")]
        gap = headers.index("Avg Gap (per-seed)")
        table.find_elements("css selector", "thead th")[gap].click()
        ascending = [float(v.split(" ± ")[0]) for v in column(gap)]
        assert ascending == sorted(ascending)
        table.find_elements("css selector", "thead th")[gap].click()
        descending = [float(v.split(" ± ")[0]) for v in column(gap)]
        assert descending == sorted(ascending, reverse=True)
        table.find_elements("css selector", "thead th")[0].click()
        assert column(0) == sorted(column(0), key=str.lower)
        shots = ROOT / "outputs" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shots / "leaderboard_page.png"))
    finally:
        driver.quit()
