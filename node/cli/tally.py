"""The counts of one `murmur load` run and its final report.

Pure: fed the per-line answers of POST /tweets/bulk (or local rejections) and the elapsed time, never does I/O.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

REASONS_SHOWN = 5


class LoadTally:
    def __init__(self) -> None:
        self.new = 0  # 201: created
        self.present = 0  # 200: an identical tweet with that id was already there
        self.rejected = 0
        self.user_defaulted = 0
        self.responses = 0  # HTTP answers received (0 at the end: nothing could be sent)
        self.reasons: Counter[str] = Counter()
        self.examples: dict[str, str] = {}  # reason -> "where: message" of its first occurrence

    @property
    def loaded(self) -> int:
        return self.new + self.present

    @property
    def seen(self) -> int:
        return self.loaded + self.rejected

    def on_reject(self, code: str, field: str | None, message: str, where: str) -> None:
        self.rejected += 1
        reason = f"{code} ({field})" if field else code
        self.reasons[reason] += 1
        self.examples.setdefault(reason, f"{where}: {message}")

    def on_item(self, item: dict[str, Any], where: str) -> None:
        """One entry of a bulk answer's `items`."""
        status = item.get("status")
        if status == 201:
            self.new += 1
        elif status == 200:
            self.present += 1
        else:
            err = item.get("error")
            if not isinstance(err, dict):
                err = {}
            code = str(err.get("code") or f"http_{status}")
            self.on_reject(code, err.get("field"), str(err.get("message") or ""), where)

    def report(self, elapsed_s: float) -> list[str]:
        rate = self.seen / elapsed_s if elapsed_s > 0 else 0.0
        lines = [
            f"loaded {self.loaded:,} (new {self.new:,}, already present {self.present:,}), rejected {self.rejected:,}"
            + (f", user defaulted to 'unknown' {self.user_defaulted:,}" if self.user_defaulted else ""),
            f"in {elapsed_s:.1f} s ({rate:,.0f} tweets/s)",
        ]
        if self.reasons:
            lines.append("top rejection reasons:")
            for reason, n in self.reasons.most_common(REASONS_SHOWN):
                lines.append(f"  {n:>9,}  {reason}  e.g. {self.examples[reason]}")
            rest = len(self.reasons) - REASONS_SHOWN
            if rest > 0:
                lines.append(f"  ... and {rest} other reasons")
        return lines
