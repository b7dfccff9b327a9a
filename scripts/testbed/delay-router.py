#!/usr/bin/env python3
"""A router that delays every packet it forwards: the kernel routes packets between the testbed's namespaces
through a TUN device, and this program holds each packet read from it for DELAY_MS before writing it back, so
the kernel forwards it on (scripts/testbed/rtt-net.sh sets up the routes). Traffic between two nodes crosses it
once each way: the round trip grows by twice DELAY_MS.

Used where the kernel has no sch_netem (tc's delay qdisc). Packets keep their order; nothing is dropped unless
more than QUEUE_LIMIT bytes wait (a tail drop, as a router's buffer would).

    delay-router.py TUN_NAME DELAY_MS     # runs until killed; prints "ready" once the device exists
"""
import fcntl
import heapq
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
QUEUE_LIMIT = 256 << 20


def main():
    name, delay = sys.argv[1], float(sys.argv[2]) / 1000.0
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    print("ready", flush=True)
    queue = []  # (due, sequence, packet)
    queued = 0
    sequence = 0
    dropped = 0
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
        readable, _, _ = select.select([fd], [], [], timeout)
        now = time.monotonic()
        if readable:
            while True:
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if queued + len(packet) > QUEUE_LIMIT:
                    dropped += 1
                    continue
                heapq.heappush(queue, (now + delay, sequence, packet))
                queued += len(packet)
                sequence += 1
        while queue and queue[0][0] <= now:
            _, _, packet = heapq.heappop(queue)
            queued -= len(packet)
            try:
                os.write(fd, packet)
            except BlockingIOError:
                dropped += 1


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
