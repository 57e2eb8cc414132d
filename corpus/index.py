"""The SQLite index of a campaign (``index.sqlite``): one row per entry, plus a ``meta`` table.

The ``entries`` table is derived from :class:`~neurofuzz.corpus.entry.Entry` (:data:`COLUMNS`:
names and SQL types, in order), with ``UNIQUE (kind, oracle, sha)`` for deduplication. Ids come
from ``INTEGER PRIMARY KEY AUTOINCREMENT``: SQLite never reissues a committed id. An index made
before a column existed gets it added by the first writer (new columns are nullable or have a
default); a reader sees it as ``NULL``.

The index runs in WAL mode, ``synchronous=FULL`` (every commit fsyncs the WAL) or ``NORMAL``
(``fsync=False``: a commit survives a killed process, not a power loss). A writer's transaction
is ``BEGIN IMMEDIATE`` ... ``COMMIT`` (:meth:`EntryIndex.begin` / :meth:`commit`); the store
holds one at a time (its ``batch()``), meta rows written inside it commit with its entries.

Example::

    >>> import tempfile, pathlib, shutil
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> EntryIndex.initialise(d / "index.sqlite")
    >>> ix = EntryIndex.connect(d, readonly=False)
    >>> ix.begin(); ix.set_meta("k", "1"); ix.next_id(); ix.commit()
    1
    >>> ix.get_meta("k"), ix.count()
    ('1', 0)
    >>> ix.close(); shutil.rmtree(d)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from neurofuzz.corpus.entry import COLUMNS
from neurofuzz.ground.errors import UserError

INDEX = "index.sqlite"
FORMAT_VERSION = 1
NAMES = tuple(c.name for c in COLUMNS)
SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "CREATE TABLE entries (\n    "
    + ",\n    ".join(f"{c.name} {c.metadata['sql']}" for c in COLUMNS)
    + ",\n    UNIQUE (kind, oracle, sha)\n);\n"
    "CREATE INDEX entries_root ON entries(root);\n"
)


def corrupt(path: Path, what: str) -> UserError:
    return UserError(f"campaign at {path} is corrupted: {what}; restore it from a backup or start anew with --force")


def _where(**filters: Any) -> tuple[str, tuple[Any, ...]]:
    conds = [f"{k} = ?" for k, v in filters.items() if v is not None]
    args = tuple(v for v in filters.values() if v is not None)
    return ("WHERE " + " AND ".join(conds)) if conds else "", args


class EntryIndex:
    """An open connection to a campaign's ``index.sqlite`` (not thread-safe: the store locks)."""

    def __init__(self, conn: sqlite3.Connection, campaign: Path, present: set[str], writer: bool = False) -> None:
        self.conn = conn
        self._writer = writer
        self.campaign = campaign
        self._select = ", ".join(n if n in present else f"NULL AS {n}" for n in NAMES)

    # ------------------------------------------------------------------ create / connect
    @staticmethod
    def initialise(db: Path, id_base: int = 0) -> None:
        """Create a fresh index file with the schema and the format version; its first entry id
        is ``id_base + 1`` (a worker's shard numbers its entries from its own base)."""
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(
                "BEGIN;" + SCHEMA + f"INSERT INTO meta VALUES ('format_version', '{FORMAT_VERSION}');"
                + (f"INSERT INTO sqlite_sequence (name, seq) VALUES ('entries', {int(id_base)});"
                   "INSERT INTO meta VALUES ('shard', '1');" if id_base else "")
                + "COMMIT;"
            )
            conn.execute("PRAGMA journal_mode=DELETE")  # at rest: one file (see close)
        finally:
            conn.close()

    @classmethod
    def connect(cls, campaign: Path, *, readonly: bool, fsync: bool = True) -> "EntryIndex":
        """Open and check ``campaign/index.sqlite``; ``UserError`` naming the file if it is unsound."""
        db = campaign / INDEX
        try:
            if readonly:
                conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            else:
                conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise corrupt(campaign, f"{INDEX} cannot be opened ({e})") from None
        try:
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            check = conn.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise corrupt(campaign, f"{INDEX} failed its integrity check ({check[0][0]})")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "entries"} <= tables:
                raise corrupt(campaign, f"{INDEX} has no neurofuzz index tables")
            row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            if row is None or not str(row[0]).isdigit():
                raise corrupt(campaign, f"{INDEX} has no format version")
            if int(row[0]) > FORMAT_VERSION:
                raise UserError(f"campaign index {db} is format {row[0]}, newer than this neurofuzz supports; "
                                "upgrade neurofuzz")
            # A worker's shard has parents in other shards: the parent column cannot be a checked key there.
            shard = conn.execute("SELECT value FROM meta WHERE key = 'shard'").fetchone() is not None
            conn.execute(f"PRAGMA foreign_keys={'OFF' if shard else 'ON'}")
            present = {r[1] for r in conn.execute("PRAGMA table_info(entries)")}
            if not readonly and not set(NAMES) <= present:
                for c in COLUMNS:  # columns added since the index was made
                    if c.name not in present:
                        conn.execute(f"ALTER TABLE entries ADD COLUMN {c.name} {c.metadata['sql']}")
                present = set(NAMES)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise corrupt(campaign, f"{INDEX} is not a readable SQLite database ({e})") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, campaign, present, writer=not readonly)

    def close(self) -> None:
        """Close; a writer first leaves WAL mode, so a campaign at rest is the single file
        ``index.sqlite`` and read-only opens (status, export, replay) create no file in it.
        (While a writer runs, or after a kill, the ``-wal``/``-shm`` files exist and readers use
        them.) If a reader holds the database at that moment, the WAL files simply stay."""
        try:
            if not self.conn.execute("PRAGMA query_only").fetchone()[0] and self._writer:
                self.conn.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error:
            pass
        self.conn.close()

    # ------------------------------------------------------------------ transactions
    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ entries
    def next_id(self) -> int:
        """The id the next insert gets (call inside the write transaction)."""
        (seq,) = self.conn.execute(
            "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0), "
            "COALESCE((SELECT max(id) FROM entries), 0))"
        ).fetchone()
        return int(seq) + 1

    def insert(self, values: Mapping[str, Any]) -> None:
        self.conn.execute(
            f"INSERT INTO entries ({', '.join(NAMES)}) VALUES ({', '.join('?' * len(NAMES))})",
            tuple(values[n] for n in NAMES),
        )

    def rows(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows (dicts of stored values) matching ``column=value`` filters (``None``: any), by id."""
        where, args = _where(**filters)
        cur = self.conn.execute(f"SELECT {self._select} FROM entries {where} ORDER BY id", args)
        return [dict(zip(NAMES, r)) for r in cur]

    def rows_between(self, lo: int, hi: int) -> list[dict[str, Any]]:
        """Rows with ``lo < id <= hi``, by id (what a worker imports from a peer's shard)."""
        cur = self.conn.execute(f"SELECT {self._select} FROM entries WHERE id > ? AND id <= ? ORDER BY id",
                                (int(lo), int(hi)))
        return [dict(zip(NAMES, r)) for r in cur]

    def lineage(self, id: int) -> tuple[int, int] | None:
        """``(root, depth)`` of entry ``id`` (two columns, no row decoding), or None."""
        r = self.conn.execute("SELECT root, depth FROM entries WHERE id = ?", (int(id),)).fetchone()
        return None if r is None else (int(r[0]), int(r[1]))

    def count(self, **filters: Any) -> int:
        where, args = _where(**filters)
        return int(self.conn.execute(f"SELECT count(*) FROM entries {where}", args).fetchone()[0])

    def oracles(self) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT oracle FROM entries WHERE kind = 'failure' ORDER BY oracle")
        return [r[0] for r in rows]

    def paths(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT path FROM entries")}

    def descendants(self, ids: Iterable[int]) -> set[int]:
        """``ids`` and every entry derived from them (children, grandchildren, ...)."""
        out = set(ids)
        frontier = list(out)
        while frontier:
            marks = ",".join("?" * len(frontier))
            kids = [r[0] for r in self.conn.execute(f"SELECT id FROM entries WHERE parent IN ({marks})", frontier)]
            frontier = [k for k in kids if k not in out]
            out.update(frontier)
        return out

    def delete(self, ids: Iterable[int]) -> None:
        ids = sorted(ids, reverse=True)  # children (larger ids) before their parents
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            self.conn.execute(f"DELETE FROM entries WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
