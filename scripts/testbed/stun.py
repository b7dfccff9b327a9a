#!/usr/bin/env python3
"""A minimal STUN server (RFC 5389 binding requests only) for the NAT testbed's internet.

miniupnpd asks it for the upnp router's outside address and checks that four requests from four ports come back
unchanged (ext_perform_stun): only then does it map ports. Every binding request is answered from this socket
with the sender's address as XOR-MAPPED-ADDRESS and MAPPED-ADDRESS; CHANGE-REQUEST is ignored (miniupnpd only
needs the answers). Anything else is dropped.

    stun.py ADDRESS [PORT]     # PORT defaults to 3478; runs until killed
"""
import socket
import struct
import sys

MAGIC = 0x2112A442


def answer(request, sender):
    """The binding response to `request` from `sender`, or None if it is not a binding request."""
    if len(request) < 20:
        return None
    kind, length, cookie = struct.unpack("!HHI", request[:8])
    if kind != 0x0001 or length + 20 > len(request):
        return None
    transaction = request[8:20]
    ip = socket.inet_aton(sender[0])
    port = sender[1]
    xor_ip = bytes(a ^ b for a, b in zip(ip, struct.pack("!I", MAGIC)))
    xor_mapped = struct.pack("!HHBBH", 0x0020, 8, 0, 1, port ^ (MAGIC >> 16)) + xor_ip
    mapped = struct.pack("!HHBBH", 0x0001, 8, 0, 1, port) + ip
    body = xor_mapped + mapped
    return struct.pack("!HHI", 0x0101, len(body), cookie) + transaction + body


def main():
    address = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 3478
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    while True:
        request, sender = sock.recvfrom(2048)
        response = answer(request, sender)
        if response is not None:
            sock.sendto(response, sender)


if __name__ == "__main__":
    main()
