"""The last words of ``scripts/test.sh``: how many tests ran, how many were skipped, and why.

    python scripts/test_summary.py LABEL=report.xml [LABEL=report.xml ...]

Reads pytest's JUnit XML reports (one per run) and prints one line per run, then a
last line for all of them together, e.g.::

    tests: 1290 passed, 0 failed, 2 skipped (1290 ran); skipped: 1 x set AXME_UPDATE_DOCS_SCREENSHOT=1 ...

A skip is never silent: every reason is counted and named.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    xfailed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped
        self.xfailed += other.xfailed
        self.reasons.update(other.reasons)

    def line(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped ({self.passed + self.failed} ran"
        text += f", {self.xfailed} expected failures)" if self.xfailed else ")"
        if not self.reasons:
            return text + "; nothing skipped"
        why = "; ".join(f"{count} x {reason}" for reason, count in self.reasons.most_common())
        return f"{text}; skipped: {why}"


def read(path: str) -> Tally | None:
    """The outcomes in one report; ``None`` when the run wrote none (it crashed or was interrupted)."""
    tally = Tally()
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    for case in root.iter("testcase"):
        outcome = {child.tag: child for child in case}
        if "failure" in outcome or "error" in outcome:
            tally.failed += 1
        elif "skipped" in outcome:
            node = outcome["skipped"]
            if node.get("type") == "pytest.xfail":
                tally.xfailed += 1
                continue
            tally.skipped += 1
            reason = (node.get("message") or "no reason given").strip().removeprefix("Skipped: ")
            tally.reasons[" ".join(reason.split())[:160]] += 1
        else:
            tally.passed += 1
    return tally


def main(argv: list[str]) -> int:
    total = Tally()
    for arg in argv:
        label, _, path = arg.rpartition("=")
        tally = read(path)
        if tally is None:
            print(f"{label or path}: no report: this run did not finish (see its output above)")
            continue
        print(f"{label or path}: {tally.line()}")
        total.add(tally)
    print(f"tests: {total.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
