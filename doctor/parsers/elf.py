"""The dynamic section of an ELF file: which shared libraries it needs.

Enough of ELF to answer "which CUDA runtime does this llama-server link?"
(``libcudart.so.12``, ``libcublas.so.13``...) without ldd, binutils or a new
dependency. 32- and 64-bit, either byte order.

A snapshot never copies a large binary: it records these parsed facts instead
(``facts.gpu.read_elf`` through ``Host.record``), so a replay gives what the live
run read.
"""

from __future__ import annotations

import struct

from msgspec import Struct, field
from q3cn_doctor.records import plain

RECORD = "elf"
"""The kind of recorded reading (``Host.recorded``) holding each binary's dynamic section."""

_MAGIC = b"\x7fELF"
_PT_LOAD, _PT_DYNAMIC = 1, 2
_SHT_DYNAMIC = 6
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ = 0, 1, 5, 10
_DT_SONAME, _DT_RPATH, _DT_RUNPATH = 14, 15, 29
_MAX_DYNAMIC_ENTRIES = 65536  # a real dynamic section has under a hundred
_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv", 21: "ppc64"}


class ElfError(ValueError):
    """Not an ELF file, or one whose dynamic section cannot be read."""


class ElfInfo(Struct):
    """What the dynamic loader reads of a binary: which libraries it needs and where it
    looks for them."""
    needed: list[str] = field(default_factory=list)  # DT_NEEDED, in file order
    soname: str | None = None
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    bits: int | None = None  # 32 or 64
    machine: str | None = None
    dynamic: bool = True  # False: statically linked, nothing is NEEDED
    source: str = "elf"  # "elf" (parsed here) or "recorded" (a snapshot's record)

    def to_json(self) -> dict:
        record = plain(self)
        record.pop("source")
        return record

    @classmethod
    def from_json(cls, record: dict) -> ElfInfo:
        """A recorded reading (a snapshot's elf.json: anybody's file), held to its types:
        ElfError where a value has another."""
        if not isinstance(record, dict) or not _texts(record.get("needed")):
            raise ElfError("the recorded dependency list has no 'needed' list of names")
        for key in ("rpath", "runpath"):
            if record.get(key) is not None and not _texts(record[key]):
                raise ElfError(f"the recorded {key} is not a list of paths")
        for key, kind in (("soname", str), ("machine", str), ("bits", int), ("dynamic", bool)):
            if record.get(key) is not None and not isinstance(record[key], kind):
                raise ElfError(f"the recorded {key} is not a {kind.__name__}")
        return cls(
            needed=list(record["needed"]),
            soname=record.get("soname"),
            rpath=list(record.get("rpath") or []),
            runpath=list(record.get("runpath") or []),
            bits=record.get("bits"),
            machine=record.get("machine"),
            dynamic=record.get("dynamic", True) is not False,
            source="recorded",
        )


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def parse(data: bytes) -> ElfInfo:
    """The dynamic section of an ELF image; ElfError where it is not one."""
    if len(data) < 16 or data[:4] != _MAGIC:
        raise ElfError("not an ELF file")
    bits = {1: 32, 2: 64}.get(data[4])
    order = {1: "<", 2: ">"}.get(data[5])
    if bits is None or order is None:
        raise ElfError(f"unknown ELF class {data[4]} or byte order {data[5]}")
    reader = _Reader(data, order, bits)
    try:
        return reader.info()
    except (struct.error, OverflowError, ValueError, IndexError) as exc:
        # An offset past the file (struct.error), or past any offset at all (OverflowError:
        # a mutated phoff of 2^63): a damaged file, never a traceback.
        if isinstance(exc, ElfError):
            raise
        raise ElfError(f"damaged ELF file: {exc}") from exc


