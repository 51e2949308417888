#!/usr/bin/python3
"""Raw Watch-stream probe: sends WatchRequests on one gRPC stream and prints
every WatchResponse field, normalised, one line each.

It pins down the etcd 3.4 behaviours the watch hub (server/watch_hub.c)
copies: id allocation, error texts, silent cancel of unknown ids, progress
responses, the compaction response. Run it against /usr/bin/etcd to see the
reference, and later against keel: the outputs must be identical.

    etcd_watch_probe.py 127.0.0.1:2379

Needs python3-grpcio and python3-protobuf (Debian; python3-etcd3 pulls them
in) and protoc: the message classes are generated at start from keel's own
proto/ (the stubs shipped with python3-etcd3 predate watch_id, fragment and
progress_request).
"""
import atexit
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "proto")


def load_pb():
    out = tempfile.mkdtemp(prefix="keel-probe-")
    atexit.register(shutil.rmtree, out, True)
    subprocess.check_call(["protoc", "--proto_path=" + PROTO,
                           "--python_out=" + out, "etcdserverpb/rpc.proto",
                           "mvccpb/kv.proto", "authpb/auth.proto"])
    sys.path.insert(0, out)
    from etcdserverpb import rpc_pb2
    return rpc_pb2


class KV:
    def __init__(self, ch, pb):
        def unary(name, req, resp):
            return ch.unary_unary("/etcdserverpb.KV/" + name,
                                  request_serializer=req.SerializeToString,
                                  response_deserializer=resp.FromString)
        self.Put = unary("Put", pb.PutRequest, pb.PutResponse)
        self.DeleteRange = unary("DeleteRange", pb.DeleteRangeRequest,
                                 pb.DeleteRangeResponse)
        self.Compact = unary("Compact", pb.CompactionRequest,
                             pb.CompactionResponse)


def main():
    pb = load_pb()
    ep = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:2379"
    ch = grpc.insecure_channel(ep)
    kv = KV(ch, pb)
    watch = ch.stream_stream("/etcdserverpb.Watch/Watch",
                             request_serializer=pb.WatchRequest.SerializeToString,
                             response_deserializer=pb.WatchResponse.FromString)
    out = queue.Queue()
    reqs = queue.Queue()

    def gen():
        while True:
            r = reqs.get()
            if r is None:
                return
            yield r

    def pump():
        try:
            for resp in watch(gen()):
                out.put(resp)
        except grpc.RpcError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    base = kv.Put(pb.PutRequest(key=b"probe/a", value=b"1")).header.revision

    def rel(rev):
        return "r0" if rev == 0 else "r%+d" % (rev - base)

    def show(tag, timeout=1.0):
        got = []
        while True:
            try:
                r = out.get(timeout=timeout)
            except queue.Empty:
                break
            got.append(r)
            timeout = 0.3
        if not got:
            print("%s: (nothing)" % tag)
        # etcd walks its watchers in map order: sort by watch id
        got.sort(key=lambda r: r.watch_id)
        for r in got:
            if len(r.events) > 8:  # big revisions: the split is what matters
                print("%s: id=%d hdr=%s frag=%d events=%d size=%d" % (
                    tag, r.watch_id, rel(r.header.revision), r.fragment,
                    len(r.events), sum(e.ByteSize() for e in r.events)))
                continue
            evs = " ".join("%s:%s@%s%s" % (
                "PUT" if e.type == 0 else "DEL", e.kv.key.decode(),
                rel(e.kv.mod_revision), "+prev" if e.HasField("prev_kv") else "")
                for e in r.events)
            print("%s: id=%d hdr=%s created=%d canceled=%d compact=%s "
                  "reason=%r frag=%d events=[%s]" % (
                      tag, r.watch_id, rel(r.header.revision), r.created,
                      r.canceled, rel(r.compact_revision) if r.compact_revision
                      else "0", r.cancel_reason, r.fragment, evs))

    def create(**kw):
        reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(**kw)))

    create(key=b"probe/a")
    show("create auto")
    create(key=b"probe/a")
    show("create auto again")
    create(key=b"probe/a", watch_id=5, prev_kv=True)
    show("create id 5")
    create(key=b"probe/a", watch_id=5)
    show("create id 5 again")
    create(key=b"probe/b", range_end=b"probe/a")
    show("create empty range")
    create(key=b"probe/a", range_end=b"probe/a")
    show("create key == range_end")
    reqs.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=99)))
    show("cancel unknown id")
    reqs.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
    show("progress request")
    kv.Put(pb.PutRequest(key=b"probe/a", value=b"2"))
    show("put probe/a")
    reqs.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=1)))
    show("cancel 1")
    create(key=b"probe/a")
    show("create auto after cancel")
    create(key=b"probe/", range_end=b"probe0", start_revision=base,
           filters=[pb.WatchCreateRequest.NOPUT])
    show("create prefix from base, NOPUT")
    kv.DeleteRange(pb.DeleteRangeRequest(key=b"probe/a"))
    show("delete probe/a")
    kv.Put(pb.PutRequest(key=b"probe/c", value=b"3"))
    kv.Compact(pb.CompactionRequest(revision=base + 3, physical=True))
    create(key=b"probe/a", start_revision=base + 1)
    show("create below compaction")
    create(key=b"probe/c", start_revision=base + 10)
    show("create in the future")
    # one revision of 40 deletes with 60 kB prev_kvs: over --max-request-bytes
    # (1.5 MiB) + 512 KiB, so a fragmenting watcher gets it in pieces
    for i in range(40):
        kv.Put(pb.PutRequest(key=b"probe/f/%02d" % i, value=b"v" * 60000))
    create(key=b"probe/f/", range_end=b"probe/f0", prev_kv=True, fragment=True)
    create(key=b"probe/f/", range_end=b"probe/f0", prev_kv=True)
    show("create fragmenting and whole")
    kv.DeleteRange(pb.DeleteRangeRequest(key=b"probe/f/",
                                         range_end=b"probe/f0"))
    show("delete 40 big keys", timeout=3.0)
    reqs.put(None)


if __name__ == "__main__":
    main()
