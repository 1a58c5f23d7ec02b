"""The webhook client over TLS, in this process: it connects to the address the guard vetted while
the Host header, SNI and certificate verification stay those of the URL's host name."""

import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from observers_app.webhooks import attempts, client
from tests.receivers import Reply, running_receiver

# tests/settings.py pins allowed.test to 127.0.0.1 (OBSERVERS_WEBHOOK_RESOLVE) and lets 127.0.0.1 through.
NAME = "allowed.test"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for allowed.test (its own trust anchor) and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={NAME}",
         "-addext", f"subjectAltName=DNS:{NAME}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def trusting_client(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's webhook client, trusting only the test certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    client._close_client()
    yield
    client._close_client()


def test_tls_uses_the_host_name_while_connecting_to_the_vetted_address(certificate, trusting_client):
    server_names: list[str | None] = []
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*certificate)
    tls.sni_callback = lambda sock, name, context: server_names.append(name)
    with running_receiver(tls=tls) as receiver:
        port = receiver.server.server_address[1]
        reply = client.post(f"https://{NAME}:{port}/hook", b"{}", {})
        assert reply.status == 200
        assert receiver.requests[0].headers["Host"] == f"{NAME}:{port}"
        assert server_names == [NAME]
        # The same server by its address: the certificate does not name it, so no connection.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.post(f"https://127.0.0.1:{port}/hook", b"{}", {})


def test_redirects_are_followed_by_hand_a_bounded_number_of_times():
    with running_receiver() as receiver:
        receiver.default = Reply(302, {"Location": "/again"})
        with pytest.raises(client.TooManyRedirects, match="OBSERVERS_WEBHOOK_MAX_REDIRECTS=3"):
            client.post(receiver.url, b"{}", {"webhook-id": "msg_1"})
        assert len(receiver.requests) == 4  # the POST and 3 redirects, each re-POSTed
        assert all(r.body == b"{}" and r.headers["webhook-id"] == "msg_1" for r in receiver.requests)
        assert [r.path for r in receiver.requests] == ["/hook", "/again", "/again", "/again"]


def test_a_reply_the_hub_cannot_read_fails_its_attempt_without_raising():
    """What a receiver answers never raises out of an attempt: a redirect to a host name no resolver
    takes (an empty label) is the attempt's failure, not retried; a body holding NUL is stored with it
    escaped."""
    with running_receiver() as receiver:
        receiver.script = [Reply(302, {"Location": "http://a..b/"}), Reply(500, body=b"broken \x00 reply")]
        unusable = attempts.send(receiver.url, b"{}", {})
        failed = attempts.send(receiver.url, b"{}", {})
    # Python 3.13 names the subclass (UnicodeEncodeError), 3.11 and 3.12 the base class
    assert not unusable.retryable and re.match(r"unusable reply: Unicode(Encode)?Error", unusable.error)
    assert failed.retryable and failed.status_code == 500
    assert "\x00" not in failed.error and "broken \\x00 reply" in failed.error
