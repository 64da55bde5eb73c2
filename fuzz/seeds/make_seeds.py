#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets (fuzz/seeds/<target>/), built by hand from
the message layouts in docs/protocol.md. Valid seeds let the fuzzer start from
the paths where decoding succeeds (round trips, into_request, complete Stop-Sessions)
instead of having to discover every field. Re-run after changing a layout:
    python3 fuzz/seeds/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def be32(v):
    return struct.pack(">I", v)


def be16(v):
    return struct.pack(">H", v)


def num64(secs):
    return struct.pack(">Q", int(secs * 2**32))


SID = bytes(range(0x10, 0x20))


# Server-Greeting (64), Set-Up-Response (164), Server-Start clear (32) + tail (16).
greeting = bytes(12) + be32(7) + bytes(range(16)) + bytes(range(16, 32)) + be32(2048) + bytes(12)
setup = be32(2) + b"alice".ljust(80, b"\0") + bytes(range(64)) + bytes(16)
start_clear = bytes(15) + b"\0" + bytes(range(0xA0, 0xB0))
start_tail = num64(3_900_000_000) + bytes(8)
put("wire_setup", "valid", greeting + setup + start_clear + start_tail)


def preamble(ipvn, sender, receiver, nslots, npackets=100, padding=0, typep=0, conf=(0, 1)):
    return (
        bytes([1, ipvn, conf[0], conf[1]])
        + be32(nslots)
        + be32(npackets)
        + be16(0)
        + be16(8760)
        + sender.ljust(16, b"\0")
        + receiver.ljust(16, b"\0")
        + SID
        + be32(padding)
        + num64(3_900_000_000)
        + num64(2.0)
        + be32(typep)
        + bytes(8)
    )


def slot(kind, secs):
    return bytes([kind]) + bytes(7) + num64(secs)


lo4 = bytes([127, 0, 0, 1])
lo6 = bytes(15) + b"\x01"
slots = slot(0, 0.1) + slot(1, 0.25)
req4 = preamble(4, lo4, lo4, 2) + slots
req6 = preamble(6, lo6, lo6, 1, padding=1400, typep=0x2E000000, conf=(1, 0)) + slot(0, 0.01)
put("wire_request", "ipv4", req4)
put("wire_request", "ipv6", req6)
put("wire_stored", "ipv4", preamble(4, lo4, lo4, 2) + bytes(16) + slots + bytes(16))
put("wire_stored", "ipv6-trailing", preamble(6, lo6, lo6, 1) + bytes(16) + slot(0, 0.01) + bytes(16) + b"more")

# Accept-Session (32), Start-Sessions (16), Start-Ack (16), Fetch-Session (32), Fetch-Ack (16).
accept = b"\0\0" + be16(8760) + SID + bytes(12)
start = b"\x02" + bytes(15)
ack = bytes(16)
fetch = b"\x04" + bytes(7) + be32(0) + be32(0xFFFFFFFF) + SID
fetch_ack = b"\x00\x01\0\0" + be32(100) + be32(1) + be32(99)
put("wire_session", "valid", accept + start + ack + fetch + fetch_ack)

# Stop-Sessions: limits (small: bool byte, sessions % 8, skips % 16), header, chunk sizes,
# then two session records: K=1 (odd, no pad) and K=2 (even, 8 zero bytes of pad).
limits = bytes([1, 2, 4])
header = b"\x03\x00\x00\x00" + be32(2) + bytes(8)
chunks = bytes([1, 2, 3, 0, 5, 1, 1, 1])
s1 = SID + be32(100) + be32(1) + be32(5) + be32(7)
s2 = bytes(range(0x30, 0x40)) + be32(50) + be32(2) + be32(1) + be32(2) + be32(9) + be32(9) + bytes(8)
put("wire_stop", "two-sessions", limits + header + chunks + s1 + s2)
put("wire_stop", "none", limits + b"\x03\x00\x00\x00" + be32(0) + bytes(8) + chunks)

