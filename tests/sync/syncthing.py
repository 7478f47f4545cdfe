"""Two real Syncthing instances on one machine, talking over 127.0.0.1 only.

Each configuration is generated without starting it, then, before the first
start, made to listen on 127.0.0.1 only, with explicit tcp://127.0.0.1:PORT
device addresses, and with local and global discovery, relays, NAT traversal,
STUN, usage and crash reporting and upgrades off: no packet goes anywhere but
the loopback. Folders are configured through the REST API on 127.0.0.1."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sfs_common import wait_until

IGNORE = ".*.shamirfs-*\n"  # README, "Several devices"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_syncthing():
    if shutil.which("syncthing") is None:
        pytest.fail("syncthing is missing (Debian package syncthing; scripts/install-deps installs it)")


class Syncthing:
    def __init__(self, home: Path, name: str):
        require_syncthing()
        self.home, self.name = home, name
        self.gui_port, self.listen_port = free_port(), free_port()
        self.apikey = "shamirfs-test-" + name
        r = subprocess.run(["syncthing", "generate", "--home", str(home), "--no-default-folder", "--skip-port-probing"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        self.configure()
        self.proc = None

    def configure(self):
        path = self.home / "config.xml"
        tree = ET.parse(path)
        root = tree.getroot()
        self.device_id = root.find("device").get("id")
        gui = root.find("gui")
        gui.find("address").text = f"127.0.0.1:{self.gui_port}"
        gui.find("apikey").text = self.apikey
        opts = root.find("options")
        settings = {
            "listenAddress": f"tcp://127.0.0.1:{self.listen_port}",
            "globalAnnounceEnabled": "false", "localAnnounceEnabled": "false", "relaysEnabled": "false",
            "natEnabled": "false", "urAccepted": "-1", "crashReportingEnabled": "false",
            "autoUpgradeIntervalH": "0", "startBrowser": "false", "stunKeepaliveStartS": "0",
            "announceLANAddresses": "false", "reconnectionIntervalS": "1",
        }
        for key, value in settings.items():
            el = opts.find(key)
            if el is None:
                el = ET.SubElement(opts, key)
            el.text = value
        for key in ("globalAnnounceServer", "stunServer"):  # no server to ask, even by mistake
            for el in opts.findall(key):
                el.text = ""
        for dev in root.findall("device"):
            dev.find("address").text = f"tcp://127.0.0.1:{self.listen_port}"
        tree.write(path)

    def start(self):
        env = {**os.environ, "STNODEFAULTFOLDER": "1", "STNOUPGRADE": "1", "STNORESTART": "1",
               "STHOMEDIR": str(self.home)}
        self.proc = subprocess.Popen(["syncthing", "serve", "--home", str(self.home), "--no-browser", "--no-restart",
                                      "--no-upgrade", "--logfile", str(self.home / "syncthing.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_until(self.ping, timeout=60, what=f"syncthing {self.name} to answer")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rest(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.gui_port}{path}", method=method,
                                     headers={"X-API-Key": self.apikey, "Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return json.loads(data) if data else None

    def ping(self):
        try:
            return self.rest("GET", "/rest/system/ping").get("ping") == "pong"
        except OSError:
            return False

    def add_device(self, other):
        self.rest("PUT", f"/rest/config/devices/{other.device_id}",
                  {"deviceID": other.device_id, "name": other.name,
                   "addresses": [f"tcp://127.0.0.1:{other.listen_port}"]})

    def add_folder(self, folder_id, path: Path, other):
        (path / ".stignore").write_text(IGNORE)
        self.rest("PUT", f"/rest/config/folders/{folder_id}",
                  {"id": folder_id, "label": folder_id, "path": str(path), "type": "sendreceive",
                   "devices": [{"deviceID": self.device_id}, {"deviceID": other.device_id}],
                   "fsWatcherEnabled": True, "fsWatcherDelayS": 1, "rescanIntervalS": 5,
                   "versioning": {"type": "simple", "params": {"keep": "20"}}})

    def pause(self, other):
        self.rest("POST", f"/rest/system/pause?device={other.device_id}")

    def resume(self, other):
        self.rest("POST", f"/rest/system/resume?device={other.device_id}")

    def connected(self, other):
        conns = self.rest("GET", "/rest/system/connections")["connections"]
        return conns.get(other.device_id, {}).get("connected", False)

    def scan(self, folder_id):
        self.rest("POST", f"/rest/db/scan?folder={folder_id}")


def listing(folder: Path):
    """What a device's folder holds (names to contents), hidden files (Syncthing's
    own, shamirfs's lock, log and temp files, which are not synced) left out."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        out[p.name] = p.read_bytes()
    return out


def wait_in_sync(a_dir: Path, b_dir: Path, timeout=60, settle=3.0):
    """Until both folders hold the same files with the same contents, and stay
    so for `settle` seconds."""
    deadline = time.monotonic() + timeout
    same_since = None
    while time.monotonic() < deadline:
        same = listing(a_dir) == listing(b_dir)
        if same and same_since is None:
            same_since = time.monotonic()
        elif not same:
            same_since = None
        if same_since is not None and time.monotonic() - same_since >= settle:
            return listing(a_dir)
        time.sleep(0.2)
    raise AssertionError(f"the folders did not converge: {sorted(listing(a_dir))} vs {sorted(listing(b_dir))}")
