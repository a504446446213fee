"""Content-addressed store for model outputs and retrieval results.

One SQLite file; each record is JSON metadata plus named NumPy arrays
serialised with ``np.save`` and read back with ``allow_pickle=False``.
Writes happen one batch per transaction, so a run killed at any instant
keeps every batch it finished and nothing half-written. Several processes may
share one cache (``arbench run --ray``): WAL mode lets readers run beside the
one writer, and the 60 s busy timeout makes a writer wait for another's
transaction instead of failing (opening a new cache is retried for as long).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.models.outputs import canonical_json

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 60.0


def content_key(kind: str, parts: Mapping) -> str:
    """sha256 over the kind, the schema version and every determining input."""
    payload = canonical_json({"kind": kind, "schema": SCHEMA_VERSION, "parts": parts})
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class Record:
    """A cached value: JSON-able ``meta`` and named float/int ``arrays``."""

    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _pack_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    names = list(arrays)
    header = json.dumps(names).encode()
    buf.write(len(header).to_bytes(4, "little"))
    buf.write(header)
    for name in names:
        arr = np.asarray(arrays[name])
        if arr.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; refusing to pickle")
        np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


_NPY_V1 = b"\x93NUMPY\x01\x00"
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=][a-zA-Z]\d*)', 'fortran_order': False, "
                         r"'shape': \(([\d, ]*)\), \}\s*$")


def _unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`_pack_arrays`.

    The common case (a C-order, non-object ``.npy`` v1 array) is read with
    ``np.frombuffer`` from a parsed header: ``np.load`` costs ~50 µs per array,
    which made rescoring thousands of cached questions take seconds. Anything
    else goes through ``np.load(allow_pickle=False)``.
    """
    size = int.from_bytes(blob[:4], "little")
    names = json.loads(blob[4:4 + size])
    pos = 4 + size
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        header = None
        if blob[pos:pos + 8] == _NPY_V1:
            length = int.from_bytes(blob[pos + 8:pos + 10], "little")
            header = _NPY_HEADER.match(blob[pos + 10:pos + 10 + length].decode("latin1"))
        if header is not None and "O" not in header[1]:
            dtype = np.dtype(header[1])
            shape = tuple(int(x) for x in header[2].split(",") if x.strip())
            start = pos + 10 + length
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.frombuffer(blob, dtype, count, start).reshape(shape).copy()
            pos = start + count * dtype.itemsize
        else:
            buf = io.BytesIO(blob)
            buf.seek(pos)
            arrays[name] = np.load(buf, allow_pickle=False)
            pos = buf.tell()
    return arrays


def _open_database(path: Path) -> sqlite3.Connection:
    """Connect, switch to WAL and create the table, retrying while another process does the same.

    While another connection holds a write lock on a file still in rollback mode (several
    processes opening a new cache at once), SQLite answers the switch to WAL with "database is
    locked" straight away instead of waiting out the busy timeout, so the opening is retried
    with backoff for as long as that timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        try:
            # WAL is a property of the file: once one process has switched it, the others
            # read the mode and take no lock for the switch.
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                "meta TEXT NOT NULL, arrays BLOB NOT NULL)")
            db.commit()
            return db
        except sqlite3.OperationalError as err:
            db.close()
            busy = "locked" in str(err) or "busy" in str(err)
            if not busy or time.monotonic() + pause > deadline:
                raise sqlite3.OperationalError(f"{path}: cannot open the cache: {err}") from err
            time.sleep(pause)
            pause = min(2 * pause, 0.5)


class Cache:
    """Persistent key → :class:`Record` map with hit/miss counters.

    Parameters
    ----------
    directory : path
        Created if missing; holds ``arbench.sqlite``.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "arbench.sqlite"
        self._db = _open_database(self.path)
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """Records present for ``keys`` (absent keys are simply missing)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Record] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, meta, blob in self._db.execute(
                    f"SELECT key, meta, arrays FROM records WHERE key IN ({marks})", chunk):
                found[key] = Record(json.loads(meta), _unpack_arrays(blob))
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def contains(self, keys: Iterable[str]) -> set[str]:
        """The ``keys`` that have a record (nothing is read back; counters unchanged)."""
        keys = list(dict.fromkeys(keys))
        present: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            present.update(key for (key,) in self._db.execute(
                f"SELECT key FROM records WHERE key IN ({marks})", chunk))
        return present

    def put_many(self, kind: str, records: Mapping[str, Record]) -> None:
        """Insert all ``records`` atomically (one transaction)."""
        rows = [(key, kind, canonical_json(r.meta), _pack_arrays(r.arrays))
                for key, r in records.items()]
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO records (key, kind, meta, arrays) VALUES (?,?,?,?)", rows)

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM records WHERE kind=?",
                                (kind,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()
