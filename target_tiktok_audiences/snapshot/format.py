"""The format of one stored set: a header of HEADER_SIZE bytes (one JSON object in ASCII,
padded with spaces, ending in a newline) then `count` digests as raw bytes, strictly ascending,
end to end; how digests are packed, read back (Snapshot) and written (SnapshotWriter)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from target_tiktok_audiences.snapshot.errors import SnapshotCorrupt, SnapshotError
from target_tiktok_audiences.snapshot.keys import Kind, SnapshotKey

FORMAT = "target-tiktok-audiences/snapshot"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: before in-flight records and full_at
HEADER_SIZE = 1024
BLOCK = 65_536  # digests per block read or written


def pack(block: Sequence[str], width: int) -> bytes:
    """Ascending lowercase-hex digests of `width` characters -> their bytes, end to end.

    Raises ValueError (never showing a digest) unless every digest is `width` lowercase hex
    characters and the block is ascending: the diff relies on the order.
    """
    joined = "".join(block)
    message = f"digests must be {width} lowercase hex characters"
    if len(joined) != width * len(block) or joined != joined.lower():
        raise ValueError(message)
    try:
        data = bytes.fromhex(joined)
    except ValueError:
        raise ValueError(message) from None
    if len(data) * 2 != len(joined):  # fromhex skips whitespace
        raise ValueError(message)
    if sorted(block) != block:  # sorted() of a sorted list is one linear C pass
        raise ValueError("digests must be written in ascending order")
    return data


def pack_lines(text: str, width: int) -> bytes:
    """Digests of `width` lowercase hex characters, each followed by a newline -> their bytes,
    end to end, without a string per digest (pack's checks but the order, which the caller
    vouches for). Raises ValueError (never showing a digest) unless every line is exactly
    that."""
    message = f"digests must be {width} lowercase hex characters"
    try:
        data = bytes.fromhex(text)  # skips the newlines (and any other whitespace)
    except ValueError:
        raise ValueError(message) from None
    # Written back, the bytes give the text only if every line was `width` lowercase hex.
    if data.hex("\n", width // 2) + "\n" != text:
        raise ValueError(message)
    return data


def unpack(data: bytes, digest_bytes: int) -> list[str]:
    """Bytes of whole digests -> lowercase-hex strings (the inverse of pack)."""
    if not data:
        return []
    return data.hex("\n", digest_bytes).split("\n")


def utc_now() -> str:
    # To the microsecond: a create record's age sets how long the next run awaits its audience
    # (creates.py), and a time cut to the second reads up to a second older: a shorter wait.
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Header:
    key: SnapshotKey
    count: int
    digest_bytes: int
    created_at: str
    sha256: str
    kind: Kind = Kind.SNAPSHOT
    full_at: str = ""  # when the set was last uploaded in full (create or REPLACE), UTC

    def encode(self) -> bytes:
        fields = {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind.value,
            "advertiser_id": self.key.advertiser_id,
            "audience_id": self.key.audience_id,
            "contract": self.key.contract,
            "count": self.count,
            "digest_bytes": self.digest_bytes,
            "created_at": self.created_at,
            "full_at": self.full_at,
            "sha256": self.sha256,
        }
        text = json.dumps(fields, sort_keys=True).encode("ascii")
        if len(text) >= HEADER_SIZE:
            raise ValueError("snapshot header too long")
        return text.ljust(HEADER_SIZE - 1) + b"\n"

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        """Raises ValueError when the bytes are not a header of this format and version."""
        if len(raw) != HEADER_SIZE or not raw.endswith(b"\n"):
            raise ValueError("short header")
        fields = json.loads(raw.decode("ascii"))
        if not isinstance(fields, dict) or fields.get("format") != FORMAT:
            raise ValueError("not a snapshot")
        if fields.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"format version {fields.get('version')!r}, expected {VERSION}")
        key = SnapshotKey(
            str(fields["advertiser_id"]), str(fields["audience_id"]), str(fields["contract"])
        )
        count, digest_bytes = fields["count"], fields["digest_bytes"]
        if not isinstance(count, int) or not isinstance(digest_bytes, int) or digest_bytes < 1:
            raise ValueError("bad count or digest size")
        created = str(fields["created_at"])
        return cls(
            key,
            count,
            digest_bytes,
            created,
            str(fields["sha256"]),
            Kind(fields.get("kind", Kind.SNAPSHOT.value)),
            str(fields.get("full_at") or created),
        )

    def full_age_seconds(self, now: dt.datetime) -> float | None:
        """Seconds from the last full upload to `now`, None when the header cannot say."""
        try:
            when = dt.datetime.fromisoformat(self.full_at)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return (now - when).total_seconds()


class Snapshot:
    """A usable stored set: its header, and its digests streamed in ascending order."""

    def __init__(self, header: Header, opener: Callable[[], IO[bytes]], where: str) -> None:
        self.header = header
        self._open = opener
        self.where = where

    @property
    def count(self) -> int:
        return self.header.count

    def blocks(self, size: int = BLOCK) -> Iterator[list[str]]:
        """Blocks of the digests, ascending; memory holds one block.

        Raises SnapshotError at the end if the body does not match the header's checksum (or
        if the snapshot was replaced meanwhile, which the lock is there to prevent).
        """
        width = self.header.digest_bytes
        digest = hashlib.sha256()
        with self._open() as fh:
            if fh.read(HEADER_SIZE) != self.header.encode():
                raise SnapshotError(f"snapshot {self.where} changed while it was read")
            while data := fh.read(size * width):
                if len(data) % width:
                    raise SnapshotCorrupt(f"snapshot {self.where} is corrupt (truncated)")
                digest.update(data)
                yield unpack(data, width)
        if digest.hexdigest() != self.header.sha256:
            raise SnapshotCorrupt(f"snapshot {self.where} is corrupt (checksum mismatch)")

    def __iter__(self) -> Iterator[str]:
        for block in self.blocks():
            yield from block


class DigestWriter(Protocol):
    def write(self, digest: str) -> None: ...
    def write_block(self, block: Sequence[str]) -> None: ...


class SnapshotWriter:
    """Takes the new set's digests, ascending, into a private temp file (see SnapshotStore)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self._width = 0
        self._last = ""
        self._pending: list[str] = []
        self.count = 0
        fh.write(b" " * HEADER_SIZE)  # the real header goes here at the end

    def write(self, digest: str) -> None:
        self._pending.append(digest)
        if len(self._pending) >= BLOCK:
            self._flush()

    def write_block(self, block: Sequence[str]) -> None:
        """A block of ascending digests (e.g. the `keep` sink of extsort.diff)."""
        self._flush()
        self._write(block)

    def write_lines(self, text: str) -> None:
        """Whole lines of digests, one a line, ascending within `text` (a sorted file of
        extsort.write_sorted, which checked their order as it wrote them): packed from the
        text; the order is checked here only against the lines before."""
        self._flush()
        if not text:
            return
        if not self._width:
            self._width = text.find("\n")
            if self._width <= 0 or self._width % 2:
                raise ValueError("digests must be an even number of hex characters")
        width = self._width
        if text[:width] <= self._last:
            raise ValueError("digests must be written in strictly ascending order")
        data = pack_lines(text, width)
        self._hash.update(data)
        self._fh.write(data)
        self._last = text[-width - 1 : -1]
        self.count += len(data) * 2 // width

    def write_packed(self, data: bytes, digest_bytes: int) -> None:
        """Digests already packed (the body of a snapshot this store wrote, see
        SnapshotStore.copy_written): taken as they are, their order checked when first written."""
        self._flush()
        if not data:
            return
        if len(data) % digest_bytes or (self._width and self._width != 2 * digest_bytes):
            raise ValueError("packed digests of another size")
        self._width = 2 * digest_bytes
        self._hash.update(data)
        self._fh.write(data)
        self._last = data[-digest_bytes:].hex()
        self.count += len(data) // digest_bytes

    @property
    def checksum(self) -> str:
        """SHA-256 of the body written so far (what the header will say)."""
        self._flush()
        return self._hash.hexdigest()

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._write(pending)

    def _write(self, block: Sequence[str]) -> None:
        if not block:
            return
        if not self._width:
            self._width = len(block[0])
            if self._width % 2:
                raise ValueError("digests must be an even number of hex characters")
        if block[0] <= self._last:
            raise ValueError("digests must be written in strictly ascending order")
        data = pack(block, self._width)
        self._hash.update(data)
        self._fh.write(data)
        self._last = block[-1]
        self.count += len(block)

    def finish(self, key: SnapshotKey, kind: Kind, full_at: str) -> None:
        self._flush()
        now = utc_now()
        header = Header(
            key,
            self.count,
            self._width // 2 or 32,  # an empty set: any size reads back as empty
            now,
            self._hash.hexdigest(),
            kind,
            full_at or now,
        )
        self._fh.seek(0)
        self._fh.write(header.encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())
