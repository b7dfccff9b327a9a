"""The measurement of scripts/bench-quilt.sh: gateways are given, one URL per line in GATEWAYS_FILE."""
import json, math, random, sys, threading, time, urllib.request, urllib.parse
gateways_file, count, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gw = [line.strip() for line in open(gateways_file) if line.strip()]
nodes = len(gw)
deadline = time.time() + 120
while True:
    try:
        if all(json.load(urllib.request.urlopen(f"{g}/v1/node/status", timeout=10))["knownPeers"] >= nodes - 1
               for g in gw):
            break
    except Exception:
        pass
    if time.time() > deadline: sys.exit("the swarm did not form")
    time.sleep(0.5)

def totals():
    names = ["floe_write_requests_total", "floe_slivers_stored", "floe_bytes_stored"]
    out = dict.fromkeys(names, 0)
    for g in gw:
        for line in urllib.request.urlopen(f"{g}/metrics").read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name in out: out[name] += int(float(value))
    return out

def settle():
    # Writes answer once certified; the remaining slivers go on in the background.
    last = None
    while True:
        now = totals()
        if now == last: return now
        last = now; time.sleep(1.5)

rng = random.Random(19)
sizes = [int(math.exp(rng.uniform(math.log(1 << 10), math.log(2 << 20)))) for _ in range(count)]
site = [(f"assets/file-{i:04}.bin", random.Random(i).randbytes(n)) for i, n in enumerate(sizes)]
total = sum(sizes)
print(f"{count} files, {total / 1e6:.1f} MB (1 KiB to 2 MiB, log-uniform); {nodes} nodes")

before = settle()
started = time.time()
errors = []
def one_by_one(part):
    for name, data in part:
        req = urllib.request.Request(f"{gw[0]}/v1/blobs", data=data, method="PUT")
        try: urllib.request.urlopen(req, timeout=300).read()
        except Exception as e: errors.append(f"{name}: {e}")
threads = [threading.Thread(target=one_by_one, args=(site[t::parallel],)) for t in range(parallel)]
[t.start() for t in threads]; [t.join() for t in threads]
single_s = time.time() - started
if errors: sys.exit("puts failed: " + "; ".join(errors[:3]))
after_single = settle()

boundary = "floe-bench-quilt-boundary"
body = bytearray()
for name, data in site:
    body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\r\n".encode()
    body += data + b"\r\n"
body += f"--{boundary}--\r\n".encode()
started = time.time()
req = urllib.request.Request(f"{gw[0]}/v1/quilts", data=bytes(body), method="PUT",
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
answer = json.load(urllib.request.urlopen(req, timeout=600))
quilt_s = time.time() - started
after_quilt = settle()
quilt = answer["blobStoreResult"]["newlyCreated"]["blobObject"]["blobId"]

def delta(a, b, name): return b[name] - a[name]
rows = [("file by file", single_s, before, after_single), ("one quilt", quilt_s, after_single, after_quilt)]
print()
print("| publish | wall time | store requests received | sliver indexes kept | bytes kept | overhead vs the files |")
print("|---|---|---|---|---|---|")
for label, secs, a, b in rows:
    kept = delta(a, b, "floe_bytes_stored")
    print(f"| {label} | {secs:.1f} s | {delta(a, b, 'floe_write_requests_total')} | {delta(a, b, 'floe_slivers_stored')} "
          f"| {kept / 1e6:.1f} MB | {kept / total:.2f}x |")
print(f"\nquilt publish time / file-by-file time: {quilt_s / single_s:.3f} (target at most 0.1)")
bad = 0
for name, data in rng.sample(site, 20):
    path = urllib.parse.quote(name, safe="")
    got = urllib.request.urlopen(f"{gw[-1]}/v1/blobs/by-quilt-id/{quilt}/{path}", timeout=120).read()
    bad += got != data
print(f"20 files read back from the quilt through node {nodes - 1}: {20 - bad} byte-identical")
sys.exit(1 if bad else 0)
