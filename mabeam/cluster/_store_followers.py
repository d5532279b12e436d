"""Jobs that follow a leader with the same content hash (the result cache), settled
when their leader ends (private to the job store).

A follower never runs: it takes its leader's result or failure, or, when the leader is
cancelled, the first follower stands alone and the others follow it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._store_types import error_text

if TYPE_CHECKING:
    from ._store_tx import Tx

__all__ = ("settle_followers",)


def settle_followers(
    tx: Tx, leader: int, how: str, *, result: bytes | None = None, error: str = ""
) -> tuple[str, ...]:
    """Finish the jobs following ``leader`` like it, or (cancelled) promote the first."""
    rows = tx.conn.execute(
        "SELECT seq, attempt FROM jobs WHERE follows = ? AND state = 'queued' ORDER BY seq",
        (leader,),
    ).fetchall()
    if not rows:
        return ()
    conn, lead = tx.conn, tx.jid(leader)
    if how == "succeeded":
        for seq, attempt in rows:
            conn.execute(
                "UPDATE jobs SET state = 'succeeded', result = ?, updated = ?, ended = ?"
                " WHERE seq = ?",
                (result, tx.now, tx.now, seq),
            )
            tx.event(seq, "succeeded", attempt, via=lead)
        tx.move("queued", "succeeded", len(rows))
    elif how == "failed":
        text = error_text(f"the job it follows ({lead}) failed: {error}")
        for seq, attempt in rows:
            conn.execute(
                "UPDATE jobs SET state = 'failed', error = ?, updated = ?, ended = ? WHERE seq = ?",
                (text, tx.now, tx.now, seq),
            )
            tx.event(seq, "failed", attempt, error=text)
        tx.move("queued", "failed", len(rows))
    else:  # cancelled: the first follower stands alone, the others follow it
        first, first_attempt = rows[0]
        conn.execute("UPDATE jobs SET follows = NULL, updated = ? WHERE seq = ?", (tx.now, first))
        tx.event(first, "promoted", first_attempt, was_following=lead)
        for seq, attempt in rows[1:]:
            conn.execute(
                "UPDATE jobs SET follows = ?, updated = ? WHERE seq = ?", (first, tx.now, seq)
            )
            tx.event(seq, "joined", attempt, follows=tx.jid(first))
        return (tx.jid(first),)
    return tuple(tx.jid(seq) for seq, _ in rows)
