"""Orders for result_type=popular and mixed (pure). `recent` needs none: the index yields newest first.

popular: engagement (likes + 2 x retweets) among a pool of the newest matches, ties newest first.
mixed: the popular tweets of the pool that have any engagement (at most a quarter of the page) first, then the
newest others. Paging moves window by window: next_max_id is below the whole pool, when the pool was full.
"""

from __future__ import annotations

from node.model import Tweet


def engagement(t: Tweet) -> int:
    return t.likes + 2 * t.retweets


def order_results(pool: list[Tweet], result_type: str, count: int, pool_full: bool) -> tuple[list[Tweet], int | None]:
    """-> (page, next_max_id). `pool` is newest first."""
    ranked = sorted(pool, key=lambda t: (-engagement(t), -t.id))
    if result_type == "popular":
        page = ranked[:count]
    else:
        top = [t for t in ranked if engagement(t) > 0][: max(1, count // 4)]
        seen = {t.id for t in top}
        page = top + [t for t in pool if t.id not in seen][: count - len(top)]
    lowest = min((t.id for t in pool), default=0)
    return page, (lowest - 1 if pool_full and lowest > 1 else None)
