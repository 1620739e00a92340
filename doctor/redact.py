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
# udevadm's dmi_memory_id properties: MEMORY_DEVICE_0_SERIAL_NUMBER=1234.
_UDEV = re.compile(r"^(?P<key>MEMORY_DEVICE_\d+_(?:SERIAL_NUMBER|ASSET_TAG)=)(?P<value>.*)$", re.M)

_WHOLE_FILES = re.compile(
    r"^/sys/(?:class|devices/virtual)/dmi/id/(?:product_serial|board_serial|chassis_serial"
    r"|product_uuid)$|^/etc/machine-id$|^/var/lib/dbus/machine-id$"
)
_HOSTNAME_FILES = ("/etc/hostname", "/proc/sys/kernel/hostname")
REDACTED_HOSTNAME = "redacted-host"
_SECRET_FLAGS = ("--api-key", "--hf-token", "-hft")


def redact_text(text: str) -> str:
    """Blank labelled serial numbers and UUIDs in a command's or file's text."""
    text = _LABELLED.sub(lambda m: m.group("key") + MARK, text)
    return _UDEV.sub(lambda m: m.group("key") + MARK, text)


def redact_file(path: str, data: bytes) -> bytes:
    """The bytes a snapshot stores for ``path``."""
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


def redact_nvml(readings: dict) -> dict:
    """NVML readings with GPU UUIDs replaced by a stable per-index stand-in."""
    devices = []
    for device in readings.get("devices", []):
        if isinstance(device, dict) and isinstance(device.get("uuid"), str):
            device = dict(device, uuid=f"GPU-{MARK}-{device.get('index')}")
        devices.append(device)
    return dict(readings, devices=devices) if "devices" in readings else dict(readings)
