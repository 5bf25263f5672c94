"""gRPC over TLS (--grpc-use-ssl) and mutual TLS (--grpc-use-ssl-mutual),
through tritonclient's own TLS options, with certificates made here for
127.0.0.1; and the start refusing missing or unusable files."""

import datetime
import ipaddress

import pytest
import tritonclient.grpc as grpcclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tritonclient.utils import InferenceServerException

from model_requests import assert_simple_works
from server_process import EXAMPLE_MODELS


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject, key, issuer=None, issuer_key=None, authority=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=authority, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(directory, name, certificate=None, key=None):
    path = directory / name
    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """An authority, a server certificate it signed for 127.0.0.1, a client
    certificate it signed, and a client certificate of another authority."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key, stranger_key = _key(), _key(), _key(), _key()
    ca = _certificate("test authority", ca_key, authority=True)
    stranger_ca_key = _key()
    stranger_ca = _certificate("other authority", stranger_ca_key, authority=True)
    files = {
        "ca": _write(directory, "ca.pem", ca),
        "server_cert": _write(directory, "server.pem", _certificate("server", server_key, ca, ca_key, server=True)),
        "server_key": _write(directory, "server.key", key=server_key),
        "client_cert": _write(directory, "client.pem", _certificate("client", client_key, ca, ca_key)),
        "client_key": _write(directory, "client.key", key=client_key),
        "stranger_cert": _write(
            directory, "stranger.pem", _certificate("stranger", stranger_key, stranger_ca, stranger_ca_key)
        ),
        "stranger_key": _write(directory, "stranger.key", key=stranger_key),
    }
    return {name: str(path) for name, path in files.items()}


def tls_flags(pki, mutual=False):
    flags = [f"--grpc-server-cert={pki['server_cert']}", f"--grpc-server-key={pki['server_key']}"]
    if mutual:
        return flags + ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={pki['ca']}"]
    return flags + ["--grpc-use-ssl=true"]


def refused(client):
    with pytest.raises(InferenceServerException):
        client.is_server_live(client_timeout=5)


def test_tls(launch_server, pki):
    server = launch_server(EXAMPLE_MODELS, extra=tls_flags(pki), wait="loaded")
    assert server.wait_for_line(r"gRPC over TLS")
    with grpcclient.InferenceServerClient(server.grpc_url, ssl=True, root_certificates=pki["ca"]) as client:
        assert_simple_works(client)
    # A client speaking plain HTTP/2 gets nothing.
    with grpcclient.InferenceServerClient(server.grpc_url) as plain:
        refused(plain)
    with server.client("http") as client:
        assert_simple_works(client)


def test_mutual_tls_needs_a_client_certificate_of_the_authority(launch_server, pki):
    server = launch_server(EXAMPLE_MODELS, extra=tls_flags(pki, mutual=True), wait="loaded")
    url = server.grpc_url
    signed = {"private_key": pki["client_key"], "certificate_chain": pki["client_cert"]}
    with grpcclient.InferenceServerClient(url, ssl=True, root_certificates=pki["ca"], **signed) as client:
        assert_simple_works(client)
    with grpcclient.InferenceServerClient(url, ssl=True, root_certificates=pki["ca"]) as anonymous:
        refused(anonymous)
    stranger = {"private_key": pki["stranger_key"], "certificate_chain": pki["stranger_cert"]}
    with grpcclient.InferenceServerClient(url, ssl=True, root_certificates=pki["ca"], **stranger) as client:
        refused(client)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no key", "gRPC over TLS needs --grpc-server-key=PATH"),
        ("no root", "gRPC over TLS needs --grpc-root-cert=PATH"),
        ("not a certificate", "the gRPC TLS certificate, key or root certificate is not usable"),
    ],
)
def test_missing_or_unusable_files_stop_the_start(launch_server, pki, tmp_path, case, message):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    flags = {
        "no key": ["--grpc-use-ssl=true", f"--grpc-server-cert={pki['server_cert']}"],
        "no root": tls_flags(pki)[:2] + ["--grpc-use-ssl-mutual=true"],
        "not a certificate": tls_flags(pki)[1:] + [f"--grpc-server-cert={garbage}"],
    }[case]
    server = launch_server(EXAMPLE_MODELS, extra=flags, wait="nothing")
    assert server.wait_exit(timeout=30) != 0
    assert message in server.log
