#!/usr/bin/env python3
"""Regenerate tests/server_json_pb/corpus/ (fuzz seeds) from testdata/cases.

Each seed is one selector byte then JSON. The selector picks the message
type as fuzz_json_pb.c does: 2*i for the request type of gateway_routes[i],
2*i+1 for its response type, then the test schema's messages.
"""
import glob
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
CORPUS = os.path.join(HERE, '..', 'corpus')

src = open(os.path.join(ROOT, 'server', 'gateway_routes.c')).read()
table = src[src.index('const struct gateway_route gateway_routes[] = {'):]
paths = re.findall(r'(?:KV|LEASE|CLUSTER|MAINT|AUTH|ELECTION|ROUTE)\("(/v3[^"]*)"',
                   table)
first = {}
for i, p in enumerate(paths):
    first.setdefault(p, i)

os.makedirs(CORPUS, exist_ok=True)
for old in glob.glob(os.path.join(CORPUS, '*')):
    os.remove(old)


def put(name, sel, data):
    with open(os.path.join(CORPUS, name), 'wb') as f:
        f.write(bytes([sel % 256]) + data)


for case in sorted(glob.glob(os.path.join(HERE, 'cases', '*.case'))):
    lines = open(case, 'rb').read().split(b'\n')
    path = lines[0].decode().replace('/v3beta/', '/v3/')
    if path not in first:
        continue
    i = first[path]
    name = os.path.basename(case)[:-5]
    put('req_' + name, 2 * i, lines[2])
    resp = b'\n'.join(lines[3:]).strip()
    if resp.startswith(b'{"result":'):
        resp = resp.split(b'\n')[0][len(b'{"result":'):-1]
    if not resp.startswith(b'{"error"'):
        put('resp_' + name, 2 * i + 1, resp)

n = 2 * len(paths)
extra = [
    b'{"i32":-1,"s32":2,"sf32":3,"u32":4,"f32":5,"i64":"6","s64":"-7",'
    b'"sf64":8,"u64":"9","f64":"10","fl":1.5,"db":"NaN","b":true,'
    b'"str":"\\u00e9\\ud83d\\udc89<>","by":"AP/+","color":"RED",'
    b'"inner":{"kind":1,"note":"x"},"snakeCaseName":"3"}',
    b'{"i64s":["1",2],"u32s":[3],"strs":["a",null],"bys":["AA","-_8="],'
    b'"colors":["GREEN",7],"inners":[{},null],"bools":[true],'
    b'"dbs":[1e-7,"Infinity"]}',
    b'{"before":"b","num":"0","text":"t","after":"a"}',
    b'{"id":"1","count":2,"flag":false,"name":"n",'
    b'"big":"18446744073709551615"}',
]
for k, e in enumerate(extra):
    put('testpb_%d' % k, n + k, e)
print('%d seeds in %s' % (len(os.listdir(CORPUS)), os.path.normpath(CORPUS)))
