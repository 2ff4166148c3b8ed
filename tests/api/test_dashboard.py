"""The dashboard in a real headless Chromium, loaded from a running turnout.

Debian's ``chromium`` and ``chromedriver`` are driven with Selenium through an
explicit driver path, so nothing is downloaded. The screenshot of each test is
saved under its tmp directory, and its path printed and recorded in the report.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import get, wait_until
from tests.runtime.support import require_binary

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port
NO_RATE = "\u2013"  # an en dash: no rate measured yet

DYNAMIC = """
[http.routers.shop]
rule = "Host(`shop.example`)"
service = "shop"
middlewares = ["strip"]
[http.routers.blog]
rule = "Host(`blog.example`)"
service = "blog"
[http.middlewares.strip.stripPrefix]
prefixes = ["/shop"]
[http.services.shop.loadBalancer.healthCheck]
path = "/"
interval = "100ms"
timeout = "1s"
[[http.services.shop.loadBalancer.servers]]
url = "{alive}"
[[http.services.shop.loadBalancer.servers]]
url = "{dead}"
[http.services.blog.loadBalancer]
[[http.services.blog.loadBalancer.servers]]
url = "{alive}"
[http.routers.gone]
rule = "Host(`gone.example`)"
service = "gone"
[http.services.gone.loadBalancer]
[[http.services.gone.loadBalancer.servers]]
url = "{dead}"
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    chromium = require_binary("chromium")
    chromedriver = require_binary("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # the test extras install it
        message = "selenium is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()


def text(driver, selector: str) -> str | None:
    """The rendered text of the first element ``selector`` finds, read in one script.

    The page redraws its tables on every refresh, so an element found in one
    call may be gone in the next: everything is read in a single round trip.
    """
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
        selector,
    )


def attribute_of_all(driver, selector: str, name: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(e => e.getAttribute(arguments[1]))",
        selector,
        name,
    )


def screenshot(driver, tmp_path: Path, record_property, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)), "no screenshot"
    assert path.stat().st_size > 10_000
    print(f"dashboard screenshot: {path}")
    record_property("screenshot", str(path))
    return path


def test_the_dashboard_shows_routers_and_a_down_server(
    turnout, backend, browser, tmp_path, record_property
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    alive = backend()
    proxy = turnout(
        DYNAMIC.format(alive=alive.url, dead=DEAD),
        entrypoints=("web", "traefik"),
        static_extra="[api]\ninsecure = true\n",
    )
    for _ in range(20):
        assert get(proxy.ports["web"], "/", host="blog.example").status == 200
    origin = f"http://127.0.0.1:{proxy.ports['traefik']}"
    browser.get(origin + "/dashboard")  # redirected to /dashboard/
    wait = WebDriverWait(browser, 20)
    shop = '#routers tr[data-name="shop@file"]'
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, shop)))
    assert browser.current_url == origin + "/dashboard/"
    row = text(browser, shop) or ""
    assert "Host(`shop.example`)" in row
    assert "strip" in row and "shop" in row
    assert (text(browser, f"{shop} .badge") or "").lower() == "enabled"
    down = f'#services .server[data-url="{DEAD}"][data-status="DOWN"]'
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, down)))
    assert "DOWN" in (text(browser, down) or "").upper()
    assert attribute_of_all(
        browser, f'#services .server[data-url="{alive.url}"]', "data-status"
    ) == ["UP", "UP"]  # shop@file and blog@file
    problems = text(browser, "#problems") or ""
    assert f"Server {DEAD} of service shop@file is DOWN" in problems
    # Everything the page loaded came from Turnout itself.
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(url.startswith(origin + "/") for url in loaded), loaded
    screenshot(browser, tmp_path, record_property, "dashboard")

    # Live rates: counters differenced between two refreshes (every 3 s).
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            get(proxy.ports["web"], "/", host="blog.example")
            get(proxy.ports["web"], "/", host="gone.example")  # 502: no server answers
            time.sleep(0.02)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:

        def cells(name: str) -> list[str]:
            # Read in one script: the page redraws its rows on every refresh.
            return browser.execute_script(
                "return Array.from(document.querySelectorAll("
                "`#routers tr[data-name='${arguments[0]}'] td.num`)).map(td => td.textContent)",
                name,
            )

        assert wait_until(lambda: cells("blog@file")[0] not in (NO_RATE, "0"), 15), cells(
            "blog@file"
        )
        assert wait_until(lambda: cells("gone@file")[1] == "100 %", 15), cells("gone@file")
        assert cells("blog@file")[1] == "0 %"
        service_rate = text(browser, '#services tr[data-name="blog@file"] td.num:nth-of-type(6)')
        assert service_rate not in (None, NO_RATE, "0"), service_rate
        web = attribute_of_all(browser, '#entrypoints tr[data-name="web"] td.num', "class")
        assert len(web) == 2  # open connections, requests per second
        assert float(cells("blog@file")[0]) > 1
        assert "Router gone@file: 100 % of answers are 5xx" in (text(browser, "#problems") or "")
    finally:
        stop.set()
        sender.join(5)
    screenshot(browser, tmp_path, record_property, "dashboard-rates")

    # Filtering by name leaves only what matches.
    search = browser.find_element(By.ID, "search")
    search.send_keys("blog")
    assert wait_until(
        lambda: attribute_of_all(browser, "#routers tbody tr", "data-name") == ["blog@file"]
    )


def test_the_dashboard_shows_a_refused_configuration(
    turnout, backend, browser, tmp_path, record_property
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    alive = backend()
    good = DYNAMIC.format(alive=alive.url, dead=DEAD)
    proxy = turnout(good, entrypoints=("web", "traefik"), static_extra="[api]\ninsecure = true\n")
    proxy.dynamic_path.write_text(
        good + '[http.routers.broken]\nrule = "Host(`x`) &&"\nservice = "nowhere"\n'
    )
    assert wait_until(lambda: "refused" in proxy.stderr(), 10)
    browser.get(f"http://127.0.0.1:{proxy.ports['traefik']}/dashboard/")
    wait = WebDriverWait(browser, 20)
    refused = '#refused .refusal[data-provider="file"]'
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, refused)))
    refusal = text(browser, refused) or ""
    assert "http.routers.broken.service: unknown service 'nowhere'" in refusal
    assert str(proxy.dynamic_path) in refusal
    badge = text(browser, '#routers tr[data-name="broken@file"] .badge') or ""
    assert badge.lower() == "disabled"
    screenshot(browser, tmp_path, record_property, "dashboard-refused")
