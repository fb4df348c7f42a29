"""The search page in a real browser: Debian's chromium, driven by Selenium through
chromium-driver, against a real `attribot-rag serve` subprocess on 127.0.0.1.

Skipped (with the reason) when chromium or chromedriver is not installed:
`make install-browser` installs both. The screenshot goes to $ATTRIBOT_SCREENSHOT
(default: the test's temporary folder).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
QUESTION = "What is the nightly hotel limit for international business travel?"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="no chromium/chromedriver installed (run `make install-browser`: apt chromium chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"attribot-rag serve exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"attribot-rag serve did not answer on {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def server_url():
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cli = Path(sys.executable).with_name("attribot-rag")
    server = subprocess.Popen(
        [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--max-new-tokens", "32"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def browser(tmp_path):
    pytest.importorskip("selenium", reason="the browser test needs selenium: pip install 'attribot-rag[browser-test]'")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # No network here: without these, chromium waits on refused connections for minutes.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _api_ask(url: str, question: str) -> dict:
    request = urllib.request.Request(
        url + "v1/ask", data=json.dumps({"question": question}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=180) as r:
        return json.load(r)


def test_page_shows_a_cited_answer_with_the_api_quote(server_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server_url)
    box = browser.find_element(By.ID, "question")
    box.send_keys(QUESTION, Keys.ENTER)
    WebDriverWait(browser, 180).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#answer .marker")))
    marker = browser.find_element(By.CSS_SELECTOR, "#answer .marker")
    assert marker.text.startswith("[") and marker.text.endswith("]")
    marker.click()
    quote_box = browser.find_element(By.ID, "quote")
    WebDriverWait(browser, 10).until(lambda _: quote_box.is_displayed())
    shown_quote = browser.find_element(By.ID, "quote-text").text
    shown_passage = quote_box.get_attribute("data-passage-id")
    number = int(marker.get_attribute("data-number"))
    sentence = int(marker.get_attribute("data-sentence"))
    screenshot = Path(os.environ.get("ATTRIBOT_SCREENSHOT", tmp_path / "page.png"))
    browser.save_screenshot(str(screenshot))

    # The same question through the API (greedy decoding: the same answer and citations).
    api = _api_ask(server_url, QUESTION)["cite"]
    cited = [c for c in api["citations"] if c["number"] == number and c["sentence_index"] == sentence]
    assert cited, f"the API gives no citation [{number}] for sentence {sentence}: {api['citations']}"
    assert shown_passage == cited[0]["passage_id"]
    assert shown_quote.startswith(cited[0]["quote"].strip()[:40])
    # the label says what the citation rests on, in words ("states it" for evidence "supports")
    label = browser.find_element(By.ID, "quote-label").text
    assert {"supports": "states it", "used": "relied on"}.get(cited[0]["evidence"], ":") in label
    passage_text = next(p["text"] for p in api["passages"] if p["id"] == shown_passage)
    assert cited[0]["quote"] in passage_text
    # The answer shown is the API's cited answer, markers included.
    shown_answer = browser.find_element(By.ID, "answer").text
    assert " ".join(shown_answer.split()) == " ".join(api["cited_answer"].split())
    # The quoted sentence is outlined in the sources panel.
    assert browser.find_elements(By.CSS_SELECTOR, "#source-list .sentence.quoted")
