"""The card OS: power, selection, dispatch, transactions and response delivery.

`Card.transmit(apdu) -> response` is the hot path: decode, look the handler
up in the selected applet's table, run it, commit its writes, shape the
response for the active protocol. Everything else (personalisation, opening
an image) happens off that path.

Response delivery follows the protocol chosen at power-up:
- T=1 (and in-process by default): data + SW in one response. A case 2
  command whose Le is shorter than the data gets `6Cxx` (xx = the right
  length); a case 4 command gets the first Le bytes and `61xx` (it has run:
  the rest waits for GET RESPONSE); Le = 00 or a longer Le gets all the data.
- T=0: a case 2 command follows the same Le rule; a command that carried data
  (case 3/4) or had no Le cannot receive data in the same exchange, so the
  card answers `61xx` and keeps the data for GET RESPONSE (`00 C0 00 00 Le`),
  which answers `6Cxx` to an Le longer than what is left (Le = 00: all of it).
"""

import datetime
import logging
import os

from . import image as image_mod
from . import lifecycle
from .apdu import parse
from .applet import Applet
from .atr import AtrConfig, build
from .fs import MF_FID, master_file, nearest
from .directory import PpseApplet, PseApplet
from .financial import FinancialApplet
from .psam import PSAM
from .ssse import SsseApplet
from .store import PowerLoss, StorageFailure, Store, Vars
from .sw import (
    SW_CARD_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_APPLICATION_PERMANENTLY_BLOCKED,
    SW_FILE_NOT_FOUND,
    SW_INS_NOT_SUPPORTED,
    SW_MEMORY_FAILURE,
    SW_OK,
    SW_UNKNOWN,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)

log = logging.getLogger("sscard.chip")



class Kind:
    """A kind of chip: its applets and the file system they make together (one MF per kind)."""

    def __init__(self, name: str, applets):
        self.name = name
        self.applets = tuple(applets)
        self.mf = master_file([applet.ROOT for applet in self.applets])
        self.by_name = {node.name: node for node in self.mf.walk() if node.is_df and node.name}


KINDS = {
    "sscard": Kind("sscard", (SsseApplet, PseApplet, PpseApplet, FinancialApplet)),  # the social-security card
    "psam": PSAM,  # a terminal's secure access module (LD/T 32 P9): its MF is an environment, see chip.psam
}

_SW_9000 = b"\x90\x00"
_SELECT = 0xA4
OS_CLASSES = frozenset((0x00, 0x04, 0x80, 0x84))  # ISO, ISO with SM, proprietary, proprietary with SM
_GET_RESPONSE = 0xC0


class CardNotPowered(Exception):
    """A command was sent to a card that is not powered (call reset() first)."""


def _sw(sw: int) -> bytes:
    return bytes((sw >> 8, sw & 0xFF))


