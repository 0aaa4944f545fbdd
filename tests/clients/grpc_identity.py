"""A non-Go gRPC client (grpcio, the C core) for the driver's CSI socket.

Usage: python grpc_identity.py /path/to/csi.sock
Calls csi.v1.Identity/GetPluginInfo and Probe with grpcio's defaults (no
:authority override) and prints the plugin name. Messages are encoded by
hand (an empty request; the reply's field 1 is the name), so the client
needs no generated code.
"""
import sys

import grpc


def field_one(reply: bytes) -> str:
    # GetPluginInfoResponse.name is field 1, length-delimited: tag 0x0a.
    if not reply or reply[0] != 0x0A:
        raise ValueError("no name in the reply")
    size, at = 0, 1
    shift = 0
    while True:
        b = reply[at]
        at += 1
        size |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return reply[at : at + size].decode()


def main() -> None:
    socket = sys.argv[1]
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        identity = lambda method: channel.unary_unary(
            f"/csi.v1.Identity/{method}",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        name = field_one(identity("GetPluginInfo")(b"", timeout=10))
        identity("Probe")(b"", timeout=10)
    print(name)


if __name__ == "__main__":
    main()
