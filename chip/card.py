"""The card OS: power, selection, dispatch, transactions and response delivery.

`Card.transmit(apdu) -> response` is the hot path: decode, look the handler
up in the selected applet's table, run it, commit its writes, shape the
response for the active protocol. Everything else (personalisation, opening
an image) happens off that path.

Response delivery follows the protocol chosen at power-up (T=1 or in-process:
data + SW at once; T=0: `61xx` and GET RESPONSE for a command that carried
data), under the Le rules of chip.kernel.delivery: the card's `Delivery` keeps
what GET RESPONSE fetches.
"""

import datetime
import logging
import os
import weakref

from chip.apps.directory import PpseApplet, PseApplet
from chip.apps.financial import FinancialApplet
from chip.apps.psam import PSAM, PsamKind
from chip.apps.ssse import SsseApplet
from chip.contacts.atr import LEGACY as ATR_LEGACY
from chip.contacts.atr import AtrConfig, build
from chip.iso.apdu import Command, decode
from chip.iso.ins import GET_RESPONSE, SELECT
from chip.iso.sw import (
    SW_APPLICATION_PERMANENTLY_BLOCKED,
    SW_CARD_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_FILE_NOT_FOUND,
    SW_INS_NOT_SUPPORTED,
    SW_MEMORY_FAILURE,
    SW_OK,
    SW_UNKNOWN,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)
from chip.kernel import image as image_mod
from chip.kernel import lifecycle
from chip.kernel.applet import Applet
from chip.kernel.delivery import SW_OK_BYTES, Delivery, status
from chip.kernel.fs import master_file, select_by_fid, select_by_name, select_by_path, select_child, select_parent
from chip.kernel.lifecycle import BLOCKED
from chip.kernel.power import CardNotPowered, PowerLoss
from chip.kernel.store import StorageFailure, Store, Vars

log = logging.getLogger("sscard.chip")



class Kind:
    """A kind of chip: its applets and the file system they make together (one MF per kind)."""

    def __init__(self, name: str, applets):
        self.name = name
        self.applets = tuple(applets)
        self.mf = master_file([applet.ROOT for applet in self.applets])
        self.by_name = {node.name: node for node in self.mf.walk() if node.is_df and node.name}


