"""The viewer page driven as a person would, in headless Debian Chromium (selenium): it loads, shows
one slider per domain, a moved slider changes the image to exactly what /api/render gives, a new
seed re-renders both images, and an uploaded PNG is projected (progress shown) and then shown."""

import json

import numpy as np
import pytest

from conftest import require_fixtures
from viewer_testing import http_get, make_chromium, png_file_bytes, png_pixels, running_viewer

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("one_thread")]

EXPANDED_PKL = ('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')
WAIT_S = 60

# uint8 RGB pixels [H * W * 3] of a rendered <img> (its natural size), read back through a canvas.
READ_PIXELS_JS = """
const img = document.getElementById(arguments[0]);
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const ctx = canvas.getContext('2d');
ctx.drawImage(img, 0, 0);
const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
return Array.from(rgba.filter((_, i) => i % 4 !== 3));
"""


@pytest.fixture(scope='module')
def server():
    with running_viewer(require_fixtures(*EXPANDED_PKL)) as server:
        yield server


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    driver = make_chromium(tmp_path_factory.mktemp('chromium-profile'))
    yield driver
    driver.quit()


@pytest.fixture
def page(server, browser):
    """The page loaded afresh, with both images rendered once."""
    browser.get(server.url)
    wait_for(browser, lambda d: d.execute_script(
        "return document.body.dataset.ready === 'true' && "
        "document.getElementById('current-image').dataset.renders === '1' && "
        "document.getElementById('base-image').dataset.renders === '1'"))
    return browser


def wait_for(driver, condition, timeout_s: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(condition)


def image_pixels(driver, element_id: str, resolution: int = 32) -> np.ndarray:
    return np.array(driver.execute_script(READ_PIXELS_JS, element_id), dtype=np.uint8).reshape(resolution, resolution, 3)


def api_pixels(server, query: str) -> np.ndarray:
    status, _, body = http_get(f'{server.url}api/render?{query}')
    assert status == 200, body
    return png_pixels(body)

#----------------------------------------------------------------------------


def test_slider_moves_the_image(server, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    domains = json.loads(http_get(server.url + 'api/domains')[2])['domains']
    sliders = page.find_elements(By.CSS_SELECTOR, 'input.domain-slider')
    assert [(s.get_attribute('data-name'), int(s.get_attribute('data-dimension'))) for s in sliders] == \
        [(d['name'], d['dimension']) for d in domains]
    assert [s.get_attribute('max') for s in sliders] == ['1.5'] * len(domains)

    base = image_pixels(page, 'base-image')
    np.testing.assert_array_equal(base, api_pixels(server, 'seed=0&trunc=1'))
    np.testing.assert_array_equal(image_pixels(page, 'current-image'), base)

    slider = sliders[1]
    slider.send_keys(Keys.END)                                            # strength 1.5: the slider's end
    wait_for(page, lambda d: 'domains=' in (d.find_element(By.ID, 'current-image').get_attribute('data-query') or ''))
    query = page.find_element(By.ID, 'current-image').get_attribute('data-query')
    assert query.endswith('domains=' + f"{domains[1]['name']}:1.5".replace(' ', '%20').replace(':', '%3A'))
    moved = image_pixels(page, 'current-image')
    np.testing.assert_array_equal(moved, api_pixels(server, f"seed=0&trunc=1&domains=dim{domains[1]['dimension']:03d}:1.5"))
    assert np.abs(moved.astype(int) - base.astype(int)).max() > 8, 'moving the slider did not change the image'
    np.testing.assert_array_equal(image_pixels(page, 'base-image'), base)   # the base image stays
    command = page.find_element(By.ID, 'command').text
    assert command.startswith('python traverse.py ') and f"--compose {domains[1]['dimension']}=30" in command
    assert page.find_element(By.ID, 'save').get_attribute('href').startswith('blob:')


def test_new_seed_renders_both_images(server, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    seed_box = page.find_element(By.ID, 'seed')
    seed_box.clear()
    seed_box.send_keys('42', Keys.ENTER)
    wait_for(page, lambda d: d.find_element(By.ID, 'base-image').get_attribute('data-query') == 'seed=42&trunc=1')
    wait_for(page, lambda d: d.find_element(By.ID, 'current-image').get_attribute('data-query') == 'seed=42&trunc=1')
    np.testing.assert_array_equal(image_pixels(page, 'base-image'), api_pixels(server, 'seed=42&trunc=1'))
    assert '--seeds 42 ' in page.find_element(By.ID, 'command').text


def test_upload_projects_the_photo(server, page, tmp_path):
    from selenium.webdriver.common.by import By
    photo = tmp_path / 'portrait.png'
    photo.write_bytes(png_file_bytes((np.random.RandomState(1).rand(32, 32, 3) * 255).astype(np.uint8)))
    page.find_element(By.ID, 'photo-file').send_keys(str(photo))
    steps = page.find_element(By.ID, 'steps')
    steps.clear()
    steps.send_keys('4')
    page.find_element(By.ID, 'project').click()
    status = page.find_element(By.ID, 'project-status')
    wait_for(page, lambda d: status.get_attribute('data-state') in ('done', 'error'))
    assert status.get_attribute('data-state') == 'done', status.text
    assert status.text.startswith('done: step 4 / 4')
    assert page.find_element(By.ID, 'progress').get_attribute('value') == '4'
    wait_for(page, lambda d: (d.find_element(By.ID, 'base-image').get_attribute('data-query') or '').startswith('photo='))
    photo_id = page.find_element(By.ID, 'base-image').get_attribute('data-query').split('=', 1)[1]
    np.testing.assert_array_equal(image_pixels(page, 'base-image'), api_pixels(server, f'photo={photo_id}'))
    wait_for(page, lambda d: d.find_element(By.ID, 'command').text.startswith('python projector.py '))
    assert '--target portrait.png' in page.find_element(By.ID, 'command').text
    assert not page.find_element(By.ID, 'use-seeds').get_attribute('hidden')


def test_page_reports_a_bad_upload(page, tmp_path):
    from selenium.webdriver.common.by import By
    fake = tmp_path / 'weights.png'
    fake.write_bytes(b'\x80\x04\x95 a pickle, not a picture')
    page.find_element(By.ID, 'photo-file').send_keys(str(fake))
    page.find_element(By.ID, 'project').click()
    status = page.find_element(By.ID, 'project-status')
    wait_for(page, lambda d: status.get_attribute('data-state') == 'error')
    assert 'pickle' in status.text


def test_plain_generator_page_has_no_sliders(browser):
    from selenium.webdriver.common.by import By
    with running_viewer(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl')) as plain:
        browser.get(plain.url)
        wait_for(browser, lambda d: d.find_element(By.ID, 'current-image').get_attribute('data-renders') == '1')
        assert browser.find_elements(By.CSS_SELECTOR, 'input.domain-slider') == []
        assert 'plain generator' in browser.find_element(By.ID, 'domains-box').text
        np.testing.assert_array_equal(image_pixels(browser, 'current-image'), api_pixels(plain, 'seed=0&trunc=1'))
        assert browser.find_element(By.ID, 'command').text.startswith('python generate.py ')
