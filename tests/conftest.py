"""What the whole suite shares: Hypothesis's profiles. `./dev test --fast` loads `fast`
(`--hypothesis-profile=fast`): a property test tries a tenth of the examples it tries otherwise, since
each test asks for a multiple of the profile's `max_examples` (100 by default, 10 when fast)."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("fast", max_examples=10)
