#!/usr/bin/env python3
"""Captures request frames that real clients send, for protocol/tests/golden/.

Runs a TCP proxy on 127.0.0.1:<listen> in front of a broker and writes every request frame
(without its size prefix) to <out>/<client>_<api>_request_v<N>_<nnn>.bin. Stop with Ctrl-C.

    python3 scripts/capture_frames.py --listen 39092 --broker 127.0.0.1:9092 --client librdkafka
"""

import argparse
import os
import socket
import struct
import threading

API_NAMES = {0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata", 18: "api_versions", 19: "create_topics",
             20: "delete_topics", 21: "delete_records", 23: "offset_for_leader_epoch", 32: "describe_configs",
             33: "alter_configs", 35: "describe_log_dirs", 37: "create_partitions", 44: "incremental_alter_configs",
             60: "describe_cluster"}
counts = {}
lock = threading.Lock()


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b


def pump_requests(src, dst, out, client):
    while True:
        size = recv_exact(src, 4)
        if size is None:
            break
        n = struct.unpack(">i", size)[0]
        body = recv_exact(src, n)
        if body is None:
            break
        key, ver = struct.unpack(">hh", body[:4])
        name = API_NAMES.get(key)
        if name:
            with lock:
                i = counts.get((name, ver), 0)
                counts[(name, ver)] = i + 1
            if i < 2:
                with open(os.path.join(out, f"{client}_{name}_request_v{ver}_{i:03}.bin"), "wb") as f:
                    f.write(body)
        dst.sendall(size + body)
    dst.close()


def pump(src, dst):
    while True:
        b = src.recv(65536)
        if not b:
            break
        dst.sendall(b)
    dst.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--out", default="protocol/tests/golden")
    a = ap.parse_args()
    host, port = a.broker.rsplit(":", 1)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.listen))
    srv.listen(16)
    while True:
        c, _ = srv.accept()
        b = socket.create_connection((host, int(port)))
        threading.Thread(target=pump_requests, args=(c, b, a.out, a.client), daemon=True).start()
        threading.Thread(target=pump, args=(b, c), daemon=True).start()


if __name__ == "__main__":
    main()
