"""Fault injection (chip.faults): every action through Python, the `sscard serve` control
channel and traces; triggers; clearing; state kept after a forced SW, a mute card or a
failed write."""

import pytest
from helpers import CARD_DATE, EF05, FCI, SELECT_SSSE, VERIFY_BAD, VERIFY_OK, tx

from chip import Card
from chip.faults import CardMute, Fault, FaultPlan, corrupt_tlv, inject, parse_fault
from reader import SimReader
from reader.link.wire import Faults, WireReader
from reader.pcsc.serve import Server, Slot
from reader.pcsc.vpcd import Apdu
from reader.traces.format import TraceError, parse, to_text
from reader.traces.replay import replay, sim_reader_for

SELECT = SELECT_SSSE
FCI_SM4 = FCI["sm4"]  # the default card's (P5 table 36, as real cards)
VERIFY = VERIFY_OK
WRONG = VERIFY_BAD
READ = "00B2012C12"  # EF05 (SFI 5) record 1, Le 18: the card identification code, simple-TLV 01 10 + 16 bytes
RECORD = EF05[0x01]  # V2 table 10
NOTHING_WAITING = "6F00"  # GET RESPONSE with no data waiting (P5 §6.6.4; docs/decisions.md §3)


def gather(reader, first: str) -> tuple[str, int]:
    """Follow 61xx with GET RESPONSE for the length it names, as a terminal does; (data, pieces)."""
    out, pieces = first, 0
    while len(out) >= 4 and out[-4:-2] == "61":
        out = out[:-4] + tx(reader, "00C00000" + out[-2:])
        pieces += 1
    return out, pieces


def flipped(hexdata: str, index: int) -> str:
    data = bytearray(bytes.fromhex(hexdata))
    data[index] ^= 0xFF
    return data.hex().upper()


def tries(card) -> int:
    return card.store["ssse.pin"].tries


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "card.img"
    Card.from_profile(state=path, date=CARD_DATE)
    return path


def selected_image(image):
    """The image's card opened on CARD_DATE, a reader on it with the SSSE selected, and the image's
    bytes now: (card, reader, bytes)."""
    card = Card.open(image, date=CARD_DATE)
    r = SimReader(card)
    r.reset()
    tx(r, SELECT)
    return card, r, image.read_bytes()


@pytest.fixture
def selected(reader):
    assert tx(reader, SELECT) == FCI_SM4 + "9000"
    assert tx(reader, VERIFY) == "9000"
    return reader


# -- the text form ------------------------------------------------------------------------------

def test_parse_round_trip_and_defaults():
    fault = parse_fault("sw 6a82 INS b2 nth 3")
    assert fault == Fault("sw", 0x6A82, ins=0xB2, nth=3)
    assert str(fault) == "sw 6A82 ins B2 nth 3"
    for text in ("mute cla 80 once", "chunk 4 ins A4 every 2", "tlv random 0.25 seed 7", "delay 9600",
                 "write ins 20 once"):
        assert parse_fault(str(parse_fault(text))) == parse_fault(text)
    assert parse_fault("tlv always") == Fault("tlv")


@pytest.mark.parametrize("text, word", [
    ("", "empty"), ("explode", "'explode'"), ("sw 65", "'65'"), ("sw 6581 ins B", "'B'"),
    ("chunk x", "'x'"), ("delay", "'delay'"), ("sw 6581 every", "'every'"), ("mute 12", "'12'"),
    ("sw 6581 sometimes", "'sometimes'"), ("chunk 0", "0 is out of range"), ("tlv random 2", "probability"),
    ("mute nth 0", "nth"),
])
def test_parse_errors_name_the_bad_word(text, word):
    with pytest.raises(ValueError) as info:
        parse_fault(text)
    assert word in str(info.value) and "\n" not in str(info.value)


def docstring_block(after: str) -> list[str]:
    """The indented example lines that follow the paragraph starting `after` in chip.faults' docstring."""
    import chip.faults

    lines = chip.faults.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    block, started = [], False
    for line in lines[start + 1:]:
        if line.startswith("    "):
            started = True
            block.append(line[4:])
        elif started and line.strip():
            break
    assert block, f"no example block after {after!r}"
    return block


