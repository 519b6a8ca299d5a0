"""Flower's Deployment Engine on loopback: a real SuperLink and SuperNodes, through the launcher."""

import csv
import io
import json
import math
import subprocess
import sys

import pytest

from fednas.captures import CaptureStore
from simulations.__main__ import main
from simulations.deployment import CONNECTION, connection_toml, launch_deployment
from simulations.processes import still_running
from tests.scales import TINY_INVERSE, as_sets


def test_the_superlinks_keep_their_state_in_flowers_in_memory_store():
    # on disk (SQLite, 5 s lock timeout) a busy machine fails runs with "database is locked"
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME

    from simulations.launcher import IN_MEMORY_STATE

    assert IN_MEMORY_STATE == FLWR_IN_MEMORY_DB_NAME


def test_the_connection_is_what_flwr_itself_reads(tmp_path, monkeypatch):
    from flwr.cli.flower_config import read_superlink_connection

    (tmp_path / "config.toml").write_text(connection_toml(CONNECTION, "127.0.0.1:9123"))
    monkeypatch.setenv("FLWR_HOME", str(tmp_path))
    conn = read_superlink_connection(CONNECTION)
    assert conn.address == "127.0.0.1:9123" and conn.insecure is True and conn.options is None
    assert read_superlink_connection(None).name == CONNECTION  # also the default connection


