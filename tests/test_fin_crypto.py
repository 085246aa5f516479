"""The financial application's cryptography, every value checked independently (the model of
docs/decisions.md §6, Cryptography).

3DES through `pyemv` (EMV Common Core Definitions: ICC master key option A,
common session key, ISO 9797-1 MAC algorithm 3, ARPC method 1); SM4 written
out here on `cryptography`'s SM4 as docs/decisions.md §6 gives it. Nothing comes from chip.kernel.crypto
or reader.terminals.issuer: the activation scripts, the ARPC and every script MAC are
built in this file, and the transactions are driven APDU by APDU.
"""

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from helpers import GPO_RESPONSE, PAN, SELECT_FIN, activate_financial, tx
from pyemv import ac as emv_ac
from pyemv import kd, mac, tools

from chip.iso import ber

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

PSN = "01"
IMK = {  # the default profile's test keys (default.toml `[keys]` fin_imk_*)
    "ac": bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
    "smi": bytes.fromhex("FEDCBA98765432100123456789ABCDEF"),
    "smc": bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"),
}
AIP = bytes.fromhex("1C00")
SELECT_AID = SELECT_FIN + "00"
APPROVED, DECLINED = b"00", b"05"  # ARC "00" = 3030


def cdol1(amount: int = 1000, un: str = "11223344", currency: str = "0156", tvr: str = "0000000000") -> bytes:
    """CDOL1 data (29 bytes): amount, other amount, country, TVR, currency, date, type, unpredictable number."""
    data = bytes.fromhex(f"{amount:012d}" "000000000000" "0156" + tvr + currency + "261121" "00" + un)
    assert len(data) == 29
    return data


def pin_block(digits: str) -> bytes:
    text = "2" + format(len(digits), "X") + digits
    return bytes.fromhex(text + "F" * (16 - len(text)))


def invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# -- the two algorithms, independently -------------------------------------------------------------


class Tdes:
    """EMV CCD 3DES, entirely through pyemv."""

    name, sm, cvn, alg_id = "3des", "00", 0x0A, 0x01

    def icc_mk(self, kind: str) -> bytes:
        return kd.derive_icc_mk_a(IMK[kind], PAN, PSN)

    def sk(self, kind: str, atc: int) -> bytes:
        return kd.derive_common_sk(self.icc_mk(kind), atc.to_bytes(2, "big") + bytes(6))

    def cryptogram(self, sk: bytes, data: bytes) -> bytes:
        return emv_ac.generate_ac(sk, data)

    def arpc(self, sk: bytes, arqc: bytes, arc: bytes) -> bytes:
        return emv_ac.generate_arpc_1(sk, arqc, arc)

    def mac4(self, sk: bytes, message: bytes) -> bytes:
        return mac.mac_iso9797_3(sk[:8], sk[8:], message, 2)[:4]

    def encipher_pin(self, sk: bytes, block: bytes) -> bytes:
        return tools.encrypt_tdes_ecb(sk, block + b"\x80" + bytes(7))


def sm4_ecb(key: bytes, data: bytes) -> bytes:
    e = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return e.update(data) + e.finalize()


def sm4_cbc_mac(key: bytes, data: bytes) -> bytes:
    """SM4 CBC-MAC: the last block of SM4-CBC (zero IV) over data padded by ISO 9797-1 method 2."""
    padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    e = Cipher(algorithms.SM4(key), modes.CBC(bytes(16))).encryptor()
    return (e.update(padded) + e.finalize())[-16:]