def test_every_text_example_of_the_docstring_parses():
    examples = docstring_block("Text (")
    assert len(examples) == 4
    for line in examples:
        text, _, comment = line.partition("#")
        fault = parse_fault(text)
        assert parse_fault(str(fault)) == fault
        if comment.strip().startswith("="):  # "# = another spelling of the same fault"
            assert parse_fault(comment.strip()[1:]) == fault
    assert parse_fault("mute random 0.3 seed 7 ins 20") == Fault("mute", ins=0x20, probability=0.3, seed=7)


def test_the_python_example_of_the_docstring_runs(card):
    code = "\n".join(docstring_block("Python:"))
    namespace = {"card": card}
    exec(compile(code, "chip.faults docstring", "exec"), namespace)
    assert card.faults is not None and card.faults.faults == []  # its last line cleared the plan


# -- Python: every action ---------------------------------------------------------------------

def test_no_plan_by_default(card):
    assert card.faults is None and card.last_delay_etu == 0


def test_sw_override_does_not_run_the_command(reader, card):
    assert tx(reader, SELECT).endswith("9000")
    card.faults = FaultPlan()
    card.faults.add("sw", 0x6581, ins=0x20, once=True)
    assert tx(reader, WRONG) == "6581"
    assert tries(card) == 6  # the wrong PIN never reached the card
    assert tx(reader, WRONG) == "63C5"  # once: the next one is real


def test_sw_override_keeps_the_image(image):
    card, r, before = selected_image(image)
    inject(card, "sw", 0x9000, ins=0x20)
    assert tx(r, WRONG) == "9000"
    assert image.read_bytes() == before
    assert tries(Card.open(image, read_only=True)) == 6


def test_mute_raises_and_changes_nothing(image):
    card, r, before = selected_image(image)
    inject(card, "mute", ins=0x20, once=True)
    with pytest.raises(CardMute):
        r.transmit(bytes.fromhex(WRONG))
    assert image.read_bytes() == before and tries(Card.open(image, read_only=True)) == 6
    assert tx(r, VERIFY) == "9000"  # the card still works after a mute command


def test_chunk_serves_pieces_through_get_response_on_t1(selected, card):
    inject(card, "chunk", 4, ins=0xB2)
    first = tx(selected, READ)
    assert first == "6104"
    data, pieces = gather(selected, first)
    assert data == RECORD + "9000" and pieces == 5  # 18 bytes in pieces of 4 (4 4 4 4 2)
    assert tx(selected, "00C0000002") == NOTHING_WAITING  # nothing held any more: the card's own answer


def test_chunk_respects_a_shorter_le_and_other_commands_drop_it(selected, card):
    inject(card, "chunk", 8, ins=0xB2, once=True)
    assert tx(selected, READ) == "6108"
    assert tx(selected, "00C0000003") == RECORD[:6] + "6108"
    assert tx(selected, READ) == RECORD + "9000"  # a new command: the held data is gone, once spent
    assert tx(selected, "00C0000000") == NOTHING_WAITING


def test_chunk_on_t0_after_61xx(t0reader, card):
    inject(card, "chunk", 10, ins=0xA4)
    first = tx(t0reader, SELECT)
    assert first == "610A"
    data, pieces = gather(t0reader, first)
    assert data == FCI_SM4 + "9000" and pieces == 3  # 30 bytes: 10 + 10 + 10


def test_tlv_flips_the_first_value_byte(selected, card):
    inject(card, "tlv", ins=0xB2, once=True)
    assert tx(selected, READ) == flipped(RECORD, 2) + "9000"
    assert tx(selected, READ) == RECORD + "9000"


def test_tlv_on_t0_descends_into_the_fci_and_keeps_61xx(t0reader, card):
    inject(card, "tlv", ins=0xA4)
    first = tx(t0reader, SELECT)
    assert first == "611E"
    assert gather(t0reader, first)[0] == flipped(FCI_SM4, 4) + "9000"  # 6F 1C 84 0F [73]...


