#!/usr/bin/python3
"""Helpers for test_maint.sh, on python3-etcd3 (a real gRPC client).

  fill ENDPOINT PREFIX N SIZE       put N keys PREFIX%05d with SIZE-byte values
  writer ENDPOINT PREFIX SECONDS OUT  put PREFIX%06d keys as fast as possible
                                    for SECONDS; each acknowledged key is
                                    appended to OUT (one per line)
  check ENDPOINT FILE               every key listed in FILE exists with its
                                    own name as value; prints the count
  stall ENDPOINT SECONDS            start a Snapshot stream, read one message,
                                    stop reading for SECONDS, then vanish
  abandon ENDPOINT                  start a Snapshot stream, read one message
                                    and vanish (os._exit: the connection is
                                    reset mid-stream)
"""
import os
import sys
import time

import etcd3


def client(endpoint):
    host, port = endpoint.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=10)


def main():
    cmd, endpoint = sys.argv[1], sys.argv[2]
    c = client(endpoint)
    if cmd == "fill":
        prefix, n, size = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        for i in range(n):
            c.put("%s%05d" % (prefix, i), b"v" * size)
    elif cmd == "writer":
        prefix, secs, out = sys.argv[3], float(sys.argv[4]), sys.argv[5]
        end = time.time() + secs
        i = 0
        with open(out, "w") as f:
            while time.time() < end:
                k = "%s%06d" % (prefix, i)
                c.put(k, k)
                f.write(k + "\n")
                f.flush()
                i += 1
    elif cmd == "check":
        with open(sys.argv[3]) as f:
            keys = [l.strip() for l in f if l.strip()]
        for k in keys:
            v, _ = c.get(k)
            if v is None or v.decode() != k:
                print("missing or wrong: %s -> %r" % (k, v))
                sys.exit(1)
        print(len(keys))
    elif cmd == "stall":
        secs = float(sys.argv[3])

        class Stall:
            def write(self, data):
                time.sleep(secs)
                os._exit(0)
        c.snapshot(Stall())
        sys.exit("snapshot ended before its first message")
    elif cmd == "abandon":
        class OneChunk:
            def write(self, data):
                os._exit(0)
        c.snapshot(OneChunk())
        sys.exit("snapshot ended before its first message")
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