class Sm4:
    """The SM4 path of docs/decisions.md §6, written out on cryptography's SM4."""

    name, sm, cvn, alg_id = "sm4", "01", 0x4A, 0x04

    def icc_mk(self, kind: str) -> bytes:
        y = bytes.fromhex((PAN + PSN)[-16:])
        return sm4_ecb(IMK[kind], y + invert(y))

    def sk(self, kind: str, atc: int) -> bytes:
        r = atc.to_bytes(2, "big")
        return sm4_ecb(self.icc_mk(kind), bytes(6) + r + bytes(6) + invert(r))

    def cryptogram(self, sk: bytes, data: bytes) -> bytes:
        return sm4_cbc_mac(sk, data)[:8]

    def arpc(self, sk: bytes, arqc: bytes, arc: bytes) -> bytes:
        return sm4_ecb(sk, xor(arqc + bytes(8), arc + bytes(14)))[:8]

    def mac4(self, sk: bytes, message: bytes) -> bytes:
        return sm4_cbc_mac(sk, message)[:4]

    def encipher_pin(self, sk: bytes, block: bytes) -> bytes:
        return sm4_ecb(sk, block + b"\x80" + bytes(7))


TDES, SM4 = Tdes(), Sm4()
ALGORITHMS = [pytest.param(TDES, id="3des"), pytest.param(SM4, id="sm4")]


# -- a terminal and an issuer written out APDU by APDU ----------------------------------------------------------


def send(reader, apdu: bytes) -> bytes:
    return reader.transmit(apdu)


def ok(response: bytes) -> bytes:
    assert response[-2:] == b"\x90\x00", response.hex().upper()
    return response[:-2]


class AcResponse:
    def __init__(self, response: bytes):
        top = ber.parse(ok(response))
        assert [t for t, _ in top] == [0x77]
        inner = ber.parse(top[0][1])
        assert [t for t, _ in inner] == [0x9F27, 0x9F36, 0x9F26, 0x9F10]
        cid, atc, ac, iad = (v for _, v in inner)
        assert len(cid) == 1 and len(atc) == 2 and len(ac) == 8 and len(iad) == 8
        self.cid = cid[0]
        self.atc = int.from_bytes(atc, "big")
        self.ac = ac
        self.iad = iad
        self.cvr = iad[3:7]


class Transaction:
    """One transaction on the card: SELECT, GPO (DF69 by algorithm), optional VERIFY, GENERATE AC, scripts."""

    def __init__(self, reader, alg, pin: str | None = None, data: bytes | None = None, select_sw: str = "9000"):
        self.reader, self.alg = reader, alg
        self.data = data if data is not None else cdol1()
        assert tx(reader, SELECT_AID)[-4:] == select_sw
        pdol = self.data[:6] + self.data[19:21] + bytes.fromhex(alg.sm)  # amount, currency, DF69
        assert tx(reader, "80A800000B8309" + pdol.hex() + "00") == GPO_RESPONSE + "9000"
        if pin is not None:
            assert send(reader, bytes.fromhex("0020008008") + pin_block(pin)) == b"\x90\x00"
        self.first = None

    def first_ac(self, p1: int) -> AcResponse:
        self.first = AcResponse(send(self.reader, bytes((0x80, 0xAE, p1, 0x00, 29)) + self.data + b"\x00"))
        return self.first

    def second_ac(self, p1: int, arc: bytes) -> AcResponse:
        return AcResponse(send(self.reader, bytes((0x80, 0xAE, p1, 0x00, 31)) + arc + self.data + b"\x00"))

    def expected_ac(self, response: AcResponse) -> bytes:
        """The cryptogram over CDOL1 data || AIP || ATC || CVR (from this response's own 9F10)."""
        sk = self.alg.sk("ac", response.atc)
        return self.alg.cryptogram(sk, self.data + AIP + response.atc.to_bytes(2, "big") + response.cvr)

    def arpc(self, arc: bytes) -> bytes:
        return self.alg.arpc(self.alg.sk("ac", self.first.atc), self.first.ac, arc)

    def external_authenticate(self, arpc: bytes, arc: bytes) -> bytes:
        return send(self.reader, bytes.fromhex("008200000A") + arpc + arc)

    def script(self, header: str, data: bytes = b"", *, ac: bytes | None = None, atc: int | None = None,
               key: str = "smi") -> bytes:
        """An issuer script command with MAC4 over CLA INS P1 P2 Lc || ATC || AC || data."""
        atc = self.first.atc if atc is None else atc
        ac = self.first.ac if ac is None else ac
        head = bytes.fromhex(header) + bytes((len(data) + 4,))
        mac4 = self.alg.mac4(self.alg.sk(key, self.first.atc), head + atc.to_bytes(2, "big") + ac + data)
        return head + data + mac4

    def pin_change(self, new_pin: str, key: str = "smc") -> bytes:
        enciphered = self.alg.encipher_pin(self.alg.sk(key, self.first.atc), pin_block(new_pin))
        assert len(enciphered) == 16
        return self.script("84240002", enciphered)


