"""Where images may come from (sync.addresses): never link-local or metadata addresses, IPv6 included; private ones
only for Label Studio's host and the allowed hosts. Names resolve through a stub and the client's transport records
every request instead of sending it: nothing here connects anywhere, and a refusal is shown to come before any
connection."""

from __future__ import annotations

import io
import socket

import httpx
import pytest
from PIL import Image

from pipeline import SettingsError
from sync import BackendSettings
from sync.addresses import AddressPolicy
from sync.client import LabelStudioClient
from sync.errors import DownloadError, LabelStudioError

# test names -> the address a DNS server could answer for them
NAMES = {
    "metadata6.test": "fd00:ec2::254",
    "linklocal6.test": "fe80::1",
    "mapped.test": "::ffff:169.254.169.254",
    "nat64.test": "64:ff9b::a9fe:a9fe",
    "sixtofour.test": "2002:a9fe:a9fe::1",
    "alibaba.test": "100.100.100.200",
    "minio.test": "10.20.0.5",
    "ula.test": "fd12:3456::7",
    "cgnat.test": "100.64.1.2",
    "labelstudio.test": "192.168.1.10",
    "public.test": "93.184.215.14",
    "loop.test": "127.0.0.1",
}


@pytest.fixture
def resolver(monkeypatch):
    """``socket.getaddrinfo`` answering NAMES (and literal addresses) without any network; names it was asked."""
    asked = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        address = NAMES.get(host, host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port or 0, 0, 0) if family == socket.AF_INET6 else (address, port or 0)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def recording(client: LabelStudioClient) -> list[str]:
    """Replace the client's transport by one that records each request and answers a PNG: no socket is opened."""
    sent = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, content=png(), headers={"content-type": "image/png"})

    client._http = httpx.Client(transport=httpx.MockTransport(handle), follow_redirects=False)
    return sent


@pytest.mark.parametrize(
    "url,why",
    [
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://metadata6.test/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://[fe80::1]/x.png", "fe80::1 is a link-local address"),
        ("http://linklocal6.test/x.png", "fe80::1 is a link-local address"),
        ("http://mapped.test/x.png", "169.254.169.254 is a link-local address"),
        ("http://nat64.test/x.png", "169.254.169.254 is a link-local address"),
        ("http://sixtofour.test/x.png", "169.254.169.254 is a link-local address"),
        ("http://alibaba.test/x.png", "100.100.100.200 is a cloud metadata address"),
        ("http://minio.test/bucket/x.png", "minio.test resolves to the private address 10.20.0.5"),
        ("http://ula.test/x.png", "ula.test resolves to the private address fd12:3456::7"),
        ("http://cgnat.test/x.png", "cgnat.test resolves to the private address 100.64.1.2"),
    ],
)
def test_refused_addresses_are_refused_after_resolving_and_before_connecting(resolver, url, why):
    client = LabelStudioClient.for_public_images()
    sent = recording(client)
    with pytest.raises(DownloadError, match="refused, " + why.replace(".", r"\.")):
        client.download(url)
    assert sent == [] and resolver  # resolved, judged, and nothing sent


def test_public_loopback_and_allowed_private_hosts_are_fetched(resolver):
    client = LabelStudioClient.for_public_images(addresses=AddressPolicy.parse("minio.test, fd12:3456::/32"))
    sent = recording(client)
    for url in ("http://public.test/a.png", "http://loop.test/b.png", "http://minio.test/c.png", "http://ula.test/d"):
        assert client.download(url) == png()
    assert len(sent) == 4
    with pytest.raises(DownloadError, match="private address 100.64.1.2"):  # allowed hosts are those listed only
        client.download("http://cgnat.test/x.png")
    with pytest.raises(DownloadError, match="metadata"):  # no list makes a metadata address fetchable
        LabelStudioClient.for_public_images(addresses=AddressPolicy.parse("fd00::/8")).download(
            "http://metadata6.test/"
        )


def test_the_label_studio_host_may_be_private_but_never_link_local(resolver):
    client = LabelStudioClient("http://labelstudio.test:8080", "0" * 40)
    sent = recording(client)
    assert client.download("/data/upload/1/x.png") == png()  # Label Studio's own host on a private network
    assert client.download("http://labelstudio.test:9000/bucket/x.png") == png()  # a store on the same host
    with pytest.raises(DownloadError, match="private address 10.20.0.5"):
        client.download("http://minio.test/bucket/x.png")
    assert sent == ["http://labelstudio.test:8080/data/upload/1/x.png", "http://labelstudio.test:9000/bucket/x.png"]
    with pytest.raises(LabelStudioError, match="fd00:ec2::254 is a cloud metadata address"):
        LabelStudioClient("http://metadata6.test", "0" * 40)


def test_allowed_hosts_come_from_the_environment():
    settings = BackendSettings.from_env({"GROUNDLABEL_ALLOWED_HOSTS": "MinIO.internal, 10.20.0.0/16"})
    assert settings.addresses == AddressPolicy(("minio.internal", "10.20.0.0/16"))
    with pytest.raises(SettingsError, match="GROUNDLABEL_ALLOWED_HOSTS"):
        BackendSettings.from_env({"GROUNDLABEL_ALLOWED_HOSTS": "10.0.0.0/99"})
