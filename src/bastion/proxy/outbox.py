"""The proxy's durable outbox: an append-only log of encoded spans, fsync'd in group commits.

Layout of the outbox directory (one per proxy replica)::

    instance_id        this proxy's chain instance id, created once (stable across restarts)
    000000000001.seg   segments of framed records, written in order, rolled at segment_bytes
    committed          "<segment> <offset>": everything before it is acknowledged by the collector
    chain.json         the hash chain's head when the last segment was rolled
    audit_signing_key.pem  the instance's Ed25519 key that signs the chain (mode 0600; audit_keys.py)

A frame is ``magic(2) length(4) crc32(4) seq(8) hash(32) payload``; ``seq``/``hash`` are the
audit chain position of the record (0 and zeros for spans that are not decision records), so
recovery finds the chain head without decoding payloads. A torn tail (a crash mid-write) fails
its length or CRC check and is cut off at start-up; nothing after it was ever acknowledged as
durable, because :meth:`Outbox.wait_durable` returns only after the fsync that covers a record.

One writer thread does the writes: every record appended while an fsync runs joins the next one
(group commit). If the disk fails, the outbox logs loudly, keeps the records in memory (bounded)
and retries on a fresh segment; traffic is never blocked beyond ``wait_durable``'s timeout.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import struct
import threading
import uuid
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, TextIO

log = logging.getLogger(__name__)

MAGIC: Final = b"BX"
_HEADER: Final = struct.Struct(">2sII")  # magic, length of seq+hash+payload, crc32 of them
_CHAIN: Final = struct.Struct(">Q32s")
MAX_RECORD_BYTES: Final = 64 * 1024 * 1024
_SUFFIX: Final = ".seg"


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int

    def __str__(self) -> str:
        return f"{self.segment} {self.offset}"


@dataclass(frozen=True)
class Record:
    seq: int
    hash: str  # hex, "" when seq is 0
    payload: bytes
    end: Position  # where the next record starts


def frame(payload: bytes, seq: int = 0, hash_hex: str = "") -> bytes:
    body = _CHAIN.pack(seq, bytes.fromhex(hash_hex) if hash_hex else b"\0" * 32) + payload
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def read_frames(f: BinaryIO, segment: int, offset: int, limit: int | None = None) -> Iterator[Record]:
    """Valid frames from ``offset``; stops at the end, at ``limit`` bytes, or at a torn frame."""
    f.seek(offset)
    while limit is None or offset < limit:
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        magic, length, crc = _HEADER.unpack(header)
        if magic != MAGIC or length < _CHAIN.size or length > MAX_RECORD_BYTES:
            return
        body = f.read(length)
        if len(body) < length or zlib.crc32(body) != crc:
            return
        seq, raw_hash = _CHAIN.unpack_from(body)
        offset += _HEADER.size + length
        yield Record(seq, raw_hash.hex() if seq else "", body[_CHAIN.size :], Position(segment, offset))


class Outbox:
    def __init__(self, directory: Path, *, segment_bytes: int = 8 * 1024 * 1024, max_pending: int = 100_000) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_pending = max_pending
        self.instance_id = ""
        self.chain_seq = 0
        self.chain_hash = ""
        self.commits = 0
        """How many group commits (fsyncs) ran: lets tests see the grouping."""
        self.failures = 0
        self.healthy = True
        """False while the disk refuses writes: records wait in memory, responses do not wait."""
        self._cond = threading.Condition()
        self._pending: deque[bytes] = deque()
        self._durable_chain = (0, "")  # the newest chain position that is on disk
        self._appended = 0  # tickets handed out
        self._durable = 0  # tickets covered by an fsync (or given up on)
        self._durable_end = Position(1, 0)
        self._committed = Position(1, 0)
        self._file: BinaryIO | None = None
        self._lock_file: TextIO | None = None
        self._segment = 1
        self._closing = False
        self._thread: threading.Thread | None = None
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []

    # -- start-up and recovery -------------------------------------------------------------

    def open(self) -> Outbox:
        """Lock the directory (one proxy per outbox), recover, and start the writer."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.directory / "lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RuntimeError(
                f"Outbox {self.directory} is in use by another proxy: give each replica its own."
            ) from None
        self.instance_id = self._load_instance_id()
        self._committed = self._load_committed()
        self._load_chain_json()
        segments = self.segments()
        if segments:
            for number in segments:
                self._recover(number, last=number == segments[-1])
            self._segment = segments[-1]
        else:
            self._segment = max(1, self._committed.segment)
        self._committed = max(self._committed, Position(segments[0], 0)) if segments else self._committed
        path = self._path(self._segment)
        self._durable_chain = (self.chain_seq, self.chain_hash)
        self._file = open(path, "ab")  # noqa: SIM115
        self._durable_end = Position(self._segment, self._file.tell())
        if self._committed > self._durable_end:
            self._committed = self._durable_end
        self._thread = threading.Thread(target=self._run, name="bastion-outbox-writer", daemon=True)
        self._thread.start()
        return self

    def _load_instance_id(self) -> str:
        path = self.directory / "instance_id"
        if path.exists():
            value = path.read_text().strip()
            if value:
                return value
        value = uuid.uuid4().hex
        _write_atomically(path, value + "\n")
        return value

    def _load_committed(self) -> Position:
        try:
            segment, offset = (self.directory / "committed").read_text().split()
            return Position(int(segment), int(offset))
        except (OSError, ValueError):
            return Position(0, 0)

    def _load_chain_json(self) -> None:
        try:
            head = json.loads((self.directory / "chain.json").read_text())
            self.chain_seq, self.chain_hash = int(head["seq"]), str(head["hash"])
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def _recover(self, number: int, *, last: bool) -> None:
        path = self._path(number)
        end = 0
        with open(path, "rb") as f:
            for record in read_frames(f, number, 0):
                end = record.end.offset
                if record.seq > self.chain_seq:
                    self.chain_seq, self.chain_hash = record.seq, record.hash
            size = f.seek(0, os.SEEK_END)
        if size > end:
            if last:
                log.warning("outbox: cutting a torn tail of %d bytes off %s", size - end, path)
                with open(path, "r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            else:
                log.error("outbox: %s is damaged after offset %d; %d bytes skipped", path, end, size - end)

    def segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{_SUFFIX}"

    # -- appending -------------------------------------------------------------------------

    def append(self, payload: bytes, seq: int = 0, hash_hex: str = "") -> int:
        """Queue one record for the next group commit; returns its ticket for :meth:`wait_durable`."""
        data = frame(payload, seq, hash_hex)
        with self._cond:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                log.error("outbox: %d records could not be written; dropping the oldest", self.max_pending)
            self._pending.append(data)
            self._appended += 1
            if seq:
                self.chain_seq, self.chain_hash = seq, hash_hex
            self._cond.notify_all()
            return self._appended

    @property
    def appended(self) -> int:
        return self._appended

    def wait_durable(self, ticket: int | None = None, timeout: float | None = None) -> bool:
        """Block until record ``ticket`` (default: every record so far) is fsync'd."""
        with self._cond:
            target = self._appended if ticket is None else ticket
            return self._cond.wait_for(lambda: self._durable >= target, timeout)

    async def durable(self, ticket: int | None = None, timeout: float = 2.0) -> bool:
        """:meth:`wait_durable` for the event loop: the loop keeps serving while it waits."""
        loop = asyncio.get_running_loop()
        with self._cond:
            target = self._appended if ticket is None else ticket
            if self._durable >= target:
                return True
            future: asyncio.Future[bool] = loop.create_future()
            self._waiters.append((target, loop, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            log.error("outbox: a record was not durable within %.1f s; the response goes out anyway", timeout)
            return False

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closing)
                if not self._pending and self._closing:
                    return
                batch = list(self._pending)
            ok = self._commit(batch)
            with self._cond:
                if ok:
                    for _ in batch:
                        self._pending.popleft()
                    self.healthy = True
                    self._durable = max(self._durable, self._appended - len(self._pending))
                else:
                    # Never hold traffic on a failing disk: waiters are released, the records
                    # stay in memory and are retried.
                    self.healthy = False
                    self._durable = self._appended
                self._release_waiters()
                self._cond.notify_all()
            if not ok:
                with self._cond:
                    self._cond.wait(0.5)  # back off before retrying the disk

    def _commit(self, batch: list[bytes]) -> bool:
        try:
            if self._file is None:
                self._file = open(self._path(self._segment), "ab")  # noqa: SIM115
            self._file.write(b"".join(batch))
            self._file.flush()
            os.fsync(self._file.fileno())
            self.commits += 1
            for data in reversed(batch):
                seq, raw_hash = _CHAIN.unpack_from(data, _HEADER.size)
                if seq:
                    self._durable_chain = (seq, raw_hash.hex())
                    break
            end = Position(self._segment, self._file.tell())
            with self._cond:
                self._durable_end = end
            if end.offset >= self.segment_bytes:
                self._roll()
            return True
        except OSError as e:
            self.failures += 1
            log.error(
                "outbox: writing %d records to %s failed: %s; keeping them in memory", len(batch), self.directory, e
            )
            self._abandon_segment()
            return False

    def _roll(self) -> None:
        seq, hash_hex = self._durable_chain  # not chain_seq: that may count records still pending
        _write_atomically(self.directory / "chain.json", json.dumps({"seq": seq, "hash": hash_hex}))
        assert self._file is not None
        self._file.close()
        self._segment += 1
        self._file = open(self._path(self._segment), "ab")  # noqa: SIM115
        _fsync_dir(self.directory)
        with self._cond:
            self._durable_end = Position(self._segment, 0)

    def _abandon_segment(self) -> None:
        """After a failed write the segment may end in a partial frame: continue in a new one."""
        try:
            if self._file is not None:
                self._file.close()
        except OSError:
            pass
        self._file = None
        self._segment += 1
        with self._cond:
            self._durable_end = Position(self._segment, 0)

    def _release_waiters(self) -> None:
        keep = []
        for target, loop, future in self._waiters:
            if self._durable >= target:
                loop.call_soon_threadsafe(_resolve, future)
            else:
                keep.append((target, loop, future))
        self._waiters = keep

    # -- shipping --------------------------------------------------------------------------

    @property
    def committed(self) -> Position:
        return self._committed

    def pending_bytes(self) -> int:
        """Bytes on disk not yet acknowledged by the collector (the shipper's backlog)."""
        with self._cond:
            committed, end = self._committed, self._durable_end
        if end <= committed:
            return 0
        total = 0
        for number in range(committed.segment, end.segment + 1):
            try:
                size = end.offset if number == end.segment else self._path(number).stat().st_size
            except FileNotFoundError:
                continue
            total += size - (committed.offset if number == committed.segment else 0)
        return max(total, 0)

    def unacknowledged(self) -> bool:
        with self._cond:
            return self._committed < self._durable_end

    def read(self, max_records: int = 2048, max_bytes: int = 4 * 1024 * 1024) -> list[Record]:
        """Durable records after the committed position, oldest first."""
        with self._cond:
            end = self._durable_end
        out: list[Record] = []
        size = 0
        position = self._committed
        while position < end and len(out) < max_records and size < max_bytes:
            limit = end.offset if position.segment == end.segment else None
            try:
                f = open(self._path(position.segment), "rb")  # noqa: SIM115
            except FileNotFoundError:
                position = Position(position.segment + 1, 0)
                continue
            with f:
                for record in read_frames(f, position.segment, position.offset, limit):
                    out.append(record)
                    size += len(record.payload)
                    position = record.end
                    if len(out) >= max_records or size >= max_bytes:
                        return out
            if position.segment < end.segment:
                position = Position(position.segment + 1, 0)  # the rest of this segment is done
                if out:
                    out[-1] = Record(out[-1].seq, out[-1].hash, out[-1].payload, position)
                else:
                    self._committed = position
        return out

    def backlog(self) -> Iterator[Record]:
        """Every durable record the collector has not acknowledged, oldest first."""
        with self._cond:
            end = self._durable_end
        position = self._committed
        while position < end:
            limit = end.offset if position.segment == end.segment else None
            try:
                f = open(self._path(position.segment), "rb")  # noqa: SIM115
            except FileNotFoundError:
                position = Position(position.segment + 1, 0)
                continue
            with f:
                yield from read_frames(f, position.segment, position.offset, limit)
            position = Position(position.segment + 1, 0)

    def acknowledge(self, position: Position) -> None:
        """Everything before ``position`` is stored by the collector: remember it, prune segments."""
        if position <= self._committed:
            return
        _write_atomically(self.directory / "committed", f"{position}\n")
        self._committed = position
        for number in self.segments():
            if number < position.segment:
                try:
                    self._path(number).unlink()
                except OSError as e:
                    log.warning("outbox: could not prune %s: %s", self._path(number), e)

    def close(self) -> None:
        """Write what is pending and stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _resolve(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
