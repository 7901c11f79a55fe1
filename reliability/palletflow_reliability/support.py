"""What every part of the suite shares: printing as it goes (each test's figures are read by
people while it runs, and quoted in docs/reliability.md), the record of one test, running a
program, a free port."""

import os
import socket
import subprocess
import time

# The repository: reliability/palletflow_reliability/support.py is three levels below it.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def say(text=""):
    print(text, flush=True)


def fmt(n):
    return f"{n:,}"


class Failure(Exception):
    pass


class Test:
    """What one test injected and found; `defects` make it fail."""

    def __init__(self, name):
        self.name = name
        self.figures = []
        self.defects = []
        self.started = time.time()

    def figure(self, text):
        self.figures.append(text)
        say(f"    {text}")

    def defect(self, text):
        self.defects.append(text)
        say(f"    DEFECT: {text}")

    def check(self, condition, text):
        if not condition:
            self.defect(text)
        return condition


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)
