"""A scripted RESP server on a Unix socket, standing in for sluiced in client unit tests.

It records every command and answers with whatever ``respond(args)`` returns: int, str
(bulk string), list, None (null), an ``Error`` (RESP error), or ``HANG`` (no answer, to
test timeouts). ``TokenLedger`` is a ``respond`` that keeps one limit of one unit the way
sluiced settles leases (named costs, SL.CHARGE, SL.RELEASE ACTUAL), for streaming tests.
"""

import os
import socket
import socketserver
import threading

HANG = object()


class Error(str):
    """A RESP error reply; the text includes the upper-case code."""


def encode(value):
    if isinstance(value, Error):
        return b"-" + value.encode() + b"\r\n"
    if isinstance(value, bool):
        return b":%d\r\n" % int(value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, str):
        data = value.encode()
        return b"$%d\r\n%s\r\n" % (len(data), data)
    if isinstance(value, (list, tuple)):
        return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    raise TypeError(value)


class FakeSluiced:
    def __init__(self, path, respond):
        self.path = path
        self.respond = respond
        self.commands = []
        self.connections = []
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                fake.connections.append(self.connection)
                while True:
                    try:
                        args = self._read_command()
                    except (OSError, ValueError):
                        return
                    if args is None:
                        return
                    fake.commands.append(args)
                    reply = fake.respond(args)
                    if reply is HANG:
                        self.rfile.read()  # until the client gives up and closes
                        return
                    self.wfile.write(encode(reply))

            def _read_command(self):
                line = self.rfile.readline()
                if not line:
                    return None
                assert line.startswith(b"*"), line
                args = []
                for _ in range(int(line[1:])):
                    size = int(self.rfile.readline()[1:])
                    args.append(self.rfile.read(size + 2)[:-2].decode())
                return args

        if os.path.exists(path):
            os.unlink(path)
        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        # Like a daemon that stops: the listener goes, and so does every open connection.
        self.server.shutdown()
        self.server.server_close()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        os.unlink(self.path)


def parse_costs(args, keyword):
    """(bare n or None, {unit: n}) from ``KEYWORD n`` / ``KEYWORD unit n`` options in args."""
    bare, named, i = None, {}, 0
    while i < len(args):
        if args[i].upper() == keyword and i + 1 < len(args):
            if args[i + 1].isdigit():
                bare, i = int(args[i + 1]), i + 2
                continue
            named[args[i + 1]] = int(args[i + 2])
            i += 3
            continue
        i += 1
    return bare, named


class TokenLedger:
    """One fixed budget of ``limit`` units of ``unit`` (say output_tokens) for every subject,
    with sluiced's lease rules: SL.ACQUIRE reserves the estimate; SL.CHARGE adds usage, covered
    by the estimate, beyond it consumed from the budget all or nothing (a refused charge is
    not usage); SL.RELEASE settles at ACTUAL, else the usage if charged, else the estimate.
    ``settled`` lists (lease, final cost) in release order."""

    RULE = "output_tokens_per_minute"

    def __init__(self, limit, unit="output_tokens", retry_after_ms=7_000):
        self.limit = limit
        self.remaining = limit
        self.unit = unit
        self.retry_after_ms = retry_after_ms
        self.leases = {}  # id -> {"estimate", "usage", "charged"}
        self.settled = []
        self.lock = threading.Lock()

    def _cost(self, args, keyword, default):
        """This ledger's unit's cost in args: named, else bare, else 0 when other units are
        named (they charge nothing here), else ``default``."""
        bare, named = parse_costs(args, keyword)
        if self.unit in named:
            return named[self.unit]
        if bare is not None:
            return bare
        return 0 if named else default

    def _decision(self, allowed):
        return [1 if allowed else 0, self.limit, self.remaining, 60_000,
                0 if allowed else self.retry_after_ms, self.RULE, "free", 60_000,
                [[self.RULE, self.limit, self.remaining, 60_000, 60_000]]]

    def __call__(self, args):
        with self.lock:
            command = args[0].upper()
            if command == "SL.ACQUIRE":
                estimate = self._cost(args, "COST", 1)
                if estimate > self.remaining:
                    reply = self._decision(False)
                    return reply[:6] + ["", 0] + reply[6:]
                self.remaining -= estimate
                lease = f"lease-{len(self.leases) + len(self.settled) + 1}"
                self.leases[lease] = {"estimate": estimate, "usage": 0, "charged": False}
                reply = self._decision(True)
                return reply[:6] + [lease, 60_000] + reply[6:]
            if command == "SL.CHARGE":
                lease = self.leases.get(args[1])
                if lease is None:
                    return Error("NOLEASE unknown or expired lease")
                n = int(args[2]) if args[2].isdigit() else self._cost(args, "COST", 0)
                over = (max(0, lease["usage"] + n - lease["estimate"])
                        - max(0, lease["usage"] - lease["estimate"]))
                if over > self.remaining:
                    return self._decision(False)
                self.remaining -= over
                lease["usage"] += n
                lease["charged"] = True
                return self._decision(True)
            if command == "SL.RELEASE":
                lease = self.leases.pop(args[1], None)
                if lease is None:
                    return Error("NOLEASE unknown or expired lease")
                actual = self._cost(args, "ACTUAL", None)
                if actual is None:
                    actual = lease["usage"] if lease["charged"] else lease["estimate"]
                taken = max(lease["estimate"], lease["usage"])
                self.remaining = min(self.limit, self.remaining + taken - actual)
                self.settled.append((args[1], actual))
                return 1
            if command == "PING":
                return "PONG"
            return Error(f"ERR unknown command '{args[0]}'")
