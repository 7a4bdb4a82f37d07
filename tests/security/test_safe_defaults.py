"""Safe by default: TLS is verified, host keys are checked, the state directory is private,
and names that come from a pool are data, never shell code."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import re
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rollup.config import inventory as inventories
from rollup.errors import RemoteError
from rollup.remote import RemoteHost, ansible, ssh
from tests.installed import ROLLUP
from tests.rollout.conftest import Lab, env
from tests.security.labs import start_lab


def inventory_data(lab: Lab) -> dict[str, Any]:
    return yaml.safe_load(lab.inventory.read_text())


def group(data: dict[str, Any]) -> dict[str, Any]:
    return next(iter(data["all"]["children"].values()))


def rollup(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROLLUP, *args, "--state-dir", str(lab.state)],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        env=env(),
    )


# -- TLS ------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rollup test pool")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "pool.crt", directory / "pool.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsFront:
    """HTTPS on 127.0.0.1 in front of the lab's plain-HTTP XenAPI: bytes pumped both ways."""

    def __init__(self, backend: tuple[str, int], cert: Path, key: Path) -> None:
        self.backend = backend
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes_failed = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            secure = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1
            client.close()
            return
        backend = socket.create_connection(self.backend)
        threading.Thread(target=self._pump, args=(backend, secure), daemon=True).start()
        self._pump(secure, backend)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, TlsFront, Path]]:
    directory = tmp_path_factory.mktemp("tls")
    lab = start_lab(directory)
    cert, key = self_signed(directory)
    master = re.match(r"http://([\d.]+):(\d+)", lab.running.url)
    assert master is not None
    front = TlsFront((master[1], int(master[2])), cert, key)
    try:
        yield lab, front, cert
    finally:
        front.close()
        lab.running.stop()


def https_inventory(lab: Lab, front: TlsFront, name: str, **extra: Any) -> Path:
    data = inventory_data(lab)
    group(data)["vars"]["rollup_api_url"] = f"https://127.0.0.1:{front.port}"
    group(data)["vars"].update(extra)
    path = lab.dir.parent / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_untrusted_certificate_is_refused_in_one_line(tls_lab):
    lab, front, _ = tls_lab
    before = lab.snapshot()
    failed = front.handshakes_failed
    done = rollup(lab, "run", str(https_inventory(lab, front, "https.yml")), "--yes", "--no-tui")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "TLS certificate not trusted" in lines[0] and "set rollup_ca_file" in lines[0]
    assert lab.running.password not in done.stderr
    assert front.handshakes_failed > failed  # refused at the handshake: no password sent
    assert lab.snapshot() == before