KINDS: dict[str, Kind | PsamKind] = {
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


OS_CLASSES = frozenset((0x00, 0x04, 0x80, 0x84))  # ISO, ISO with SM, proprietary, proprietary with SM


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
        # the applets with a power-up rule (the SSSE's activation deadline): every reset runs them
        self._power_up_rules = [applet for applet in self.applets.values() if type(applet).power_up is not Applet.power_up]
        self._entered = dict.fromkeys(self.applets.values())  # see _clear_volatile: all, before the first power-up
        self._closed = False
        self.power_up_warning: str | None = None  # why the last power-up could not write its rule's change, or None
        self._owner = {}
        for applet in self.applets.values():
            for node in applet.ROOT.walk():
                self._owner[node] = applet
        self.powered = False
        self.protocol: int | None = None  # set at power-up (None: the card's own protocol)
        self.faults = None  # a chip.faults.FaultPlan, for tests that want a card to misbehave
        self.last_delay_etu = 0  # the simulated busy time a `delay` fault gave the last command
        self.delivery = Delivery()  # what GET RESPONSE fetches
        self._command = Command()  # the APDU buffer: each command is decoded into it (chip.iso.apdu.decode)
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
        backend: image_mod.MemoryBackend | image_mod.FileBackend
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
        backend: image_mod.SnapshotBackend | image_mod.FileBackend
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
        for applet in self._power_up_rules:
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
        """What a reset or the power going clears: the applets' sessions, the selection, what waits
        for GET RESPONSE. An applet's volatile state (a verified PIN, a challenge) changes only while
        it is the selected one, so only the applets entered since the last clear have any to drop."""
        if self.store.journal:
            self.store.abort()
        entered = self._entered
        for applet in entered:
            applet.end_session()
        entered.clear()
        self.applet = self._owner.get(self.mf, self.mf_applet)  # the PSAM's MF is its DES environment
        entered[self.applet] = None
        self.current_df = self.mf
        self.current_ef = None
        self.record_pointer = 0  # the current record of the current EF (P3 §5.3.1)
        self.delivery.pending = None

    # -- the hot path -----------------------------------------------------------
    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU and return response data + SW1 SW2."""
        if self.faults is not None:
            return self.faults.transmit(self, apdu)
        if not self.powered:
            raise CardNotPowered("the card is not powered: call reset() (or power_on()) first")
        delivery = self.delivery
        if self.config.state == BLOCKED:  # CARD BLOCK is final: nothing answers any more
            delivery.pending = None
            return status(SW_CARD_BLOCKED)
        store = self.store
        try:
            cmd = decode(self._command, apdu)
            command = cmd.cla << 8 | cmd.ins
            if command == GET_RESPONSE:
                return delivery.get_response(cmd, self.applet)
            delivery.pending = None
            if command == SELECT:
                data, sw = self._select(cmd)
            else:
                applet = self.applet
                handler = applet.commands.get(command)
                if handler is None:
                    raise CardError(self._unsupported(cmd.cla))
                data, sw = handler(applet, cmd)
            if store.journal:
                store.commit()
        except CardError as error:
            if store.journal:
                store.abort()
            delivery.pending = None  # a malformed command discards GET RESPONSE data too
            sw = error.sw
            if sw == SW_WRONG_LENGTH and len(apdu) >= 4:  # malformed: its class and INS are checked first
                sw = self.knows(apdu[0], apdu[1]) or sw
            return status(sw)
        except PowerLoss:
            self.power_off()
            raise
        except StorageFailure as failure:
            log.error("persistent write failed: %s", failure)
            self.applet.end_session()  # a command that did not land grants nothing (e.g. a verified PIN)
            delivery.pending = None
            return status(SW_MEMORY_FAILURE)
        except Exception:  # a bug must not crash the card nor leave half a command behind
            log.exception("internal error on %s", bytes(apdu).hex().upper())
            if store.journal:
                store.abort()
            return status(SW_UNKNOWN)
        if not data:
            return SW_OK_BYTES if sw == SW_OK else status(sw)
        return delivery.deliver(cmd, data, sw, self.protocol == 0)

    def _unsupported(self, cla: int) -> int:
        """6D00 for an unknown INS in a class the OS speaks, 6E00 for any other class."""
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
        if self.config.state == BLOCKED:
            return SW_CARD_BLOCKED
        command = cla << 8 | ins
        if command == SELECT or command == GET_RESPONSE or command in self.applet.commands:
            return 0
        return self._unsupported(cla)

    def hold_response(self, data: bytes, sw: bytes) -> bytes:
        """Keep `data` for GET RESPONSE, before what the OS already holds when `sw` is 61xx
        (a T=0 transport that could not send it in this exchange); return the 61xx to answer."""
        return self.delivery.hold(data, sw)

    # -- SELECT ---------------------------------------------------------------
    def _select(self, cmd):
        """SELECT (00 A4) by FID (P1 00/01/02/03), DF name (04) or path (08/09): the file
        chip.kernel.fs resolves from the current DF (ISO/IEC 7816-4 §7.1.1, LD/T 32 P5 §6.11).

        P2: 00 FCI, 04 FCP, 0C no data; occurrence bits first (00) or next (02).
        """
        p1, p2 = cmd.p1, cmd.p2
        if p2 & 0xF1 or p2 & 0x0C == 0x08:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        mf, current = self.mf, self.current_df
        if p1 == 0x04:
            node = select_by_name(mf, self.kind.by_name, data, p2 & 0x02, current)
        elif p1 == 0x00 and not data:
            node = mf
        elif p1 <= 0x02:
            if len(data) != 2:
                raise CardError(SW_WRONG_LENGTH)
            fid = data[0] << 8 | data[1]
            node = select_by_fid(mf, current, fid) if p1 == 0x00 else select_child(current, fid, p1 == 0x01)
        elif p1 == 0x03:
            if data:
                raise CardError(SW_WRONG_LENGTH)
            node = select_parent(mf, current)
        elif p1 in (0x08, 0x09):
            if not data or len(data) % 2:
                raise CardError(SW_WRONG_LENGTH)
            node = select_by_path(mf, mf if p1 == 0x08 else current, data)
        else:
            raise CardError(SW_WRONG_P1P2)
        if node is None:
            raise CardError(SW_FILE_NOT_FOUND)
        sw = self._enter(node, p1 == 0x04)
        response = p2 & 0x0C
        if response == 0x0C or sw == SW_APPLICATION_PERMANENTLY_BLOCKED:
            return b"", sw
        if response == 0x04:
            return node.fcp(), sw
        if not node.is_df:
            return b"", sw  # an AEF has no FCI: the status word only (LD/T 32 P5 §6.11.1)
        return self.applet.fci(node), sw

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
            self._entered[owner] = None
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