def test_corrupt_tlv_forms():
    assert corrupt_tlv(bytes.fromhex("9F0C 02 1122")) == bytes.fromhex("9F0C 02 EE22")  # two-byte BER tag
    assert corrupt_tlv(bytes.fromhex("5A 81 02 1122")) == bytes.fromhex("5A 81 02 EE22")  # long-form length
    assert corrupt_tlv(bytes.fromhex("01 FF 0002 1122")) == bytes.fromhex("01 FF 0002 EE22")  # simple-TLV 3-byte length
    assert corrupt_tlv(bytes.fromhex("00 00 08 01 41")) == bytes.fromhex("00 00 08 01 BE")  # padding first
    assert corrupt_tlv(bytes.fromhex("08 09 01")) == bytes.fromhex("08 F6 01")  # no TLV: the middle byte


def test_delay_is_recorded_on_the_card(selected, card):
    inject(card, "delay", 5000, ins=0xB2, every=2)
    assert tx(selected, READ) == RECORD + "9000" and card.last_delay_etu == 0
    assert tx(selected, READ) == RECORD + "9000" and card.last_delay_etu == 5000
    assert tx(selected, SELECT).endswith("9000") and card.last_delay_etu == 0


def test_delay_reaches_the_wire_through_slow_etu(card):
    def etu(faulted: bool) -> int:
        c = Card.from_profile(date=CARD_DATE)
        plan = FaultPlan() if faulted else None
        if faulted:
            plan.add("delay 100000 ins A4")
            c.faults = plan
        r = WireReader(c, protocol="T=0", faults=Faults(slow_etu=plan.slow_etu if faulted else None))
        r.reset()
        assert r.transmit(bytes.fromhex(SELECT)) == bytes.fromhex(FCI_SM4 + "9000")  # the firmware fetched it with GET RESPONSE
        if faulted:
            assert plan.log == [(1, "delay 100000 ins A4")]  # decided once, early, for the wire
        return r.wire.etu
    assert etu(True) - etu(False) >= 100000


def test_write_failure_answers_6581_and_keeps_the_image(image):
    card, r, before = selected_image(image)
    inject(card, "write", ins=0x20, once=True)
    assert tx(r, WRONG) == "6581"
    assert image.read_bytes() == before
    assert tries(card) == 6 and tries(Card.open(image, read_only=True)) == 6
    assert card.store.backend.write_point is None  # the hook is gone again
    assert tx(r, WRONG) == "63C5"  # once: the next write lands
    assert tries(Card.open(image, read_only=True)) == 5


def test_write_failure_in_memory_and_with_a_power_cut_hook(selected, card):
    from chip.kernel.image import cut_power_at

    hook = cut_power_at(10**9)
    card.store.backend.write_point = hook
    inject(card, "write", ins=0x20)
    assert tx(selected, WRONG) == "6581" and tries(card) == 6
    assert card.store.backend.write_point is hook


# -- triggers, matching, clearing ---------------------------------------------------------------

def sws(reader, n: int, apdu: str = READ) -> str:
    return "".join("x" if tx(reader, apdu) == "6581" else "." for _ in range(n))


def test_every_nth_match(selected, card):
    inject(card, "sw 6581 ins B2 every 3")
    assert sws(selected, 7) == "..x..x."


def test_once_with_every(selected, card):
    inject(card, "sw 6581 ins B2 every 2 once")
    assert sws(selected, 6) == ".x...."


def test_nth_command_since_armed(selected, card):
    inject(card, "sw 6A82 nth 3")
    assert [tx(selected, a)[-4:] for a in (READ, VERIFY, READ, READ)] == ["9000", "9000", "6A82", "9000"]


def test_cla_matching(selected, card):
    inject(card, "sw 6581 cla 80")
    assert tx(selected, READ) == RECORD + "9000"
    assert tx(selected, "80B2083000") == "6581"


def test_random_with_a_seed_repeats(selected, card):
    def pattern(seed):
        card.faults = FaultPlan([Fault("sw", 0x6581, ins=0xB2, probability=0.5, seed=seed)])
        return sws(selected, 40)
    first = pattern(11)
    assert first == pattern(11)
    assert "x" in first and "." in first
    assert pattern(12) != first
    card.faults = FaultPlan(["sw 6581 random 0 seed 1"])
    assert sws(selected, 10) == "." * 10


