"""The clients' RESP2 core (sluice._resp): encoding, and replies read in any split, by the
pure-Python reader and by hiredis's alike."""

import importlib.util

import pytest

from sluice import _resp

READERS = [_resp._PyReader]
if importlib.util.find_spec("hiredis") is not None:
    READERS.append(_resp.Reader)  # hiredis's reader

REPLIES = (b"*9\r\n:1\r\n:10\r\n:9\r\n:60000\r\n:0\r\n$10\r\nper_minute\r\n$4\r\nfree\r\n"
           b":60000\r\n*1\r\n*5\r\n$10\r\nper_minute\r\n:10\r\n:9\r\n:60000\r\n:60000\r\n"
           b"-WRONGARGS unknown tier 'gold'\r\n+PONG\r\n$-1\r\n*0\r\n$3\r\nab\xff\r\n")
EXPECTED = [
    [1, 10, 9, 60000, 0, "per_minute", "free", 60000, [["per_minute", 10, 9, 60000, 60000]]],
    "WRONGARGS unknown tier 'gold'", "PONG", None, [], "ab\ufffd",
]


def test_encode_writes_bulk_strings():
    assert _resp.encode(("SL.CHECK", "predict", b"a b", "COST", 250)) == \
        b"*5\r\n$8\r\nSL.CHECK\r\n$7\r\npredict\r\n$3\r\na b\r\n$4\r\nCOST\r\n$3\r\n250\r\n"
    with pytest.raises(TypeError):
        _resp.encode(("SL.CHECK", True))


@pytest.mark.parametrize("make", READERS)
@pytest.mark.parametrize("chunk", [1, 2, 7, len(REPLIES)])
def test_replies_read_whole_whatever_the_split(make, chunk):
    reader, got = make(), []
    for start in range(0, len(REPLIES), chunk):
        reader.feed(REPLIES[start:start + chunk])
        while (reply := reader.gets()) is not _resp.NO_REPLY:
            got.append(reply)
    assert got == EXPECTED
    assert type(got[1]) is _resp.ErrorReply  # an error reply is a value, not an exception


@pytest.mark.parametrize("make", READERS)
def test_garbage_is_a_protocol_error(make):
    reader = make()
    reader.feed(b"?what\r\n")
    with pytest.raises(_resp.ProtocolError):
        reader.gets()
