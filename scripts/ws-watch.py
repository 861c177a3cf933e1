#!/usr/bin/env python3
"""Waits on the manager's live event stream (as the browser opens it) for one host to reach one
state, or for N hosts' rows of patch jobs to reach one of some states; prints the Unix time it
happened. Standard library only (the benchmarks use it).

usage: ws-watch.py HOST:PORT CA_FILE TICKET HOST_ID STATE [TIMEOUT_SECS]
       ws-watch.py HOST:PORT CA_FILE TICKET jobs:N STATE[,STATE...] [TIMEOUT_SECS]
Prints "ready" once the stream is open, then the time of the event (of the N-th host)."""
import base64, json, os, socket, ssl, struct, sys, time

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError("stream closed")
        b += chunk
    return b

def send(s, opcode, payload):
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

def main():
    addr, cafile, ticket, host_id, state = sys.argv[1:6]
    timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 300
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection((host, int(port)), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /api/v1/events/ws?ticket={ticket} HTTP/1.1\r\nHost: {addr}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exact(s, 1)
    if b" 101 " not in head.split(b"\r\n")[0]:
        sys.exit(f"no upgrade: {head.decode(errors='replace')}")
    print("ready", flush=True)
    wanted_rows = int(host_id[5:]) if host_id.startswith("jobs:") else None
    states = set(state.split(","))
    reached = set()
    while True:
        b0, b1 = recv_exact(s, 2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", recv_exact(s, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", recv_exact(s, 8))[0]
        payload = recv_exact(s, n)
        if opcode == 0x9:
            send(s, 0xA, payload)
        elif opcode == 0x8:
            sys.exit("stream closed by the manager")
        elif opcode == 0x1:
            event = json.loads(payload)
            if wanted_rows is not None:
                if event.get("type") == "job_target" and event.get("state") in states:
                    reached.add((event.get("job_id"), event.get("host_id")))
                    if len(reached) >= wanted_rows:
                        print(f"{time.time():.3f}", flush=True)
                        return
            elif event.get("type") == "host_state" and str(event.get("host_id")) == host_id \
                    and event.get("status") == state:
                print(f"{time.time():.3f}", flush=True)
                return

main()