def activate_by_hand(reader, alg, new_pin: str = "123456") -> None:
    """Activation through APDUs: a declined (AAC) transaction carrying the PIN CHANGE and PUT DATA DF7F 01 scripts."""
    t = Transaction(reader, alg)
    first = t.first_ac(0x80)
    assert first.cid == 0x00
    assert first.ac == t.expected_ac(first)
    assert send(reader, t.pin_change(new_pin)) == b"\x90\x00"
    assert send(reader, t.script("04DADF7F", b"\x01")) == b"\x90\x00"
    assert tx(reader, "80CADF7F00") == "DF7F01019000"
    reader.reset()


def get(reader, tag: str) -> str:
    response = tx(reader, "80CA" + tag + "00")
    assert response[-4:] == "9000", response
    return response[len(tag) + 2:-4]


# -- keys -------------------------------------------------------------------------------------------------


def test_3des_icc_master_keys_known_answers():
    """pyemv's option A with the default profile's keys, PAN 6234560000000008, PSN 01 (Y = 3456000000000801)."""
    assert TDES.icc_mk("ac").hex().upper() == "F183BCB66138CECDECA29E512CD64A80"
    assert TDES.icc_mk("smi").hex().upper() == "135D61AED329B57F0E7C43499EC73132"
    assert TDES.icc_mk("smc").hex().upper() == "37C48F37CBE60D54D64A9E04B3163DD6"


def test_sm4_icc_master_keys_known_answers():
    assert SM4.icc_mk("ac").hex().upper() == "569088103D5C0442FAA3DB1604F2FF20"
    assert SM4.icc_mk("smi").hex().upper() == "E31DCB65DB96A8F70BC275F072156005"
    assert SM4.icc_mk("smc").hex().upper() == "CE6C6DDA22572BC54D858548C11BD1B3"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_card_holds_the_icc_master_keys(card, alg):
    """The card keeps ICC keys (never the issuer master keys), equal to the independent derivation."""
    for kind in ("ac", "smi", "smc"):
        key = card.store[f"fin.{alg.name}.{kind}"].value
        assert key == alg.icc_mk(kind)
        assert key != IMK[kind]


def test_sm4_cbc_mac_is_chained_sm4():
    """The SM4 CBC-MAC helper against block-by-block chaining on SM4-ECB."""
    key = bytes(range(16))
    for n in (0, 1, 15, 16, 17, 45):
        data = bytes((3 * i + 1) & 0xFF for i in range(n))
        padded = data + b"\x80" + bytes(-(n + 1) % 16)
        h = bytes(16)
        for i in range(0, len(padded), 16):
            h = sm4_ecb(key, xor(h, padded[i:i + 16]))
        assert sm4_cbc_mac(key, data) == h


# -- the first GENERATE AC of a card not yet activated -----------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("p1", [0x00, 0x40, 0x80], ids=["AAC", "TC", "ARQC"])
def test_aac_of_a_new_card(reader, alg, p1):
    t = Transaction(reader, alg)
    r = t.first_ac(p1)
    assert r.cid == 0x00
    assert r.atc == 1
    assert r.iad == bytes((0x07, 0x01, alg.cvn)) + bytes.fromhex("03801004") + bytes((alg.alg_id,))
    assert r.ac == t.expected_ac(r)


