"""The executables under test: built with SwiftPM (or taken from --bin-dir), and palletflowd
started, stopped, killed and restarted on the suite's data directory and port."""

import os
import signal
import subprocess
import time

from .client import Client
from .support import ROOT, Failure, say


class Binaries:
    """Where the three executables are: the SwiftPM build directory, or --bin-dir."""

    def __init__(self, directory):
        self.directory = directory
        self.palletflowd = os.path.join(directory, "palletflowd")
        self.worker = os.path.join(directory, "palletflow-worker")
        self.cli = os.path.join(directory, "palletflow")


class Daemon:
    """palletflowd on the suite's data directory and port; the tests stop, kill -9 and
    restart it, and the limits test runs another with its rate limits on the same data."""

    def __init__(self, binaries, data_dir, port, log_path, rate_limit=0, address_limit=0, extra=()):
        self.binaries = binaries
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        self.rate_limit = rate_limit
        # Every request of the suite comes from 127.0.0.1, as clients behind one proxy
        # would: the per-address limit is off but where the limits test measures it.
        self.address_limit = address_limit
        self.extra = list(extra)
        self.process = None
        self.starts = 0

    def start(self, timeout=300):
        log = open(self.log_path, "ab")
        argv = [self.binaries.palletflowd, "--data-dir", self.data_dir, "--port", str(self.port),
                "--rate-limit-per-token", str(self.rate_limit),
                "--rate-limit-per-address", str(self.address_limit), "--log-format", "json"] + self.extra
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        log.close()
        self.starts += 1
        deadline = time.time() + timeout
        client = Client(self.port, timeout=5)
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise Failure(f"palletflowd exited with {self.process.returncode} at start; see {self.log_path}")
            try:
                status, _, _ = client.request("GET", "/readyz")
                if status == 200:
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise Failure("palletflowd did not become ready")

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def kill9(self):
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self):
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def memory(self):
        """(VmRSS, VmHWM) in KiB."""
        values = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, amount = line.split(":")
                    values[name] = int(amount.split()[0])
        return values.get("VmRSS", 0), values.get("VmHWM", 0)


def build(args):
    if args.bin_dir:
        return Binaries(args.bin_dir)
    configuration = "release" if args.release else "debug"
    say(f"== building ({configuration})")
    began = time.time()
    subprocess.run(["swift", "build", "-c", configuration], cwd=ROOT, check=True)
    path = subprocess.run(["swift", "build", "-c", configuration, "--show-bin-path"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    say(f"   built in {time.time() - began:.0f} s: {path}")
    return Binaries(path)
