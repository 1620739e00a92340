"""spd.driver: load the read-only SPD EEPROM driver, so the modules' own rating is read.

Without the ee1004 (DDR4) or spd5118 (DDR5) driver the kernel exposes no SPD EEPROM:
the rating then comes from part numbers (a guess where the maker's scheme is unknown)
or from dmidecode's ``Speed:``, which never shows an XMP/EXPO profile. Both drivers
only read the EEPROM (spd5118 also reports the module's temperature). The module is
loaded for this boot only; ``--persist`` on the command line adds a modules-load.d
file so it loads at every boot. Revert unloads it (``modprobe -r``) and removes that
file; a driver already loaded, or built into the kernel, is left as it is.
"""

from __future__ import annotations

from q3cn_doctor.fixing.plan import NOW, Change, Fix, FixContext
from q3cn_doctor.fixing.targets import LOADED, KernelModule, header

DRIVERS = {"DDR4": "ee1004", "DDR5": "spd5118"}
OUR_FILE = "/etc/modules-load.d/q3cn-doctor-spd.conf"
# SMBus controllers whose kernel driver registers the SPD EEPROMs of the slots it sees.
SMBUS_NAMES = ("SMBus I801", "SMBus PIIX4")


def _drivers(memory) -> list[str]:
    """The SPD drivers the listed modules need, in DDR order."""
    kinds = {m.family for m in memory.modules if not m.soldered}
    return [DRIVERS[kind] for kind in sorted(kinds) if kind in DRIVERS]


def _smbus(ctx: FixContext) -> list[str]:
    """The SMBus adapters the kernel has, by their sysfs names."""
    names = [ctx.host.cat(f"{path}/name") or "" for path in
             ctx.host.glob("/sys/bus/i2c/devices/i2c-*")]
    return [name.strip() for name in names if name.strip().startswith(SMBUS_NAMES)]


class SpdDriver(Fix):
    id = "spd.driver"
    title = "Load the read-only SPD EEPROM driver, so the modules' XMP/EXPO rating is read"
    checks = ("memory.speed",)
    cures = False  # it reads the rating; enabling XMP/EXPO stays a step by hand

    def available(self, ctx: FixContext) -> str | None:
        memory = ctx.facts.get("memory")
        if memory is None or not memory.modules:
            return "no memory modules are listed (dmidecode or udev) to say which driver"
        if memory.soldered:
            return "soldered memory has no SPD EEPROM"
        if any(reading.rated_mts for reading in memory.spd):
            return "the SPD EEPROMs are read already"
        if not _drivers(memory):
            return "the modules' type is not DDR4 or DDR5 (or is unknown)"
        if not ctx.host.is_dir("/sys/module"):
            return "no /sys/module here (a tree or container without the kernel's modules)"
        return None

    def plan(self, ctx: FixContext) -> None:
        drivers = _drivers(ctx.facts.memory)
        for driver in drivers:
            target = KernelModule(driver)
            ctx.add(Change(self.id, target, f"kernel module {driver}", target.read(ctx.host),
                           LOADED, NOW))
        if not _smbus(ctx):
            ctx.manual("No SMBus adapter is registered, so no EEPROM will appear: load its "
                       "driver first (`sudo modprobe i2c_i801` on Intel, `sudo modprobe "
                       "i2c_piix4` on AMD), then apply this fix again.")
        if ctx.fix_options.persist_asked:
            ctx.file(OUR_FILE, header(self.id) + "\n".join(drivers) + "\n",
                     f"{OUR_FILE} (the SPD drivers, loaded at every boot)")
        else:
            ctx.note("Loaded until the next reboot; add --persist to load it at every boot.")
        ctx.note("Then `sudo q3cn-doctor check --only memory` reads the rating from "
                 f"/sys/bus/i2c/drivers/{{{','.join(drivers)}}}/*/eeprom. Where none appears "
                 "(an older kernel, some AMD boards), the SMBus driver did not register the "
                 "EEPROMs: `echo <driver> 0x50 | sudo tee /sys/bus/i2c/devices/i2c-N/new_device`"
                 " for each slot address 0x50-0x57.")


FIX = SpdDriver()