def test_aac_of_a_new_card_known_answer(reader):
    """The 3DES AAC for the module's CDOL1 data at ATC 1, as pyemv computes it."""
    t = Transaction(reader, TDES)
    r = t.first_ac(0x80)
    data = cdol1() + AIP + bytes.fromhex("0001") + bytes.fromhex("03801004")
    assert data.hex().upper() == ("000000001000" "000000000000" "0156" "0000000000" "0156" "261121" "00"
                                  "11223344" "1C00" "0001" "03801004")
    assert r.ac == emv_ac.generate_ac(kd.derive_common_sk(TDES.icc_mk("ac"), bytes.fromhex("0001000000000000")),
                                      data)
    assert r.ac.hex().upper() == "BA88BF05DDA17ED3"


def test_sm4_aac_of_a_new_card_known_answer(reader):
    """DF69 = 01: SM4 session key E_MK(00*6 0001 || 00*6 FFFE), AAC = SM4 CBC-MAC[:8], 9F10 07 01 4A CVR 04."""
    t = Transaction(reader, SM4)
    r = t.first_ac(0x80)
    mk = sm4_ecb(IMK["ac"], bytes.fromhex("3456000000000801" "CBA9FFFFFFFFF7FE"))
    sk = sm4_ecb(mk, bytes.fromhex("000000000000" "0001" "000000000000" "FFFE"))
    assert sk.hex().upper() == "6336C78DB29E08632B4FE065B3C234D6"
    assert r.iad.hex().upper() == "07014A0380100404"
    assert r.ac == sm4_cbc_mac(sk, cdol1() + bytes.fromhex("1C00" "0001" "03801004"))[:8]
    assert r.ac.hex().upper() == "F846A43A406AD9D1"


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("amount, un", [(1, "00000000"), (999999, "DEADBEEF"), (123456789012, "FFFFFFFF")])
def test_cryptogram_covers_the_terminal_data(reader, alg, amount, un):
    t = Transaction(reader, alg, data=cdol1(amount, un))
    r = t.first_ac(0x80)
    assert r.ac == t.expected_ac(r)
    other = alg.cryptogram(alg.sk("ac", r.atc), cdol1(amount + 1, un) + AIP + b"\x00\x01" + r.cvr)
    assert r.ac != other


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_session_key_follows_the_atc(reader, alg):
    seen = set()
    for expected_atc in (1, 2, 3):
        t = Transaction(reader, alg)
        r = t.first_ac(0x00)
        assert r.atc == expected_atc
        assert r.ac == t.expected_ac(r)
        seen.add(r.ac)
        reader.reset()
    assert len(seen) == 3


# -- activation by issuer scripts, built here -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_activation_scripts_by_hand(reader, alg):
    activate_by_hand(reader, alg, "482915")
    assert tx(reader, SELECT_AID)[-4:] == "9000"
    assert get(reader, "DF7F") == "01"
    assert get(reader, "9F17") == "03"
    assert tx(reader, "002000800826000000FFFFFFFF") == "63C2"  # the initial PIN 000000 is gone
    assert send(reader, bytes.fromhex("0020008008") + pin_block("482915")) == b"\x90\x00"
    assert get(reader, "9F17") == "03"


def test_conftest_activation_agrees(card, reader):
    """The shared helper (IssuerHost + PaymentTerminal) leaves the same card as the hand-built scripts."""
    activate_financial(card, "123456")
    reader.reset()
    assert tx(reader, SELECT_AID)[-4:] == "9000"
    assert get(reader, "DF7F") == "01"
    assert get(reader, "9F36") == "0001"
    assert send(reader, bytes.fromhex("0020008008") + pin_block("123456")) == b"\x90\x00"


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("variant", ["mac-over-wrong-ac", "mac-over-wrong-atc", "mac-under-smc", "mac-under-ac",
                                     "mac-over-next-atc-key", "other-algorithm"])
