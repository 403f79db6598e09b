"""A stand-in Zebra printer for trying label printing locally: raw TCP, one file per job.

    python scripts/fake_zebra.py [--port 9100] [--out instance/zebra]

The demo's printers point at 127.0.0.1:9100. With this running, printing from the Labels page
succeeds and each job lands in ``--out`` as a .zpl file (view it with any ZPL viewer you run
locally; never paste patient labels into online preview services). Stop it to see how the
tracker reports a printer that is off. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
from datetime import UTC
from datetime import datetime
from pathlib import Path


def serve(port: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with socket.create_server(("127.0.0.1", port)) as server:
        print(f"fake Zebra on 127.0.0.1:{port}, jobs saved to {out}/ (Ctrl-C stops)")
        while True:
            conn, _ = server.accept()
            with conn:
                chunks = []
                # A real printer reads until the sender closes its side, then closes too.
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
            job = b"".join(chunks)
            name = out / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}.zpl"
            name.write_bytes(job)
            print(f"{name.name}: {job.count(b'^XA')} label(s), {len(job)} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--out", type=Path, default=Path("instance") / "zebra")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        serve(args.port, args.out)


if __name__ == "__main__":
    main()
