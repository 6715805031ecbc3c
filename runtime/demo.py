"""``make demo``: start an embedded service on a fresh data directory, drive it with
the shop simulator (20,000 decisions), print the result table, stop the service."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from devtools.simulator import render_report, run_simulation
from runtime.processes import ServiceProcess


def main(decisions: int = 20_000) -> int:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="learnloop-demo-") as tmp:
        log = Path(tmp) / "serve.log"
        console.print(f"starting learnloop serve (data in {tmp}, log {log}) …")
        with ServiceProcess(Path(tmp) / "data", log_file=log) as service:
            console.print(f"service ready at {service.url}; simulating {decisions:,} decisions")
            report = asyncio.run(run_simulation(service.url, decisions=decisions))
        console.print(render_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