def test_script_mac_must_be_exact(reader, alg, variant):
    t = Transaction(reader, alg)
    first = t.first_ac(0x80)
    header, data = "04DADF7F", b"\x01"
    if variant == "mac-over-wrong-ac":
        apdu = t.script(header, data, ac=xor(first.ac, b"\x00" * 7 + b"\x01"))
    elif variant == "mac-over-wrong-atc":
        apdu = t.script(header, data, atc=first.atc + 1)
    elif variant == "mac-under-smc":
        apdu = t.script(header, data, key="smc")
    elif variant == "mac-under-ac":
        apdu = t.script(header, data, key="ac")
    elif variant == "mac-over-next-atc-key":
        head = bytes.fromhex(header) + b"\x05"
        mac4 = alg.mac4(alg.sk("smi", first.atc + 1), head + first.atc.to_bytes(2, "big") + first.ac + data)
        apdu = head + data + mac4
    else:
        other = SM4 if alg is TDES else TDES
        head = bytes.fromhex(header) + b"\x05"
        mac4 = other.mac4(other.sk("smi", first.atc), head + first.atc.to_bytes(2, "big") + first.ac + data)
        apdu = head + data + mac4
    assert send(reader, apdu) == b"\x69\x88"
    assert get(reader, "DF7F") == "00"
    # the right MAC still works in the same transaction
    assert send(reader, t.script(header, data)) == b"\x90\x00"
    assert get(reader, "DF7F") == "01"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_pin_change_under_the_wrong_key_is_6A80(reader, alg):
    """A well-MACed PIN CHANGE whose PIN block was enciphered under the SMI (not SMC) session key."""
    t = Transaction(reader, alg)
    t.first_ac(0x80)
    enciphered = alg.encipher_pin(alg.sk("smi", t.first.atc), pin_block("123456"))
    assert send(reader, t.script("84240002", enciphered)) == b"\x6A\x80"
    assert tx(reader, "002000800826000000FFFFFFFF") == "9000"  # the PIN did not change


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_pin_unblock_script(reader, alg):
    assert tx(reader, SELECT_AID)[-4:] == "9000"
    for sw in ("63C2", "63C1", "63C0", "6983"):
        assert tx(reader, "0020008008" + pin_block("999999").hex()) == sw
    reader.reset()
    t = Transaction(reader, alg)
    r = t.first_ac(0x80)
    assert r.cvr.hex().upper() == "03805004"  # byte 3 bit 7: PIN try limit exceeded
    assert r.ac == t.expected_ac(r)
    assert send(reader, t.script("84240000")) == b"\x90\x00"  # PIN UNBLOCK: MAC over no data
    assert get(reader, "9F17") == "03"
    assert tx(reader, "002000800826000000FFFFFFFF") == "9000"


# -- an online transaction on an activated card ------------------------------------------------------------------


@pytest.fixture(params=ALGORITHMS)
def active(request, reader):
    """An activated card (PIN 123456) and the algorithm of the transactions to run on it."""
    activate_by_hand(reader, request.param, "123456")
    return reader, request.param


