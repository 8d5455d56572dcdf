"""The RESP request parser alone (``flin.router.resp.parse``), no cluster:
the same commands however the bytes are cut into reads, inline commands as
redis-cli and telnet send them, each refusal with Redis's wording and the
commands completed before it kept, empty multibulks skipped, and the hand
over from hiredis to the careful path when hiredis refuses something."""
from __future__ import annotations

import random

import pytest

from flin.router.resp.parse import MAX_ARGS, MAX_INLINE, MAX_VALUE, Parser, RespError, inline_args

def enc(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def stream(cmds: list) -> bytes:
    return b"".join(enc(*c) for c in cmds)


SMALL = [
    [b"SET", b"k", b"v"],
    [b"SET", b"", b""],                                       # empty key and value
    [b"SET", b"bin", b"\r\n\x00\xff*3\r\n$1\r\nx\r\n"],       # protocol bytes inside a value
    [b"GET", b"k"],
    [b"MSET", b"a", b"1", b"b", b"\r\n"],
    [b"PING"],
    [b"ECHO", b"\n"],
    [b"DEL", b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j", b"k"],   # *12: two digits
]
BIG_VALUE = random.Random(7).randbytes(1 << 20) + b"\r\n$5\r\n*1\r\n"
BIG = SMALL[:3] + [[b"SET", b"big", BIG_VALUE], [b"GET", b"big"]] + SMALL[3:]


def feed_all(pieces: list) -> tuple[list, Parser]:
    p = Parser()
    got: list = []
    for piece in pieces:
        got += p.feed(piece)
    return got, p


# -- (a) the same commands however the bytes come --------------------------------------
def test_a_pipeline_fed_whole():
    got, p = feed_all([stream(BIG)])
    assert got == BIG and p.idle


def test_a_pipeline_fed_whole_twice_in_a_row():
    got, p = feed_all([stream(SMALL), stream(SMALL)])
    assert got == SMALL + SMALL and p.idle


def test_a_pipeline_split_in_two_at_every_offset():
    data = stream(SMALL)
    wrong = []
    for i in range(len(data) + 1):
        try:
            got, p = feed_all([data[:i], data[i:]])
            ok = got == SMALL and p.idle
        except RespError:
            ok = False
        if not ok:
            wrong.append(i)
    assert wrong == []


def test_a_command_split_right_after_an_argument():
    p = Parser()
    assert p.feed(b"*2\r\n$3\r\nGET\r\n") == [] and not p.idle
    assert p.feed(b"$1\r\nk\r\n") == [[b"GET", b"k"]] and p.idle


def test_a_pipeline_fed_byte_by_byte():
    data = stream(SMALL)
    got, p = feed_all([data[i:i + 1] for i in range(len(data))])
    assert got == SMALL and p.idle


def _random_pieces(data: bytes, rng: random.Random) -> list:
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.choice([1, 2, 3, 7, 64, 1000, 65536, 262144, 400000])
        cut = min(len(data), pos + rng.randint(1, step))
        pieces.append(data[pos:cut])
        pos = cut
    return pieces


def test_a_pipeline_in_random_chunks():
    data = stream(BIG)
    wrong = []
    for seed in range(10):
        try:
            got, p = feed_all(_random_pieces(data, random.Random(seed)))
            ok = got == BIG and p.idle
        except RespError:
            ok = False
        if not ok:
            wrong.append(seed)
    assert wrong == []


def test_a_big_value_split_inside_its_payload_and_its_header():
    data = stream([[b"SET", b"big", BIG_VALUE]])
    head = data.index(b"$%d" % len(BIG_VALUE))
    for cut in (head + 3, head + 9, head + 10, head + 100, len(data) - 1000, len(data) - 2, len(data) - 1):
        p = Parser()
        assert p.feed(data[:cut]) == [] and not p.idle
        assert p.feed(data[cut:]) == [[b"SET", b"big", BIG_VALUE]] and p.idle


# -- (b) inline commands ---------------------------------------------------------------
def test_inline_commands_mixed_with_multibulk():
    data = (b"PING\r\n" + enc(b"GET", b"k") + b"set a b\n" + b"\r\n\n  \r\n"
            + b"SET a \"b c\" 'c'\r\n" + enc(b"PING") + b'ECHO "\\x41\\x4a\\n"\r\n')
    got, p = feed_all([data])
    assert got == [[b"PING"], [b"GET", b"k"], [b"set", b"a", b"b"],
                   [b"SET", b"a", b"b c", b"c"], [b"PING"], [b"ECHO", b"AJ\n"]]
    assert p.idle


def test_inline_commands_split_over_reads():
    data = b"PING\r\nSET a \"b c\"\r\n" + enc(b"GET", b"a") + b"PING\n"
    want = [[b"PING"], [b"SET", b"a", b"b c"], [b"GET", b"a"], [b"PING"]]
    for i in range(len(data) + 1):
        got, p = feed_all([data[:i], data[i:]])
        assert got == want and p.idle, i


@pytest.mark.parametrize("line,args", [
    (b"PING", [b"PING"]),
    (b"set a b", [b"set", b"a", b"b"]),
    (b"  set\ta   b  ", [b"set", b"a", b"b"]),
    (b'SET a "b c"', [b"SET", b"a", b"b c"]),
    (b"SET a 'c'", [b"SET", b"a", b"c"]),
    (b'SET "" \'\'', [b"SET", b"", b""]),
    (b'"\\x41\\x4a"', [b"AJ"]),
    (b'"\\x4"', [b"x4"]),                                    # not two hex digits: \x is x
    (b'"a\\nb\\r\\t\\b\\a\\\\\\""', [b"a\nb\r\t\b\a\\\""]),
    (b"'it\\'s' 'a\\nb'", [b"it's", b"a\\nb"]),              # single quotes: only \' escaped
    (b"", []),
    (b"   ", []),
])
def test_inline_args_split_as_redis_does(line, args):
    assert inline_args(line) == args


@pytest.mark.parametrize("line", [b'SET a "b', b"SET a 'b", b'SET "a"b c', b"SET 'a'b c",
                                  b'"\\"'])
def test_inline_args_refuse_unbalanced_quotes(line):
    with pytest.raises(RespError, match="^Protocol error: unbalanced quotes in request$"):
        inline_args(line)


# -- (c) refusals, with what came before them ------------------------------------------
def refused(data: bytes, parser: Parser | None = None) -> RespError:
    p = parser or Parser()
    with pytest.raises(RespError) as info:
        p.feed(data)
    return info.value


def test_a_bulk_over_max_value_is_refused_from_its_header_alone():
    before = enc(b"PING") + enc(b"SET", b"x", b"1")
    header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (MAX_VALUE + 1)
    exc = refused(before + header)                             # not one payload byte sent
    assert str(exc) == "Protocol error: invalid bulk length"
    assert exc.commands == [[b"PING"], [b"SET", b"x", b"1"]]
    exc = refused(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n")
    assert str(exc) == "Protocol error: invalid bulk length" and exc.commands == []


def test_a_bulk_of_exactly_max_value_is_waited_for():
    p = Parser()
    assert p.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % MAX_VALUE) == [] and not p.idle


def test_a_bulk_length_over_max_value_in_a_second_read_is_refused():
    p = Parser()
    assert p.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10") == []
    exc = refused(b"0000000\r\n", p)
    assert str(exc) == "Protocol error: invalid bulk length"


@pytest.mark.parametrize("data,commands", [
    (b"PING\r\n*%d\r\n" % (MAX_ARGS + 1), [[b"PING"]]),      # on the careful path
    (b"PING\r\n*10000000\r\n", [[b"PING"]]),
    (b"PING\r\n*99999999999999999999\r\n", [[b"PING"]]),
    (b"PING\r\n*x\r\n", [[b"PING"]]),
    pytest.param(b"*%d\r\n" % (MAX_ARGS + 1), []),
    pytest.param(b"*10000000\r\n", []),
    pytest.param(enc(b"PING") + b"*10000000\r\n", [[b"PING"]]),
    pytest.param(b"*4294967295\r\n", []),
])
def test_a_multibulk_count_over_max_args_is_refused(data, commands):
    exc = refused(data)
    assert str(exc) == "Protocol error: invalid multibulk length"
    assert exc.commands == commands


def test_a_multibulk_count_of_exactly_max_args_is_waited_for():
    p = Parser()
    assert p.feed(b"PING\r\n*%d\r\n" % MAX_ARGS) == [[b"PING"]] and not p.idle


@pytest.mark.parametrize("data,commands,message", [
    (enc(b"PING") + b"*1\r\nx\r\n", [[b"PING"]], "Protocol error: expected '$', got 'x'"),
    (b"*1\r\nx\r\n", [], "Protocol error: expected '$', got 'x'"),
    (b"PING\r\n*2\r\n$3\r\nGET\r\n:1\r\n", [[b"PING"]], "Protocol error: expected '$', got ':'"),
    (enc(b"PING") + b"*1\r\n$-1\r\n", [[b"PING"]], "Protocol error: invalid bulk length"),
    (enc(b"PING") + b"*1\r\n$-5\r\n", [[b"PING"]], "Protocol error: invalid bulk length"),
    (b"*1\r\n$x\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$" + b"1" * 40, [], "Protocol error: invalid bulk length"),   # no line end
    (b"*" + b"1" * 40, [], "Protocol error: invalid multibulk length"),
])
def test_malformed_multibulk_is_refused(data, commands, message):
    exc = refused(data)
    assert str(exc) == message and exc.commands == commands


def test_an_inline_line_over_64_kib_without_newline_is_refused():
    assert MAX_INLINE == 64 * 1024
    exc = refused(b"PING\r\n" + b"a" * (MAX_INLINE + 1))
    assert str(exc) == "Protocol error: too big inline request"
    assert exc.commands == [[b"PING"]]
    p = Parser()                                               # the same, over several reads
    for _ in range(MAX_INLINE // 4096):
        assert p.feed(b"x" * 4096) == []
    exc = refused(b"xx", p)
    assert str(exc) == "Protocol error: too big inline request"


def test_an_inline_line_of_64_kib_is_a_command():
    p = Parser()
    assert p.feed(b"ECHO " + b"a" * (MAX_INLINE - 5)) == []
    assert p.feed(b"\r\n") == [[b"ECHO", b"a" * (MAX_INLINE - 5)]] and p.idle


@pytest.mark.parametrize("line", [b'SET a "b\r\n', b"SET a 'b\r\n", b'SET "a"b c\r\n'])
def test_unbalanced_quotes_are_refused_after_the_commands_before(line):
    exc = refused(enc(b"PING") + b"PING\r\n" + line + enc(b"PING"))
    assert str(exc) == "Protocol error: unbalanced quotes in request"
    assert exc.commands == [[b"PING"], [b"PING"]]


# -- (d) empty multibulks are skipped --------------------------------------------------
@pytest.mark.parametrize("data", [b"*0\r\n", b"*-1\r\n", b"*0\r\n*-1\r\n*0\r\n"])
def test_empty_multibulks_alone_are_skipped(data):
    got, p = feed_all([data])
    assert got == [] and p.idle


def test_empty_multibulks_between_commands_are_skipped():
    data = enc(b"PING") + b"*0\r\n*-1\r\n" + enc(b"GET", b"k") + b"*-1\r\n*0\r\nPING\r\n*0\r\n"
    got, p = feed_all([data])
    assert got == [[b"PING"], [b"GET", b"k"], [b"PING"]] and p.idle
    got, p = feed_all([b"*0\r\n" + enc(b"PING")])
    assert got == [[b"PING"]] and p.idle


# -- (e) hiredis refuses mid-chunk: the careful path says why --------------------------
@pytest.mark.parametrize("bad,message", [
    (b"*1\r\n*1\r\n$1\r\na\r\n", "Protocol error: expected '$', got '*'"),      # nested array
    (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),                # not a bulk
    pytest.param(b"*1\r\n+OK\r\n", "Protocol error: expected '$', got '+'"),
    pytest.param(b"*1\r\n=7\r\ntxt:abc\r\n", "Protocol error: expected '$', got '='"),
    pytest.param(b"*1\r\n(123\r\n", "Protocol error: expected '$', got '('"),
    (b"*1\r\n-ERR x\r\n", "Protocol error: expected '$', got '-'"),
    (b"*1\r\n,1.5\r\n", "Protocol error: expected '$', got ','"),
    (b"*1\r\n_\r\n", "Protocol error: expected '$', got '_'"),
    (b"*1\r\n%1\r\n$1\r\na\r\n$1\r\nb\r\n", "Protocol error: expected '$', got '%'"),
    (b"*1\r\n!3\r\nabc\r\n", "Protocol error: expected '$', got '!'"),
    (b"*+1\r\n$4\r\nPING\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\r\n$+4\r\nPING\r\n", "Protocol error: invalid bulk length"),
    (b"*2\r\n$3\r\nGET\r\n$-1\r\n", "Protocol error: invalid bulk length"),     # a nil argument
])
def test_what_hiredis_refuses_mid_chunk_keeps_the_commands_before(bad, message):
    before = [[b"PING"], [b"SET", b"k", b"\r\n*1\r\n"], [b"GET", b"k"]]
    exc = refused(stream(before) + bad)
    assert exc.commands == before and str(exc) == message


def test_the_bytes_of_a_value_are_never_run_as_a_command():
    """Five '+X' elements (4 bytes each, counted as 7 by encoded_size) put
    the careful path 15 bytes too far on: at the value FLUSHALL of the next
    command, which it then reads as an inline command."""
    data = b"*5\r\n" + b"+X\r\n" * 5 + b"*2\r\n:123\r\n$10\r\nFLUSHALL\r\n\r\n"
    p = Parser()
    try:
        got = p.feed(data)
    except RespError as exc:
        got = exc.commands
    assert [b"FLUSHALL"] not in got
    exc = refused(data)
    assert str(exc) == "Protocol error: expected '$', got '+'" and exc.commands == []


@pytest.mark.parametrize("data", [b"*1\r\n$04\r\nPING\r\n", b"*01\r\n$4\r\nPING\r\n",
                                  b"*1\r\n$+4\r\nPING\r\n", b"*1\r\n$-0\r\n"])
def test_lengths_are_read_as_strictly_as_redis(data):
    """No leading zero, no sign but '-': Redis's string2ll refuses them too."""
    with pytest.raises(RespError, match="Protocol error: invalid"):
        Parser().feed(data)
