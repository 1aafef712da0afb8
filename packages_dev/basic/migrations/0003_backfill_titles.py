"""Give every untitled note a title: the first line of its body, or 'Untitled'.

Idempotent: it only touches notes whose title is blank, and leaves none blank.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def up(conn: AsyncConnection) -> None:
    await conn.execute(
        text(
            """
            UPDATE ydtb_notes
            SET title = coalesce(nullif(left(btrim(split_part(body, E'\\n', 1)), 200), ''),
                                 'Untitled')
            WHERE btrim(title) = ''
            """
        )
    )
