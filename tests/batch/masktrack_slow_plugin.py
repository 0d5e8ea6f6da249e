"""``MASKTRACK_PLUGINS=masktrack_slow_plugin``: the classic backend slowed down per frame.

The SIGKILL test needs units that take long enough to kill the batch between
them; the masks are exactly the classic backend's.
"""

from __future__ import annotations

import time

from masktrack.segment.classic import ClassicBackend
from masktrack.segment.registry import register_backend


class SlowClassicBackend(ClassicBackend):
    name = "slow_classic"

    def __init__(self, delay: float = 0.05, **options):  # type: ignore[no-untyped-def]
        super().__init__(**options)
        self.delay = delay

    def open_session(self, video, objects):  # type: ignore[no-untyped-def]
        session = super().open_session(video, objects)
        inner = session.propagate

        def propagate(start, *, reverse=False):  # type: ignore[no-untyped-def]
            for item in inner(start, reverse=reverse):
                time.sleep(self.delay)
                yield item

        session.propagate = propagate  # type: ignore[method-assign]
        return session


register_backend("slow_classic", SlowClassicBackend)
