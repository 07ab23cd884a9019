"""JSON-lines files of a generated stream: one file per stream plus ``labels.jsonl``.

Each line of ``<stream>.jsonl`` is one record in an envelope that keeps what Kafka would carry:

    {"seq":12,"key":"c0042","value":{...the event, byte for byte...}}
    {"seq":13,"key":"u0007","value":null}                                   a tombstone
    {"seq":14,"key":"c0042","value_b64":"eyJldm...","defect":"missing_field"} a broken value

A valid value is inlined (readable with jq); a broken one, which may not even be UTF-8, is base64
with the dead-letter reason it must fail with. ``seq`` is the position in the emitted stream across
all files, so a replay can interleave the files exactly as they were produced.
``labels.jsonl`` holds one ``FraudLabel`` per line; ``manifest.json`` the config and counts.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from producers.fraud_scenarios import FraudLabel
from producers.records import Record, Stream

LABELS_FILE = "labels.jsonl"
MANIFEST_FILE = "manifest.json"
_BUFFER = 1 << 20
_ABSENT = msgspec.Raw(b"")


class StoredRecord(msgspec.Struct, frozen=True):
    """One line of a stream file."""

    seq: int
    key: str
    # msgspec cannot decode ``Raw | None`` (it then only accepts null): a tombstone's value is
    # the raw JSON ``null``, an absent one (a broken value, see value_b64) is empty.
    value: msgspec.Raw = _ABSENT
    value_b64: str | None = None
    defect: str | None = None

    @property
    def payload(self) -> bytes | None:
        """The value's exact bytes, as they were (or would have been) sent to Kafka."""
        if self.value_b64 is not None:
            return base64.b64decode(self.value_b64)
        raw = bytes(self.value)
        return None if raw in (b"null", b"") else raw


def stream_path(directory: Path, stream: Stream) -> Path:
    return directory / f"{stream.value}.jsonl"


class JsonlWriter:
    """Writes records to ``directory``; use as a context manager (closes the files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.counts: Counter[str] = Counter()
        self._files = {s: open(stream_path(self.directory, s), "wb", _BUFFER) for s in Stream}  # noqa: SIM115
        self._labels = open(self.directory / LABELS_FILE, "wb", _BUFFER)  # noqa: SIM115

    def write(self, records: Iterable[Record]) -> None:
        files, labels, counts = self._files, self._labels, self.counts
        for record in records:
            head = b'{"seq":%d,"key":"%s",' % (record.seq, record.key.encode())
            if record.defect is not None:
                encoded = (
                    b"null" if record.value is None else b'"%s"' % base64.b64encode(record.value)
                )
                line = b'%s"value_b64":%s,"defect":"%s"}\n' % (
                    head,
                    encoded,
                    record.defect.encode(),
                )
            elif record.value is None:
                line = head + b'"value":null}\n'
            else:
                line = b'%s"value":%s}\n' % (head, record.value)
            files[record.stream].write(line)
            counts[record.stream.value] += 1
            if record.label is not None:
                labels.write(record.label + b"\n")
                counts["labels"] += 1

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        path = self.directory / MANIFEST_FILE
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    def close(self) -> None:
        for f in (*self._files.values(), self._labels):
            f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_record_decoder = msgspec.json.Decoder(StoredRecord)
_label_decoder = msgspec.json.Decoder(FraudLabel)


def read_stream(directory: Path, stream: Stream) -> Iterator[StoredRecord]:
    """The records of one stream file, in emission order."""
    with open(stream_path(Path(directory), stream), "rb") as f:
        for line in f:
            yield _record_decoder.decode(line)


def read_labels(directory: Path) -> Iterator[FraudLabel]:
    with open(Path(directory) / LABELS_FILE, "rb") as f:
        for line in f:
            yield _label_decoder.decode(line)
