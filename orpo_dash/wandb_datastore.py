"""The framing of W&B's `run-<id>.wandb` file (its "datastore"): the records it holds, as bytes, each one a
serialized `wandb.proto.wandb_internal_pb2.Record` that the caller parses with wandb's own protobuf classes.

The layout is LevelDB's log format (https://github.com/google/leveldb/blob/main/doc/log_format.md) behind a
7-byte file header:

    header := ident ":W&B" (4 bytes), magic 0xBEE1 (uint16 LE), version 0 (uint8)
    block  := record* trailer?              32 KiB blocks; a trailer (< 7 bytes left in a block) is zeros
    record := checksum (uint32 LE), length (uint16 LE), type (uint8: FULL, FIRST, MIDDLE, LAST), data[length]

One protobuf message is one FULL record, or FIRST, MIDDLE..., LAST records when it crosses a block. Unlike
LevelDB, the checksum is plain CRC-32 (zlib's) of the data seeded with the CRC-32 of the type byte, unmasked.

Ported from wandb's former Python reader, `wandb/sdk/internal/datastore.py` (wandb <= 0.18; MIT License,
Copyright (c) 2021 Weights and Biases, Inc.), which wandb 0.31 no longer ships: its Go writer in `wandb-core`
writes the same framing (checked on files it wrote, tests/recorded/wandb). Differences: the whole file is read
at once and sliced (a 100k-step run is ~100 MB, read in well under a second), and a file that ends inside a
record (a run still writing, or killed) yields the records before the cut and says so, instead of asserting.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

FILE_HEADER = struct.Struct("<4sHB")
RECORD_HEADER = struct.Struct("<IHB")
HEADER_LEN = 7
BLOCK_LEN = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
IDENT, MAGIC, VERSION = b":W&B", 0xBEE1, 0
# Each record's checksum starts from the CRC-32 of its type byte (as wandb's writer does).
_TYPE_CRC = {kind: zlib.crc32(bytes([kind])) for kind in (FULL, FIRST, MIDDLE, LAST)}


class DatastoreError(ValueError):
    """The bytes are not a W&B datastore, or are damaged; the message says where."""


def scan(data: bytes, notes: list[str]) -> Iterator[bytes]:
    """The records of a .wandb file's bytes, in file order. The checksum of every piece is verified (zlib's
    CRC-32 runs at GB/s: about 0.1 s for a 100k-step run). A file cut short ends the scan with a note."""
    if len(data) < HEADER_LEN or FILE_HEADER.unpack_from(data) != (IDENT, MAGIC, VERSION):
        raise DatastoreError("it does not start with W&B's datastore header ':W&B' (magic 0xBEE1, version 0)")
    view = memoryview(data)
    end, pos, count = len(data), HEADER_LEN, 0
    pending: list[memoryview] | None = None  # the pieces of a message that crosses blocks
    while pos < end:
        left = BLOCK_LEN - pos % BLOCK_LEN
        if left < HEADER_LEN:  # a block's trailer: no record header fits, the next record starts a block
            pos += left
            continue
        if pos + HEADER_LEN > end:
            break
        checksum, length, kind = RECORD_HEADER.unpack_from(data, pos)
        at, start = pos, pos + HEADER_LEN
        if kind not in _TYPE_CRC:
            if not data[pos:].strip(b"\0"):
                break  # zeros to the end: space a writer reserved, then stopped
            raise DatastoreError(f"the record at byte {pos} has type {kind}, not one of FULL/FIRST/MIDDLE/LAST (1-4)")
        if start + length > end:
            break
        chunk = view[start:start + length]
        if zlib.crc32(chunk, _TYPE_CRC[kind]) != checksum:
            raise DatastoreError(f"the record at byte {pos} fails its checksum: the file is damaged there")
        pos = start + length
        if kind == FULL:
            if pending is not None:
                raise DatastoreError(f"the record at byte {at} starts a message before the previous one ended")
            count += 1
            yield bytes(chunk)
        elif kind == FIRST:
            pending = [chunk]
        elif pending is None:
            raise DatastoreError(f"the record at byte {at} continues a message that never started")
        elif kind == MIDDLE:
            pending.append(chunk)
        else:
            pending.append(chunk)
            count += 1
            yield b"".join(pending)
            pending = None
    if pos < end or pending is not None:
        notes.append(f"the W&B run file ends inside a record (a run still writing, or stopped): read the "
                     f"{count:,} records before byte {pos:,} of {end:,}")
