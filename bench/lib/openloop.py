#!/usr/bin/env python3
"""Constant-rate (open-loop) load for B1 latency: one declaration every 1/rate seconds,
whatever the server's answers, so slow answers queue up instead of slowing the load
(wrk is closed-loop and would hide that). Latency is measured from each request's
scheduled send time, so time spent waiting for a free connection counts.

    openloop.py --port 8080 --data bench-data.json --rate 700 --duration 20 [--connections 64] [--processes 2]

Prints one JSON line: requested and achieved rate, p50/p90/p99/max in ms, status counts.
Requests are prepared in advance (only the Idempotency-Key changes), the load is spread
over --processes processes, and uvloop is used when installed, so the generator itself
stays cheap next to the daemon on a small machine. Loopback only; bounded by --duration.
"""
import argparse, asyncio, json, multiprocessing, os, random, sys, tempfile, time
from array import array


def templates(data, count, seed):
    """(head before the key, rest of the request) pairs for random carriers and sites."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        carrier = data["carriers"][rng.randrange(len(data["carriers"]))]
        site = data["sites"][rng.randrange(len(data["sites"]))]
        body = ('{"kind":"delivery","eventTime":"%s","from":{"partyId":"%s"},"to":{"partyId":"%s","siteId":"%s"},'
                '"lines":[{"palletType":"EPAL1","quality":"A","quantity":33,"exchangedQuantity":30}],'
                '"references":{"cmr":"CMR-OPEN-LOOP"}}' % (data["eventTime"], carrier["id"], site["owner"], site["id"])).encode()
        head = ("POST /v1/ecosystems/%s/movements HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\nIdempotency-Key: " % (data["ecosystem"], carrier["token"], len(body))).encode()
        result.append((head, b"\r\n\r\n" + body))
    return result


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    start = head.lower().find(b"content-length:")
    if start >= 0:
        end = head.find(b"\r\n", start)
        length = int(head[start + 15:end])
        if length:
            await reader.readexactly(length)
    return status


async def connection(index, stride, args, requests, start, total, latencies, statuses, salt):
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
    n = index
    try:
        while n < total:
            scheduled = start + n / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            head, rest = requests[n % len(requests)]
            writer.write(head + b"%s-%d" % (salt, n) + rest)
            status = await read_response(reader)
            latencies.append((time.perf_counter() - scheduled) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            n += stride
    finally:
        writer.close()


def run_process(rank, args, data, start, out):
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    total = int(args.rate * args.duration)
    stride = args.connections
    requests = templates(data, 512, rank)
    latencies, statuses = array("d"), {}
    salt = b"ol-%d-%d" % (args.salt, rank)
    mine = [i for i in range(args.connections) if i % args.processes == rank]

    async def main():
        await asyncio.gather(*(connection(i, stride, args, requests, start, total, latencies, statuses, salt) for i in mine))

    asyncio.run(main())
    with open(out, "w") as f:
        json.dump({"latencies": latencies.tolist(), "statuses": statuses, "end": time.perf_counter()}, f)


def percentile(ordered, fraction):
    rank = max(1, int(-(-len(ordered) * fraction // 1)))
    return ordered[min(rank, len(ordered)) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="JSON written by bench/run: ecosystem, eventTime, carriers, sites")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--salt", type=int, default=int(time.time()))
    args = parser.parse_args()
    with open(args.data) as f:
        data = json.load(f)
    start = time.perf_counter() + 0.5
    outs = [tempfile.mktemp(prefix="openloop-") for _ in range(args.processes)]
    processes = [multiprocessing.Process(target=run_process, args=(rank, args, data, start, outs[rank]))
                 for rank in range(args.processes)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    latencies, statuses, end = [], {}, start
    for out in outs:
        with open(out) as f:
            part = json.load(f)
        os.unlink(out)
        latencies += part["latencies"]
        end = max(end, part["end"])
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    latencies.sort()
    print(json.dumps({
        "rate": args.rate, "achieved": round(len(latencies) / (end - start), 1), "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 2), "p90_ms": round(percentile(latencies, 0.9), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2), "max_ms": round(latencies[-1], 2),
        "statuses": dict(sorted(statuses.items()))}))


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()
