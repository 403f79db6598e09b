"""Printer adapters: raw TCP to a fake printer on 127.0.0.1, failures as reason codes."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from labels import samples
from labels.render import render
from labels.render import render_zpl_batch
from tracker.adapters.printers import FakePrinter
from tracker.adapters.printers import LabelPrinter
from tracker.adapters.printers import PrinterError
from tracker.adapters.printers import ZebraTcpPrinter

pytestmark = pytest.mark.enable_socket


class FakeZebra:
    """A listening socket on 127.0.0.1 that reads each connection to EOF, like port 9100."""

    def __init__(self, *, reset_immediately: bool = False) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.reset_immediately = reset_immediately
        self.received: list[bytes] = []
        self.stopped = threading.Event()
        self.server.settimeout(0.05)  # accept() does not wake up when another thread closes
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            with conn:
                if self.reset_immediately:
                    # Abortive close (RST): a printer that drops the connection unread.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
                self.received.append(b"".join(chunks))

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def zebra() -> Iterator[FakeZebra]:
    server = FakeZebra()
    yield server
    server.close()


def test_zpl_reaches_the_printer_byte_for_byte(zebra: FakeZebra) -> None:
    payload = render(samples.apheresis_bag(), "zpl", size="4x6", dpi=300)
    printer: LabelPrinter = ZebraTcpPrinter("127.0.0.1", zebra.port, timeout=5.0)
    printer.send(payload, job_name="bag W9999 26 000123")
    zebra.close()
    assert zebra.received == [payload]


def test_a_large_batch_is_sent_whole_in_one_connection(zebra: FakeZebra) -> None:
    payload = render_zpl_batch(samples.batch(200), size="4x2")
    ZebraTcpPrinter("127.0.0.1", zebra.port).send(payload, job_name="batch")
    zebra.close()
    assert zebra.received == [payload]
    assert payload.count(b"^XA") == 200


def test_closed_port_is_printer_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(PrinterError) as caught:
            ZebraTcpPrinter("127.0.0.1", port, timeout=2.0).send(b"^XA^XZ", job_name="t")
    assert caught.value.reason == "printer_unreachable"
    assert f"127.0.0.1:{port}" in caught.value.message


def test_unresolvable_host_is_printer_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(address: object, timeout: float) -> socket.socket:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_dns)  # no real DNS in unit tests
    with pytest.raises(PrinterError) as caught:
        ZebraTcpPrinter("printer.invalid", timeout=1.0).send(b"^XA^XZ", job_name="t")
    assert caught.value.reason == "printer_unreachable"


def test_printer_that_drops_the_connection_is_printer_refused() -> None:
    server = FakeZebra(reset_immediately=True)
    try:
        with pytest.raises(PrinterError) as caught:
            # Generous timeout: on a loaded 2-core CI machine the fake printer's thread can be
            # slow to run, and a timeout would be reported as unreachable instead.
            ZebraTcpPrinter("127.0.0.1", server.port, timeout=10.0).send(
                render(samples.processing(), "zpl", size="2x1"), job_name="cassette"
            )
    finally:
        server.close()
    assert caught.value.reason == "printer_refused", caught.value.message
    assert "cassette" in str(caught.value) and "closed" in caught.value.message


def test_fake_printer_records_jobs_and_can_fail_with_a_reason() -> None:
    printer = FakePrinter()
    printer.send(b"^XA^XZ", job_name="one")
    assert printer.jobs == [("one", b"^XA^XZ")] and printer.payloads == [b"^XA^XZ"]
    printer.fail_with = "printer_unreachable"
    with pytest.raises(PrinterError) as caught:
        printer.send(b"^XA^XZ", job_name="two")
    assert caught.value.reason == "printer_unreachable"
    assert len(printer.jobs) == 1
