"""A small RESP2 server that replays recorded replies, for the servers that cannot run here
(Valkey, KeyDB, Dragonfly, old Redis, a Valkey sentinel). Loopback only.

- INFO (any section argument): the recorded INFO text.
- CLUSTER INFO: the recorded CLUSTER INFO text, when given.
- CONFIG GET <pattern>...: the pairs of `config` whose names match a pattern (`*` as Redis does);
  with several patterns and `config_multi=False` the error Redis before 7 gives. No `config`:
  an empty reply.
- A command whose first word is in `refused` (a sentinel's CONFIG, SLOWLOG, LATENCY): the error
  Redis 7 gives for an unknown command.
- Any command in `replies` (SENTINEL MASTERS, SENTINEL SLAVES mymaster, SLOWLOG GET 1, ...):
  its reply, encoded as RESP: str -> bulk string, int -> integer, None -> null, list -> array,
  `ReplyError` -> error. The first two words of a command match in any case, the rest exactly.
- PING -> PONG, CLIENT SETNAME -> OK; anything else `-ERR unknown command`.

Every command received is appended to `received` (as a tuple of str), so that a test can say
what a server was never sent.

    with replay_server(info=text, replies={("SLOWLOG", "LEN"): 3}) as port: ...
"""

from __future__ import annotations

import fnmatch
import io
import json
import socketserver
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

Command = tuple[str, ...]

OLD_CONFIG_GET_ERROR = ("ERR Unknown subcommand or wrong number of arguments for 'get'. "
                        "Try CONFIG HELP.")


@dataclass(frozen=True)
class ReplyError:
    message: str


@dataclass
class Recording:
    """What a replay fixture file holds: INFO text and replies, and where they came from."""

    info: str
    cluster_info: str | None = None
    config: dict[str, str] | None = None
    config_multi: bool = True
    replies: dict[Command, Any] = field(default_factory=dict)
    refused: frozenset[str] = frozenset()
    source: str = ""


def load_recording(path: Path) -> Recording:
    """A JSON fixture: {"source": ..., "info": [lines] or "info_file": name beside it,
    "cluster_info" or "cluster_info_file" likewise, "config": {...}, "config_multi": bool,
    "refused": [first words], "replies": [{"command": [...], "reply": ...}]}. In a reply,
    {"error": "..."} is an error."""
    data = json.loads(path.read_text())
    for key in ("info", "cluster_info"):
        if f"{key}_file" in data:
            data[key] = (path.parent / data[f"{key}_file"]).read_bytes().decode()

    def text(value: Any) -> str | None:
        if value is None:
            return None
        return "\r\n".join(value) + "\r\n" if isinstance(value, list) else str(value)

    def reply(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"error"}:
            return ReplyError(value["error"])
        if isinstance(value, list):
            return [reply(v) for v in value]
        return value

    info = text(data["info"])
    assert info is not None
    return Recording(
        info=info, cluster_info=text(data.get("cluster_info")), config=data.get("config"),
        config_multi=data.get("config_multi", True), source=data.get("source", ""),
        refused=frozenset(word.upper() for word in data.get("refused", ())),
        replies={_key(tuple(r["command"])): reply(r["reply"]) for r in data.get("replies", [])})


def encode(value: Any) -> bytes:
    if isinstance(value, ReplyError):
        return b"-%s\r\n" % value.message.encode()
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bool):
        raise TypeError("booleans have no RESP2 form")
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, str):
        data = value.encode()
        return b"$%d\r\n%s\r\n" % (len(data), data)
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    raise TypeError(f"no RESP2 form for {type(value).__name__}")


def _crlf(text: str) -> str:
    """Servers end INFO lines with CRLF; fixtures kept with LF get it back."""
    return text if "\r\n" in text else text.replace("\n", "\r\n")


def _key(command: Command) -> Command:
    return tuple(word.upper() for word in command[:2]) + tuple(command[2:])


def _read_command(rfile: BinaryIO | io.BufferedIOBase) -> list[bytes] | None:
    line = rfile.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()
    args = []
    for _ in range(int(line[1:])):
        size = int(rfile.readline()[1:])
        args.append(rfile.read(size + 2)[:-2])
    return args


def _config_get(config: Mapping[str, str] | None, multi: bool, patterns: Command) -> Any:
    if config is None:
        return []
    if len(patterns) > 1 and not multi:
        return ReplyError(OLD_CONFIG_GET_ERROR)
    out: list[str] = []
    for name, value in config.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            out += [name, value]
    return out


def answer(recording: Recording, command: Command) -> Any:
    key = _key(command)
    if key in recording.replies:
        return recording.replies[key]
    if key[0] in recording.refused:
        args = " ".join(f"'{a}'" for a in command[1:])
        return ReplyError(f"ERR unknown command '{command[0]}', with args beginning with: {args} ")
    match key:
        case ("INFO", *_):
            return _crlf(recording.info)
        case ("CLUSTER", "INFO") if recording.cluster_info is not None:
            return _crlf(recording.cluster_info)
        case ("CONFIG", "GET", *patterns):
            return _config_get(recording.config, recording.config_multi, tuple(patterns))
        case ("PING",):
            return "PONG"
        case ("CLIENT", "SETNAME", *_):
            return "OK"
    return ReplyError("ERR unknown command")


@contextmanager
def replay_server(info: str | Recording, cluster_info: str | None = None,
                  replies: Mapping[Command, Any] | None = None,
                  received: list[Command] | None = None) -> Iterator[int]:
    recording = info if isinstance(info, Recording) else Recording(info, cluster_info)
    if replies:
        recording.replies.update({_key(k): v for k, v in replies.items()})
    lock = threading.Lock()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                try:
                    args = _read_command(self.rfile)
                except (OSError, ValueError):
                    return
                if not args:
                    return
                command = tuple(a.decode(errors="replace") for a in args)
                if received is not None:
                    with lock:
                        received.append(command)
                reply = answer(recording, command)
                # Status replies, as a real server sends them: clients check PONG and OK.
                data = b"+%s\r\n" % reply.encode() if reply in ("PONG", "OK") else encode(reply)
                try:
                    self.wfile.write(data)
                except OSError:
                    return

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
