"""The lab cluster's CA and its nodes' certificate, as `pvecm` lays them out.

A real cluster has its own CA (/etc/pve/pve-root-ca.pem) that signs each node's
certificate (pve-ssl.pem): a client that trusts the CA verifies every node. The lab
makes both at start, one certificate naming every node's address.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from rollup.lab.host_files import write_atomically

CA_FILE = "pve-root-ca.pem"
CERT_FILE = "pve-ssl.pem"
KEY_FILE = "pve-ssl.key"


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what clients trust (rollup_ca_file)
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificates(directory: Path, cluster: str, addresses: list[str]) -> Certificates:
    """A fresh CA and one node certificate for `addresses`, written into `directory`."""
    # Imported here: only a Proxmox lab needs it (it comes with paramiko).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Proxmox Virtual Environment"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"rollup lab {cluster}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PVE Cluster Manager CA"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cluster)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    found = Certificates(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)
    pem = serialization.Encoding.PEM
    write_atomically(found.ca, ca.public_bytes(pem).decode(), 0o644)
    write_atomically(found.cert, cert.public_bytes(pem).decode(), 0o644)
    key_text = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    write_atomically(found.key, key_text, 0o600)
    return found
