"""Label printer port and adapters: raw ZPL (or any payload) to a networked Zebra printer.

Standard library only. Zebra printers accept raw print data on TCP port 9100 and close the
connection when they are done; they send no acknowledgement, so a completed ``send`` means the
bytes reached the printer's socket, not that a label came out.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from dataclasses import field
from typing import Literal
from typing import Protocol

PrinterReason = Literal["printer_unreachable", "printer_refused"]


class PrinterError(Exception):
    """Sending to a printer failed; ``reason`` is a stable code, ``message`` is for people."""

    def __init__(self, reason: PrinterReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: PrinterReason = reason
        self.message = message


class LabelPrinter(Protocol):
    """Port: anything that takes a finished print job."""

    def send(self, payload: bytes, *, job_name: str) -> None: ...


class ZebraTcpPrinter:
    """Raw TCP ("port 9100") printing."""

    def __init__(self, host: str, port: int = 9100, timeout: float = 5.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def send(self, payload: bytes, *, job_name: str) -> None:
        where = f"{self.host}:{self.port}"
        try:
            conn = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:  # refused, timed out, DNS failure, no route to host
            raise PrinterError(
                "printer_unreachable", f"{job_name}: cannot reach {where}: {exc}"
            ) from exc
        with conn:
            try:
                conn.sendall(payload)
            except TimeoutError as exc:
                raise PrinterError(
                    "printer_unreachable", f"{job_name}: {where} stopped taking data: {exc}"
                ) from exc
            except OSError as exc:  # ECONNRESET, EPIPE
                raise PrinterError(
                    "printer_refused", f"{job_name}: {where} closed the connection early: {exc}"
                ) from exc
            try:
                # Half-close and wait for the printer to close too: a reset here means it
                # dropped the job unread. A printer that keeps the line open has the data.
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(4096):
                    pass
            except TimeoutError:
                return
            except OSError as exc:
                raise PrinterError(
                    "printer_refused", f"{job_name}: {where} closed the connection early: {exc}"
                ) from exc


@dataclass
class FakePrinter:
    """Test double: records every job; ``fail_with`` makes each send raise that reason."""

    jobs: list[tuple[str, bytes]] = field(default_factory=list)
    fail_with: PrinterReason | None = None

    @property
    def payloads(self) -> list[bytes]:
        return [payload for _, payload in self.jobs]

    def send(self, payload: bytes, *, job_name: str) -> None:
        if self.fail_with is not None:
            raise PrinterError(self.fail_with, f"{job_name}: fake printer set to fail")
        self.jobs.append((job_name, bytes(payload)))
