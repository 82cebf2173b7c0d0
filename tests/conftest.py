"""What the whole suite shares: Hypothesis's profiles, and the browser of the console's tests.
`./dev test --fast` loads `fast` (`--hypothesis-profile=fast`): a property test tries a tenth of the
examples it tries otherwise, since each test asks for a multiple of the profile's `max_examples`
(100 by default, 10 when fast)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("fast", max_examples=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session's browser tests (`tests.browser`); fails, not skips,
    when chromium or chromium-driver is missing, saying how to install them."""
    from tests.browser import start_browser

    driver = start_browser()
    yield driver
    driver.quit()
