"""Shared helpers of the black-box tests: paths, running shamirfs, a storage with partitions a and b."""
import hashlib
import os
import pty
import select
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("SHAMIRFS_BUILD", ROOT / "build"))
SHAMIRFS = BUILD / "shamirfs"
DATA = ROOT / "tests" / "data"
# The cheapest KDF the production floors allow (ops 2, 64 MiB).
CHEAP_KDF = ["--kdf-ops", "2", "--kdf-mem", str(64 << 20)]

# The exit codes of shamirfs(1) (src/cli/exit_codes.hpp).
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_IO, EXIT_CORRUPT, EXIT_MALFORMED_KEY, EXIT_AUTH = 0, 1, 2, 3, 4, 5, 6
EXIT_DAMAGED, EXIT_INVALID_JSON, EXIT_TOO_LARGE, EXIT_BUSY, EXIT_NO_SPACE, EXIT_READ_ONLY, EXIT_REPAIRED = (
    7, 8, 9, 10, 11, 12, 13)
EXIT_PENDING, EXIT_MOUNT_POINT = 14, 15


def sh(cmd, **kw):
    """A shell command line, output captured."""
    return subprocess.run(cmd, shell=True, capture_output=True, **kw)


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_workdir(base: Path, mode=None) -> Path:
    """A fresh scratch directory under `base` (the fixtures remove it)."""
    base.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="t-", dir=base))
    if mode is not None:
        os.chmod(d, mode)
    return d


def wait_until(fn, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Tmux:
    """A terminal program under tmux: keys in, screen out."""

    def __init__(self, name, cmd):
        self.name = name
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "40", cmd], check=True)

    def keys(self, *keys):
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def screen(self):
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True).stdout

    def wait_for(self, text, timeout=20):
        return wait_until(lambda: text in self.screen(), timeout, f"'{text}' on the screen")

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)

    @staticmethod
    def sessions():
        r = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True)
        return r.stdout.split()


def run(*args, input=None, check=False, **kw):
    """Runs shamirfs; returns the CompletedProcess (bytes)."""
    p = subprocess.run([str(SHAMIRFS), *map(str, args)], input=input, capture_output=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"shamirfs {args} failed ({p.returncode}): {p.stderr.decode()}")
    return p


class Storage:
    """A storage with partitions a and b (or `labels`), their keys and password files."""

    def __init__(self, root: Path, name="enc.json", extra=(), labels=("a", "b")):
        self.dir = root
        self.path = root / name
        self.keys = root / (name + ".keys")
        self.keys.mkdir()
        self.pw = {}
        for label in labels:
            f = root / f"{name}.{label}.pass"
            f.write_text(f"password of {label} in {name}\n")
            f.chmod(0o600)
            self.pw[label] = f
        run("create", self.path, "--key-dir", self.keys, *CHEAP_KDF, *extra, "--labels", ",".join(labels),
            *[a for label in labels for a in ("--passfile", f"{label}={self.pw[label]}")], check=True)

    def key(self, label):
        return self.keys / f"{label}.key"

    def cred(self, label):
        return ["--keyfile", self.key(label), "--passfile", self.pw[label]]

    def cat(self, label):
        return run("cat", self.path, *self.cred(label), check=True).stdout

    def update(self, label, doc: bytes, *extra):
        return run("update", self.path, "-", *self.cred(label), *extra, input=doc)


def talk(argv, answers, timeout=20):
    """Runs argv on a pty, answering each prompt; returns (rc, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    shown, pending = b"", list(answers)
    while True:
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            break
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        shown += data
        if pending and shown.rstrip().endswith(pending[0][0]):
            os.write(fd, pending.pop(0)[1] + b"\n")
    deadline = time.monotonic() + 5  # (the terminal may close just before the process ends)
    done, status = os.waitpid(pid, os.WNOHANG)
    while done == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:  # still waiting for an answer that never came
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError(f"no prompt {pending[0][0] if pending else b''!r} came; the terminal showed {shown!r}")
    return os.waitstatus_to_exitcode(status), shown


class Layout:
    """Where the cells of a format 2 storage file stand (man/shamirfs.5): one
    string per column, share i of slot s as the (i * slots + s)-th."""

    def __init__(self, text: bytes):
        import json
        head_end = text.index(b'"columns":[\n') + len(b'"columns":[\n')
        params = json.loads(text[:text.index(b'"check":')] + b'"x":0}')
        self.capacity, self.slots, self.shares = params["capacity"], params["slots"], params["shares"]
        self.threshold, self.pack = params["threshold"], params["pack"]
        self.header_end = head_end
        self.column_step = self.capacity * 88 + 4

    def cell(self, row, column):
        """The offset of cell (row, column)."""
        position = (column % self.shares) * self.slots + column // self.shares
        return self.header_end + position * self.column_step + 1 + row * 88

    def cells_end(self):
        return self.header_end + self.slots * self.shares * self.column_step - 1


def set_header_field(text: bytes, old: bytes, new: bytes) -> bytes:
    """A format 2 storage whose header says `new` where it said `old`, with its
    check and copy made to match (as a writer would make them): for tests of
    the reader's rules on header values."""
    import base64
    import hashlib
    at = text.index(b'"check":"')
    params = text[:at].replace(old, new, 1)
    check = hashlib.blake2b(params, digest_size=16).digest()
    body = text[text.index(b'",\n"columns":[\n'):text.rindex(b'"copy":"')]
    return (params + b'"check":"' + check.hex().encode() + body + b'"copy":"' +
            base64.b64encode(params + check) + b'"}\n')
