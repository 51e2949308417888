"""Drive a server's v3 JSON gateway with python3-etcd3gw (Debian's real
gateway client) and print every result, for test_gateway_client.sh to diff
between etcd 3.4 and keel. Usage: /usr/bin/python3 gateway_client.py HOST
PORT API_PATH [watch]"""
import sys

import etcd3gw
from etcd3gw import exceptions

host, port, api = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = etcd3gw.Etcd3Client(host=host, port=port, api_path=api)


def show(name, fn):
    try:
        r = fn()
    except exceptions.Etcd3Exception as e:
        r = "%s: %s" % (type(e).__name__, getattr(e, "detail_text", ""))
    print("%s -> %r" % (name, r))


def meta(items):
    return [(v, {k: m[k] for k in sorted(m)}) for v, m in items]


show("put foo", lambda: c.put("foo", "bar"))
show("put foo2", lambda: c.put("foo2", "bar2"))
show("put a", lambda: c.put("a", "1"))
show("get foo", lambda: c.get("foo"))
show("get foo meta", lambda: meta(c.get("foo", metadata=True)))
show("get missing", lambda: c.get("missing"))
show("get_prefix foo", lambda: meta(c.get_prefix("foo")))
show("get_prefix desc", lambda: meta(c.get_prefix("foo", sort_order="descend",
                                                  sort_target="key")))
show("get_all", lambda: meta(c.get_all()))
show("create new", lambda: c.create("new", "v"))
show("create again", lambda: c.create("new", "v"))
show("replace ok", lambda: c.replace("foo", "bar", "baz"))
show("replace stale", lambda: c.replace("foo", "bar", "qux"))
show("get foo", lambda: c.get("foo"))
lease = c.lease(ttl=600)
show("lease id", lambda: lease.id > 0)  # generated: differs
show("lease ttl", lambda: lease.ttl() in (599, 600))
show("put leased", lambda: c.put("leased", "x", lease=lease))
show("create leased", lambda: c.create("leased2", "y", lease=lease))
show("lease keys", lambda: sorted(lease.keys()))
show("lease refresh", lambda: lease.refresh())
show("lease revoke", lambda: lease.revoke())
show("get leased", lambda: c.get("leased"))
show("delete foo2", lambda: c.delete("foo2"))
show("delete missing", lambda: c.delete("missing"))
show("delete_prefix", lambda: c.delete_prefix("fo"))
show("get_all", lambda: meta(c.get_all()))
show("members", lambda: [(m.get("name"), m.get("peerURLs"))
                         for m in c.members()])
show("status version", lambda: c.status()["version"])
show("status leader", lambda: c.status()["leader"] ==
     c.status()["header"]["member_id"])
show("empty key", lambda: c.put("", "x"))

if len(sys.argv) > 4 and sys.argv[4] == "watch":
    import threading

    def later(fn):
        t = threading.Timer(0.5, fn)
        t.start()
        return t

    def ev(e):
        kv = e["kv"]
        out = {"type": e.get("type", "PUT"), "key": kv["key"],
               "value": kv.get("value"), "version": kv.get("version")}
        if "prev_kv" in e:
            out["prev_value"] = e["prev_kv"].get("value")
        return out

    t = later(lambda: c.put("w1", "v1"))
    show("watch_once w1", lambda: ev(c.watch_once("w1", timeout=5)))
    t.join()
    t = later(lambda: c.delete("w1"))
    show("watch_prefix_once w prev_kv",
         lambda: ev(c.watch_prefix_once("w", timeout=5, prev_kv=True)))
    t.join()
    show("watch_once timeout", lambda: c.watch_once("nothing", timeout=0.5))
