"""A stdio tap: runs CMD and relays its stdin and stdout line by line,
unchanged, recording each line with its direction.

    tap.py LOG_DIR NAME -- CMD ARGS...

Writes LOG_DIR/NAME-<pid>.jsonl, one `{"dir": "c2s"|"s2c", "line": <the line
as text>}` per message (one file per run, since a gateway may start the same
command more than once). stderr is inherited. Exits with CMD's status.
"""

import json
import os
import subprocess
import sys
import threading


def main() -> int:
    log_dir, name = sys.argv[1], sys.argv[2]
    argv = sys.argv[3:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    log = open(os.path.join(log_dir, f"{name}-{os.getpid()}.jsonl"), "w")
    lock = threading.Lock()

    def record(direction: str, raw: bytes) -> None:
        with lock:
            text = raw.rstrip(b"\n").decode("utf-8", "replace")
            log.write(json.dumps({"dir": direction, "line": text}) + "\n")
            log.flush()

    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def upstream() -> None:
        for raw in sys.stdin.buffer:
            record("c2s", raw)
            try:
                child.stdin.write(raw)
                child.stdin.flush()
            except BrokenPipeError:
                break
        try:
            child.stdin.close()
        except BrokenPipeError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    for raw in child.stdout:
        record("s2c", raw)
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
    return child.wait()


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    # Not sys.exit: the interpreter's shutdown would wait on the thread
    # still blocked reading stdin.
    os._exit(status)
