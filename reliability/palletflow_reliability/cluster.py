"""The daemon's embedded PostgreSQL, reached from outside through its Unix socket as its owner
would: the tests read what was really stored with SQL, and stop and start the cluster to
crash it under the daemon."""

import os
import shutil

from .support import Failure, run


def postgres_bin():
    if os.environ.get("PALLETFLOW_PG_BIN"):
        return os.environ["PALLETFLOW_PG_BIN"]
    candidates = sorted(
        (d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int, reverse=True
    ) if os.path.isdir("/usr/lib/postgresql") else []
    for version in candidates:
        path = f"/usr/lib/postgresql/{version}/bin"
        if os.path.exists(path + "/pg_ctl"):
            return path
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(found)
    raise Failure("PostgreSQL server programs not found (apt-get install postgresql)")


class Cluster:
    """The daemon's embedded PostgreSQL, reached from outside as its owner would."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.cluster = os.path.join(data_dir, "postgres")
        self.socket_dir = os.path.join(data_dir, "run")
        self.bin = postgres_bin()
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def pg_ctl(self, *arguments):
        return run(self.as_owner + [self.bin + "/pg_ctl", "-D", self.cluster] + list(arguments))

    def stop_immediately(self):
        result = self.pg_ctl("-m", "immediate", "-w", "stop")
        if result.returncode != 0:
            raise Failure(f"pg_ctl stop -m immediate failed: {result.stdout}{result.stderr}")

    def start(self):
        result = self.pg_ctl("-l", self.cluster + "/log/server.log", "-w", "-t", "120", "start")
        if result.returncode != 0:
            raise Failure(f"pg_ctl start failed: {result.stdout}{result.stderr}")

    def running(self):
        return self.pg_ctl("status").returncode == 0

    def stop(self):
        if self.running():
            self.pg_ctl("-m", "fast", "-w", "-t", "60", "stop")

    def psql(self, sql, check=True, user="postgres"):
        """Runs SQL as the cluster's superuser, the tables' owner (or as `user`: the daemon's
        role is palletflow_app); returns (code, stdout, stderr)."""
        result = run([self.bin + "/psql", "-h", self.socket_dir, "-U", user, "-d", "palletflow", "-X", "-q",
                      "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        if check and result.returncode != 0:
            raise Failure(f"psql failed: {result.stderr.strip()} ({sql[:120]})")
        return result.returncode, result.stdout, result.stderr

    def rows(self, sql):
        _, out, _ = self.psql(sql)
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def value(self, sql):
        rows = self.rows(sql)
        return rows[0][0] if rows else None