def test_online_approval(active):
    reader, alg = active
    t = Transaction(reader, alg, pin="123456")
    first = t.first_ac(0x80)
    assert first.cid == 0x80
    assert first.atc == 2
    # CVR: ARQC in the first AC, second not requested, offline PIN performed; new card (never online)
    assert first.iad == bytes((0x07, 0x01, alg.cvn)) + bytes.fromhex("03A41000") + bytes((alg.alg_id,))
    assert first.ac == t.expected_ac(first)
    assert get(reader, "9F13") == "0000"

    arpc = t.arpc(APPROVED)
    assert t.external_authenticate(arpc, APPROVED) == b"\x90\x00"
    assert get(reader, "9F13") == "0002"  # last online ATC
    assert t.external_authenticate(arpc, APPROVED) == b"\x69\x85"  # once per transaction

    second = t.second_ac(0x40, APPROVED)
    assert second.cid == 0x40
    assert second.atc == 2
    assert second.iad == bytes((0x07, 0x01, alg.cvn)) + bytes.fromhex("03641000") + bytes((alg.alg_id,))
    assert second.ac == t.expected_ac(second)
    assert second.ac != first.ac
    assert send(reader, bytes((0x80, 0xAE, 0x40, 0x00, 31)) + APPROVED + t.data + b"\x00") == b"\x69\x85"

    # a script after the second GENERATE AC is still MACed over the first cryptogram (the ARQC)
    assert send(reader, t.script("04DA9F14", b"\x03", ac=second.ac)) == b"\x69\x88"
    assert send(reader, t.script("04DA9F14", b"\x03")) == b"\x90\x00"
    assert get(reader, "9F14") == "03"

    # the next transaction is no longer on a new card, and counts on
    reader.reset()
    t2 = Transaction(reader, alg)
    r = t2.first_ac(0x80)
    assert r.atc == 3
    assert r.cvr.hex().upper() == "03A00000"
    assert r.ac == t2.expected_ac(r)


def test_online_approval_exact_arqc_3des(reader):
    """The 3DES ARQC and ARPC at ATC 2 written out with pyemv calls only."""
    activate_by_hand(reader, TDES, "123456")
    t = Transaction(reader, TDES)
    first = t.first_ac(0x80)
    sk = kd.derive_common_sk(kd.derive_icc_mk_a(IMK["ac"], PAN, PSN), bytes.fromhex("0002000000000000"))
    data = cdol1() + bytes.fromhex("1C00" "0002" "03A01000")
    assert first.cvr.hex().upper() == "03A01000"
    assert sk.hex().upper() == "529252BC388FE5EABA75A7CE7CC1754A"
    assert first.ac == emv_ac.generate_ac(sk, data)
    assert first.ac.hex().upper() == "D2AB7650A3EEF04F"
    arpc = emv_ac.generate_arpc_1(sk, first.ac, b"00")
    assert arpc.hex().upper() == "77D6CD76D617B727"
    assert send(reader, bytes.fromhex("008200000A") + arpc + bytes.fromhex("3030")) == b"\x90\x00"
    second = AcResponse(send(reader, bytes.fromhex("80AE40001F3030") + cdol1() + b"\x00"))
    assert second.cid == 0x40
    assert second.cvr.hex().upper() == "03601000"
    assert second.ac == emv_ac.generate_ac(sk, cdol1() + bytes.fromhex("1C00" "0002" "03601000"))
    assert second.ac.hex().upper() == "1F0F4A5406FB35AE"


def test_wrong_arpc(active):
    reader, alg = active
    t = Transaction(reader, alg)
    first = t.first_ac(0x80)
    assert first.ac == t.expected_ac(first)
    arpc = t.arpc(APPROVED)
    assert t.external_authenticate(xor(arpc, b"\x80" + bytes(7)), APPROVED) == b"\x63\x00"
    assert get(reader, "9F13") == "0000"
    assert t.external_authenticate(arpc, APPROVED) == b"\x69\x85"  # no second try
    second = t.second_ac(0x40, APPROVED)
    assert second.cid == 0x00  # AAC
    # byte 2 bit 4: issuer authentication failed; second AC AAC (bits 8-7 00), first ARQC
    assert second.cvr.hex().upper() == "03281000"
    assert second.ac == t.expected_ac(second)


def test_arpc_for_another_arc_fails(active):
    """The ARPC binds the ARC: an ARPC made for 00 does not authenticate 05."""
    reader, alg = active
    t = Transaction(reader, alg)
    t.first_ac(0x80)
    assert t.external_authenticate(t.arpc(APPROVED), DECLINED) == b"\x63\x00"


