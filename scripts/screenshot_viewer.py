"""Screenshot of the viewer page (the README's picture), taken with headless Debian Chromium.

    python -m scripts.screenshot_viewer --network EXPANDED.pkl --out docs/viewer_demo.png \\
        [--seed 7] [--domains NAME:STRENGTH,...]

Serves the network on a free localhost port in this process, loads the page in headless
Chromium (selenium; Debian `chromium` + `chromium-driver`), sets the seed and the domain sliders
as a person would (typing, arrow keys), waits for both images, and saves a PNG of the window.
"""

import shutil
import tempfile
import threading

import click

import dnnlib
from viewer_app.model import load_viewer_model
from viewer_app.server import ViewerServer

CHROMIUM_FLAGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--hide-scrollbars', '--window-size=1240,1000')


def open_chromium(profile_dir: str):
    """Headless system Chromium through its chromedriver; `UserError` when either is missing."""
    chromium, chromedriver = shutil.which('chromium'), shutil.which('chromedriver')
    if chromium is None or chromedriver is None:
        raise dnnlib.util.UserError('chromium and chromedriver are needed: apt-get install -y chromium chromium-driver')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + (f'--user-data-dir={profile_dir}',):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))


def set_page(driver, seed: int, strengths: dict) -> None:
    """Type the seed and move each named slider with arrow keys (step 0.01) to its strength."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    wait = WebDriverWait(driver, 120, poll_frequency=0.1)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    box = driver.find_element(By.ID, 'seed')
    box.clear()
    box.send_keys(str(seed), Keys.ENTER)
    for slider in driver.find_elements(By.CSS_SELECTOR, 'input.domain-slider'):
        name = slider.get_attribute('data-name')
        if name in strengths:
            slider.send_keys(*[Keys.ARROW_RIGHT] * int(round(strengths[name] * 100)))
    wait.until(lambda d: d.execute_script(
        "const img = document.getElementById('current-image');"
        "return img.dataset.query === `seed=${arguments[0]}&trunc=1` + "
        "(() => { const p = []; for (const s of document.querySelectorAll('input.domain-slider'))"
        "  if (Number(s.value) !== 0) p.push(`${s.dataset.key}:${Number(s.value)}`);"
        "  return p.length ? `&domains=${encodeURIComponent(p.join(','))}` : ''; })();", seed))


@click.command()
@click.option('--network', 'network_pkl', required=True, help='Expanded (or plain) snapshot.')
@click.option('--out', 'out_png', required=True, help='Where to write the screenshot (PNG).')
@click.option('--seed', type=int, default=7, show_default=True, help='Seed shown.')
@click.option('--domains', default='', metavar='NAME:STRENGTH,...', help='Slider positions (default: all at 0).')
def main(network_pkl, out_png, seed, domains):
    """Screenshot the viewer page on a network."""
    strengths = {}
    for part in filter(None, domains.split(',')):
        name, _, value = part.rpartition(':')
        strengths[name] = float(value)
    model = load_viewer_model(network_pkl)
    unknown = sorted(set(strengths) - {d['name'] for d in model.domains()})
    if unknown:
        raise dnnlib.util.UserError(f'--domains: {unknown[0]!r} is not a domain; valid: '
                                    f"{', '.join(d['name'] for d in model.domains())}")
    server = ViewerServer(model, '127.0.0.1', 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as profile:
        driver = open_chromium(profile)
        try:
            driver.get(server.url)
            set_page(driver, seed, strengths)
            with dnnlib.util.atomic_write_path(out_png) as tmp:
                with open(tmp, 'wb') as f:
                    f.write(driver.get_screenshot_as_png())
        finally:
            driver.quit()
            server.shutdown()
    print(f'Wrote {out_png}')


if __name__ == '__main__':
    dnnlib.util.run_cli(main)
