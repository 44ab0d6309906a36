"""A VTP subscriber on plain sockets, for tests of `vogateway serve` as a subscriber sees it."""

from __future__ import annotations

import socket
import struct
import threading
import time

from lxml import etree

from gateway.vtp import messages


class Subscriber(threading.Thread):
    """A VTP subscriber on plain sockets: answers authenticate and iamalive, acks every event, keeps every IVORN it
    got (in order, repeats included), and connects again whenever the broker goes away."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.received, self.connections = port, [], 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    self.connections += 1
                    self._serve(sock)
            except OSError:
                time.sleep(0.05)

    def _serve(self, sock):
        sock.settimeout(0.5)
        buffer = b""
        while not self._halt.is_set():
            try:
                data = sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not data:
                return
            buffer += data
            while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack("!I", buffer[:4])[0]:
                size = struct.unpack("!I", buffer[:4])[0]
                payload, buffer = buffer[4:4 + size], buffer[4 + size:]
                sock.sendall(self._answer(payload))

    def _answer(self, payload: bytes) -> bytes:
        root = etree.fromstring(payload, etree.XMLParser(resolve_entities=False, no_network=True))
        if root.get("ivorn"):  # a VOEvent
            self.received.append(root.get("ivorn"))
            reply = messages.ack("ivo://test.local/subscriber", root.get("ivorn"), time.time())
        elif root.get("role") == "authenticate":
            reply = messages.authenticate_response("ivo://test.local/subscriber", root.findtext("Origin"), [],
                                                   time.time())
        else:  # iamalive
            reply = messages.iamalive_response("ivo://test.local/subscriber", root.findtext("Origin"), time.time())
        return struct.pack("!I", len(reply)) + reply

    def stop(self):
        self._halt.set()
        self.join(5)
