"""A real cluster on one machine, for the tests: N nodes as network namespaces on a bridge.

Each node ``nK`` has its own network stack (``eth0`` = 10.77.0.K, one end of a veth pair whose
other end is on the head namespace's bridge), its own hostname and its own ``/tmp``
(``node-enter.sh``), and optionally a capped link (``tc tbf`` both ways; this kernel has no netem).
Open MPI reaches the nodes through ``rsh-agent.sh`` (no ssh) with ``btl tcp,self`` on the bridge's
subnet, so every byte between ranks crosses the links. Slurm 22.05 from Debian runs on top: a
private munged, ``slurmctld`` in the head namespace and one ``slurmd`` per node.

Every client call has a timeout (``srun`` waits forever for a node that is down); ``down()`` kills
every process in the namespaces and removes them. By hand (as root)::

    PYTHONPATH=tests python tests/support/simcluster.py up --nodes 2 --dir build/cluster \
        [--rate 1gbit] [--slurm]
    PYTHONPATH=tests python tests/support/simcluster.py down --dir build/cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# ip, munged, slurmctld and slurmd live in sbin, which a CI shell may leave off PATH.
for _sbin in ("/usr/sbin", "/sbin"):
    if _sbin not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = f"{os.environ.get('PATH', '')}:{_sbin}"
NET = "10.77.0"
HEAD_IP = f"{NET}.100"
HEAD = "head"
TCP_RETRIES2 = 5  # a dead link fails a TCP send after ~13 s instead of ~15 minutes


def ns(node: str) -> str:
    return f"hvt-{node}"


def _sh(*cmd, check=True, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=check, timeout=timeout, capture_output=True,
                          text=True, **kw)


class Cluster:
    def __init__(self, nodes: int, directory: Path, rate: str | None = None, keep: tuple = ()):
        self.nodes = [f"n{k}" for k in range(1, nodes + 1)]
        self.dir = Path(directory).resolve()
        self.rate = rate
        self.keep = [str(Path(p).resolve()) for p in keep]  # paths every node must see
        self.daemons: list[subprocess.Popen] = []
        self.slurm_conf = self.dir / "slurm" / "slurm.conf"

    # ------------------------------------------------------------------------------- network
    def up(self) -> Cluster:
        self.down(quiet=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        _sh("ip", "netns", "add", ns(HEAD))
        _sh("ip", "-n", ns(HEAD), "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", ns(HEAD), "addr", "add", f"{HEAD_IP}/24", "dev", "br0")
        for dev in ("br0", "lo"):
            _sh("ip", "-n", ns(HEAD), "link", "set", dev, "up")
        for k, node in enumerate(self.nodes, start=1):
            _sh("ip", "netns", "add", ns(node))
            _sh("ip", "link", "add", "eth0", "netns", ns(node), "type", "veth", "peer", "name",
                f"v{node}", "netns", ns(HEAD))
            _sh("ip", "-n", ns(HEAD), "link", "set", f"v{node}", "master", "br0", "up")
            _sh("ip", "-n", ns(node), "addr", "add", f"{NET}.{k}/24", "dev", "eth0")
            for dev in ("eth0", "lo"):
                _sh("ip", "-n", ns(node), "link", "set", dev, "up")
            (self.dir / "nodes" / node / "tmp").mkdir(parents=True, exist_ok=True)
        for name in [HEAD, *self.nodes]:
            _sh("nsenter", f"--net=/run/netns/{ns(name)}", "sh", "-c",
                f"echo {TCP_RETRIES2} > /proc/sys/net/ipv4/tcp_retries2")
        if self.rate:
            self.cap(self.rate)
        (self.dir / "cluster.json").write_text(json.dumps({"nodes": self.nodes}))
        return self

    def cap(self, rate: str) -> None:
        """Cap every node's link to ``rate`` (e.g. ``1gbit``) in both directions."""
        for node in self.nodes:
            for where, dev in ((ns(node), "eth0"), (ns(HEAD), f"v{node}")):
                _sh("ip", "netns", "exec", where, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                    "rate", rate, "burst", "256kb", "latency", "100ms")

    def uncap(self) -> None:
        """Remove the caps: the links run as fast as this machine moves bytes through them."""
        for node in self.nodes:
            for where, dev in ((ns(node), "eth0"), (ns(HEAD), f"v{node}")):
                _sh("ip", "netns", "exec", where, "tc", "qdisc", "del", "dev", dev, "root", check=False)

    def link(self, node: str, state: str) -> None:
        _sh("ip", "-n", ns(node), "link", "set", "eth0", state)

    def ip(self, node: str) -> str:
        return f"{NET}.{self.nodes.index(node) + 1}"

    def counters(self, node: str) -> dict:
        """Bytes through the node's eth0 so far."""
        stats = json.loads(_sh("ip", "-n", ns(node), "-s", "-j", "link", "show", "eth0").stdout)[0]
        return {"rx": stats["stats64"]["rx"]["bytes"], "tx": stats["stats64"]["tx"]["bytes"]}

    def pids(self, name: str) -> list[int]:
        res = _sh("ip", "netns", "pids", ns(name), check=False)
        return [int(p) for p in res.stdout.split()]

    def kill_node(self, node: str) -> int:
        """Every process on the node dies at once (a node that lost power)."""
        pids = self.pids(node)
        for pid in pids:
            _kill(pid)
        return len(pids)

    # -------------------------------------------------------------------------- run commands
    def env(self, **extra) -> dict:
        env = dict(os.environ)
        env.update(HVT_CLUSTER_DIR=str(self.dir), HVT_KEEP=":".join(self.keep),
                   OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   SLURM_CONF=str(self.slurm_conf))
        env.update(self.mpi_env())
        env.update(extra)
        return env

    def mpi_env(self) -> dict:
        """Open MPI's settings for this cluster, as environment (so scripts need no flags)."""
        return {"OMPI_MCA_plm_rsh_agent": str(HERE / "rsh-agent.sh"),
                "OMPI_MCA_btl": "tcp,self",
                "OMPI_MCA_btl_tcp_if_include": f"{NET}.0/24",
                "OMPI_MCA_oob_tcp_if_include": f"{NET}.0/24"}

    def on_head(self, *cmd) -> list[str]:
        """A command line that runs ``cmd`` in the head namespace (mpirun, Slurm clients)."""
        return ["nsenter", f"--net=/run/netns/{ns(HEAD)}", *map(str, cmd)]

    def mpirun(self, *cmd) -> list[str]:
        """``mpirun`` from the head namespace, one rank on each node."""
        from hvdtrain.cluster.world import mpirun_command

        return self.on_head(*mpirun_command(len(self.nodes), extra=("--host", ",".join(self.nodes))),
                            *map(str, cmd))

    def on_node(self, node: str, *cmd) -> list[str]:
        return [str(HERE / "node-enter.sh"), node, str(self.dir), *map(str, cmd)]

    def run(self, cmd: list[str], timeout: float = 600, cwd=None, **env) -> subprocess.CompletedProcess:
        """Run with a timeout (Slurm clients wait forever for a down node)."""
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env=self.env(**env))

    def hostfile(self) -> Path:
        path = self.dir / "hostfile"
        path.write_text("".join(f"{n} slots=1\n" for n in self.nodes))
        return path

    # --------------------------------------------------------------------------------- slurm
    def start_slurm(self) -> None:
        sdir, mdir = self.dir / "slurm", self.dir / "munge"
        for d in (sdir / "state", sdir / "spool", sdir / "log", mdir):
            d.mkdir(parents=True, exist_ok=True)
        mdir.chmod(0o755)
        key = mdir / "munge.key"
        if not key.exists():
            _sh("mungekey", "-c", "-k", key)
        key.chmod(0o600)
        socket = mdir / "munge.socket"
        self._daemon(["munged", "-F", "--force", f"--socket={socket}", f"--key-file={key}",
                      f"--log-file={mdir / 'munged.log'}", f"--pid-file={mdir / 'munged.pid'}",
                      f"--seed-file={mdir / 'munged.seed'}"], mdir / "munged.out")
        _wait(lambda: socket.exists(), 20, "munged did not create its socket")
        nodes = "".join(f"NodeName={n} NodeAddr={self.ip(n)} CPUs=2 State=UNKNOWN\n" for n in self.nodes)
        self.slurm_conf.write_text(f"""ClusterName=hvt
SlurmctldHost={HEAD}({HEAD_IP})
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={sdir / 'state'}
SlurmdSpoolDir={sdir / 'spool'}/%n
SlurmctldPidFile={sdir / 'slurmctld.pid'}
SlurmdPidFile={sdir / 'slurmd-%n.pid'}
SlurmctldLogFile={sdir / 'log' / 'slurmctld.log'}
SlurmdLogFile={sdir / 'log' / 'slurmd-%n.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
SlurmdTimeout=30
KillWait=5
MailProg=/bin/true
{nodes}PartitionName=all Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        self._daemon(self.on_head("unshare", "--uts", "sh", "-c",
                                  f'hostname {HEAD}; exec slurmctld -D -i -f "{self.slurm_conf}"'),
                     sdir / "log" / "slurmctld.out")
        for node in self.nodes:
            self._daemon(self.on_node(node, "slurmd", "-D", "-N", node, "-f", self.slurm_conf),
                         sdir / "log" / f"slurmd-{node}.out")
        _wait(self._nodes_idle, 60, f"Slurm nodes did not become idle; see {sdir / 'log'}")

    def restart_slurmd(self, node: str) -> None:
        """After kill_node(): the node boots again and rejoins (ReturnToService=2)."""
        self._daemon(self.on_node(node, "slurmd", "-D", "-N", node, "-f", self.slurm_conf),
                     self.dir / "slurm" / "log" / f"slurmd-{node}.out")
        _wait(self._nodes_idle, 90, f"{node} did not come back to Slurm")

    def _nodes_idle(self) -> bool:
        res = self.run(self.on_head("sinfo", "-h", "-N", "-o", "%N %T"), timeout=10)
        states = dict(line.split() for line in res.stdout.splitlines() if line.strip())
        return all(states.get(n) == "idle" for n in self.nodes)

    def _daemon(self, cmd: list[str], log: Path) -> None:
        out = open(log, "ab")  # noqa: SIM115 - stays open as long as the daemon runs
        self.daemons.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                             env=self.env(), start_new_session=True))

    # ------------------------------------------------------------------------------ teardown
    def down(self, quiet: bool = False) -> None:
        """Kill everything in the cluster's namespaces, remove them; nothing is left running."""
        for p in self.daemons:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        existing = _sh("ip", "netns", "list", check=False).stdout.split()
        for name in [*self.nodes, HEAD]:
            if ns(name) in existing:
                for pid in self.pids(name):
                    _kill(pid)
                _sh("ip", "netns", "del", ns(name), check=False)
        munge_pid = self.dir / "munge" / "munged.pid"
        if munge_pid.exists():
            with contextlib.suppress(ValueError):
                _kill(int(munge_pid.read_text().strip()))
        for p in self.daemons:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        self.daemons.clear()

    def leftovers(self) -> list[str]:
        """Namespaces or daemons of this cluster still present (must be none after down())."""
        names = set(_sh("ip", "netns", "list", check=False).stdout.split())
        left = [f"netns {ns(n)}" for n in [HEAD, *self.nodes] if ns(n) in names]
        ps = _sh("ps", "-eo", "pid,args", check=False).stdout
        left += [ln.strip() for ln in ps.splitlines()
                 if str(self.dir) in ln and any(d in ln for d in ("slurmd", "slurmctld", "munged"))]
        return left


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait(ok, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except (subprocess.SubprocessError, OSError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(message)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("up", "down"))
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=Path("build/cluster"))
    ap.add_argument("--rate", help="link cap, e.g. 1gbit")
    ap.add_argument("--slurm", action="store_true", help="also start munge, slurmctld and slurmd")
    a = ap.parse_args()
    cluster = Cluster(a.nodes, a.dir, a.rate, keep=(Path.cwd(),))
    if a.action == "down":
        cluster.down()
        shutil.rmtree(a.dir / "hosttmp", ignore_errors=True)
        return
    cluster.up()
    if a.slurm:
        cluster.start_slurm()
        print(f"export SLURM_CONF={cluster.slurm_conf}  "
              f"# clients run inside: nsenter --net=/run/netns/{ns(HEAD)}")
    print(f"cluster up: {', '.join(cluster.nodes)} on {NET}.0/24; mpirun in {ns(HEAD)} with",
          " ".join(f"{k}={v}" for k, v in cluster.mpi_env().items()))


if __name__ == "__main__":
    main()
