"""The serial CCID reader on a pseudo-terminal: the thin I/O adapter around the framing and the firmware.

A real GemPC Twin sits behind a serial port; here the port is the slave side of a pty
(`os.openpty()`), named by a symlink LINK that pcscd's reader.conf gives libccidtwin as its
DEVICENAME (`LINK:GemPCTwin`). The driver opens the slave and sets it raw, 115200 baud, 8N2
(a pty takes the settings and ignores the speed). `PtyReader` reads the master side, feeds
`SerialFraming`, gives each whole command to the `Firmware` and writes the answer at once:
the driver ignores bSeq on the serial line, so an answer written late would be taken for the
next command's. Nothing here waits on the card: the firmware is pure computation. With
`realtime` (`--realtime`) the answer goes out when a real card's would - the firmware's `pace`
(reader/ccid/pace.py) - with a time-request byte at each of its requests, which restarts the
driver's read timeout; `next_due()` tells the select loop when to `tick()`. A card
inserted or removed since the last command (`Firmware.insert`, `remove`) is notified, `50 03`
or `50 02` on a one-slot reader, before the next answer (the driver's synchronous card movement
mode). With `--debug` every command and answer is logged, and the PPS the firmware runs itself
for a SetParameters on a reader with automatic PPS (the SEC1210).

`serve()` is a loop of its own (`python -m reader.ccid`); `sscard serve --ccid` watches
`fileno()` in its own loop instead and calls `readable()`.

libccid probes serial readers only when pcscd starts, so the pty must exist - and this loop
run - before pcscd does; a reader that goes away stays unavailable until pcscd restarts.

`stanza(link, variant)` is the reader.conf entry for pcscd (pcsc-lite's reader.conf(5):
FRIENDLYNAME, DEVICENAME, LIBPATH).
"""

import collections
import logging
import os
import select
import time
import tty

from reader.ccid.firmware import Firmware
from reader.ccid.messages import HW_ERROR, SET_PARAMETERS, MessageError, answer, decode
from reader.ccid.pace import INSTANT, TIME_REQUEST, Pace
from reader.ccid.serial import DEFAULT_VARIANT, SerialFraming, Variant, variant_of

LIBCCIDTWIN = "/usr/lib/pcsc/drivers/serial/libccidtwin.so"  # Debian's libccid, serial flavour
FRIENDLY_NAME = "sscard CCID"  # pcscd lists the reader as "sscard CCID 00 00" (a second slot "... 00 01")
READ_SIZE = 4096

log = logging.getLogger("sscard.ccid")


def slot_names(variant: Variant, name: str = FRIENDLY_NAME) -> tuple[str, ...]:
    """The names pcscd gives the reader's slots: `sscard CCID 00 00`, then `... 00 01` and on for the
    further slots, which libccid opens on the same line (pcsc-lite's readerfactory.c names them)."""
    return tuple(f"{name} 00 {slot:02X}" for slot in range(variant.slots))


def stanza(link: str, variant: str = DEFAULT_VARIANT, name: str = FRIENDLY_NAME) -> str:
    """The reader.conf entry that has pcscd drive the reader at `link` with libccidtwin."""
    variant_of(variant)  # an unknown variant is refused here, not by a silent driver
    return (f'FRIENDLYNAME "{name}"\n'
            f"DEVICENAME {os.path.abspath(link)}:{variant}\n"
            f"LIBPATH {LIBCCIDTWIN}\n")


