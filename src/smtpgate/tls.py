"""TLS contexts from options: PEM in memory or on disk, the development certificate, SNI,
client certificates and rotation."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .session import TLSInfo

__all__ = ["TLSOptions", "TLSContexts", "read_pem", "tls_info", "generate_certificate"]

logger = logging.getLogger("smtpgate")

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
TLS_OPTION_NAMES = (
    "key",
    "cert",
    "passphrase",
    "ca",
    "request_cert",
    "reject_unauthorized",
    "min_version",
    "max_version",
)


@dataclass
class TLSOptions:
    """The options that make one certificate's context."""

    key: Any = None
    cert: Any = None
    passphrase: str | bytes | None = None
    ca: Any = None
    request_cert: bool = False
    reject_unauthorized: bool = True
    min_version: str = "TLSv1.2"
    max_version: str | None = None


def read_pem(value: Any, what: str) -> bytes:
    """PEM from ``bytes``/``str`` text, or from a file when given a path.

    A ``str`` is PEM text when it contains ``-----BEGIN``; anything else is a path.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if b"-----BEGIN" not in data:
            raise ValueError(f"TLS {what}: bytes do not contain a PEM block")
        return data
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode("ascii")
    if isinstance(value, (str, os.PathLike)):
        try:
            with open(value, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise ValueError(f"TLS {what}: cannot read {os.fspath(value)!r}: {error.strerror}") from None
        if b"-----BEGIN" not in data:
            raise ValueError(f"TLS {what}: {os.fspath(value)!r} does not contain a PEM block")
        return data
    raise TypeError(f"TLS {what} must be PEM text, bytes or a path, got {type(value).__name__}")


def _load_chain(context: ssl.SSLContext, cert: bytes, key: bytes, passphrase: str | bytes | None = None) -> None:
    """``load_cert_chain`` from memory: an anonymous in-memory file where the OS has one,
    else a private temporary file (mode 0600) removed at once. An encrypted key needs
    ``passphrase``: OpenSSL never prompts on the terminal."""

    def password() -> str | bytes:
        if passphrase is None:
            raise ValueError("TLS key is encrypted: give the 'passphrase' option")
        return passphrase

    data = cert.rstrip() + b"\n" + key
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("smtpgate-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            context.load_cert_chain(f"/proc/self/fd/{fd}", password=password)
        finally:
            os.close(fd)
        return
    handle, path = tempfile.mkstemp(prefix="smtpgate-", suffix=".pem")
    try:
        os.write(handle, data)
        os.close(handle)
        context.load_cert_chain(path, password=password)
    finally:
        os.unlink(path)


def generate_certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate and key (PEM) for ``name``: for development only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    alt_names: list[x509.GeneralName] = []
    for candidate in dict.fromkeys([name, "localhost"]):
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(candidate)))
        except ValueError:
            alt_names.append(x509.DNSName(candidate))
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    alt_names.append(x509.IPAddress(ipaddress.ip_address("::1")))
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


def build_context(options: TLSOptions, fallback: tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    """A server-side context; ``fallback`` (cert, key) is used when no key/cert is given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[options.min_version]
    if options.max_version:
        context.maximum_version = _VERSIONS[options.max_version]
    context.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if options.key is not None or options.cert is not None:
        if options.key is None or options.cert is None:
            raise ValueError("TLS options 'key' and 'cert' must be given together")
        cert, key = read_pem(options.cert, "cert"), read_pem(options.key, "key")
    elif fallback is not None:
        cert, key = fallback
    else:
        raise ValueError("TLS needs 'key' and 'cert'")
    try:
        _load_chain(context, cert, key, options.passphrase)
    except ssl.SSLError as error:
        hint = " (wrong passphrase?)" if options.passphrase is not None else ""
        raise ValueError(f"TLS key/cert could not be loaded{hint}: {error.reason or error}") from None
    if options.ca is not None:
        cas = options.ca if isinstance(options.ca, (list, tuple)) else [options.ca]
        for ca in cas:
            context.load_verify_locations(cadata=read_pem(ca, "ca").decode("ascii"))
    if options.request_cert:
        context.verify_mode = ssl.CERT_REQUIRED if options.reject_unauthorized else ssl.CERT_OPTIONAL
    return context


def normalize_servername(name: str) -> str:
    """Lower-case, no trailing dot, IDNA A-labels decoded to Unicode."""
    name = name.strip().rstrip(".").lower()
    if "xn--" in name:
        try:
            name = name.encode("ascii").decode("idna")
        except UnicodeError:
            pass
    return name