# Fetch stream: selector byte (bit 0: records; bit 1: count from length), raw count, bytes.
ranges = be32(1) + be32(2) + be32(5) + be32(9)
put("wire_fetch", "skips", bytes([2]) + be32(2) + ranges)


def record(seq, lost=False):
    recv = 0 if lost else 3_900_000_001
    return be32(seq) + b"\x80\x0c" + b"\x80\x0c" + num64(3_900_000_000) + num64(recv) + bytes([255 if lost else 64])


recs = record(0) + record(1, lost=True) + record(2)
put("wire_fetch", "records", bytes([3]) + be32(3) + recs + bytes(80 - len(recs)))

# Control crypto: AES key, HMAC key, client IV, server IV, selector, then the case's bytes.
keys = bytes(range(16)) + bytes(range(32, 64)) + bytes(range(64, 80)) + bytes(range(80, 96))
put("crypto_control", "open-arbitrary", keys + b"\x00" + b"\x20" + bytes(32) + b"\x80" + bytes(16) + b"\x07abcdefg")
put("crypto_control", "seal-open", keys + b"\x01" + b"\x03" + bytes([6, 1, 0, 2]) + bytes(range(96)))
put("crypto_control", "token", keys + b"\x02" + bytes(range(64)))

# Small values: selector byte then text or bytes.
for i, text in enumerate([
    "00112233445566778899AABBccddeeff",
    "AEO",
    "8760-9960",
    "[::1]:861",
    "-1000",
    "LOCAL5",
]):
    put("types_text", f"v{i}", bytes([i]) + text.encode())
put("types_text", "v6", bytes([6, 0x80, 0x0C]))
put("types_text", "v7", bytes([7]) + record(7))
put("types_text", "v8", bytes([8]) + struct.pack("<d", 1.5))

# .owp v3 file (protocol.md §7.7): magic, version, Finished, Next Seqno, Number of Skip Ranges,
# Number of Records, skip offset, data offset, stored Request-Session, skips, records.
def owp_v3(finished, next_seqno, skips, records, session):
    hlen = 40 + len(session)
    nskips = len(skips) // 8
    nrecs = len(records) // 25
    if nskips:
        oset_skips, oset_data = hlen, hlen + len(skips)
    elif nrecs:
        oset_skips, oset_data = hlen + len(records), hlen
    else:
        oset_skips, oset_data = 0, hlen
    head = b"OwA\0" + be32(3) + be32(finished) + be32(next_seqno) + be32(nskips) + be32(nrecs)
    head += struct.pack(">QQ", oset_skips, oset_data)
    if nskips:
        return head + session + skips + records
    return head + session + records + skips


stored4 = preamble(4, lo4, lo4, 2, npackets=3) + bytes(16) + slots + bytes(16)
put("owp_file", "v3-finished", owp_v3(1, 3, be32(1) + be32(1), recs, stored4))
put("owp_file", "v3-live", owp_v3(0, 0, b"", recs, stored4))
put("owp_file", "session-only", stored4)
# v2: magic, version 2, header length (u64), Finished, Request-Session, then 24-octet
# records (no TTL). v0: magic, version 0, header length, records.
recs24 = b"".join(record(i)[:24] for i in range(3))
v2_hdr_len = 20 + len(stored4)
put("owp_file", "v2", b"OwA\0" + be32(2) + struct.pack(">Q", v2_hdr_len) + be32(1) + stored4 + recs24)
put("owp_file", "v0", b"OwA\0" + be32(0) + struct.pack(">Q", 16) + recs24)

# Test packets: mode selector, SID, AES key, HMAC key, padding, seq, timestamp, error
# estimate, bit to flip, then the datagram (an open-mode packet with 4 octets of padding).
fixture = SID + bytes(range(16)) + bytes(range(32)) + bytes([4]) + be32(7) + bytes(8) + b"\x80\x0c" + b"\x01\x00"
open_pkt = be32(7) + num64(3_900_000_000) + b"\x80\x0c" + bytes(4)
for mode in range(3):
    put("packet", f"mode{mode}", bytes([mode]) + fixture + open_pkt + bytes(48))

