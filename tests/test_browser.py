"""The demo page in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
Selenium), against a server on 127.0.0.1 with the tiny model of the session fixture.

`make install-browser` (run by `.ci/run`) installs Chromium; without it the test is skipped
locally but fails under CI (CI=true), so CI never passes without running it.
Set SEQ2SEQ_SCREENSHOT=path.png to keep a screenshot of the page.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from seq2seq.serve import create_app
from seq2seq.translate import Translator
from tests.conftest import running_server

HANGUL = re.compile(r"[\uac00-\ud7a3]")
CHROMEDRIVER = shutil.which("chromedriver")

if CHROMEDRIVER is None and not os.environ.get("CI"):
    pytest.skip("chromedriver not installed (make install-browser)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMEDRIVER, "chromedriver is missing: `make install-browser` installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1100"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_demo_page_translates_and_draws_the_attention(browser, tiny_workdir: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    model_path = tiny_workdir / "models/model/best.pt"
    with running_server(create_app(Translator(model_path, beam_size=3), model_path)) as url:
        browser.get(url)
        wait = WebDriverWait(browser, 20)
        wait.until(lambda b: "parameters" in b.find_element(By.ID, "info").text)  # the /info line
        source = browser.find_element(By.ID, "source")
        source.clear()
        source.send_keys("She bought a book yesterday.")
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: HANGUL.search(b.find_element(By.ID, "output").text))
        cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap td")
        heads = browser.find_elements(By.CSS_SELECTOR, "#heatmap thead th")
        assert len(heads) > 3 and len(cells) >= len(heads) - 1  # a row of weights per output piece
        assert re.search(r": \d\.\d{3}$", cells[0].get_attribute("title"))  # hover shows the weight
        # Korean is drawn with the web font the server ships, not a system font
        wait.until(lambda b: b.execute_script(
            "return [...document.fonts].map(f => f.family + ' ' + f.status)").count('NanumGothic loaded') == 1)
        if os.environ.get("SEQ2SEQ_SCREENSHOT"):
            browser.save_screenshot(os.environ["SEQ2SEQ_SCREENSHOT"])

        source.clear()
        source.send_keys(Keys.CONTROL, Keys.ENTER)  # Ctrl+Enter translates too
        wait.until(lambda b: "empty" in b.find_element(By.ID, "error").text)
        assert browser.find_element(By.ID, "output").text == ""
        assert browser.find_elements(By.CSS_SELECTOR, "#heatmap td") == []


def test_demo_page_shows_each_sentences_confidence(browser, tiny_workdir: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from seq2seq.confidence import Calibration, calibration_path

    model_path = tmp_path / "best.pt"
    shutil.copy(tiny_workdir / "models/model/best.pt", model_path)
    Calibration([(-3.0, 0.0), (0.0, 100.0)], length_penalty=1.0, sentences=40, beam_size=3).save(
        calibration_path(model_path))
    with running_server(create_app(Translator(model_path, beam_size=3), model_path)) as url:
        browser.get(url)
        wait = WebDriverWait(browser, 20)
        wait.until(lambda b: "parameters" in b.find_element(By.ID, "info").text)
        source = browser.find_element(By.ID, "source")
        source.clear()
        source.send_keys("She bought a book yesterday. Quantum zebras juggle purple volcanoes.")
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#confidence .badge")) == 2)
        badges = [badge.text for badge in browser.find_elements(By.CSS_SELECTOR, "#confidence .badge")]
        assert all(re.fullmatch(r"[12]: \d+\.\d", badge) for badge in badges), badges
        first, second = (float(badge.split(": ")[1]) for badge in badges)
        assert first > second  # the sentence it learnt is the more confident
