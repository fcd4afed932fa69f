"""
TLS listeners whose certificates can be reloaded without closing the port.

Listeners are configured with Twisted's own C{ssl:} endpoint strings (C{ssl:8443:privateKey=…:
certKey=…[:extraCertChain=…][:dhParameters=…][:interface=…][:backlog=…]}). Twisted loads their
certificates once, so for these the daemon listens on the equivalent C{tcp:} endpoint and wraps the
site in TLS itself, with a connection creator whose material a reload replaces (L{ReloadableTLS.use}):
new connections use the new certificate, open ones keep theirs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.error import VerifyError
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.python.filepath import FilePath
from zope.interface import implementer

_TLS_KEYS = ("privateKey", "certKey", "extraCertChain", "dhParameters")


class TlsConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TlsMaterial:
    """
    A listener's loaded TLS files: the server context new connections use, and a digest of the
    bytes read, by which processes tell whether they loaded the same files.
    """

    context: SSL.Context
    digest: str


@dataclass(frozen=True)
class TlsFiles:
    private_key: Path
    cert: Path
    extra_chain: Path | None = None
    dh_parameters: Path | None = None
    #: when set, clients must present a certificate issued by one of these CAs (mutual TLS); Twisted's
    #: C{ssl:} endpoint strings have no such option
    client_ca: Path | None = None

    def load(self) -> TlsMaterial:
        """
        Read the files and build the server context from them (TLS 1.2 or later, as Twisted's
        C{ssl:} endpoints), so that everything that can be wrong with them fails here, as a
        L{TlsConfigError}, and not at the next connection.
        """
        digest = hashlib.sha256()

        def read(path: Path) -> bytes:
            data = path.read_bytes()
            digest.update(b"%d:%s" % (len(data), data))
            return data

        try:
            cert_pem = read(self.cert)
            key_pem = read(self.private_key)
            certificate = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
            # certKey may hold the full chain: the first block is the leaf, the rest go on the chain
            chain_pems = _pem_blocks(cert_pem)[1:]
            if self.extra_chain:
                chain_pems += _pem_blocks(read(self.extra_chain))
            chain = [ssl.Certificate.loadPEM(pem).original for pem in chain_pems]
            dh = None
            if self.dh_parameters:
                read(self.dh_parameters)  # OpenSSL reads the file itself when the context is built
                dh = ssl.DiffieHellmanParameters.fromFile(FilePath(str(self.dh_parameters)))
            client_cas = [ssl.Certificate.loadPEM(pem).original
                          for pem in _pem_blocks(read(self.client_ca))] if self.client_ca else []
            if self.client_ca and not client_cas:
                raise ValueError(f"no certificate in {self.client_ca}")
            options = ssl.CertificateOptions(privateKey=certificate.privateKey.original,
                                             certificate=certificate.original, extraCertChain=chain or None,
                                             dhParameters=dh, verify=bool(client_cas), caCerts=client_cas or None,
                                             requireCertificate=bool(client_cas))
            context = options.getContext()
        except (OSError, SSL.Error, crypto.Error, ValueError, VerifyError) as e:
            raise TlsConfigError(f"cannot load TLS certificate {self.cert} / key {self.private_key}: {e}") from e
        return TlsMaterial(context, digest.hexdigest())


def _pem_blocks(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [block + marker for block in data.split(marker) if b"-----BEGIN CERTIFICATE-----" in block]


def split_tls_endpoint(description: str) -> tuple[str, TlsFiles] | None:
    """
    For an C{ssl:} endpoint string, the C{tcp:} string to listen on and the TLS files; C{None} for
    any other endpoint.
    """
    parts = _split(description)
    if parts[0] != "ssl":
        return None
    files: dict[str, str] = {}
    tcp = ["tcp"]
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if sep and name in _TLS_KEYS:
            files[name] = value
        else:
            tcp.append(part.replace("\\", "\\\\").replace(":", "\\:"))
    if "privateKey" not in files:
        raise TlsConfigError(f"{description!r}: an ssl: endpoint needs privateKey=")
    return ":".join(tcp), TlsFiles(
        Path(files["privateKey"]), Path(files.get("certKey", files["privateKey"])),
        Path(files["extraCertChain"]) if "extraCertChain" in files else None,
        Path(files["dhParameters"]) if "dhParameters" in files else None)


def _split(description: str) -> list[str]:
    """
    Split an endpoint string on colons that are not backslash-escaped, unescaping as Twisted does.
    """
    parts, current, escaped = [], "", False
    for char in description:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """
    A listener's TLS: C{files} loaded at start, their L{material} replaced by a reload.
    """

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.material = files.load()

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:
        return SSL.Connection(self.material.context, None)

    def use(self, material: TlsMaterial) -> None:
        """
        Serve new connections with C{material} (loaded by L{TlsFiles.load}); open ones keep theirs.
        """
        self.material = material
