"""An HTTP proxy between repofs and the S3 gateway that injects faults.

Why: retries, timeouts and half-finished requests are where storage clients lose data
or print tracebacks, and a real server fails rarely. Every ``every``-th request (counted
across all connections) gets the next fault of ``kinds`` in turn:

- ``500``: an InternalError answer; ``429``: a SlowDown answer (throttling);
- ``409``: to a PUT, a ConditionalRequestConflict answer (AWS: another conditional
  request on the name is in progress, try again); other requests pass;
- ``reset``: the connection is dropped (RST) before any answer;
- ``cut``: the real answer's head and half its body, then RST (a GET cut mid-body);
- ``stall``: the real answer, after ``stall`` seconds;
- ``lost``: the request reaches the server, the answer is dropped (a put that
  succeeded but was never acknowledged: its retry gets 412).

``mode = "down"`` answers every request with 503. Requests are forwarded one by one
with http.client, so each answer is whole or deliberately broken.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field

_ERROR = {"500": (500, "InternalError"), "429": (429, "SlowDown"),
          "503": (503, "ServiceUnavailable"), "409": (409, "ConditionalRequestConflict")}


@dataclass
class Faults:
    every: int = 0  # 0: no faults
    kinds: tuple[str, ...] = ("500", "429", "reset", "cut", "stall", "lost")
    stall: float = 1.0
    mode: str = "ok"  # or "down"
    count: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> str | None:
        with self.lock:
            self.count += 1
            if self.mode == "down":
                kind: str | None = "503"
            elif self.every and self.count % self.every == 0:
                kind = self.kinds[(self.count // self.every) % len(self.kinds)]
            else:
                kind = None
            if kind:
                self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.faults = Faults()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while proxy._one(self, upstream_port):
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _one(self, h: socketserver.StreamRequestHandler, upstream: int) -> bool:
        line = h.rfile.readline(65537)
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while (raw := h.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
            k, _, v = raw.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        body = h.rfile.read(length) if length else b""
        kind = self.faults.next()
        if kind == "409" and method != "PUT":
            kind = None
        if kind in _ERROR:
            status, code = _ERROR[kind]
            xml = (f"<?xml version='1.0'?><Error><Code>{code}</Code>"
                   "<Message>injected</Message></Error>").encode()
            if method == "HEAD":
                xml = b""  # an answer to HEAD has no body
            h.wfile.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/xml\r\n"
                          f"Content-Length: {len(xml)}\r\n\r\n".encode() + xml)
            h.wfile.flush()
            return True
        if kind == "reset":
            _reset(h.connection)
            return False
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if kind == "lost":
            _reset(h.connection)
            return False
        if kind == "stall":
            time.sleep(self.faults.stall)
        head = f"HTTP/1.1 {resp.status} {resp.reason}\r\n"
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                head += f"{k}: {v}\r\n"
        length = resp.getheader("Content-Length", "0") if method == "HEAD" else len(data)
        head += f"Content-Length: {length}\r\n\r\n"
        if kind == "cut" and method == "GET" and len(data) > 1:
            h.wfile.write(head.encode() + data[:len(data) // 2])
            h.wfile.flush()
            _reset(h.connection)
            return False
        h.wfile.write(head.encode() + data)
        h.wfile.flush()
        return True
