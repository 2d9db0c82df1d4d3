"""A stand-in for idgate's MySQL handshake, so the driver checks in this
directory can be proven against MariaDB before the real front end exists.

Usage: .venv/bin/python tests/drivers/cleartext_proxy.py UPSTREAM_HOST:PORT [CERT KEY]

Listens on 127.0.0.1 (an ephemeral port, printed as `listening PORT` on
stdout), and for each client: greets it as an 8.0-compatible server (offering
TLS when CERT and KEY are given), switches it to mysql_clear_password with an
AuthSwitchRequest, takes the password it sends in clear and logs in to the
upstream MariaDB with it as mysql_native_password, then relays bytes both
ways. Capability flags are the upstream's, minus compression and MariaDB's
extended ones, so the command phase needs no translation. Test tooling only:
no policy, one upstream login per client, Ctrl-C to stop.
"""

import hashlib
import os
import select
import socket
import ssl
import struct
import sys
import threading

CLIENT_LONG_PASSWORD = 0x1  # CLIENT_MYSQL: set, the client sends no MariaDB extended capabilities
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_COMPRESS = 0x20
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_CONNECT_ATTRS = 0x100000
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000

# What idgate says (src/mysql/handshake.rs), so clients behave as they will there.
SERVER_VERSION = b"8.0.36-idgate"


def recv_exact(sock, n):
    # Exactly n bytes, never more: after an SSLRequest the next bytes are the
    # client's TLS hello, which must be left in the socket for the handshake.
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def read_packet(sock):
    header = recv_exact(sock, 4)
    length = header[0] | header[1] << 8 | header[2] << 16
    return header[3], recv_exact(sock, length)


def write_packet(sock, seq, payload):
    sock.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload)


def cstring(data, pos):
    end = data.index(b"\0", pos)
    return data[pos:end], end + 1


def lenenc_int(data, pos):
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def parse_greeting(p):
    version, pos = cstring(p, 1)
    pos += 4  # connection id
    scramble = p[pos : pos + 8]
    pos += 9  # scramble part 1, filler
    caps = struct.unpack_from("<H", p, pos)[0]
    charset = p[pos + 2]
    status = struct.unpack_from("<H", p, pos + 3)[0]
    caps |= struct.unpack_from("<H", p, pos + 5)[0] << 16
    auth_len = p[pos + 7]
    pos += 18  # caps 2, charset, status 2, caps 2, auth length, 10 reserved
    part2 = max(13, auth_len - 8)
    scramble += p[pos : pos + part2 - 1]  # without its trailing NUL
    return {"version": version, "caps": caps, "charset": charset, "status": status, "scramble": scramble}


def parse_handshake_response(p):
    flags = struct.unpack_from("<I", p, 0)[0]
    charset = p[8]
    user, pos = cstring(p, 32)
    if flags & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        n, pos = lenenc_int(p, pos)
    elif flags & CLIENT_SECURE_CONNECTION:
        n, pos = p[pos], pos + 1
    else:
        n = p.index(b"\0", pos) - pos
    pos += n
    db = None
    if flags & CLIENT_CONNECT_WITH_DB and pos < len(p):
        db, pos = cstring(p, pos)
    return {"flags": flags, "charset": charset, "user": user, "db": db}


def native_scramble(password, scramble):
    if not password:
        return b""
    h1 = hashlib.sha1(password).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(scramble + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


class Proxy:
    def __init__(self, upstream, tls):
        self.upstream = upstream
        self.tls = tls

    def handle(self, client):
        upstream = None
        try:
            client, upstream = self.login(client)
            if upstream is not None:
                self.relay(client, upstream)
        except (ConnectionError, OSError) as e:
            print(f"cleartext_proxy: connection ended: {e!r}", file=sys.stderr)
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def login(self, client):
        up_sock = socket.create_connection(self.upstream, timeout=10)
        _, greeting = read_packet(up_sock)
        up = parse_greeting(greeting)

        caps = (up["caps"] | CLIENT_LONG_PASSWORD | CLIENT_PLUGIN_AUTH) & ~CLIENT_COMPRESS & ~CLIENT_SSL
        if self.tls:
            caps |= CLIENT_SSL
        scramble = os.urandom(20).replace(b"\0", b"\1")
        ours = (
            b"\x0a"
            + SERVER_VERSION
            + b"\0"
            + struct.pack("<I", 1)
            + scramble[:8]
            + b"\0"
            + struct.pack("<HBHH", caps & 0xFFFF, up["charset"], up["status"], caps >> 16)
            + bytes([21])
            + b"\0" * 10
            + scramble[8:]
            + b"\0"
            + b"mysql_native_password\0"
        )
        write_packet(client, 0, ours)

        seq, p = read_packet(client)
        if len(p) == 32 and struct.unpack_from("<I", p, 0)[0] & CLIENT_SSL:
            if not self.tls:
                raise ConnectionError("client asked for TLS, which was not offered")
            client = self.tls.wrap_socket(client, server_side=True)
            seq, p = read_packet(client)
        hello = parse_handshake_response(p)

        # Whatever the client began with: switch it to mysql_clear_password.
        seq += 1
        write_packet(client, seq, b"\xfemysql_clear_password\0" + scramble + b"\0")
        seq, password = read_packet(client)
        if password.endswith(b"\0"):
            password = password[:-1]
        print(f"cleartext_proxy: {hello['user'].decode()} sent its password in clear", file=sys.stderr)

        flags = hello["flags"] & ~CLIENT_SSL & ~CLIENT_CONNECT_ATTRS & ~CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        flags |= CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
        if hello["db"] is None:
            flags &= ~CLIENT_CONNECT_WITH_DB
        auth = native_scramble(password, up["scramble"])
        response = (
            struct.pack("<IIB", flags, 16 * 1024 * 1024, hello["charset"])
            + b"\0" * 23
            + hello["user"]
            + b"\0"
            + bytes([len(auth)])
            + auth
            + (hello["db"] + b"\0" if hello["db"] is not None else b"")
            + b"mysql_native_password\0"
        )
        write_packet(up_sock, 1, response)
        useq, reply = read_packet(up_sock)
        if reply[:1] == b"\xfe":  # the upstream switches plugin: only native is done here
            name, pos = cstring(reply, 1)
            if name != b"mysql_native_password":
                raise ConnectionError(f"upstream wants {name!r}")
            write_packet(up_sock, useq + 1, native_scramble(password, reply[pos:].rstrip(b"\0")))
            useq, reply = read_packet(up_sock)
        write_packet(client, seq + 1, reply)
        if reply[:1] != b"\x00":
            up_sock.close()
            return client, None
        up_sock.settimeout(None)
        return client, up_sock

    def relay(self, client, upstream):
        # One thread, blocking sockets: an SSL socket is not read and written
        # from two threads at once. pending(): TLS data already decrypted.
        peers = {client: upstream, upstream: client}
        while True:
            ready = [s for s in peers if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select(list(peers), [], [])
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                peers[s].sendall(data)


def main():
    if len(sys.argv) not in (2, 4):
        print(f"usage: {sys.argv[0]} UPSTREAM_HOST:PORT [CERT KEY]", file=sys.stderr)
        return 2
    host, _, port = sys.argv[1].rpartition(":")
    tls = None
    if len(sys.argv) == 4:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
    proxy = Proxy((host, int(port)), tls)
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"listening {listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=proxy.handle, args=(client,), daemon=True).start()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pass
