#!/usr/bin/env python3
"""A misbehaving NETCONF server, run by sshd as the `netconf` subsystem (stdin/stdout).

It sends a proper hello (base:1.0 and base:1.1), reads the client's hello, and on the first
request does what the file DIR/mode says:

  garbage    text that is no framing at all, then waits
  truncated  a chunk header for 1000 bytes, 10 bytes, and the end of the session
  huge       a chunk header claiming 4 GB, then data for as long as the client reads
  endless    64 KiB chunks without the end-of-chunks marker, for as long as the client reads
  silent     never answers
  refuse     an <rpc-error> to every request (the session itself stays sound)
  stale      a reply with another message-id first, then the right one, to every request
  good       a proper reply with ietf-interfaces state of one port, to every request

Each session appends a line to DIR/sessions. Usage: hostile.py DIR
"""

import os
import sys
import time

HELLO = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    "<capability>urn:ietf:params:netconf:base:1.0</capability>"
    "<capability>urn:ietf:params:netconf:base:1.1</capability>"
    "</capabilities><session-id>7</session-id></hello>]]>]]>"
)

GOOD = (
    '<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="{id}"><data>'
    '<interfaces-state xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces"><interface>'
    "<name>xe-0/0/0</name><admin-status>up</admin-status><oper-status>up</oper-status>"
    "<if-index>1</if-index></interface></interfaces-state></data></rpc-reply>"
)


REFUSE = (
    '<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="{id}"><rpc-error>'
    "<error-type>application</error-type><error-tag>operation-not-supported</error-tag>"
    "<error-severity>error</error-severity>"
    "<error-message>interface state is not here</error-message></rpc-error></rpc-reply>"
)


def write(data):
    out = sys.stdout.buffer
    out.write(data if isinstance(data, bytes) else data.encode())
    out.flush()


def read_until(marker, buf=b""):
    while marker not in buf:
        chunk = os.read(0, 65536)
        if not chunk:
            sys.exit(0)
        buf += chunk
    head, _, rest = buf.partition(marker)
    return head, rest


def read_chunked_message(buf):
    """Reads one chunked message; returns it and what follows."""
    msg = b""
    while True:
        while not (buf.startswith(b"\n#") and b"\n" in buf[2:]):
            chunk = os.read(0, 65536)
            if not chunk:
                sys.exit(0)
            buf += chunk
        header, _, rest = buf[2:].partition(b"\n")
        if header == b"#":
            return msg, rest
        size = int(header)
        while len(rest) < size:
            chunk = os.read(0, 65536)
            if not chunk:
                sys.exit(0)
            rest += chunk
        msg += rest[:size]
        buf = rest[size:]


def main():
    folder = sys.argv[1]
    with open(os.path.join(folder, "mode"), encoding="utf-8") as f:
        mode = f.read().strip()
    with open(os.path.join(folder, "sessions"), "a", encoding="utf-8") as f:
        f.write("%s %s\n" % (time.time(), mode))
    write(HELLO)
    _, rest = read_until(b"]]>]]>")
    request, rest = read_chunked_message(rest)
    try:
        if mode == "garbage":
            write(b"this is not NETCONF framing at all\n" * 100)
            time.sleep(600)
        elif mode == "truncated":
            write(b"\n#1000\n0123456789")
            return
        elif mode == "huge":
            write(b"\n#4000000000\n")
            while True:
                write(b"x" * 65536)
        elif mode == "endless":
            while True:
                write(b"\n#65536\n" + b"y" * 65536)
        elif mode == "silent":
            while os.read(0, 65536):
                pass
        else:
            reply = REFUSE if mode == "refuse" else GOOD
            while True:
                msg_id = request.split(b'message-id="', 1)[-1].split(b'"', 1)[0].decode()
                if mode == "stale":
                    old = GOOD.replace("xe-0/0/0", "stale-0/0/0").format(id="424242").encode()
                    write(b"\n#%d\n" % len(old) + old + b"\n##\n")
                body = reply.format(id=msg_id).encode()
                write(b"\n#%d\n" % len(body) + body + b"\n##\n")
                request, rest = read_chunked_message(rest)
    except (BrokenPipeError, OSError):
        # The client gave up on us: what a client should do.
        pass


if __name__ == "__main__":
    main()
