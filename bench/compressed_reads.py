#!/usr/bin/env python3
"""compressed_reads.py PORT PID PATH C SECS ROUNDS: C workers, each on one keep-alive connection,
GET PATH for SECS seconds a round, ROUNDS rounds alternating between no Accept-Encoding and
`Accept-Encoding: gzip`; per mode: answers/s, p50/p99 of the time to the answer's last byte, and
the CPU time (user + system) of the service's process PID per answer (docs/BENCHMARKS.md,
"Compressed answers"). The whole status of a large workspace: C at most half of the query
connections (3 on 2 cores), the rest would be 503.

  bench/compressed_reads.py 18782 $PID /workspaces/big3k/status 3 10 6"""
import asyncio, os, sys, time
port, pid, path, c, secs, rounds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

async def read_answer(r):
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), lines[0]
    h = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    n = 0
    if "content-length" in h:
        n = len(await r.readexactly(int(h["content-length"])))
    else:
        while True:
            size = int((await r.readline()).strip(), 16)
            if size == 0:
                await r.readline(); break
            n += len(await r.readexactly(size)); await r.readline()
    return n, h.get("content-encoding")

async def worker(mode, until, lat, sizes):
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + ("Accept-Encoding: gzip\r\n" if mode == "gzip" else "") + "\r\n"
    while time.monotonic() < until:
        t = time.monotonic(); w.write(req.encode()); await w.drain()
        n, enc = await read_answer(r)
        assert (enc == "gzip") == (mode == "gzip"), enc
        lat.append(time.monotonic() - t); sizes.append(n)
    w.close()

async def main():
    res = {"plain": ([], [], 0.0, 0.0), "gzip": ([], [], 0.0, 0.0)}
    for k in range(rounds):
        mode = "plain" if k % 2 == 0 else "gzip"
        lat, sizes, cpu_s, wall = res[mode]
        c0, t0 = cpu(), time.monotonic()
        await asyncio.gather(*(worker(mode, t0 + secs, lat, sizes) for _ in range(c)))
        res[mode] = (lat, sizes, cpu_s + cpu() - c0, wall + time.monotonic() - t0)
    for mode, (lat, sizes, cpu_s, wall) in res.items():
        lat.sort(); q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
        print(f"{mode:5}: {len(lat)} answers of {sizes[0]} B, {len(lat)/wall:.1f}/s, p50 {q(.5):.1f} ms, p99 {q(.99):.1f} ms, server CPU {cpu_s*1000/len(lat):.1f} ms per answer")
asyncio.run(main())
