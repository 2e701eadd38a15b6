"""An MCP server over stdio that misbehaves on request, for the gateway's
fault tests. Plain JSON-RPC lines (not the SDK: the SDK cannot be made to
write garbage), handshake era only (`server/discover` gets -32601, as a
legacy server answers).

    fault_server.py [--huge-mib N]

Tools (every one takes `{"tag": string}`):
- `ok`: answers "ok: <tag>" at once;
- `garbage`: writes a line that is not JSON instead of its answer, then
  keeps serving;
- `huge`: answers with one JSON line of N MiB (default 50);
- `exit`: exits (status 3) before answering;
- `killed`: kills itself (SIGKILL) before answering;
- `hang`: never answers (and keeps serving other calls).
"""

import argparse
import json
import os
import signal
import sys

TOOLS = ["ok", "garbage", "huge", "exit", "killed", "hang"]


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--huge-mib", type=int, default=50)
    args = parser.parse_args()
    schema = {"type": "object", "properties": {"tag": {"type": "string"}}, "required": ["tag"]}
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        method, rid = msg.get("method"), msg.get("id")
        if rid is None:
            continue  # a notification
        if method == "initialize":
            send(
                {
                    "jsonrpc": "2.0",
                    "id": rid,
                    "result": {
                        "protocolVersion": msg["params"].get("protocolVersion", "2025-11-25"),
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "rein-fault-server", "version": "1.0.0"},
                    },
                }
            )
        elif method == "tools/list":
            tools = [{"name": t, "description": f"fault: {t}", "inputSchema": schema} for t in TOOLS]
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": tools}})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": rid, "result": {}})
        elif method == "tools/call":
            name = msg["params"]["name"]
            tag = str(msg["params"].get("arguments", {}).get("tag", ""))
            if name == "ok":
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": f"ok: {tag}"}]}})
            elif name == "garbage":
                sys.stdout.write("this is not JSON-RPC {{{\n")
                sys.stdout.flush()
            elif name == "huge":
                blob = "x" * (args.huge_mib * 1024 * 1024)
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": blob}]}})
            elif name == "exit":
                sys.exit(3)
            elif name == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            elif name == "hang":
                pass
            else:
                send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": f"Unknown tool: {name}"}})
        else:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})


if __name__ == "__main__":
    main()