def test_the_pool_ca_file_makes_the_certificate_trusted(tls_lab):
    lab, front, cert = tls_lab
    inventory = https_inventory(lab, front, "https-ca.yml", rollup_ca_file=str(cert))
    done = rollup(lab, "plan", str(inventory), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert '"feasible": true' in done.stdout


def test_turning_verification_off_works_but_says_so_loudly(tls_lab):
    lab, front, _ = tls_lab
    inventory = https_inventory(lab, front, "https-off.yml", rollup_verify_tls=False)
    done = rollup(lab, "plan", str(inventory), "--format", "json")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, done.stderr
    assert "TLS verification is off" in warnings[0]
    assert "rollup_verify_tls: false" in warnings[0] and "rollup_ca_file" in warnings[0]


def test_a_xenserver_pools_updates_are_read_over_https_with_its_ca(tmp_path: Path):
    lab = start_lab(tmp_path, flavor="xenserver", release=None, update="xapi")
    cert, key = self_signed(tmp_path)
    master = re.match(r"http://([\d.]+):(\d+)", lab.running.url)
    assert master is not None
    front = TlsFront((master[1], int(master[2])), cert, key)
    try:
        inventory = https_inventory(lab, front, "https-xs.yml", rollup_ca_file=str(cert))
        done = rollup(lab, "plan", str(inventory), "--format", "json")
        assert done.returncode == 0, done.stderr
        plan = json.loads(done.stdout)
        assert plan["pool"]["flavor"] == "xenserver" and len(plan["pool"]["updates_hash"]) == 64
        pending = {h["name"]: h["pending_updates"] for h in plan["pool"]["hosts"]}
        assert pending["h1"] and pending["h3"] == []
        assert lab.running.password not in done.stdout + done.stderr
    finally:
        front.close()
        lab.running.stop()


# -- host keys ------------------------------------------------------------------------------


def test_a_real_pool_checks_host_keys_in_rollup_and_in_ansible(tmp_path: Path):
    path = tmp_path / "pool.yml"
    path.write_text(
        "xcp:\n"
        "  vars: {rollup_driver: xenapi, rollup_api_url: 'https://xcp.example.org',"
        " rollup_api_password: pw}\n"
        "  hosts:\n"
        "    xcp1: {ansible_host: 192.0.2.1}\n"
        "    xcp2: {ansible_host: 192.0.2.2, ansible_ssh_common_args: '-o ServerAliveInterval=5'}\n"
    )
    pool = inventories.select_pool(inventories.load(str(path), environ={}), None)
    for host in pool.hosts:
        assert host.remote.check_host_keys is True
        environment = ansible.environment(host.remote, tmp_path)
        assert environment["ANSIBLE_HOST_KEY_CHECKING"] == "True"
        host_vars = ansible.inventory(host.remote)["all"]["hosts"][host.name]
        assert "StrictHostKeyChecking=no" not in str(host_vars)
    assert pool.connection is not None and pool.connection.verify_tls is True


def test_an_unknown_host_key_is_refused_and_a_known_one_accepted(lab: Lab, tmp_path: Path):
    machine = lab.running.machines["h1"]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    checked = RemoteHost(
        name="h1",
        address=machine.address or "",
        port=machine.port,
        user=machine.user,
        key_file=str(machine.key),
        check_host_keys=True,
        known_hosts=str(known_hosts),
    )
    with pytest.raises(RemoteError) as raised:
        ssh.connect(checked)
    assert "unknown host key" in raised.value.message and "ssh-keyscan" in raised.value.message
    public = (machine.dir / "ssh_host_ed25519_key.pub").read_text().split()
    key_name = f"[{machine.address}]:{machine.port}" if machine.port != 22 else machine.address
    known_hosts.write_text(f"{key_name} {public[0]} {public[1]}\n")
    assert ssh.run(checked, ["true"]).ok


# -- the state directory --------------------------------------------------------------------


def assert_private(state: Path) -> None:
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    seen = []
    for path in state.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        seen.append(path.relative_to(state))
        if path.is_dir():
            assert mode == 0o700, f"{path} is {mode:o}"
        else:
            assert mode == 0o600, f"{path} is {mode:o}"
    assert Path("journal.sqlite") in seen
    assert any(path.suffix == ".log" and path.parts[0] == "runs" for path in seen), seen


# -- names from the pool are data -----------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Any, Path]]:
    """A full run on a pool whose host and VM names are shell and Jinja code that would
    create files in `canaries` if anything ran them."""
    directory = tmp_path_factory.mktemp("hostile")
    canaries = directory / "canaries"
    canaries.mkdir()
    lab = start_lab(directory)
    names = [
        f"$(touch {canaries}/dollar)",
        f"`touch {canaries}/backtick`",
        f"x; touch {canaries}/semicolon #",
        f"x' && touch {canaries}/quote && echo '",
        f"{{{{ lookup('pipe', 'touch {canaries}/jinja') }}}}",
        f'x" | touch {canaries}/pipe "',
    ]
    pool = lab.running.pool
    with pool.lock:
        hosts = sorted(pool.hosts.values(), key=lambda host: host.name)
        for host, name in zip(hosts[1:], (names[0], names[4]), strict=True):
            host.name = "h-" + name
        vms = [vm for vm in pool.vms.values() if not vm.is_control_domain and vm.resident_on]
        for vm, name in zip(vms, names, strict=False):
            vm.name = name
    # A hook that uses the pool host's name as Ansible gets it (extra var rollup_host_name).
    hook = directory / "hook.yml"
    hook.write_text(
        "- hosts: all\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - ansible.builtin.debug:\n"
        '        msg: "upgrading {{ rollup_host_name }}"\n'
    )
    data = inventory_data(lab)
    group(data)["vars"]["rollup_pre_host_playbook"] = str(hook)
    inventory = directory / "hostile.yml"
    inventory.write_text(yaml.safe_dump(data))
    before = lab.snapshot()
    done = rollup(lab, "run", str(inventory), "--yes", "--no-tui", "--json")
    try:
        yield lab, (before, done), canaries
    finally:
        lab.running.stop()


def test_host_and_vm_names_with_shell_and_jinja_code_never_run(hostile_run):
    lab, (before, done), canaries = hostile_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(canaries.iterdir()) == []
    after = lab.snapshot()
    assert {host.name for host in after.hosts} == {host.name for host in before.hosts}
    assert all(host.version == "8.3.0" for host in after.hosts)
    assert "$(touch" in done.stderr  # the names were there, shown as they are
    # The hook printed the name as data, braces and all.
    outputs = "".join(path.read_text() for path in (lab.state / "runs").rglob("*.log"))
    assert "upgrading h-$(touch" in outputs
    assert "upgrading h-{{ lookup('pipe', 'touch" in outputs


def test_the_state_directory_is_private_after_a_run(hostile_run):
    lab, (_, done), _ = hostile_run
    assert done.returncode == 0
    assert_private(lab.state)


def test_grep_the_code_no_shell_built_from_strings():
    """Processes start from argv lists; the one `sh -c` runs a line built by shlex.join."""
    root = Path(__file__).resolve().parents[2] / "rollup"
    offenders = []
    pattern = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|subprocess\.getoutput")
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []
