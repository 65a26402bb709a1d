"""PROXY protocol headers, v1 and v2, without sockets: header_length, parse_proxy_header,
the trust list; then read_proxy_header on a socket pair (exact reads); then properties:
any bytes either parse or raise ProxyError, nothing else."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_support import tlv, v1, v2, v2_local, v2_raw, v2_tcp4, v2_tcp6

from smtpgate.listener import read_proxy_header
from smtpgate.proxy import (
    MAX_V1_LENGTH,
    MAX_V2_LENGTH,
    V2_SIGNATURE,
    ProxyError,
    ProxyInfo,
    ProxySniffer,
    Sniffed,
    TrustList,
    header_length,
    parse_proxy_header,
)

pytestmark = pytest.mark.timeout(60)


def parse(data: bytes) -> ProxyInfo:
    """What the listener does: measure, then parse exactly the header."""
    total = header_length(data)
    assert total is not None, f"{data!r} should be complete"
    return parse_proxy_header(data[:total])


# ----------------------------------------------------------------------------- v1


def test_v1_tcp4():
    info = parse(b"PROXY TCP4 192.0.2.10 198.51.100.1 40000 25\r\n")
    assert info == ProxyInfo(1, False, "192.0.2.10", 40000, "198.51.100.1", 25)


def test_v1_tcp6_addresses_are_normalised():
    info = parse(b"PROXY TCP6 2001:DB8:0:0::10 2001:db8::1 65535 587\r\n")
    assert (info.source_address, info.source_port) == ("2001:db8::10", 65535)
    assert (info.destination_address, info.destination_port) == ("2001:db8::1", 587)
    assert info.local is False


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"])
def test_v1_unknown_keeps_the_real_peer(line):
    info = parse(line)
    assert info.version == 1 and info.local is True
    assert info.source_address is None and info.source_port is None


def test_v1_longest_legal_lines_are_accepted():
    address = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {address} {address} 65535 65535\r\n".encode()
    assert header_length(line) == len(line)
    assert parse_proxy_header(line).source_port == 65535
    worst = f"PROXY UNKNOWN {address} {address} 65535 65535\r\n".encode()  # the spec's worst case
    assert len(worst) == MAX_V1_LENGTH
    assert header_length(worst) == MAX_V1_LENGTH
    assert parse_proxy_header(worst).local is True


def test_v1_header_length_stops_at_the_first_crlf():
    line = v1()
    assert header_length(line + b"EHLO client.example\r\n") == len(line)


@pytest.mark.parametrize("prefix", [b"", b"P", b"PROXY", b"PROXY ", b"PROXY TCP4 192.0.2.10 198.5"])
def test_v1_incomplete_needs_more(prefix):
    assert header_length(prefix) is None


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.0.2.10 198.51.100.1 40000 25\n",  # LF only
        b"PROXY TCP4 192.0.2.10 198.51.100.1 40000\r\n",  # a port missing
        b"PROXY TCP4 192.0.2.10 198.51.100.1 40000 25 7\r\n",  # one field too many
        b"PROXY TCP4  192.0.2.10 198.51.100.1 40000 25\r\n",  # two spaces
        b"PROXY TCP5 192.0.2.10 198.51.100.1 40000 25\r\n",
        b"PROXY tcp4 192.0.2.10 198.51.100.1 40000 25\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.1 40000 25\r\n",  # family mismatch
        b"PROXY TCP6 192.0.2.10 2001:db8::1 40000 25\r\n",
        b"PROXY TCP4 192.0.2.300 198.51.100.1 40000 25\r\n",
        b"PROXY TCP4 192.0.2.010 198.51.100.1 40000 25\r\n",  # leading zero in an octet
        b"PROXY TCP4 example.com 198.51.100.1 40000 25\r\n",
        b"PROXY TCP4 192.0.2.10 198.51.100.1 65536 25\r\n",
        b"PROXY TCP4 192.0.2.10 198.51.100.1 040000 25\r\n",  # leading zero in a port
        b"PROXY TCP4 192.0.2.10 198.51.100.1 -1 25\r\n",
        b"PROXY TCP4 192.0.2.10 198.51.100.1 +1 25\r\n",
        b"PROXY TCP4 192.0.2.10 198.51.100.1 \xd9\xa1 25\r\n",  # an Arabic-Indic digit: not ASCII
        b"PROXY TCP4 192.0.2.10 198.51.100.1 \xb9 25\r\n",
        b"PROXY\r\n",
        b"PROXY \r\n",
    ],
)
def test_v1_malformed_is_refused(line):
    with pytest.raises(ProxyError):
        total = header_length(line)
        parse_proxy_header(line if total is None else line[:total])


@pytest.mark.parametrize("start", [b"EHLO x\r\n", b"proxy TCP4", b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00\x01"])
def test_not_a_header_is_refused_from_the_first_bytes(start):
    with pytest.raises(ProxyError, match="not a PROXY header"):
        header_length(start)


@pytest.mark.parametrize("start", [b"PROXY B", b"PROXY BOGUS\r\n", b"PROXY TCP5", b"PROXY UNKNOWX", b"PROXY TCP4\r\n"])
def test_v1_unknown_family_is_refused_as_soon_as_it_shows(start):
    with pytest.raises(ProxyError, match="TCP4[|]TCP6"):
        header_length(start)


@pytest.mark.parametrize("start", [b"PROXY T", b"PROXY TCP", b"PROXY TCP6", b"PROXY UNKNOW", b"PROXY UNKNOWN x"])
def test_v1_family_prefixes_need_more(start):
    assert header_length(start) is None


def test_v1_without_crlf_within_107_bytes_is_refused():
    with pytest.raises(ProxyError, match="too long"):
        header_length(b"PROXY TCP4 " + b"1" * MAX_V1_LENGTH)
    with pytest.raises(ProxyError, match="too long"):
        header_length(b"PROXY TCP4 " + b"1" * MAX_V1_LENGTH + b"\r\n")


def test_v1_line_of_108_bytes_is_refused():
    line = b"PROXY UNKNOWN " + b"x" * (MAX_V1_LENGTH - len(b"PROXY UNKNOWN ") - 1) + b"\r\n"
    assert len(line) == MAX_V1_LENGTH + 1
    with pytest.raises(ProxyError):
        header_length(line)


# ----------------------------------------------------------------------------- v2


def test_v2_tcp4():
    header = v2_tcp4("192.0.2.10", "198.51.100.1", 40000, 25)
    assert header_length(header + b"EHLO x\r\n") == len(header) == 28
    assert parse(header) == ProxyInfo(2, False, "192.0.2.10", 40000, "198.51.100.1", 25, {})


def test_v2_tcp6():
    info = parse(v2_tcp6("2001:db8::10", "2001:db8::1", 1, 65535))
    assert (info.source_address, info.source_port, info.destination_address, info.destination_port) == (
        "2001:db8::10",
        1,
        "2001:db8::1",
        65535,
    )


def test_v2_udp_over_ipv4_is_read_like_tcp():
    body = socket.inet_aton("192.0.2.10") + socket.inet_aton("198.51.100.1") + struct.pack("!HH", 5, 6)
    assert parse(v2(0x1, 0x12, body)).source_address == "192.0.2.10"


@pytest.mark.parametrize("body", [b"", tlv(0x04, b"\x00" * 8)])
def test_v2_local_command_keeps_the_real_peer(body):
    info = parse(v2_local(body))
    assert info.version == 2 and info.local is True and info.source_address is None


def test_v2_local_ignores_an_address_block():
    """HAProxy health checks send LOCAL; whatever follows is not a client address."""
    info = parse(v2(0x0, 0x11, v2_tcp4()[16:]))
    assert info.local is True and info.source_address is None


def test_v2_unspec_family_keeps_the_real_peer():
    assert parse(v2(0x1, 0x00)).local is True


def test_v2_unix_family_keeps_the_real_peer():
    assert parse(v2(0x1, 0x31, b"\x00" * 216)).local is True


def test_v2_tlvs_are_kept_raw_and_do_not_change_the_address():
    tlvs = tlv(0x01, b"smtp") + tlv(0x02, b"mx.example") + tlv(0x20, b"\x01" + b"\x00" * 4) + tlv(0xEE, b"")
    info = parse(v2_tcp4(tlvs=tlvs))
    assert info.source_address == "192.0.2.10"
    assert info.tlvs == {0x01: b"smtp", 0x02: b"mx.example", 0x20: b"\x01\x00\x00\x00\x00", 0xEE: b""}


def test_v2_length_counts_the_tlvs():
    header = v2_tcp4(tlvs=tlv(0x04, b"\x00" * 100))
    assert header_length(header[:16]) == len(header)


@pytest.mark.parametrize("cut", [0, 1, 5, 11, 12, 15])
def test_v2_signature_prefix_needs_more(cut):
    assert header_length(V2_SIGNATURE[:cut]) is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (v2(0x1, 0x11, b"\x00" * 8), "truncated"),  # address block shorter than 12
        (v2(0x1, 0x21, b"\x00" * 20), "truncated"),
        (v2_tcp4(tlvs=b"\x04\x00"), "TLV truncated"),  # a TLV cut in its header
        (v2_tcp4(tlvs=b"\x04\x00\x09abc"), "TLV truncated"),  # a TLV value cut short
        (v2(0x1, 0x11, v2_tcp4()[16:], version=1), "bad version"),
        (v2(0x1, 0x11, v2_tcp4()[16:], version=3), "bad version"),
        (v2(0x2, 0x11, v2_tcp4()[16:]), "unknown command"),
        (v2(0xF, 0x11, v2_tcp4()[16:]), "unknown command"),
        (v2(0x1, 0x13, v2_tcp4()[16:]), "transport protocol"),
        (v2(0x1, 0x10, v2_tcp4()[16:]), "transport protocol"),
        (v2(0x1, 0x41, v2_tcp4()[16:]), "address family"),
    ],
)
def test_v2_malformed_is_refused(header, message):
    with pytest.raises(ProxyError, match=message):
        parse(header)


def test_v2_whose_length_field_disagrees_is_refused():
    header = v2_tcp4()
    with pytest.raises(ProxyError, match="length mismatch"):
        parse_proxy_header(header + b"\x00")
    with pytest.raises(ProxyError):
        parse_proxy_header(header[:-1])
    with pytest.raises(ProxyError, match="truncated"):
        parse_proxy_header(V2_SIGNATURE + b"\x21")


def test_v2_over_the_length_limit_is_refused_from_its_first_16_bytes():
    length = MAX_V2_LENGTH - 16 + 1
    with pytest.raises(ProxyError, match="too long"):
        header_length(v2_raw(0x21, 0x11, length, b""))
    assert header_length(v2_raw(0x21, 0x11, length - 1, b"")) == MAX_V2_LENGTH


# ----------------------------------------------------------------------------- trust lists


def test_trust_list_forms():
    assert "203.0.113.5" in TrustList(True)
    assert "203.0.113.5" in TrustList(["*"])
    assert "203.0.113.5" not in TrustList(False)
    assert not TrustList([]).enabled
    networks = TrustList(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    assert "10.1.2.3" in networks
    assert "::ffff:10.1.2.3" in networks  # IPv4-mapped IPv6, as a dual-stack socket reports it
    assert "2001:db8::1%eth0" in networks
    assert "192.0.2.7" in networks and "192.0.2.8" not in networks
    assert "11.0.0.1" not in networks and "not an address" not in networks


def test_trust_list_refuses_garbage():
    with pytest.raises(ValueError, match="not an IP address"):
        TrustList(["10.0.0.0/33"])
    with pytest.raises(TypeError):
        TrustList([10])  # type: ignore[list-item]


# ----------------------------------------------------------------------------- reading from a socket


def read_from_socket(data: bytes, close: bool = False) -> tuple[ProxyInfo | ProxyError, bytes]:
    """Feed ``data`` to read_proxy_header over a socket pair; return its result and what the
    socket still holds after it (the reader must not consume a byte past the header)."""

    async def main() -> tuple[ProxyInfo | ProxyError, bytes]:
        loop = asyncio.get_running_loop()
        server, client = socket.socketpair()
        with server, client:
            server.setblocking(False)
            client.sendall(data)
            if close:
                client.shutdown(socket.SHUT_WR)
            try:
                result: ProxyInfo | ProxyError = await asyncio.wait_for(read_proxy_header(loop, server), 5)
            except ProxyError as error:
                result = error
            client.close()
            rest = b""
            while True:
                chunk = await asyncio.wait_for(loop.sock_recv(server, 65536), 5)
                if not chunk:
                    break
                rest += chunk
            return result, rest

    return asyncio.run(main())


TLS_CLIENT_HELLO_START = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03"


@pytest.mark.parametrize(
    "header",
    [v1(), v1("2001:db8::10", "2001:db8::1"), b"PROXY UNKNOWN\r\n", v2_tcp4(), v2_tcp6(), v2_local()],
    ids=["v1-tcp4", "v1-tcp6", "v1-unknown", "v2-tcp4", "v2-tcp6", "v2-local"],
)
def test_read_proxy_header_reads_exactly_the_header(header):
    info, rest = read_from_socket(header + TLS_CLIENT_HELLO_START)
    assert isinstance(info, ProxyInfo)
    assert rest == TLS_CLIENT_HELLO_START


def test_read_proxy_header_with_tlvs_leaves_the_next_bytes():
    header = v2_tcp4(tlvs=tlv(0x01, b"smtp") + tlv(0x04, b"\x00" * 300))
    info, rest = read_from_socket(header + b"EHLO x\r\n")
    assert isinstance(info, ProxyInfo) and info.tlvs[0x01] == b"smtp"
    assert rest == b"EHLO x\r\n"


@pytest.mark.parametrize(
    "data",
    [v1()[:-3], v2_tcp4()[:-1], v2_tcp4()[:14], b"PROXY"],
    ids=["v1-cut", "v2-cut-in-body", "v2-cut-in-fixed-part", "v1-five-bytes"],
)
def test_read_proxy_header_refuses_a_truncated_header_at_eof(data):
    info, _ = read_from_socket(data, close=True)
    assert isinstance(info, ProxyError)
    assert "closed before the PROXY header was complete" in str(info)


def test_read_proxy_header_refuses_non_headers_after_six_bytes():
    info, rest = read_from_socket(b"EHLO client.example\r\n")
    assert isinstance(info, ProxyError) and "not a PROXY header" in str(info)
    assert rest == b"lient.example\r\n", "only the first six bytes are read before refusing"


# ----------------------------------------------------------------------------- properties


def parse_or_refuse(data: bytes) -> ProxyInfo | None:
    """The contract: a header, None (need more), or ProxyError. Nothing else may escape."""
    try:
        total = header_length(data)
        if total is None:
            return None
        if total > len(data):
            return None
        return parse_proxy_header(data[:total])
    except ProxyError:
        return None


V1_FIELDS = st.one_of(
    st.sampled_from(["TCP4", "TCP6", "UNKNOWN", "UDP4", "", "192.0.2.1", "::1", "0", "65535", "65536", "01"]),
    st.ip_addresses().map(str),
    st.integers(-5, 70000).map(str),
    st.text(max_size=12),
)


@st.composite
def v1_like(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(V1_FIELDS, max_size=7))
    line = ("PROXY " + draw(st.sampled_from([" ", "  ", "\t"])).join(fields)).encode("utf-8", "surrogatepass")
    return line + draw(st.sampled_from([b"\r\n", b"\n", b"", b"\r\nEHLO x\r\n"]))


@st.composite
def v2_like(draw: st.DrawFn) -> bytes:
    command_byte = draw(st.one_of(st.sampled_from([0x20, 0x21, 0x22, 0x11, 0x2F]), st.integers(0, 255)))
    family = draw(st.one_of(st.sampled_from([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x13]), st.integers(0, 255)))
    body = draw(st.binary(max_size=300))
    length = draw(st.one_of(st.just(len(body)), st.integers(0, 0xFFFF)))
    return v2_raw(command_byte, family, length, body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_proxy_error(data):
    parse_or_refuse(data)


@settings(max_examples=400, deadline=None)
@given(v1_like())
def test_v1_like_lines_parse_or_raise_proxy_error(data):
    info = parse_or_refuse(data)
    if info is not None and not info.local:
        assert info.source_port is not None and 0 <= info.source_port <= 65535
        assert data.startswith(f"PROXY TCP{4 if '.' in info.source_address else 6} ".encode())


@settings(max_examples=400, deadline=None)
@given(v2_like())
def test_v2_like_headers_parse_or_raise_proxy_error(data):
    info = parse_or_refuse(data)
    if info is not None:
        assert info.version == 2


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 65535), st.integers(0, 65535))
def test_well_formed_headers_round_trip(address, sport, dport):
    text = str(address)
    if address.version == 4:
        headers = [v1(text, "192.0.2.1", sport, dport), v2_tcp4(text, "192.0.2.1", sport, dport)]
    else:
        headers = [v1(text, "2001:db8::1", sport, dport), v2_tcp6(text, "2001:db8::1", sport, dport)]
    for header in headers:
        info = parse(header + b"MAIL FROM:<a@b>\r\n")
        assert (info.source_address, info.source_port, info.destination_port) == (text, sport, dport)


@settings(max_examples=150, deadline=None)
@given(st.one_of(v1_like(), v2_like(), st.binary(max_size=120)), st.booleans())
def test_read_proxy_header_raises_only_proxy_error(data, close):
    """Over a socket: a header, ProxyError, or (more bytes awaited, no EOF) a timeout."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, client = socket.socketpair()
        with server, client:
            server.setblocking(False)
            client.sendall(data)
            if close:
                client.shutdown(socket.SHUT_WR)
            try:
                await asyncio.wait_for(read_proxy_header(loop, server), 0.05 if not close else 5)
            except (ProxyError, asyncio.TimeoutError):
                pass

    asyncio.run(main())


# ----------------------------------------------------------------------------- sniffing


def test_sniffer_closes_on_a_header_in_pieces():
    sniffer = ProxySniffer()
    assert sniffer.feed(b"PRO") == (Sniffed.HOLD, b"")
    assert sniffer.feed(b"XY TCP4 ") == (Sniffed.HEADER, b"")
    sniffer = ProxySniffer()
    assert sniffer.feed(b"\r\n") == (Sniffed.HOLD_BRIEFLY, b"")
    assert sniffer.feed(b"\r\n\x00") == (Sniffed.HOLD, b"")
    assert sniffer.feed(V2_SIGNATURE[5:] + b"\x21") == (Sniffed.HEADER, b"")


def test_sniffer_passes_smtp_with_what_it_held():
    sniffer = ProxySniffer()
    assert sniffer.feed(b"PRO") == (Sniffed.HOLD, b"")
    assert sniffer.feed(b"MPT\r\n") == (Sniffed.SMTP, b"PROMPT\r\n")
    sniffer = ProxySniffer()
    assert sniffer.feed(b"\r\n") == (Sniffed.HOLD_BRIEFLY, b"")
    assert sniffer.release() == b"\r\n"
    assert sniffer.release() == b""


@given(st.binary(max_size=40), st.lists(st.integers(1, 8), max_size=10))
def test_sniffer_never_loses_or_invents_bytes(data, cuts):
    sniffer = ProxySniffer()
    passed, start = b"", 0
    for size in [*cuts, len(data)]:
        verdict, out = sniffer.feed(data[start : start + size])
        start += size
        if verdict is Sniffed.HEADER:
            assert data.startswith(b"PROXY ") or data.startswith(V2_SIGNATURE)
            return
        if verdict is Sniffed.SMTP:
            passed = out + data[start:]
            break
    else:
        passed = sniffer.release()
    assert passed == data
