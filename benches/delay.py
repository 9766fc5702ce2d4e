#!/usr/bin/env python3
"""A TCP forwarder that delays every chunk by a fixed time each way: latency without netem.

    benches/delay.py LISTEN_PORT TARGET_PORT [DELAY_MS]      (default 50 ms each way)

Listens on 127.0.0.1 and 127.0.0.2 and forwards to 127.0.0.1:TARGET_PORT. Each chunk read is
written out DELAY_MS after it arrived, in order; the throughput is not limited, so a round trip
costs 2 x DELAY_MS and a bulk copy only its start-up. Runs until killed.
"""
import asyncio
import sys
import time

DELAY = 0.05


async def pump(reader, writer):
    """Copies reader to writer, each chunk DELAY after it was read."""
    queue = asyncio.Queue()

    async def read():
        try:
            while True:
                data = await reader.read(1 << 16)
                await queue.put((time.monotonic() + DELAY, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((time.monotonic() + DELAY, b""))

    async def write():
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    await writer.drain()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(read(), write())


async def serve(target, reader, writer):
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pump(reader, up_w), pump(up_r, writer))
    for w in (writer, up_w):
        w.close()


async def main():
    global DELAY
    listen, target = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 3:
        DELAY = float(sys.argv[3]) / 1000
    servers = [
        await asyncio.start_server(lambda r, w: serve(target, r, w), host, listen)
        for host in ("127.0.0.1", "127.0.0.2")
    ]
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
