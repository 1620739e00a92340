"""A GGUF model read through the host: a recording's parsed facts where it kept them
(a snapshot holds no 45 GB file), else the file and every split part itself."""

from __future__ import annotations

import struct

from q3cn_doctor.host.base import Host
from q3cn_doctor.parsers.gguf_file import (
    MAGIC,
    RECORD,
    GgufError,
    GgufFile,
    GgufModel,
    check_header,
    metadata_value,
    model_of,
    reader_class,
    split_parts,
)


def read_model(host: Host, path: str) -> GgufModel:
    """The model at ``path``. GgufError or OSError say why not."""
    record = host.recorded(RECORD, path)
    if record is not None:
        host.note(f"{RECORD}.json:{path}")
        return GgufModel.from_json(record)
    model = _read_files(host, path)
    host.record(RECORD, path, model.to_json())
    return model


def _read_files(host: Host, path: str) -> GgufModel:
    parts = split_parts(path)
    readers = []
    files = []
    for part in parts:
        if part != path and not host.exists(part):  # the file given says why itself
            raise GgufError(f"split part {part} is missing (the model has {len(parts)} parts)")
        reader = _open(host, part)
        readers.append(reader)
        size = host.stat(part).size
        beyond = next((t.name for t in reader.tensors
                       if int(t.data_offset) + int(t.n_bytes) > size), None)
        if beyond is not None:
            raise GgufError(f"{part}: tensor {beyond} lies past the end of the file")
        files.append(GgufFile(part, size, len(reader.tensors)))
    first = next((r for r in readers if metadata_value(r, "general.architecture")), None)
    if first is None:
        raise GgufError(f"{parts[0]} has no general.architecture: not a model GGUF")
    tensors = [(t.name, int(t.n_bytes), t.tensor_type.name) for r in readers for t in r.tensors]
    try:
        declared = metadata_value(first, "split.count")
        if declared is not None and int(declared) != len(parts):
            raise GgufError(f"{parts[0]} says split.count {declared}, the name says "
                            f"{len(parts)}")
        return model_of(path, files, first, tensors)
    except GgufError:
        raise
    except (ValueError, TypeError, ArithmeticError, IndexError) as exc:
        # Metadata of the wrong shape (a NaN in a per-layer head count): a damaged or
        # foreign file, reported as such rather than a traceback.
        raise GgufError(f"{parts[0]}: metadata the plan needs is malformed ({exc})") from exc


def _open(host: Host, path: str):
    """A GGUFReader over ``path``. The host maps the file first (that notes the read,
    honours injected faults and, recording, leaves a placeholder); the reader then maps
    the same file by the host's own resolution of the path (a --root or snapshot tree)."""
    with host.mapped(path) as view:
        if view[:4] != MAGIC:
            raise GgufError(f"{path} is not a GGUF file (no GGUF magic)")
        check_header(view, path)
    try:
        return reader_class()(host.local_path(path))
    except (ValueError, KeyError, IndexError, OverflowError, struct.error, RecursionError,
            MemoryError) as exc:
        # OverflowError: a damaged length field pointing past any possible offset.
        raise GgufError(f"{path}: {exc}") from exc
