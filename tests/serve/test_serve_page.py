"""The page at ``/`` in a real browser: Debian's chromium, headless, driven by Selenium through
chromium-driver. Type a prompt, press Generate, watch the text stream in.

Skips, saying why, where no browser is installed (``.ci/run`` installs one with
``apt-get install -y chromium chromium-driver``). With ``LSTM_PIPELINE_SCREENSHOT=<file.png>`` the
test also saves its screenshot there (docs/serve_page.png is made this way)."""
import os
import shutil
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="serve needs its extra (pip install 'lstm-pipeline[serve]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency (pip install 'lstm-pipeline[dev]')")

from helpers import ServeProcess  # noqa: E402

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if BROWSER is None or DRIVER is None:
        pytest.skip("no headless browser here: the page test needs chromium and chromedriver on PATH "
                    "(Debian: apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,820"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_page_streams_generated_text(tiny_run, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with ServeProcess(f"run={tiny_run}", "model_name=tiny", env={"OMP_NUM_THREADS": "1"}) as server:
        browser.get(server.url + "/")
        assert "lstm-pipeline serve" in browser.title
        prompt = browser.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("JULIET:")
        for field, value in (("max_tokens", "400"), ("seed", "21")):
            el = browser.find_element(By.ID, field)
            el.clear()
            el.send_keys(value)
        # record every change of the output as it happens: streamed text arrives in many pieces
        browser.execute_script("""
            window.lengths = [];
            new MutationObserver(() => {
              const g = document.getElementById('generated');
              if (g) window.lengths.push([performance.now(), g.textContent.length]);
            }).observe(document.getElementById('output'), {childList: true, characterData: true, subtree: true});
        """)
        browser.find_element(By.ID, "generate").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "error")))
        status = browser.find_element(By.ID, "status").text
        assert status.startswith("done"), status
        shown = browser.execute_script("return document.getElementById('generated').textContent")
        lengths = browser.execute_script("return window.lengths")
        # the same request through the API gives the same text (the page's defaults: temperature 0.8, top_p 1)
        api = httpx.post(server.url + "/v1/completions", timeout=60, json={
            "model": "tiny", "prompt": "JULIET:", "max_tokens": 400, "seed": 21, "temperature": 0.8, "top_p": 1.0}).json()
        assert shown == api["choices"][0]["text"]
        assert browser.find_element(By.CLASS_NAME, "prompt").text == "JULIET:"
        distinct = sorted({n for _, n in lengths})
        assert len(distinct) > 10 and distinct[0] < len(shown) // 2, distinct[:20]  # grew piece by piece
        shot = tmp_path / "serve_page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("LSTM_PIPELINE_SCREENSHOT"):
            shutil.copyfile(shot, Path(os.environ["LSTM_PIPELINE_SCREENSHOT"]))


def test_page_chat_mode_keeps_the_conversation(tiny_run, browser):
    """Chat mode: each message goes to /v1/chat/completions with the ones before it; the reply
    streams into the conversation and equals the API's answer to the same messages."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def send(text):
        prompt = browser.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys(text)
        browser.find_element(By.ID, "generate").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "error")))
        status = browser.find_element(By.ID, "status").text
        assert status.startswith("done"), status
        return browser.execute_script("return document.getElementById('generated').textContent")

    # on_unknown=replace: the tiny model's replies may hold its unknown token, sent back with the conversation
    with ServeProcess(f"run={tiny_run}", "model_name=tiny", "on_unknown=replace", env={"OMP_NUM_THREADS": "1"}) as server:
        browser.get(server.url + "/")
        Select(browser.find_element(By.ID, "mode")).select_by_value("chat")
        assert browser.find_element(By.ID, "generate").text == "Send"
        browser.find_element(By.ID, "stop_turn").click()  # off: the tiny model's replies run to max_tokens
        for field, value in (("max_tokens", "60"), ("seed", "21")):
            el = browser.find_element(By.ID, field)
            el.clear()
            el.send_keys(value)
        settings = {"model": "tiny", "max_tokens": 60, "seed": 21, "temperature": 0.8, "top_p": 1.0}
        messages = [{"role": "user", "content": "What light"}]
        first = send("What light")
        api = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={**settings, "messages": messages})
        assert first == api.json()["choices"][0]["message"]["content"] and len(first) > 10
        messages += [{"role": "assistant", "content": first}, {"role": "user", "content": "Speak again"}]
        second = send("Speak again")
        api = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={**settings, "messages": messages})
        assert second == api.json()["choices"][0]["message"]["content"]
        shown = [(e.get_attribute("class"), e.find_element(By.CLASS_NAME, "role").text)
                 for e in browser.find_elements(By.CSS_SELECTOR, "#chat_log .msg")]
        assert shown == [("msg user", "user"), ("msg assistant", "assistant")] * 2
        assert not browser.find_element(By.ID, "output").is_displayed()
