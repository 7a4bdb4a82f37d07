"""Connection details of the XenAPI session: where HOST_IS_SLAVE leads, TLS policy, backoff."""

import ssl

import pytest

from rollup.drivers import Connection
from rollup.drivers.xenapi.session import Timing, tls_context, with_address
from rollup.errors import BadInput


@pytest.mark.parametrize(
    ("url", "address", "expected"),
    [
        ("http://10.0.0.2", "10.0.0.1", "http://10.0.0.1/"),
        ("https://h2.example:8443/", "10.0.0.1", "https://10.0.0.1:8443/"),
        ("https://[fd00::2]:443/", "fd00::1", "https://[fd00::1]:443/"),
    ],
)
def test_host_is_slave_keeps_scheme_and_port(url, address, expected):
    assert with_address(url, address) == expected


def test_tls_is_verified_by_default():
    context = tls_context(Connection("https://pool", "root", "pw"))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_tls_verification_is_off_only_when_asked():
    context = tls_context(Connection("https://pool", "root", "pw", verify_tls=False))
    assert context.verify_mode == ssl.CERT_NONE


def test_unreadable_ca_file_is_bad_input_naming_it(tmp_path):
    missing = tmp_path / "nope.pem"
    with pytest.raises(BadInput, match=r"rollup_ca_file .*nope.pem cannot be used \(No such file"):
        tls_context(Connection("https://pool", "root", "pw", ca_file=str(missing)))


def test_backoff_doubles_up_to_its_cap():
    delays = Timing(backoff_start=0.5, backoff_cap=5.0).backoff()
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_connection_repr_hides_the_password():
    assert "hunter2" not in repr(Connection("https://pool", "root", "hunter2"))
