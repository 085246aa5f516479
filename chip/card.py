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
import weakref

from chip.kernel import image as image_mod
from chip.kernel import lifecycle
from chip.iso.apdu import parse
from chip.kernel.applet import Applet
from chip.contacts.atr import LEGACY as ATR_LEGACY, AtrConfig, build
from chip.kernel.fs import MF_FID, master_file, nearest
from chip.apps.directory import PpseApplet, PseApplet
from chip.apps.financial import FinancialApplet
from chip.apps.psam import PSAM
from chip.apps.ssse import SsseApplet
from chip.kernel.store import PowerLoss, StorageFailure, Store, Vars
from chip.iso.sw import (
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
    "psam": PSAM,  # a terminal's secure access module (LD/T 32 P9): its MF is an environment, see chip.apps.psam
}

_EXPECTED: dict = {}  # kind -> the objects of a fresh personalisation of it (what an image must hold)
_OPTIONAL_VARS = frozenset(("card", key) for key in ATR_LEGACY)  # an image made before the ATR values lacks them
_LIFECYCLE_VALUES = {machine: frozenset(states) for machine, states in lifecycle.TRANSITIONS.items()}


def check_image(objects: dict, where: str) -> None:
    """ImageError unless `objects` hold what a card of their kind is made of: the objects (names and
    kinds) a fresh personalisation of that kind makes, the values of its Vars, lifecycle states the
    lifecycle table knows (chip.kernel.image.check_objects)."""
    config = objects.get("card")
    if config is None:
        raise image_mod.ImageError(f"{where}: damaged card image: missing card")
    kind = getattr(config, "kind", None)
    if kind not in KINDS:
        raise image_mod.ImageError(f"{where}: damaged card image: card.kind is {kind!r}, expected one of "
                                   f"{', '.join(sorted(KINDS))}")
    expected = _EXPECTED.get(kind)
    if expected is None:
        from chip.personalization.profile import load_profile

        store = Card._fresh_store(kind, load_profile("default"), datetime.date(2026, 1, 1), image_mod.MemoryBackend())
        expected = _EXPECTED[kind] = dict(store.objects)
    allowed = {machine: states for machine, states in _LIFECYCLE_VALUES.items() if machine[0] in expected}
    image_mod.check_objects(objects, expected, where, optional=_OPTIONAL_VARS, allowed=allowed)


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
        # the applets reach the card by a weak proxy: no reference cycle, so a card nobody holds is
        # freed at once and its image's lock released with it (see close)
        me = weakref.proxy(self)
        self.mf_applet = Applet(me, store)
        self.applets = {cls.NAME: cls(me, store) for cls in self.kind.applets}
        self._closed = False
        self.power_up_warning = None  # why the last power-up could not write its rule's change, or None
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
    def from_profile(cls, profile="default", state=None, *, date: datetime.date | None = None,
                     overwrite: bool = False) -> "Card":
        """Personalise a new social-security card from a profile (shipped name, TOML path or Profile).

        With `state`, the card's persistent state lives in that image file from
        now on, and the card is the file's only owner (see `open`). An existing
        file is refused (ImageError) unless `overwrite` (`sscard personalize
        --force`); then it is replaced only once the new image is complete, and
        never while another card has it open. Without `state`, the card lives
        in memory.
        """
        return cls._personalize("sscard", profile, state, date, overwrite)

    @classmethod
    def psam(cls, profile="default", state=None, *, date: datetime.date | None = None,
             overwrite: bool = False) -> "Card":
        """A terminal's PSAM holding the profile's issuer master keys (a card of its own)."""
        return cls._personalize("psam", profile, state, date, overwrite)

    @staticmethod
    def _fresh_store(kind: str, profile, today, backend) -> Store:
        """A store holding what personalising a card of `kind` from `profile` makes (not committed)."""
        store = Store(backend)
        store.add("card", Vars(kind=kind, profile=profile.name, state=lifecycle.INITIAL[lifecycle.CARD],
                               **profile.atr_config().to_vars()))
        for applet in KINDS[kind].applets:
            applet.personalize(store, profile, today)
        return store

    @classmethod
    def _personalize(cls, kind: str, profile, state, date, overwrite: bool = False) -> "Card":
        from chip.personalization.profile import Profile, load_profile

        if not isinstance(profile, Profile):
            profile = load_profile(profile)
        today = date or datetime.date.today()
        if state is None:
            backend = image_mod.MemoryBackend()
        else:
            backend = image_mod.FileBackend.create(state, overwrite=overwrite)  # locked: its only owner
        try:
            store = cls._fresh_store(kind, profile, today, backend)
            store.commit()
        except StorageFailure as failure:  # a missing, read-only or full folder: one line naming the image
            backend.close()
            raise image_mod.ImageError(str(failure)) from None
        except BaseException:
            backend.close()
            raise
        return cls(store, date)

    @classmethod
    def open(cls, path, *, date: datetime.date | None = None, read_only: bool = False) -> "Card":
        """Reopen a personalised card image; its state keeps living in that file.

        The card is the image's only owner while it lives: it holds an exclusive
        lock on the file (chip.kernel.image) until `close()` (or the end of a `with`
        block, or the card being dropped, or the process ending). Another
        opener, in this process or another, gets ImageInUse
        (`card.img is in use by pid 1234 (sscard serve)`). `read_only=True`
        reads the image as it is now without taking it (whoever owns it may be
        changing it): that card writes nothing, a command that would write
        answers 6581.

        The objects a card of the image's kind is made of (those a fresh
        personalisation makes) are checked first: a missing one or one of the
        wrong kind is ImageError "damaged card image: missing ssse.pin".
        """
        if read_only:
            backend, objects = image_mod.snapshot(path)
        else:
            backend, objects = image_mod.FileBackend.open(path)
        try:
            check_image(objects, os.fspath(path))
            return cls(Store(backend, objects), date)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # what the check did not foresee
            backend.close()
            raise image_mod.ImageError(f"{os.fspath(path)}: damaged card image ({type(exc).__name__}: {exc})") \
                from None
        except BaseException:
            backend.close()
            raise

    def close(self) -> None:
        """The card leaves the simulator: powered off, its image given up (the lock is released).

        A closed card cannot be powered again; open the image again with `Card.open`.
        """
        if self.powered:
            self.power_off()
        self._closed = True
        self.store.backend.close()

    def __enter__(self) -> "Card":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        store = self.__dict__.get("store")
        if store is not None:
            store.backend.close()

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
        if self._closed:
            raise image_mod.ImageError(f"{self.path}: this card was closed; open the image again with Card.open")
        self.protocol = protocol
        self._clear_volatile()
        self.powered = True
        self.power_up_warning = None
        for applet in self.applets.values():
            try:
                applet.power_up()
            except PowerLoss:  # the power went again while a power-up rule was being written
                self.power_off()
                raise
            except StorageFailure as failure:
                # A real card's failed EEPROM write answers 6581 to the command that needed it; a
                # power-up rule has no command to answer: the card powers up without the change (rolled
                # back), says so once, and the next power-up that can write applies the rule.
                self.power_up_warning = (f"warning: {failure}; the card powers up without its power-up "
                                         f"rule's change (the activation-deadline lock), which the next "
                                         f"power-up that can write applies")
                log.warning("%s", self.power_up_warning)
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
            sw = error.sw
            if sw == SW_WRONG_LENGTH and len(apdu) >= 4:  # malformed: its class and INS are checked first
                sw = self.knows(apdu[0], apdu[1]) or sw
            return _sw(sw)
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

    def knows(self, cla: int, ins: int) -> int:
        """0 when the card OS takes commands `cla ins` now (SELECT, GET RESPONSE, or the selected
        applet's table), else the status word it answers them whatever P1, P2 and data say:
        6E00 for a class it does not speak, 6D00 for an unknown INS, 6A81 on a blocked card.

        No side effect and off the hot path: the T=0 handler asks on each data-receiving header
        before it ACKs, so an unsupported command is answered right after its header, as a real
        card does (ISO/IEC 7816-3 §10.3.3: the card has only the header when it answers
        the procedure byte). The same order decides a malformed APDU in `transmit`: class, then
        INS, then the length rules (6700), so the wire and in-process agree.
        """
        if self.config.state == "blocked":
            return SW_CARD_BLOCKED
        if cla == 0 and (ins == _SELECT or ins == _GET_RESPONSE):
            return 0
        applet = self.applet
        if (cla << 8 | ins) in applet.commands:
            return 0
        return SW_INS_NOT_SUPPORTED if cla in applet.classes or cla in OS_CLASSES else SW_CLA_NOT_SUPPORTED

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

