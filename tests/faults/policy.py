"""The policy file the fault tests run under."""

from __future__ import annotations

from pathlib import Path

#: Writers ann..fay register, stage, archive and move ``candidate``; Production and
#: ``champion`` are gated (see the file).
FAULTS_POLICY = Path(__file__).parent / "policies" / "faults.yaml"
