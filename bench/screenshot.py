"""The README's picture of the demo page (docs/demo.png), from the model that `dvc repro` trained.

Starts `seq2seq serve` on 127.0.0.1, opens the page in headless Chromium (`make install-browser`),
translates TEXT (default: one sentence the default model translates well and one it does not)
and saves the page:

    .venv/bin/python bench/screenshot.py [--model models/model/best.pt] [--out docs/demo.png] [TEXT]
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

from seq2seq.bench.serving import free_port, serve_process

DEFAULT_TEXT = "The weather is nice today. The committee will publish its final report on the economy next week."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", default=DEFAULT_TEXT)
    parser.add_argument("--model", type=Path, default=Path("models/model/best.pt"))
    parser.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1250",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(argument)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve_process(args.model, port):
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            browser.get(url)
            wait = WebDriverWait(browser, 30)
            wait.until(lambda b: "parameters" in b.find_element(By.ID, "info").text)
            source = browser.find_element(By.ID, "source")
            source.clear()
            source.send_keys(args.text)
            browser.find_element(By.ID, "translate").click()
            wait.until(lambda b: re.search(r"[\uac00-\ud7a3]", b.find_element(By.ID, "output").text))
            wait.until(lambda b: b.execute_script("return document.fonts.status") == "loaded")
            time.sleep(0.5)
            print(browser.find_element(By.ID, "output").text)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(args.out))
            print(f"wrote {args.out}")
        finally:
            browser.quit()


if __name__ == "__main__":
    main()