class PtyReader:
    """The firmware behind a pty whose slave `link` names; `serve()` runs until `stop()`."""

    def __init__(self, link: str, firmware: Firmware, variant: str = DEFAULT_VARIANT, realtime: bool = False):
        self.link = os.path.abspath(link)
        self.firmware = firmware
        firmware.paced = realtime
        self.realtime = realtime
        self._due: collections.deque[tuple[float, bytes]] = collections.deque()  # (monotonic time, bytes), in order
        self._busy_until = 0.0  # when the answer being paced goes out: the reader serves one command at a time
        self.variant = variant
        self.framing = SerialFraming(echo=variant_of(variant).echo)
        self.commands = 0
        self._master = self._slave = -1
        self._wake_r, self._wake_w = os.pipe()

    def open(self) -> "PtyReader":
        """Make the pty and the symlink `link` to its slave (an old symlink there is replaced)."""
        if os.path.lexists(self.link):
            if not os.path.islink(self.link):
                raise FileExistsError(f"{self.link} exists and is not a symlink: not replacing it")
            os.unlink(self.link)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # nothing echoed or translated before the driver sets the line itself
        # the slave stays open here: with no slave open, reading the master fails (EIO)
        os.symlink(os.ttyname(self._slave), self.link)
        return self

    def serve(self) -> None:
        """Answer every command the host writes, until `stop()`."""
        while True:
            ready, _, _ = select.select([self._master, self._wake_r], [], [], self.next_due())
            self.tick()
            if self._wake_r in ready or (self._master in ready and not self.readable()):
                return

    def fileno(self) -> int:
        """The pty's master side, for a caller's own select loop."""
        return self._master

    def readable(self) -> bool:
        """Read what the host wrote and answer it; False when the pty cannot be read."""
        try:
            data = os.read(self._master, READ_SIZE)
        except OSError as exc:
            log.warning("pty read failed: %s", exc)
            return False
        self.feed(data)
        return True

    def feed(self, data: bytes) -> None:
        """What the host wrote: each whole command is answered at once."""
        for raw in self.framing.receive(data):
            try:
                command = decode(raw)
            except MessageError:  # the frame's own length made it whole: cannot happen
                continue
            try:
                reply = self.firmware.handle(command)
            except Exception:  # a bug must not silence the reader: the driver would wait for nothing
                log.exception("the firmware failed on %s", command)
                reply = answer(command, self.firmware.status_of(command.slot), HW_ERROR)
            self.commands += 1
            log.debug("> %s", command)
            if command.type == SET_PARAMETERS:
                self._log_pps(command.slot)
            log.debug("< %s", reply)
            changes = self.firmware.slot_changes()
            if changes:
                log.debug("< NotifySlotChange %s", changes.hex(" ").upper())
                self.framing.notify(changes)
            self.framing.send(raw, reply.encode())
            self._send(self.framing.output(), self.firmware.pace)
        self._send(self.framing.output())  # NAKs, and answers sent again after the host's NAK

    # -- the pace of a real card (--realtime, reader/ccid/pace.py) --------------------------------------
    def _send(self, data: bytes, pace: Pace = INSTANT) -> None:
        """Write `data` now, or - realtime - when its pace says, after what is already waiting, with a
        time-request byte at each of the pace's requests."""
        if not data:
            return
        if not self.realtime or (not self._due and not pace.seconds):
            self._write(data)
            return
        start = max(time.monotonic(), self._busy_until)
        self._due.extend((start + at, TIME_REQUEST) for at in pace.requests)
        self._busy_until = start + pace.seconds
        self._due.append((self._busy_until, data))

    def next_due(self) -> float | None:
        """Seconds until the next paced write is due (None: nothing waits), for a caller's select."""
        if not self._due:
            return None
        return max(0.0, self._due[0][0] - time.monotonic())

    def tick(self) -> None:
        """Write every paced write that is due."""
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            data = self._due.popleft()[1]
            if data == TIME_REQUEST:
                log.debug("< time request %s", data.hex().upper())
            self._write(data)

    def _log_pps(self, slot: int) -> None:
        """The PPS the firmware ran itself for a SetParameters (automatic PPS, reader/ccid/firmware.py)."""
        pps = self.firmware.slots[slot].pps if 0 <= slot < len(self.firmware.slots) else None
        if pps is not None:
            log.debug("  PPS %s -> %s", pps[0].hex(" ").upper(), pps[1].hex(" ").upper() or "(no answer)")

    def _write(self, data: bytes) -> None:
        while data:
            written = os.write(self._master, data)
            data = data[written:]

    def stop(self) -> None:
        """Make `serve()` return (from another thread or a signal handler)."""
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Remove the symlink and close the pty."""
        if os.path.islink(self.link) and os.readlink(self.link).startswith("/dev/pts/"):
            os.unlink(self.link)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = self._wake_r = self._wake_w = -1

    def __enter__(self) -> "PtyReader":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
