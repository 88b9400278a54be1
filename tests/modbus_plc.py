"""A PLC's side of linesight's Modbus result handshake, with pymodbus (tests/modbus.rs).

    python modbus_plc.py PORT UNIT MODE

MODE "handshake": turns buffering on, then takes every result through the handshake
(results_valid 1 → read → acknowledge 1 → acknowledge 0) until the line has stopped and
nothing waits. MODE "overrun": turns buffering on and does not acknowledge until the
buffer overran by at least 3 results, then takes results as "handshake" does.

Prints one JSON object per line: {"enabled": {...}} right after buffering went on (the
counters then), {"result": {...}} for each result taken, {"end": {...}} with the
registers as last read. The register map: docs/modbus.md.
"""

import json
import math
import struct
import sys
import time

from pymodbus.client import ModbusTcpClient

PORT, UNIT, MODE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
BUFFERING, ACK = 1, 2
ONLINE, VALID, OVERRUN, BUF_BIT, ACK_BIT = 1 << 0, 1 << 2, 1 << 7, 1 << 9, 1 << 10
HUNG_S = 120


def out(**kv):
    print(json.dumps(kv), flush=True)


def u32(w, a):
    return (w[a] << 16) | w[a + 1]


def f32(w, a):
    return struct.unpack(">f", struct.pack(">HH", w[a], w[a + 1]))[0]


def i32(w, a):
    return struct.unpack(">i", struct.pack(">HH", w[a], w[a + 1]))[0]


def decode(w):
    score = f32(w, 6)
    return {
        "status": w[0],
        "error_code": w[1],
        "inspection_id": u32(w, 2),
        "result_code": w[4],
        "reason_code": w[5],
        "score": None if math.isnan(score) else score,
        "score_x1000": i32(w, 8),
        "threshold": f32(w, 10),
        "processing_time_ms": f32(w, 12),
        "parts": u32(w, 14),
        "passed": u32(w, 16),
        "rejected": u32(w, 18),
        "errors": u32(w, 20),
        "overruns": u32(w, 22),
        "heartbeat": u32(w, 24),
        "config_checksum": u32(w, 26),
        "buffered": w[28],
        "buffer_capacity": w[29],
    }


client = ModbusTcpClient("127.0.0.1", port=PORT, timeout=5)
if not client.connect():
    sys.exit(f"cannot connect to 127.0.0.1:{PORT}")


def read():
    r = client.read_input_registers(0, count=30, device_id=UNIT)
    if r.isError():
        raise RuntimeError(f"read refused: {r}")
    return r.registers


def control(word):
    r = client.write_register(0, word, device_id=UNIT)
    if r.isError():
        raise RuntimeError(f"write refused: {r}")


# What the server refuses, said by the server: a write outside the control bits.
refused = client.write_register(1, 1, device_id=UNIT)
other_bits = client.write_register(0, 0x0100, device_id=UNIT)
other_unit = client.read_input_registers(0, count=2, device_id=(UNIT % 255) + 1)
out(
    refused={
        "write_register_1": refused.isError() and refused.exception_code,
        "write_bit_8": other_bits.isError() and other_bits.exception_code,
        "other_unit": other_unit.isError() and other_unit.exception_code,
    }
)

control(BUFFERING)
out(enabled=decode(read()))
start = time.monotonic()
seen_online = False
last = None
try:
    while time.monotonic() - start < HUNG_S:
        w = read()
        last = decode(w)
        seen_online = seen_online or bool(w[0] & ONLINE)
        if MODE == "overrun" and last["overruns"] < 3:
            time.sleep(0.01)
            continue
        if w[0] & VALID:
            out(result=last)
            control(BUFFERING | ACK)
            control(BUFFERING)
            continue
        if seen_online and not w[0] & ONLINE and last["buffered"] == 0:
            break
        time.sleep(0.005)
    else:
        sys.exit(f"gave up after {HUNG_S} s: the line did not stop")
except Exception as e:  # the server closes the connection as linesight ends
    out(closed=str(e))
out(end=last)
client.close()