class Card:
    """The chip: persistent store, applets, and the volatile session state."""

    def __init__(self, store: Store, date: datetime.date | None = None):
        self.store = store
        self.config = store["card"]
        self.kind = KINDS[self.config.kind]
        self.mf = self.kind.mf
        self.atr_config = AtrConfig.from_vars(self.config)  # an older image lacks some values: defaults
        self.atr = build(self.atr_config)
        self._date = date
        self.random = os.urandom  # the chip's random source; tests may set a deterministic one
        self.mf_applet = Applet(self, store)
        self.applets = {cls.NAME: cls(self, store) for cls in self.kind.applets}
        self._owner = {}
        for applet in self.applets.values():
            for node in applet.ROOT.walk():
                self._owner[node] = applet
        self.powered = False
        self.protocol = None  # set at power-up (None: the card's own protocol)
        self.faults = None  # a chip.faults.FaultPlan, for tests that want a card to misbehave
        self.last_delay_etu = 0  # the simulated busy time a `delay` fault gave the last command
        self._clear_volatile()

    # -- making and opening cards ------------------------------------------
    @classmethod
    def from_profile(cls, profile="default", state=None, *, date: datetime.date | None = None) -> "Card":
        """Personalise a new social-security card from a profile (shipped name, TOML path or Profile).

        With `state`, the card's persistent state lives in that image file from
        now on (an existing file is replaced only once the new image is
        complete); without, it lives in memory.
        """
        return cls._personalize("sscard", profile, state, date)

    @classmethod
    def psam(cls, profile="default", state=None, *, date: datetime.date | None = None) -> "Card":
        """A terminal's PSAM holding the profile's issuer master keys (a card of its own)."""
        return cls._personalize("psam", profile, state, date)

    @classmethod
    def _personalize(cls, kind: str, profile, state, date) -> "Card":
        from .profile import Profile, load_profile

        if not isinstance(profile, Profile):
            profile = load_profile(profile)
        today = date or datetime.date.today()
        backend = image_mod.FileBackend(state) if state is not None else image_mod.MemoryBackend()
        store = Store(backend)
        store.add("card", Vars(kind=kind, profile=profile.name, state=lifecycle.INITIAL[lifecycle.CARD],
                               **profile.atr_config().to_vars()))
        for applet in KINDS[kind].applets:
            applet.personalize(store, profile, today)
        store.commit()
        return cls(store, date)

    @classmethod
    def open(cls, path, *, date: datetime.date | None = None) -> "Card":
        """Reopen a personalised card image; its state keeps living in that file."""
        backend, objects = image_mod.FileBackend.open(path)
        return cls(Store(backend, objects), date)

    @property
    def path(self) -> str | None:
        return self.store.backend.path

    # -- simulated date -----------------------------------------------------
    def set_date(self, date: datetime.date | None) -> None:
        """Set the simulated date (None: follow the host's today)."""
        self._date = date

    @property
    def today(self) -> datetime.date:
        return self._date or datetime.date.today()

    # -- the financial application's activation, as the SSSE deadline rule sees it ----------
    def financial_activated(self) -> bool:
        fin = self.applets.get("fin")
        return fin is not None and fin.activated()

    # -- power ----------------------------------------------------------------
    def power_on(self, protocol: int | None = None) -> bytes:
        """Cold reset: power the contacts and answer the ATR. `protocol` 0 or 1 sets T=0/T=1 behaviour;
        None (default) is the card's own: the protocol that runs without PPS, the first the ATR
        offers (the specific one in specific mode; LD/T 32 P2 §8.7) - T=0 on the default card."""
        if protocol is None:
            config = self.atr_config
            protocol = config.protocols[0] if config.specific is None else config.specific
        if protocol not in (0, 1):
            raise ValueError("protocol must be 0 (T=0) or 1 (T=1)")
        self.protocol = protocol
        self._clear_volatile()
        self.powered = True
        try:
            for applet in self.applets.values():
                applet.power_up()
        except PowerLoss:  # the power went again while a power-up rule was being written
            self.power_off()
            raise
        return self.atr

    def reset(self, protocol: int | None = None) -> bytes:
        """Warm reset: volatile state is cleared, persistent state stays."""
        return self.power_on(self.protocol if protocol is None else protocol)

    def power_off(self) -> None:
        self._clear_volatile()
        self.powered = False

    def _clear_volatile(self) -> None:
        if self.store.journal:
            self.store.abort()
        for applet in self.applets.values():
            applet.end_session()
        self.applet = self._owner.get(self.mf, self.mf_applet)  # the PSAM's MF is its DES environment
        self.current_df = self.mf
        self.current_ef = None
        self.record_pointer = 0  # the current record of the current EF (P3 §5.3.1)
        self._pending = None  # (remaining data, final SW) for GET RESPONSE

    # -- the hot path -----------------------------------------------------------
    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU and return response data + SW1 SW2."""
        if self.faults is not None:
            return self.faults.transmit(self, apdu)
        if not self.powered:
            raise CardNotPowered("the card is not powered: call reset() (or power_on()) first")
        store = self.store
        if self.config.state == "blocked":  # CARD BLOCK is final: nothing answers any more
            self._pending = None
            return _sw(SW_CARD_BLOCKED)
        try:
            cmd = parse(apdu)
            ins = cmd.ins
            if ins == _GET_RESPONSE and cmd.cla == 0:
                return self._get_response(cmd)
            self._pending = None
            if ins == _SELECT and cmd.cla == 0:
                data, sw = self._select(cmd)
            else:
                handler = self.applet.commands.get(cmd.cla << 8 | ins)
                if handler is None:
                    raise CardError(self._unsupported(cmd))
                data, sw = handler(self.applet, cmd)
            if store.journal:
                store.commit()
        except CardError as error:
            if store.journal:
                store.abort()
            self._pending = None  # a malformed command discards GET RESPONSE data too
            return _sw(error.sw)
        except PowerLoss:
            self.power_off()
            raise
        except StorageFailure as failure:
            log.error("persistent write failed: %s", failure)
            self.applet.end_session()  # a command that did not land grants nothing (e.g. a verified PIN)
            self._pending = None
            return _sw(SW_MEMORY_FAILURE)
        except Exception:  # a bug must not crash the card nor leave half a command behind
            log.exception("internal error on %s", bytes(apdu).hex().upper())
            if store.journal:
                store.abort()
            return _sw(SW_UNKNOWN)
        if not data:
            return _SW_9000 if sw == SW_OK else _sw(sw)
        return self._deliver(cmd, data, sw)

    def _unsupported(self, cmd) -> int:
        """6D00 for an unknown INS in a class the OS speaks, 6E00 for any other class."""
        cla = cmd.cla
        return SW_INS_NOT_SUPPORTED if cla in self.applet.classes or cla in OS_CLASSES else SW_CLA_NOT_SUPPORTED

    def _deliver(self, cmd, data: bytes, sw: int) -> bytes:
        n = len(data)
        if self.protocol == 0 and cmd.case != 2:
            self._pending = (data, sw)
            return bytes((0x61, n & 0xFF if n < 256 else 0))
        ne = cmd.ne
        if n <= ne:
            return data + (_SW_9000 if sw == SW_OK else _sw(sw))
        if cmd.le_present and n <= 256 and cmd.case == 2:
            # 6Cxx asks for the same command again: only for a command without data (READ RECORD,
            # GET DATA), which reads. A command with data may have changed state (GENERATE AC
            # moved the ATC): its answer is not thrown away but served by GET RESPONSE.
            return bytes((0x6C, n & 0xFF))
        self._pending = (data[ne:], sw)
        left = n - ne
        return data[:ne] + bytes((0x61, left if left < 256 else 0))

    def hold_response(self, data: bytes, sw: bytes) -> bytes:
        """Keep `data` for GET RESPONSE, before what the OS already holds when `sw` is 61xx
        (a T=0 transport that could not send it in this exchange); return the 61xx to answer."""
        pending = self._pending
        if sw[0] == 0x61 and pending is not None:
            data, final = data + pending[0], pending[1]
        else:
            final = sw[0] << 8 | sw[1]
        self._pending = (bytes(data), final)
        n = len(data)
        return bytes((0x61, n if n < 256 else 0))

    def _get_response(self, cmd) -> bytes:
        pending = self._pending
        if cmd.p1 or cmd.p2:
            return _sw(SW_WRONG_P1P2)
        if cmd.data:
            return _sw(SW_WRONG_LENGTH)
        refusal = self.applet.refusal()
        if refusal:
            return _sw(refusal)
        if pending is None:
            return _sw(SW_UNKNOWN)  # nothing waiting (LD/T 32 P5 §6.6.4)
        data, sw = pending
        n = len(data)
        ne = cmd.ne
        if self.applet.LE_00_ASKS_LENGTH and ne == 256 and n < 256 and cmd.case == 2 and not cmd.extended:
            return bytes((0x6C, n))  # Le 00 with data waiting: the length (P5 §6.6.4)
        if ne > n:
            if cmd.case == 2 and ne != (65536 if cmd.extended else 256):
                return bytes((0x6C, n if n < 256 else 0))
            ne = n
        if ne < n:
            self._pending = (data[ne:], sw)
            left = n - ne
            return data[:ne] + bytes((0x61, left if left < 256 else 0))
        self._pending = None
        return data + _sw(sw)

    # -- SELECT ---------------------------------------------------------------
    def _select(self, cmd):
        """SELECT (00 A4) by FID (P1 00/01/02/03), DF name (04) or path (08/09).

        P2: 00 FCI, 04 FCP, 0C no data; occurrence bits first (00) or next (02).
        """
        p1, p2 = cmd.p1, cmd.p2
        if p2 & 0xF1 or p2 & 0x0C == 0x08:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        if p1 == 0x04:
            node = self._by_name(data, p2 & 0x02)
        elif p1 == 0x00:
            node = self._by_fid(data)
        elif p1 in (0x01, 0x02):
            if len(data) != 2:
                raise CardError(SW_WRONG_LENGTH)
            node = self.current_df.by_fid.get(int.from_bytes(data, "big"))
            if node is None or node.is_df != (p1 == 0x01):
                raise CardError(SW_FILE_NOT_FOUND)
        elif p1 == 0x03:
            if data:
                raise CardError(SW_WRONG_LENGTH)
            node = self.current_df.parent or self.mf
        elif p1 in (0x08, 0x09):
            node = self._by_path(data, self.mf if p1 == 0x08 else self.current_df)
        else:
            raise CardError(SW_WRONG_P1P2)
        sw = self._enter(node, by_name=p1 == 0x04)
        response = p2 & 0x0C
        if response == 0x0C or sw == SW_APPLICATION_PERMANENTLY_BLOCKED:
            return b"", sw
        if response == 0x04:
            return node.fcp(), sw
        if not node.is_df:
            return b"", sw  # an AEF has no FCI: the status word only (LD/T 32 P5 §6.11.1)
        return self.applet.fci(node), sw

    def _by_name(self, name: bytes, next_occurrence: int):
        if not name:
            return self.mf
        by_name = self.kind.by_name
        node = by_name.get(bytes(name))
        if node is not None and not next_occurrence:
            return nearest(node, self.current_df)
        # right-truncated DF name (ISO 7816-4): first match, or the one after the current DF
        matches = [n for n in by_name.values() if n.name.startswith(name)]
        if next_occurrence and self.current_df in matches:
            matches = matches[matches.index(self.current_df) + 1:]
        if not matches:
            raise CardError(SW_FILE_NOT_FOUND)
        return matches[0]

    def _by_fid(self, data: bytes):
        if not data:
            return self.mf
        if len(data) != 2:
            raise CardError(SW_WRONG_LENGTH)
        fid = data[0] << 8 | data[1]
        if fid == MF_FID:
            return self.mf
        df = self.current_df
        node = df.by_fid.get(fid)
        if node is None and df.parent is not None:
            node = df.parent.by_fid.get(fid)  # a sibling, or the parent's other files
            if node is None and df.parent.fid == fid:
                node = df.parent
        if node is None:
            raise CardError(SW_FILE_NOT_FOUND)
        return node

    def _by_path(self, data: bytes, start):
        if not data or len(data) % 2:
            raise CardError(SW_WRONG_LENGTH)
        node = start
        for i in range(0, len(data), 2):
            fid = data[i] << 8 | data[i + 1]
            if i == 0 and fid == MF_FID and start is self.mf:
                continue
            child = node.by_fid.get(fid) if node.is_df else None
            if child is None:
                raise CardError(SW_FILE_NOT_FOUND)
            node = child
        return node

    def _enter(self, node, by_name: bool) -> int:
        """Make `node` current; switch applets when it belongs to another one.

        Selecting an application by its DF name starts a new session of it when
        the applet says so (`RESELECT_RESTARTS`: an EMV application starts a new
        transaction); moving between its files keeps the session.
        """
        df = node if node.is_df else node.parent
        owner = self._owner.get(df, self.mf_applet)
        applet = self.applet
        entering = owner is not applet or (by_name and node is owner.ROOT and owner.RESELECT_RESTARTS)
        if entering:
            applet.deselect()
            self.applet = self.mf_applet
            self.current_df, self.current_ef = self.mf, None
            sw = owner.select(node)  # may raise: then nothing is selected but the MF
            self.applet = owner
        else:
            sw = owner.reselect(node)
        self.current_df = df
        self.current_ef = None if node.is_df else node
        self.record_pointer = 0
        return sw

    # -- inspection (host tools; not an APDU path) -------------------------------
    def __repr__(self) -> str:
        where = self.path or "memory"
        return f"<Card {self.config.profile} in {where}>"

