"""The job manifest: what a batch job is (model version, input, mapping) and which parts are done.

It lives next to the output parts as ``_modelyard_job.json`` (the leading ``_`` keeps dataset
readers from taking it for data) and is replaced atomically after every finished part, *after*
that part's file is published. So a crash leaves either a part that is done and recorded, or a
part that is redone on the next run and overwrites its own file: no row is lost or duplicated.

A rerun must be the same job. The identity - model and version, input files (size and
modification stamp), part size, column mapping, output format - is compared with the stored
one; any difference is refused with :class:`~modelyard.errors.FailedPreconditionError` naming
what changed (``restart=True`` discards the old output instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.errors import FailedPreconditionError, InvalidInputError
from modelyard.jobs.batch_io import write_text_atomically

MANIFEST_NAME = "_modelyard_job.json"
MANIFEST_FORMAT = 1
_IDENTITY = ("model", "version", "input", "files", "part_rows", "mapping", "output_format")
_EXPLAIN = {
    "model": "the model",
    "version": "the model version",
    "input": "the input",
    "files": "the input files",
    "part_rows": "--part-rows",
    "mapping": "the columns or outputs",
    "output_format": "the output format",
}


@dataclass
class JobManifest:
    """Identity of a job plus its finished parts (part name -> {rows, file, done_at})."""

    identity: dict[str, Any]
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: str = "running"
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> str:
        doc = {
            "format": MANIFEST_FORMAT,
            **self.identity,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "parts": self.parts,
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> JobManifest:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"{where} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise InvalidInputError(f"{where} is not a ModelYard job manifest (format 1)")
        return cls(
            identity={k: doc.get(k) for k in _IDENTITY},
            parts=dict(doc.get("parts") or {}),
            state=str(doc.get("state", "running")),
            created_at=float(doc.get("created_at", 0.0)),
            updated_at=float(doc.get("updated_at", 0.0)),
        )

    def check_same_job(self, identity: Mapping[str, Any], where: str) -> None:
        """Refuse to resume when anything that decides the output has changed."""
        stored = orjson.loads(orjson.dumps(self.identity))
        wanted = orjson.loads(orjson.dumps(dict(identity)))
        for key in _IDENTITY:
            if stored.get(key) != wanted.get(key):
                detail = ""
                if key == "version":
                    detail = (
                        f": the finished parts were scored by {stored.get('model')}:"
                        f"{stored.get('version')}, the model now resolves to "
                        f"{wanted.get('model')}:{wanted.get('version')}"
                    )
                raise FailedPreconditionError(
                    f"{where} belongs to a different job ({_EXPLAIN[key]} changed{detail}); "
                    "write to a new --output, or pass --restart to discard the finished parts"
                )


def load_manifest(fs: Any, directory: str) -> JobManifest | None:
    path = f"{directory.rstrip('/')}/{MANIFEST_NAME}"
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        return JobManifest.from_json(handle.read(), path)


def save_manifest(fs: Any, directory: str, manifest: JobManifest) -> None:
    write_text_atomically(fs, f"{directory.rstrip('/')}/{MANIFEST_NAME}", manifest.to_json())
