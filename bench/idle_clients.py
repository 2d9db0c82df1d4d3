#!/usr/bin/env python3
"""Hold many idle, logged-in PostgreSQL client connections, for bench/run's
per-client memory figure.

Each connection sends a StartupMessage, answers AuthenticationCleartextPassword
with the token from PGPASSWORD (kept out of the process list, as libpq does),
reads up to ReadyForQuery and then sits idle. Plaintext only, as with
PGSSLMODE=disable, so the gateway must allow plaintext from loopback
(`idgate dev` does).

Prints one `connected ...` line, then `held N` once every connection has been
tried, and holds them until stdin closes or SIGINT/SIGTERM arrives. Exit
status 1 if any connection failed.

    PGPASSWORD=TOKEN bench/idle_clients.py --port 6436 --user dev --dbname idgate_bench
"""

import argparse
import asyncio
import os
import signal
import struct
import sys
import threading
import time

PROTOCOL_3_0 = 196608
AUTH_OK = 0
AUTH_CLEARTEXT_PASSWORD = 3


class LoginRefused(Exception):
    pass


def startup_message(user, database):
    params = b"".join(
        name + b"\0" + value.encode() + b"\0"
        for name, value in ((b"user", user), (b"database", database))
    )
    body = struct.pack("!i", PROTOCOL_3_0) + params + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def password_message(password):
    payload = password.encode() + b"\0"
    return b"p" + struct.pack("!i", len(payload) + 4) + payload


async def read_message(reader):
    header = await reader.readexactly(5)
    (length,) = struct.unpack("!i", header[1:])
    return header[:1], await reader.readexactly(length - 4)


def error_text(payload):
    """SQLSTATE and message of an ErrorResponse."""
    fields = {f[:1]: f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
    return f"{fields.get(b'C', '?????')} {fields.get(b'M', '')}"


async def login(args, password):
    """An open, logged-in connection's writer (the socket stays open with it)."""
    reader, writer = await asyncio.open_connection(args.host, args.port)
    try:
        writer.write(startup_message(args.user, args.dbname))
        while True:
            tag, payload = await read_message(reader)
            if tag == b"R":
                (request,) = struct.unpack("!i", payload[:4])
                if request == AUTH_CLEARTEXT_PASSWORD:
                    writer.write(password_message(password))
                elif request != AUTH_OK:
                    raise LoginRefused(f"unsupported authentication request {request}")
            elif tag == b"E":
                raise LoginRefused(error_text(payload))
            elif tag == b"Z":
                return writer
            # ParameterStatus, BackendKeyData, NoticeResponse: nothing to answer.
    except BaseException:
        writer.close()
        raise


async def wait_for_stdin_eof_or_signal():
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)

    # A thread, because epoll refuses /dev/null and regular files; daemon,
    # so a signal need not wait for the read to end.
    def until_eof():
        while os.read(sys.stdin.fileno(), 4096):
            pass
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=until_eof, daemon=True).start()
    await done.wait()


async def main(args):
    password = os.environ.get("PGPASSWORD")
    if password is None:
        sys.exit("idle_clients: set PGPASSWORD to the token")
    in_flight = asyncio.Semaphore(args.concurrency)
    held, failures = [], []

    async def one():
        async with in_flight:
            try:
                held.append(await asyncio.wait_for(login(args, password), args.timeout))
            except LoginRefused as e:
                failures.append(str(e))
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                failures.append(f"{type(e).__name__}: {e}")

    start = time.monotonic()
    await asyncio.gather(*(one() for _ in range(args.clients)))
    line = f"connected {len(held)} of {args.clients} in {time.monotonic() - start:.1f} s"
    if failures:
        line += f"; {len(failures)} failed, first: {failures[0]}"
    print(line, flush=True)
    print(f"held {len(held)}", flush=True)
    await wait_for_stdin_eof_or_signal()
    for writer in held:
        writer.close()
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", required=True)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=200, help="logins in flight at once")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per login")
    sys.exit(asyncio.run(main(parser.parse_args())))
