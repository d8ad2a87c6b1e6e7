"""A scripted RESP server on a Unix socket, standing in for sluiced in client unit tests.

It records every command and answers with whatever ``respond(args)`` returns: int, str
(bulk string), list, None (null), an ``Error`` (RESP error), or ``HANG`` (no answer, to
test timeouts).
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
