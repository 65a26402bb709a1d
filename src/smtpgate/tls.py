"""TLS contexts from options: PEM in memory or on disk, the development certificate, SNI,
client certificates and rotation."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import ssl
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, TypedDict

from .session import Session, TLSDetails, TLSInfo

__all__ = [
    "TLSOptions",
    "TLSSettings",
    "TLSContexts",
    "PEMSource",
    "TLSVersion",
    "check_tls_options",
    "read_pem",
    "tls_info",
    "tls_details",
    "note_tls",
    "generate_certificate",
]

logger = logging.getLogger("smtpgate")

PEMSource = str | bytes | os.PathLike[str]
"""PEM text (``str`` holding ``-----BEGIN``, or ``bytes``) or the path of a PEM file."""
TLSVersion = Literal["TLSv1.2", "TLSv1.3"]

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


# The TLS options are declared here, once: `TLSOptions` holds them with their defaults at
# run time; `TLSSettings` states their types for the type checker (what callers may
# pass). `SMTPServer`'s options extend both, and the names below come from the dataclass.
@dataclass
class TLSOptions:
    """The options that make one certificate's context (see `TLSSettings` for the types)."""

    key: Any = None
    cert: Any = None
    passphrase: str | bytes | None = None
    ca: Any = None
    request_cert: bool = False
    reject_unauthorized: bool = True
    min_version: str = "TLSv1.2"
    max_version: str | None = None


class TLSSettings(TypedDict, total=False):
    """The TLS options as keyword arguments (``SMTPServer``, ``update_secure_context``, and
    each entry of ``sni_options``); the defaults are those of `TLSOptions`."""

    key: PEMSource | None
    cert: PEMSource | None
    passphrase: str | bytes | None
    ca: PEMSource | Sequence[PEMSource] | None
    request_cert: bool
    reject_unauthorized: bool
    min_version: TLSVersion
    max_version: TLSVersion | None


TLS_OPTION_NAMES = tuple(f.name for f in fields(TLSOptions))


def check_tls_options(options: TLSOptions, where: str = "") -> None:
    """Refuse ill-typed or contradictory TLS options with one line (``where`` names an SNI entry)."""
    prefix = f"{where}: " if where else ""
    for name in ("request_cert", "reject_unauthorized"):
        if not isinstance(getattr(options, name), bool):
            raise TypeError(f"{prefix}option {name!r} must be True or False, got {getattr(options, name)!r}")
    if options.passphrase is not None and not isinstance(options.passphrase, (str, bytes)):
        raise TypeError(f"{prefix}option 'passphrase' must be str or bytes, got {type(options.passphrase).__name__}")
    for name in ("min_version", "max_version"):
        value = getattr(options, name)
        if (value is not None or name == "min_version") and value not in _VERSIONS:
            raise ValueError(f"{prefix}option {name!r} must be one of {tuple(_VERSIONS)}, got {value!r}")
    if options.max_version is not None and _VERSIONS[options.min_version] > _VERSIONS[options.max_version]:
        raise ValueError(
            f"{prefix}option 'min_version' ({options.min_version}) is above 'max_version' ({options.max_version})"
        )
    if options.request_cert and options.ca is None:
        raise ValueError(f"{prefix}option 'request_cert' needs 'ca' (the CAs that client certificates must chain to)")


def describe_pem(value: Any) -> str:
    """How an error names a PEM source: the file, or "(PEM text)"."""
    if isinstance(value, (bytes, bytearray, memoryview)) or (isinstance(value, str) and "-----BEGIN" in value):
        return "(PEM text)"
    if isinstance(value, (str, os.PathLike)):
        return repr(os.fspath(value))
    return f"({type(value).__name__})"


_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def _check_pem_kind(data: bytes, what: str, source: str) -> None:
    """A ``cert`` or ``ca`` must hold a certificate, a ``key`` a private key."""
    labels = [label.decode("ascii") for label in _PEM_LABEL.findall(data)]
    found = f"found {', '.join(dict.fromkeys(labels))}" if labels else "no PEM block"
    if what == "key":
        if not any(label.endswith("PRIVATE KEY") for label in labels):
            raise ValueError(f"TLS key {source}: not a private key ({found})")
        return
    if not any(label in ("CERTIFICATE", "TRUSTED CERTIFICATE") for label in labels):
        raise ValueError(f"TLS {what} {source}: not a certificate ({found})")
    if "CERTIFICATE" not in labels:  # OpenSSL's TRUSTED CERTIFICATE only: left to OpenSSL
        return
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise ValueError(f"TLS {what} {source}: the certificate cannot be parsed ({error})") from None


