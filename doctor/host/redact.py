"""What a snapshot must not carry off the user's machine unless asked (--no-redact)."""

from __future__ import annotations

import re

MARK = "<redacted>"

# "Serial Number: ABC" in dmidecode and nvidia-smi -q, "GPU UUID : GPU-...".
_LABELLED = re.compile(
    r"^(?P<key>[ \t]*(?:Serial Number|UUID|GPU UUID|Asset Tag|Board Serial|Product Serial)"
    r"[ \t]*:[ \t]*)(?P<value>\S.*)$",
    re.MULTILINE,
)
# udevadm's dmi_memory_id properties: MEMORY_DEVICE_0_SERIAL_NUMBER=1234, printed as
# "E: MEMORY_DEVICE_0_..." by `udevadm info` and stored as "E:MEMORY_..." in /run/udev/data.
_UDEV = re.compile(
    r"^(?P<key>(?:E:[ \t]*)?MEMORY_DEVICE_\d+_(?:SERIAL_NUMBER|ASSET_TAG)=)(?P<value>.*)$", re.M
)
# A GPU or MIG UUID anywhere in a line: `nvidia-smi -L` prints "(UUID: GPU-...)" mid-line.
_GPU_UUID = re.compile(r"\b(?:GPU|MIG)-[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")

_WHOLE_FILES = re.compile(
    r"^/sys/(?:class|devices/virtual)/dmi/id/(?:product_serial|board_serial|chassis_serial"
    r"|product_uuid|board_asset_tag|chassis_asset_tag)$|^/etc/machine-id$|^/var/lib/dbus/machine-id$"
)
_HOSTNAME_FILES = ("/etc/hostname", "/proc/sys/kernel/hostname")
REDACTED_HOSTNAME = "redacted-host"
_SECRET_FLAGS = ("--api-key", "--hf-token", "-hft")


def redact_text(text: str) -> str:
    """Blank labelled serial numbers and UUIDs in a command's or file's text."""
    text = _LABELLED.sub(lambda m: m.group("key") + MARK, text)
    text = _UDEV.sub(lambda m: m.group("key") + MARK, text)
    return _GPU_UUID.sub(MARK, text)


# SPD EEPROMs carry each module's serial number: DDR4 bytes 325-328 (ee1004, 512 B),
# DDR5 bytes 517-520 (spd5118, 1024 B). Neither lies under the JEDEC CRCs, so
# zeroing them leaves every speed and profile decodable.
_SPD_EEPROM = re.compile(r"^/sys/bus/i2c/drivers/(?:ee1004|spd5118|eeprom)/[^/]+/eeprom$")
_SPD_SERIALS = ((512, slice(325, 329)), (1024, slice(517, 521)))


def _redact_spd(data: bytes) -> bytes:
    blanked = bytearray(data)
    for size, serial in _SPD_SERIALS:
        if len(data) == size:
            blanked[serial] = bytes(serial.stop - serial.start)
    return bytes(blanked)


def redact_file(path: str, data: bytes) -> bytes:
    """The bytes a snapshot stores for ``path``."""
    if _SPD_EEPROM.match(path):
        return _redact_spd(data)
    if _WHOLE_FILES.match(path):
        return (MARK + "\n").encode()
    if path in _HOSTNAME_FILES:
        return (REDACTED_HOSTNAME + "\n").encode()
    if b"Serial" in data or b"UUID" in data or b"SERIAL" in data or b"Asset" in data:
        return redact_text(data.decode("utf-8", errors="surrogateescape")).encode(
            "utf-8", errors="surrogateescape"
        )
    return data


def redact_cmdline(argv: list[str]) -> list[str]:
    """A process's arguments with secrets (``--api-key X``, ``--api-key=X``) blanked."""
    cleaned: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            cleaned.append(MARK)
            hide_next = False
        elif arg in _SECRET_FLAGS:
            cleaned.append(arg)
            hide_next = True
        elif any(arg.startswith(flag + "=") for flag in _SECRET_FLAGS):
            cleaned.append(arg.split("=", 1)[0] + "=" + MARK)
        else:
            cleaned.append(arg)
    return cleaned


def redact_process_cmdline(name: str, argv: list[str]) -> list[str]:
    """What a snapshot keeps of a process's command line.

    Only llama.cpp's servers matter to the checks (their flags, threads and
    affinity); every other program keeps just its path, since its arguments may
    hold anybody's tokens or file names.
    """
    program = argv[0].rsplit("/", 1)[-1] if argv else ""
    if "llama" in name or "llama" in program:
        return redact_cmdline(argv)
    return argv[:1]


def redact_nvml(readings: dict) -> dict:
    """NVML readings with GPU UUIDs replaced by a stable per-index stand-in."""
    devices = []
    for device in readings.get("devices", []):
        if isinstance(device, dict) and isinstance(device.get("uuid"), str):
            device = dict(device, uuid=f"GPU-{MARK}-{device.get('index')}")
        devices.append(device)
    return dict(readings, devices=devices) if "devices" in readings else dict(readings)