def test_clear_and_detach(selected, card):
    plan = FaultPlan()
    card.faults = plan
    plan.add("sw 6581")
    assert tx(selected, READ) == "6581"
    assert plan.fired() == 1 and plan.log == [(1, "sw 6581")]
    plan.clear()
    assert tx(selected, READ) == RECORD + "9000" and plan.faults == [] and plan.commands == 1
    card.faults = None
    assert tx(selected, READ) == RECORD + "9000"


def test_unpowered_card_still_refuses(card):
    inject(card, "sw 6581")
    from chip import CardNotPowered
    with pytest.raises(CardNotPowered):
        card.transmit(bytes.fromhex(READ))
    assert card.faults.commands == 0


# -- the `sscard serve` control channel -------------------------------------------------------------

@pytest.fixture
def server(image):
    slot = Slot(0, str(image), "127.0.0.1", 1, date=CARD_DATE)
    srv = Server([slot])
    yield srv
    srv.close()


def send(server, apdu: str):
    reply = server.slots[0].handle(Apdu(bytes.fromhex(apdu)))
    return None if reply is None else reply.hex().upper()


def test_serve_sw_and_clear(server):
    assert server.command("fault 0 sw 6581 ins B2 once") == "ok card 0 fault sw 6581 ins B2 once"
    assert server.command("fault") == "card 0: sw 6581 ins B2 once"
    send(server, SELECT)
    send(server, VERIFY)
    assert send(server, READ) == "6581"
    assert send(server, READ) == RECORD + "9000"
    server.command("fault sw 6A82")
    assert send(server, READ) == "6A82"
    assert server.command("fault 0 clear") == "ok card 0: faults cleared"
    assert server.slots[0].card.faults is None and server.command("fault") == "card 0: no faults"
    assert send(server, READ) == RECORD + "9000"


def test_serve_errors(server):
    assert server.command("fault 0 sw 65") == "error: bad word '65': sw needs a status word (4 hex digits)"
    assert server.command("fault 3 mute").startswith("error: no card 3")
    assert server.command("fault 0 nonsense").startswith("error: unknown fault action 'nonsense'")
    assert server.slots[0].card.faults is None


def test_serve_mute_answers_nothing_and_keeps_the_image(server, image):
    send(server, SELECT)
    before = image.read_bytes()
    assert server.command("fault mute ins 20").startswith("ok")
    assert send(server, WRONG) is None
    assert server.slots[0].apdus == 1
    assert image.read_bytes() == before and tries(Card.open(image, read_only=True)) == 6


def test_serve_chunk(server):
    server.command("fault chunk 6 ins B2")
    send(server, SELECT)
    send(server, VERIFY)
    out = send(server, READ)
    assert out == "6106"
    while out.endswith(("6106", "6102")):
        out = out[:-4] + send(server, "00C0000000")
    assert out == RECORD + "9000"


def test_serve_tlv(server):
    server.command("fault 0 tlv ins B2")
    send(server, SELECT)
    send(server, VERIFY)
    assert send(server, READ) == flipped(RECORD, 2) + "9000"


def test_serve_delay(server):
    server.command("fault delay 777 nth 2")
    send(server, SELECT)
    assert server.slots[0].card.last_delay_etu == 0
    send(server, VERIFY)
    assert server.slots[0].card.last_delay_etu == 777


def test_serve_write_failure_keeps_the_image(server, image):
    send(server, SELECT)
    before = image.read_bytes()
    server.command("fault write ins 20 once")
    assert send(server, WRONG) == "6581"
    assert image.read_bytes() == before and tries(Card.open(image, read_only=True)) == 6
    assert send(server, WRONG) == "63C5"


# -- traces ----------------------------------------------------------------------------------------

HEAD = f"""@date 2026-11-21
reset
> {SELECT}
< {FCI_SM4} 90 00
> {VERIFY}
< 90 00
"""


def run(text: str, reader=None):
    trace = parse(text, "t.apdu")
    reader = reader or sim_reader_for(trace)
    return replay(trace, reader), reader


def test_trace_directive_sw_nth():
    result, reader = run("@fault sw 6A82 ins B2 nth 3\n" + HEAD + f"> {READ}\n< 6A 82\n> {READ}\n< {RECORD} 90 00\n")
    assert result.ok, result.report()
    assert reader.card.faults is None  # the plan lived for that replay only