# owstats: 16 option octets (unit, bucket width, range selector, first, ...), then a file.
opts = bytes([2, 7, 0, 0, 0, 0, 2, 50, 95]).ljust(16, b"\0")
opts_n = bytes([0, 5, 6, 1, 2, 1, 3, 99, 50, 10]).ljust(16, b"\0")
put("owstats_file", "v3-finished", opts + owp_v3(1, 3, be32(1) + be32(1), recs, stored4))
put("owstats_file", "v3-live-ns", opts_n + owp_v3(0, 0, b"", recs + record(1), stored4))
put("owstats_file", "v2", opts + b"OwA\0" + be32(2) + struct.pack(">Q", v2_hdr_len) + be32(1) + stored4 + recs24)

# A client's whole open-mode control stream (the server's greeting and replies are not
# part of the input): Set-Up-Response (mode 1), Request-Session (+ zero HMAC blocks),
# Start-Sessions, Stop-Sessions with no records; and one with a Fetch-Session.
HMAC0 = bytes(16)
setup_open = be32(1) + bytes(160)
req_recv = preamble(4, lo4, lo4, 1, npackets=10, conf=(0, 1)) + HMAC0 + slot(0, 0.1) + HMAC0
req_send = preamble(4, lo4, lo4, 1, npackets=10, conf=(1, 0)) + HMAC0 + slot(1, 0.1) + HMAC0
start_cmd = b"\x02" + bytes(15) + HMAC0
stop_cmd = b"\x03\x00\x00\x00" + be32(0) + bytes(8) + HMAC0
put("control_session", "receive-session", setup_open + req_recv + start_cmd + stop_cmd)
put("control_session", "send-session", setup_open + req_send + start_cmd + stop_cmd)
put("control_session", "fetch", setup_open + fetch + HMAC0)

# control_socket: flags (bits 0-1 mode: 0 open, 1 authenticated, 2 encrypted; bit 2 keep
# the write side open; bit 3 read nothing), bytes per write, then the payload: in open
# mode the raw stream as above; in the secure modes messages, each a header octet
# (blocks - 1, bit 7 = spoil the HMAC) and its plaintext, sealed by the target.
def sealed(*msgs):
    out = b""
    for m in msgs:
        assert len(m) % 16 == 0 and m
        out += bytes([len(m) // 16 - 1]) + m
    return out


stream_recv = setup_open + req_recv + start_cmd + stop_cmd
put("control_socket", "open-receive", bytes([0, 0]) + stream_recv)
# The SID mark: control's random SID of its first receive session, once it is accepted.
MARK0 = b"@@accepted-sid@" + b"\0"
stop_one = b"\x03\x00\x00\x00" + be32(1) + bytes(8) + MARK0 + be32(10) + be32(1) + be32(2) + be32(3) + HMAC0
fetch_mark = b"\x04" + bytes(7) + be32(0) + be32(0xFFFFFFFF) + MARK0 + HMAC0
put("control_socket", "open-receive-stop-fetch", bytes([0, 0]) + setup_open + req_recv + start_cmd + stop_one + fetch_mark)
put("control_socket", "open-send-chunked", bytes([0, 7]) + setup_open + req_send + start_cmd + stop_cmd)
put("control_socket", "open-fetch-held-open", bytes([4, 0]) + setup_open + fetch + HMAC0)
put("control_socket", "open-never-read", bytes([8, 64]) + stream_recv)
pre_recv = preamble(4, lo4, lo4, 1, npackets=10, conf=(0, 1))
pre_send = preamble(4, lo4, lo4, 1, npackets=10, conf=(1, 0))
stop_hdr = b"\x03\x00\x00\x00" + be32(0) + bytes(8)
put("control_socket", "auth-receive", bytes([1, 0]) + sealed(pre_recv, slot(0, 0.1), b"\x02" + bytes(15), stop_hdr))
put("control_socket", "encrypted-send", bytes([2, 0]) + sealed(pre_send, slot(1, 0.1), b"\x02" + bytes(15), stop_hdr))
put("control_socket", "encrypted-fetch", bytes([2, 0]) + sealed(fetch))