class TLSContexts:
    """The current default context and SNI contexts; swapped as a whole on rotation, so
    a handshake always sees one consistent set."""

    def __init__(
        self, options: TLSOptions, sni_options: Mapping[str, Any] | None, name: str, *, needed: bool = True
    ) -> None:
        self._name = name
        self._dev_cert: tuple[bytes, bytes] | None = None
        self.default_options = options
        self.sni_given = sni_options  # as the user gave them: entries inherit anew on rotation
        self._context: ssl.SSLContext | None = None
        self._sni: dict[str, ssl.SSLContext] = {}
        if needed or options.key is not None or options.cert is not None or sni_options:
            self.update(options, sni_options)
        # else no TLS in use (STARTTLS disabled): no development certificate unless asked

    @property
    def context(self) -> ssl.SSLContext:
        """The default server context (built on first use when it was not needed at start)."""
        if self._context is None:
            self.update(self.default_options, self.sni_given)
        assert self._context is not None
        return self._context

    @property
    def uses_development_certificate(self) -> bool:
        return self.default_options.key is None and self.default_options.cert is None

    def update(self, options: TLSOptions, sni_options: Mapping[str, Any] | None) -> None:
        """Build new contexts; on any error the old ones stay in use and the error is raised."""
        fallback = None
        if options.key is None and options.cert is None:
            if self._dev_cert is None:
                self._dev_cert = generate_certificate(self._name)
                logger.warning(
                    "no TLS key/cert given: using a generated self-signed certificate for %r; "
                    "fine for development, give key= and cert= in production",
                    self._name,
                )
            fallback = self._dev_cert
        context = build_context(options, fallback)
        sni: dict[str, ssl.SSLContext] = {}
        if sni_options is not None:
            if not isinstance(sni_options, Mapping):
                raise TypeError("option 'sni_options' must be a mapping of hostname to TLS options")
            for host, host_options in sni_options.items():
                if isinstance(host_options, TLSOptions):
                    entry = host_options
                elif isinstance(host_options, Mapping):
                    unknown = set(host_options) - set(TLS_OPTION_NAMES)
                    if unknown:
                        raise TypeError(f"sni_options[{host!r}]: unknown TLS option(s) {sorted(unknown)}")
                    # An entry replaces the certificate; everything else (client certificates,
                    # versions) is inherited unless the entry sets it.
                    base = {k: getattr(options, k) for k in TLS_OPTION_NAMES if k not in ("key", "cert")}
                    entry = TLSOptions(**{**base, **dict(host_options)})
                else:
                    raise TypeError(f"sni_options[{host!r}] must be a mapping of TLS options")
                sni[normalize_servername(str(host))] = build_context(entry)
        context.sni_callback = self._choose
        for sni_context in sni.values():
            sni_context.sni_callback = self._choose
        self.default_options = options
        self.sni_given = sni_options
        self._sni = sni
        self._context = context

    def context_for(self, servername: str) -> ssl.SSLContext | None:
        """The SNI context for a name: exact match first, then ``*.`` wildcards."""
        name = normalize_servername(servername)
        found = self._sni.get(name)
        if found is None and "." in name:
            found = self._sni.get("*." + name.split(".", 1)[1])
        return found

    def _choose(self, ssl_object: Any, servername: str | None, context: ssl.SSLContext) -> None:
        if servername:
            ssl_object.smtpgate_servername = normalize_servername(servername)
            chosen = self.context_for(servername)
            if chosen is not None and chosen is not context:
                ssl_object.context = chosen
        return None


def tls_info(ssl_object: Any) -> TLSInfo:
    """What a finished handshake negotiated."""
    cipher = ssl_object.cipher() or ("", "", 0)
    name = cipher[0]
    return TLSInfo(name=name, standard_name=_STANDARD_NAMES.get(name, name), version=ssl_object.version() or "")


# OpenSSL names of TLS 1.2 suites to their IANA names (TLS 1.3 names are the IANA ones).
_STANDARD_NAMES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "DHE-RSA-AES128-GCM-SHA256": "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "DHE-RSA-AES256-GCM-SHA384": "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "DHE-RSA-CHACHA20-POLY1305": "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-RSA-AES128-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-ECDSA-AES256-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    "ECDHE-RSA-AES256-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384",
}