def second_ac_after_issuer(active, arc: bytes, p1: int):
    """First GENERATE AC (ARQC), the issuer's authentic ARPC for `arc` accepted, then the second
    GENERATE AC with `p1`; its cryptogram checked."""
    reader, alg = active
    t = Transaction(reader, alg)
    t.first_ac(0x80)
    assert t.external_authenticate(t.arpc(arc), arc) == b"\x90\x00"
    second = t.second_ac(p1, arc)
    assert second.ac == t.expected_ac(second)
    return second


def test_issuer_declines(active):
    second = second_ac_after_issuer(active, DECLINED, 0x40)
    assert second.cid == 0x00
    assert second.cvr.hex().upper() == "03201000"


def test_terminal_asks_aac_in_the_second_ac(active):
    second = second_ac_after_issuer(active, APPROVED, 0x00)
    assert second.cid == 0x00


def test_second_ac_without_issuer_authentication(active):
    reader, alg = active
    t = Transaction(reader, alg)
    t.first_ac(0x80)
    second = t.second_ac(0x40, APPROVED)
    assert second.cid == 0x40
    assert second.cvr.hex().upper() == "03601400"  # byte 3 bit 3: issuer authentication not performed
    assert second.ac == t.expected_ac(second)
    assert get(reader, "9F13") == "0000"


def test_arqc_not_allowed_in_the_second_ac(active):
    reader, alg = active
    t = Transaction(reader, alg)
    t.first_ac(0x80)
    assert send(reader, bytes((0x80, 0xAE, 0x80, 0x00, 31)) + APPROVED + t.data + b"\x00") == b"\x6A\x86"
    assert send(reader, bytes((0x80, 0xAE, 0x40, 0x00, 29)) + t.data + b"\x00") == b"\x67\x00"


def test_sm4_and_3des_iad_differ_only_in_cvn_and_algorithm(reader):
    """DF69 01 selects SM4: 9F10 = 07 01 4A CVR 04; DF69 00: 07 01 0A CVR 01."""
    activate_by_hand(reader, TDES, "123456")
    results = {}
    for alg in (TDES, SM4):
        t = Transaction(reader, alg)
        r = t.first_ac(0x80)
        assert r.ac == t.expected_ac(r)
        results[alg.name] = r
        reader.reset()
    assert results["3des"].iad.hex().upper() == "07010A03A0100001"
    assert results["sm4"].iad.hex().upper() == "07014A03A0100004"


# -- block scripts --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_application_block_and_unblock_scripts(reader, alg):
    activate_by_hand(reader, alg, "123456")
    t = Transaction(reader, alg)
    t.first_ac(0x80)
    assert send(reader, t.script("841E0000")) == b"\x90\x00"
    reader.reset()
    response = tx(reader, SELECT_AID)
    assert response[:-4] == tx(reader, "00A4040007A000000333010100")[:-4]  # the FCI still comes, with 6283
    assert response[-4:] == "6283"
    t2 = Transaction(reader, alg, select_sw="6283")
    r = t2.first_ac(0x80)
    assert r.cid == 0x00  # blocked: AAC only
    assert r.cvr[3] & 0x02
    assert r.ac == t2.expected_ac(r)
    assert send(reader, t2.script("84180000")) == b"\x90\x00"
    reader.reset()
    assert tx(reader, SELECT_AID)[-4:] == "9000"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_card_block_script(reader, alg):
    t = Transaction(reader, alg)
    t.first_ac(0x00)
    assert send(reader, t.script("84160000", ac=bytes(8))) == b"\x69\x88"
    assert send(reader, t.script("84160000")) == b"\x90\x00"
    assert tx(reader, SELECT_AID) == "6A81"
    reader.reset()
    assert tx(reader, SELECT_AID) == "6A81"
    assert tx(reader, "00A404000E315041592E5359532E444446303100") == "6A81"