def read_pem(value: Any, what: str) -> bytes:
    """PEM from ``bytes``/``str`` text, or from a file when given a path; checked to hold
    what ``what`` needs (``"cert"``/``"ca"``: certificates, ``"key"``: a private key).

    A ``str`` is PEM text when it contains ``-----BEGIN``; anything else is a path.
    """
    source = describe_pem(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if b"-----BEGIN" not in data:
            raise ValueError(f"TLS {what}: bytes do not contain a PEM block")
    elif isinstance(value, str) and "-----BEGIN" in value:
        data = value.encode("ascii")
    elif isinstance(value, (str, os.PathLike)):
        try:
            with open(value, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise ValueError(f"TLS {what}: cannot read {source}: {error.strerror}") from None
        if b"-----BEGIN" not in data:
            raise ValueError(f"TLS {what}: {source} does not contain a PEM block")
    else:
        raise TypeError(f"TLS {what} must be PEM text, bytes or a path, got {type(value).__name__}")
    _check_pem_kind(data, what, source)
    return data


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
        raise ValueError(_chain_error(error, options)) from None
    if options.ca is not None:
        cas = options.ca if isinstance(options.ca, (list, tuple)) else [options.ca]
        for ca in cas:
            context.load_verify_locations(cadata=read_pem(ca, "ca").decode("ascii"))
    if options.request_cert:
        context.verify_mode = ssl.CERT_REQUIRED if options.reject_unauthorized else ssl.CERT_OPTIONAL
    return context


def _chain_error(error: ssl.SSLError, options: TLSOptions) -> str:
    """One line for a key/cert pair OpenSSL refused, naming the files."""
    pair = f"key {describe_pem(options.key)} and cert {describe_pem(options.cert)}"
    reason = str(error.reason or "")
    if "KEY_VALUES_MISMATCH" in reason:
        return f"TLS {pair}: the key does not belong to the certificate"
    if options.key is None:
        return f"TLS certificate could not be loaded: {reason or error}"
    if options.passphrase is not None:
        return f"TLS key {describe_pem(options.key)}: cannot be decrypted (wrong passphrase?): {reason or error}"
    return f"TLS key {describe_pem(options.key)}: cannot be parsed ({reason or error})"


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
        check_tls_options(options)
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
                check_tls_options(entry, f"sni_options[{str(host)!r}]")
                sni[normalize_servername(str(host))] = build_context(entry)
        choose = _sni_callback(weakref.ref(self))
        context.sni_callback = choose
        for sni_context in sni.values():
            sni_context.sni_callback = choose
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


def _sni_callback(contexts: weakref.ref[TLSContexts]) -> Callable[[Any, str | None, ssl.SSLContext], None]:
    """The SNI callback of a set of contexts, holding the set weakly: a context holding its
    owner's bound method would make a reference cycle, left for the garbage collector."""

    def choose(ssl_object: Any, servername: str | None, context: ssl.SSLContext) -> None:
        owner = contexts()
        if owner is not None:
            owner._choose(ssl_object, servername, context)

    return choose


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


def tls_details(ssl_object: Any, servername: str | None) -> TLSDetails:
    """``session.tls`` from a finished handshake."""
    info = tls_info(ssl_object)
    try:
        peer = ssl_object.getpeercert() or None
        der = ssl_object.getpeercert(binary_form=True)
    except ValueError:  # no handshake (cannot happen once it finished)
        peer, der = None, None
    return TLSDetails(
        version=info.version,
        cipher=info.name,
        standard_name=info.standard_name,
        servername=servername,
        peer_certificate=peer,
        peer_certificate_der=der,
    )


def note_tls(session: Session, ssl_object: Any) -> None:
    """TLS is up on ``session``'s connection: ``secure``, the name the client asked for,
    ``tls_options`` and ``tls`` (``ssl_object`` may be None for an odd transport)."""
    session.secure = True
    session.servername = getattr(ssl_object, "smtpgate_servername", None)
    if ssl_object is not None:
        session.tls_options = tls_info(ssl_object)
        session.tls = tls_details(ssl_object, session.servername)