class _Reader:
    def __init__(self, data: bytes, order: str, bits: int) -> None:
        self.data, self.order, self.bits = data, order, bits
        self.word = "Q" if bits == 64 else "I"

    def unpack(self, fmt: str, offset: int) -> tuple:
        return struct.unpack_from(self.order + fmt, self.data, offset)

    def header(self) -> dict:
        if self.bits == 64:
            (machine,) = self.unpack("H", 18)
            phoff, shoff = self.unpack("QQ", 32)
            phentsize, phnum, shentsize, shnum = self.unpack("HHHH", 54)
        else:
            (machine,) = self.unpack("H", 18)
            phoff, shoff = self.unpack("II", 28)
            phentsize, phnum, shentsize, shnum = self.unpack("HHHH", 42)
        return {"machine": machine, "phoff": phoff, "phentsize": phentsize, "phnum": phnum,
                "shoff": shoff, "shentsize": shentsize, "shnum": shnum}

    def segments(self, head: dict) -> list[tuple[int, int, int, int]]:
        """(type, file offset, virtual address, file size) of each program header."""
        found = []
        for index in range(head["phnum"]):
            at = head["phoff"] + index * head["phentsize"]
            if self.bits == 64:
                p_type, _flags, offset, vaddr, _paddr, filesz = self.unpack("IIQQQQ", at)
            else:
                p_type, offset, vaddr, _paddr, filesz = self.unpack("IIIII", at)
            found.append((p_type, offset, vaddr, filesz))
        return found

    def dynamic_from_sections(self, head: dict) -> tuple[int, int] | None:
        """(offset, size) of the SHT_DYNAMIC section, where there are no program headers."""
        for index in range(head["shnum"]):
            at = head["shoff"] + index * head["shentsize"]
            if self.bits == 64:
                _name, sh_type, _flags, _addr, offset, size = self.unpack("IIQQQQ", at)
            else:
                _name, sh_type, _flags, _addr, offset, size = self.unpack("IIIIII", at)
            if sh_type == _SHT_DYNAMIC:
                return offset, size
        return None

    def info(self) -> ElfInfo:
        head = self.header()
        machine = _MACHINES.get(head["machine"], f"e_machine {head['machine']}")
        segments = self.segments(head)
        dynamic = next(((off, size) for kind, off, _va, size in segments if kind == _PT_DYNAMIC),
                       None)
        if dynamic is None and not segments:
            dynamic = self.dynamic_from_sections(head)
        if dynamic is None:
            return ElfInfo(bits=self.bits, machine=machine, dynamic=False)
        entries = self.entries(*dynamic)
        strtab = entries.get(_DT_STRTAB, [None])[0]
        if strtab is None:
            raise ElfError("dynamic section has no string table (DT_STRTAB)")
        base = self.file_offset(strtab, segments)
        size = entries.get(_DT_STRSZ, [len(self.data) - base])[0]

        def text(value: int) -> str:
            if value >= size:
                raise ElfError(f"string offset {value} lies outside the string table")
            start = base + value
            end = self.data.find(b"\0", start)
            if end < 0:
                raise ElfError("unterminated string in the string table")
            return self.data[start:end].decode("utf-8", errors="replace")

        def paths(tag: int) -> list[str]:
            return [p for value in entries.get(tag, []) for p in text(value).split(":") if p]

        sonames = entries.get(_DT_SONAME, [])
        return ElfInfo(
            needed=[text(value) for value in entries.get(_DT_NEEDED, [])],
            soname=text(sonames[0]) if sonames else None,
            rpath=paths(_DT_RPATH),
            runpath=paths(_DT_RUNPATH),
            bits=self.bits,
            machine=machine,
        )

    def entries(self, offset: int, size: int) -> dict[int, list[int]]:
        """The dynamic entries by tag, values in file order, up to DT_NULL."""
        step = 16 if self.bits == 64 else 8
        if offset + size > len(self.data):
            raise ElfError("the dynamic section lies past the end of the file")
        found: dict[int, list[int]] = {}
        for at in range(offset, offset + size - step + 1, step)[:_MAX_DYNAMIC_ENTRIES]:
            tag, value = self.unpack(self.word * 2, at)
            if tag == _DT_NULL:
                break
            found.setdefault(tag, []).append(value)
        return found

    def file_offset(self, address: int, segments: list[tuple[int, int, int, int]]) -> int:
        """Where a virtual address lies in the file (through the PT_LOAD segments)."""
        for kind, offset, vaddr, filesz in segments:
            if kind == _PT_LOAD and vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
        if not segments and address < len(self.data):
            return address  # relocatable objects: addresses are file offsets
        raise ElfError(f"address {address:#x} lies in no loaded segment")