def test_trace_inline_fault_and_clear():
    result, _ = run(HEAD + f"! fault sw 6581 ins B2\n> {READ}\n< 65 81\n! fault clear\n> {READ}\n< {RECORD} 90 00\n")
    assert result.ok, result.report()


def test_trace_mute_fails_at_its_line_and_state_stays(image):
    card = Card.open(image, date=CARD_DATE)
    result, _ = run("@fault mute ins 20 once\n" + HEAD, SimReader(card))
    assert not result.ok
    assert result.failure.line == 6 and "mute" in result.failure.message
    assert tries(Card.open(image, read_only=True)) == 6


def test_trace_chunk():
    pieces = [RECORD[i:i + 8] for i in range(0, len(RECORD), 8)]  # 4 4 4 4 2 bytes
    after = ["61 04", "61 04", "61 04", "61 02", "90 00"]  # what is left after each piece
    lines = "".join(f"> 00 C0 00 00 00\n< {p} {sw}\n" for p, sw in zip(pieces, after, strict=True))
    result, _ = run(HEAD + f"! fault chunk 4 ins B2\n> {READ}\n< 61 04\n" + lines)
    assert result.ok, result.report()


def test_trace_tlv():
    result, _ = run(HEAD + f"! fault tlv ins B2 once\n> {READ}\n< {flipped(RECORD, 2)} 90 00\n"
                           f"> {READ}\n< {RECORD} 90 00\n")
    assert result.ok, result.report()


def test_trace_delay():
    result, reader = run("@fault delay 1234 ins 20\n" + HEAD)
    assert result.ok and reader.card.last_delay_etu == 1234


def test_trace_write_failure_keeps_the_image(image):
    card = Card.open(image, date=CARD_DATE)
    before = image.read_bytes()
    text = f"@fault write ins 20 once\nreset\n> {SELECT}\n> {WRONG}\n< 65 81\n> {WRONG}\n< 63 C5\n"
    trace = parse(text, "t.apdu")
    partial = parse(text.replace(f"> {WRONG}\n< 63 C5\n", ""), "t.apdu")
    result = replay(partial, SimReader(card))
    assert result.ok, result.report()
    assert image.read_bytes() == before and tries(Card.open(image, read_only=True)) == 6
    card.close()  # the image's one owner gives it up: the whole trace replays on it afresh
    result = replay(trace, SimReader(Card.open(image, date=CARD_DATE)))
    assert result.ok, result.report()


def test_trace_random_is_repeatable_across_replays():
    body = "".join(f"> {READ}\n" for _ in range(20))
    text = "@fault sw 6581 ins B2 random 0.5 seed 3\n" + HEAD + body
    trace = parse(text, "t.apdu")
    fired = []
    for _ in range(2):
        reader = sim_reader_for(trace)
        plan = FaultPlan(trace.faults)
        reader.card.faults = plan
        replay(parse(HEAD + body, "t.apdu"), reader)
        fired.append(plan.log)
    assert fired[0] == fired[1] and 0 < len(fired[0]) < 20
    assert replay(trace, sim_reader_for(trace)).ok


def test_trace_text_round_trip_and_errors():
    text = "@fault sw 6A82 ins B2 nth 3\nreset\n! fault chunk 4\n> 00 B2 08 30 00\n! fault clear\n"
    trace = parse(text, "t.apdu")
    assert to_text(trace) == text
    assert [s.kind for s in trace.steps] == ["reset", "fault", "apdu", "fault"]
    with pytest.raises(TraceError, match=r"t.apdu:1: @fault: bad word 'B'"):
        parse("@fault sw 6581 ins B\n", "t.apdu")
    with pytest.raises(TraceError, match=r"t.apdu:2: ! fault: unknown fault action 'boom'"):
        parse("reset\n! fault boom\n", "t.apdu")
    with pytest.raises(TraceError, match=r"t.apdu:1: '!' is followed by"):
        parse("! explode\n", "t.apdu")


def test_trace_faults_need_a_simulated_card():
    class Remote:
        def reset(self):
            return b""

    trace = parse("reset\n! fault mute\n> 00 B2 08 30 00\n", "t.apdu")
    result = replay(trace, Remote())
    assert not result.ok and result.failure.line == 2 and "simulated card" in result.failure.message
