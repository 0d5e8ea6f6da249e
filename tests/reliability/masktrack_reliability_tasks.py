"""Tasks for the local engine that report where they ran (importable by spawned workers via sys.path)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from masktrack.batch.engines import Task
from masktrack.batch.unit import UnitResult


@dataclass(frozen=True)
class WhereTask(Task):
    """Sleeps a little, then reports the worker's pid and CUDA_VISIBLE_DEVICES."""

    def run(self) -> UnitResult:
        time.sleep(0.3)
        return UnitResult(
            id=self.unit.id,
            status="computed",
            worker=f"{os.getpid()}:{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}",
        )
