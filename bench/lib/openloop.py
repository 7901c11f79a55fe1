#!/usr/bin/env python3
"""Constant-rate (open-loop) load for B1 latency: one declaration every 1/rate seconds,
whatever the server's answers, so slow answers queue up instead of slowing the load
(wrk is closed-loop and would hide that). Latency is measured from each request's
scheduled send time, so time spent waiting for a free connection counts.

    openloop.py --port 8080 --data bench-data.json --rate 700 --duration 20 [--connections 64]

Prints one JSON line: requested and achieved rate, p50/p90/p99/max in ms, status counts.
Loopback only; the loop is bounded by --duration and stops by itself.
"""
import argparse, asyncio, json, random, time


def build_request(data, carrier, site, key):
    body = ('{"kind":"delivery","eventTime":"%s","from":{"partyId":"%s"},"to":{"partyId":"%s","siteId":"%s"},'
            '"lines":[{"palletType":"EPAL1","quality":"A","quantity":33,"exchangedQuantity":30}],'
            '"references":{"cmr":"CMR-O%s"}}' % (data["eventTime"], carrier["id"], site["owner"], site["id"], key)).encode()
    head = ("POST /v1/ecosystems/%s/movements HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Idempotency-Key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (data["ecosystem"], carrier["token"], key, len(body))).encode()
    return head + body


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def worker(index, args, data, start, total, latencies, statuses):
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
    rng = random.Random(index)
    n = index
    try:
        while n < total:
            scheduled = start + n / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            carrier = data["carriers"][rng.randrange(len(data["carriers"]))]
            site = data["sites"][rng.randrange(len(data["sites"]))]
            writer.write(build_request(data, carrier, site, "ol-%d-%d" % (args.salt, n)))
            await writer.drain()
            status = await read_response(reader)
            latencies.append((time.perf_counter() - scheduled) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            n += args.connections
    finally:
        writer.close()


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-len(ordered) * fraction // 1)))
    return ordered[min(rank, len(ordered)) - 1]


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="JSON written by bench/run: ecosystem, eventTime, carriers, sites")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--salt", type=int, default=int(time.time()))
    args = parser.parse_args()
    with open(args.data) as f:
        data = json.load(f)
    total = int(args.rate * args.duration)
    latencies, statuses = [], {}
    start = time.perf_counter() + 0.2
    await asyncio.gather(*(worker(i, args, data, start, total, latencies, statuses) for i in range(args.connections)))
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "rate": args.rate, "achieved": round(len(latencies) / elapsed, 1), "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 2), "p90_ms": round(percentile(latencies, 0.9), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2), "max_ms": round(max(latencies), 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())}}))


if __name__ == "__main__":
    asyncio.run(main())
