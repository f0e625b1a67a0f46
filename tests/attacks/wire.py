"""Speak the repofs serve protocol frame by frame, as a hostile client can."""

from __future__ import annotations

import os
import shlex
import struct
import subprocess
from pathlib import Path
from typing import Any

from repofs import protocol, spec

from .victim import REPOFS


class Wire:
    """A ``repofs serve`` process started as the forced command would start it."""

    def __init__(self, restrict: Path, command: str | None = None,
                 flags: tuple[str, ...] = (), argv: list[str] | None = None) -> None:
        """``argv`` replaces the direct start (e.g. a real ssh to a forced command)."""
        asked = command or f"repofs serve {shlex.quote(str(restrict))}"
        env = {**os.environ, "SSH_ORIGINAL_COMMAND": asked}
        argv = argv or [REPOFS, "serve", *flags, "--restrict-to-path", str(restrict)]
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)

    def raw(self, data: bytes) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def send(self, msg: dict[str, Any]) -> None:
        body = spec.pack(msg)
        self.raw(struct.pack(">I", len(body)) + body)

    def recv(self) -> dict[str, Any] | None:
        assert self.p.stdout is not None
        return protocol.read_frame(self.p.stdout)

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.send(msg)
        answer = self.recv()
        assert answer is not None, self.finish()
        return answer

    def hello(self) -> dict[str, Any]:
        answer = self.ask({"op": "hello", "v": protocol.VERSION})
        assert answer["ok"] is True, answer
        return answer

    def finish(self) -> tuple[int, str]:
        """Close our end; the server's exit status and what it said on stderr."""
        assert self.p.stdin is not None and self.p.stderr is not None
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.p.wait(timeout=30)
        err = self.p.stderr.read()
        return rc, err.decode(errors="replace")


def refused(answer: dict[str, Any] | None, code: str, *words: str) -> None:
    """The answer is a refusal with this code whose message says each of ``words``."""
    assert answer is not None and answer.get("ok") is False, answer
    assert answer["error"] == code, answer
    for w in words:
        assert w in answer["message"], (w, answer)
