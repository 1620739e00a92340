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
# Flags whose value is a secret: llama.cpp's --api-key, --hf-token and -hft, and any
# program's flag that ends in key, token, secret or password. A flag naming a file
# (--api-key-file, --ssl-key-file) keeps its value: the path is not the secret, and its
# contents are never read. ``NAME=value`` arguments (``env HF_TOKEN=...``) and a URL's
# password are blanked too.
_SECRET_FLAG = re.compile(r"-{1,2}[A-Za-z0-9-]*(?:key|token|secret|passwd|password)\Z|-hft\Z",
                          re.IGNORECASE)
_SECRET_VARIABLE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD)=)"
                              r".+\Z", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(?=@)")


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
    """A command line with its secrets blanked (``--api-key X``, ``--api-key=X``,
    ``HF_TOKEN=X``, ``https://user:X@host``): the one function every place that shows a
    process's or a plan's command line goes through (checks, launch, snapshots)."""
    cleaned: list[str] = []
    hide_next = False
    for arg in argv:
        flag, eq, _ = arg.partition("=")
        if hide_next:
            cleaned.append(MARK)
            hide_next = False
        elif _SECRET_FLAG.match(arg):
            cleaned.append(arg)
            hide_next = True
        elif eq and flag.startswith("-") and _SECRET_FLAG.match(flag):
            cleaned.append(flag + "=" + MARK)
        elif _SECRET_VARIABLE.match(arg):
            cleaned.append(_SECRET_VARIABLE.match(arg).group("name") + MARK)
        else:
            cleaned.append(_URL_PASSWORD.sub(lambda m: m.group("head") + MARK, arg))
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