@pytest.mark.parametrize("argv, words", [
    (["--gpus-per-client", "0.5"], ["--gpus-per-client", "no Ray"]),
    (["--ray-address", "127.0.0.1:6379"], ["--ray-address", "no Ray"]),
])
def test_ray_options_are_refused_with_deployment(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--deployment", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words)


def test_a_deployment_cannot_be_asked_to_write_truth(capsys):
    assert main(["run", "--deployment", "--clients", "2", "--set", "write-truth=true"]) == 2
    assert "'write-truth'" in capsys.readouterr().err


HOGS = 3  # busy-looping processes beside the run: more runnable processes than this machine has cores
HOG_SECONDS = 900  # each ends by itself after this, whatever happens to the test


@pytest.fixture(scope="module")
def cpu_hogs():
    """``HOGS`` processes spinning on the CPU for the run's duration (a user's other work beside
    a run), each bounded in time and stopped by its pid at the end."""
    spin = f"import time\nend = time.monotonic() + {HOG_SECONDS}\nwhile time.monotonic() < end:\n    pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.DEVNULL) for _ in range(HOGS)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, cpu_hogs):
    """One eavesdropped run on a real SuperLink and two SuperNodes beside the CPU hogs, with every
    DP mod on (DP-SGD, the update mechanism, Flower's server-side wrapper): each test below reads
    its run directory. The hogs' states are taken as the run ends."""
    out = tmp_path_factory.mktemp("deployment")
    result = launch_deployment(None, [
        "num-server-rounds=2", "dag-nodes=3", "channels=4", "max-samples=300", "head=flatten", "local-steps=1",
        "alpha-batch-size=1", "fraction-evaluate=0.0", "min-evaluate-clients=0", "eavesdrop=true",
        "attack-online=true", "attack-workers=0", "adra-iterations=2", "adra-restarts=1",
        "attack-identifiability=false", "dp-sgd=true", "dp-update=true", "dp-server=true",
        "dp-server-noise-multiplier=0.1", "central-eval=true", f"output-dir={out}", "run-name=deploy",
        # every message starts a ClientApp process on the SuperNode (~30 s on 2 busy cores): no
        # statistics query per round here (the Ray runs and tests/server cover "pooled")
        "bn-statistics=client", *as_sets(TINY_INVERSE)],
        clients=2, timeout=600)
    return result, out, [hog.poll() is None for hog in cpu_hogs]


@pytest.mark.slow
def test_a_real_superlink_and_two_supernodes_run_two_eavesdropped_rounds_beside_cpu_hogs(deployed):
    result, out, hogs_busy = deployed
    assert all(hogs_busy)  # they were busy for the whole run
    assert result.returncode == 0 and result.status == "finished:completed", result.status
    run = result.run_dir
    assert run.parent == out
    for name in ("config.json", "rounds.csv", "genotype.json", "summary.json", "model.npz"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds-completed"] == 2
    config = json.loads((run / "config.json").read_text())
    assert config["federation"]["supernodes"] == 2 and config["config"]["write-truth"] is False
    # the eavesdropper captured both clients in both rounds; nothing told it which samples they used
    ids = CaptureStore(run).ids()
    assert len(ids) == 4 and not (run / "truth").exists()
    with open(run / "leakage" / "clients.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["capture"] for r in rows} == set(ids) and all(r["status"] == "unscored" for r in rows)
    assert summary["leakage"]["scored"] is False and summary["leakage"]["unscored"] == 4
    assert "**Unscored**" in (run / "leakage" / "report.md").read_text()
    # the DP-SGD mod ran on each SuperNode and its ledger lived across rounds in the node's state
    store = CaptureStore(run)
    eps = {(m["round"], m["partition-id"]): m["metrics"]["dp-epsilon"] for m in map(store.meta, ids)}
    assert all(0 < eps[(1, p)] < eps[(2, p)] for p in (0, 1))
    assert summary["dp"]["epsilon"] == pytest.approx(max(eps.values()))
    # every process it started, and theirs, is gone; and it saw them: the SuperLink, 2 SuperNodes,
    # their SuperExecs and the ServerApp at least
    assert len(result.processes) >= 6
    assert still_running(result.processes) == []


@pytest.mark.slow
def test_a_run_with_the_mods_on_reports_epsilon(deployed):
    """ε of both client mechanisms, by both accountants, in summary.json and each round's row
    (the mods themselves around the real ClientApp functions: tests/clients/test_dp_mods.py)."""
    result, _, _ = deployed
    assert result.returncode == 0, result.status
    run_dir = result.run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    dp = summary["dp"]
    assert dp["delta"] == 1e-5 and set(dp["mechanisms"]) == {"dp-sgd", "dp-update"}
    assert dp["secure-rng"] is False and "removable by anyone who knows the seed" in dp["noise"]
    assert 0 < dp["epsilon"] < math.inf and len(dp["epsilon-by-client"]) == 2
    # both accountants side by side, for the reply and per mechanism; PRV is the tighter
    assert dp["epsilon-by-accountant"]["rdp"] == dp["epsilon"]
    for eps in (dp["epsilon-by-accountant"], dp["mechanisms"]["dp-sgd"]["epsilon-by-accountant"]):
        assert 0 < eps["prv"] < eps["rdp"] < math.inf
    assert set(dp["mechanisms"]["dp-update"]["epsilon-by-accountant"]) == {"rdp", "prv"}
    rows = (run_dir / "rounds.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(",")))
    assert float(last["dp-epsilon-max"]) == pytest.approx(dp["epsilon"], rel=1e-5)
    assert float(last["dp-epsilon-prv-max"]) == pytest.approx(dp["epsilon-by-accountant"]["prv"], rel=1e-5)
    first = dict(zip(header, rows[1].split(",")))
    assert float(first["dp-epsilon-max"]) < float(last["dp-epsilon-max"])  # ε accumulates


def _tls_files(folder, nodes):
    """A CA, the SuperLink's certificate for 127.0.0.1 signed by it, and one P-384 key pair a SuperNode:
    the files Flower's TLS and SuperNode-authentication guides have you make with openssl and ssh-keygen."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def write_key(key, path, fmt=serialization.PrivateFormat.TraditionalOpenSSL):
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fednas test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    write_key(server_key, folder / "server.key")
    keys = []
    for name in nodes:
        key = ec.generate_private_key(ec.SECP384R1())
        write_key(key, folder / name, serialization.PrivateFormat.OpenSSH)  # as ssh-keygen -t ecdsa -b 384
        (folder / f"{name}.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                           serialization.PublicFormat.OpenSSH))
        keys.append(folder / name)
    return folder / "ca.crt", folder / "server.pem", folder / "server.key", tuple(keys)


@pytest.mark.slow
def test_tls_and_supernode_authentication_admit_registered_nodes_only_and_failed_runs_are_reported(tmp_path):
    from simulations.deployment import LocalDeployment, Security
    from simulations.launcher import PROJECT_ROOT, reserve_run_dir

    ca, cert, key, (node0, node1, rogue) = _tls_files(tmp_path, ["node0", "node1", "rogue"])
    deployment = LocalDeployment(PROJECT_ROOT, 2, security=Security(ca, cert, key, (node0, node1)))
    with deployment:
        assert deployment.online_nodes() == 2  # registered keys, over TLS
        assert not list(deployment.dir.rglob("*.db"))  # the SuperLink's state is in memory
        outsider = deployment.start_supernode(0, ["--root-certificates", str(ca), "--auth-supernode-private-key",
                                                  str(rogue)], name="rogue", max_retries=1)
        assert outsider.proc.wait(timeout=120) != 0  # an unregistered key is refused
        assert "Failed to activate SuperNode" in outsider.log.read_text()
        assert deployment.online_nodes() == 2
        # a run over TLS whose ServerApp cannot create its run directory: it fails on the SuperLink's side,
        # and the status read back says so
        _, overrides = reserve_run_dir(PROJECT_ROOT, {"run-dir": "/proc/fednas-cannot-write-here", "max-samples": 200,
                                                      "num-server-rounds": 1, "write-truth": False})
        run_id, status, _ = deployment.run(overrides, stream=io.StringIO(), timeout=300)
        assert run_id is not None and status == "finished:failed"
    assert still_running(deployment.seen) == []
