"""A real `rein serve` for the client tests: started as a subprocess on a
free loopback port, in its own temp folder (policy, tokens file, SQLite
store), stopped or killed by the test.

The binary is `$REIN_BIN`, else the repository's `target/debug/rein`
(`cargo build -p rein-cli`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Optional

import httpx

REPO = Path(__file__).resolve().parents[3]
REFUND_POLICY = REPO / "examples" / "refund" / "policy.yaml"

AGENT = "agent-token-0123456789abcdef"
AGENT2 = "agent2-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"

TOKENS = f"""tokens:
  - {{name: agent-1, role: agent, token: {AGENT}}}
  - {{name: agent-2, role: agent, token: {AGENT2}}}
  - {{name: alice, role: approver, token: {ALICE}}}
  - {{name: ops, role: admin, token: {ADMIN}}}
"""


def rein_bin() -> Path:
    """The `rein` binary the tests run."""
    given = os.environ.get("REIN_BIN")
    path = Path(given) if given else REPO / "target" / "debug" / "rein"
    if not path.exists():
        raise RuntimeError(f"no rein binary at {path}: run `cargo build -p rein-cli` or set REIN_BIN")
    return path


class Server:
    """One `rein serve` process over `policy` in `folder`."""

    def __init__(self, folder: Path, policy: Optional[str] = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.policy = folder / "policy.yaml"
        self.policy.write_text(policy if policy is not None else REFUND_POLICY.read_text())
        self.tokens = folder / "tokens.yaml"
        self.tokens.write_text(TOKENS)
        self.db = folder / "rein.db"
        self.log = folder / "serve.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> "Server":
        """Starts the server and waits until it listens."""
        env = dict(os.environ, NO_COLOR="1", REIN_LOG="info")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(rein_bin()),
                    "serve",
                    str(self.policy),
                    "--db",
                    str(self.db),
                    "--tokens",
                    str(self.tokens),
                    "--listen",
                    "127.0.0.1:0",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            found = re.search(r"rein server listening.*?addr=(127\.0\.0\.1:\d+)", text)
            if found:
                self.url = f"http://{found.group(1)}"
                self._wait_healthy(deadline)
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"rein serve exited with {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"rein serve did not start within {timeout} s:\n{self.log.read_text()}")

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"rein serve is not healthy:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kills the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def call(self, method: str, path: str, token: str = ADMIN, body: Any = None) -> httpx.Response:
        """One HTTP call to the server with `token`."""
        return httpx.request(
            method,
            f"{self.url}{path}",
            headers={"Authorization": f"Bearer {token}"},
            json=body,
            timeout=10.0,
        )

    def grant(self, approval_id: str, token: str = ALICE) -> Dict[str, Any]:
        """Grants an approval as an approver, through the HTTP API."""
        r = self.call("POST", f"/v1/approvals/{approval_id}/grant", token, {"comment": "ok"})
        assert r.status_code == 200, r.text
        return r.json()

    def deny(self, approval_id: str, token: str = ALICE) -> Dict[str, Any]:
        """Denies an approval as an approver."""
        r = self.call("POST", f"/v1/approvals/{approval_id}/deny", token, {"comment": "not today"})
        assert r.status_code == 200, r.text
        return r.json()

    def audit(self, **query: Any) -> list:
        """The decision and outcome records matching `query` (as an admin):
        every record but the policy activations `rein serve` writes at start
        and on reload (phase `activate`), which `records` keeps."""
        return [r for r in self.records(**query) if r["phase"] != "activate"]

    def records(self, **query: Any) -> list:
        """Every audit record matching `query` (as an admin)."""
        r = httpx.get(
            f"{self.url}/v1/audit",
            params={"limit": 1000, **query},
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10.0,
        )
        assert r.status_code == 200, r.text
        return r.json()["records"]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
