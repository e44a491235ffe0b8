"""A real RFC 3161 Time-Stamp Authority on 127.0.0.1, for tests and development.

Not a mock: the PKI is made with ``cryptography`` (root CA, optional intermediate, TSA
certificate with a critical ``timeStamping`` extended key usage) and every reply is signed by
``openssl ts -reply`` (OpenSSL 3) with the configuration of
``tests/evidence/vectors/rfc3161/local-openssl/tsa.cnf``, so its tokens also pass
``openssl ts -verify``. The HTTP side is the stdlib ``http.server`` in a daemon thread,
speaking RFC 3161 §3.4 (POST ``application/timestamp-query`` → ``application/timestamp-reply``).

``FixedReplyServer`` is the other half of the failure tests: a real HTTP server that answers
every POST with one fixed status and body (an HTTP 500, HTML, garbage, a replayed token).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocolo.evidence.timestamp import TsaTrust

DEFAULT_POLICY = "1.3.6.1.4.1.99999.1"
MAX_QUERY_BYTES = 64 * 1024

_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = .
serial = ./tsaserial
crypto_device = builtin
signer_digest = sha256
default_policy = {policy}
digests = {digests}
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _name(organisation: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _tsa_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # RFC 3161 §2.3: exactly one purpose, id-kp-timeStamping, and critical.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


class LocalTsa:
    """An OpenSSL-backed TSA with its own fresh PKI, served over HTTP on 127.0.0.1.

    ``organisation`` goes into every subject (two instances with the same one have identical
    names and different keys). ``intermediate`` puts an intermediate CA between root and TSA;
    ``chain`` makes OpenSSL embed the CA certificates in replies (``-chain``), which is what
    produces the unsorted CMS certificate set. ``self_signed`` makes the TSA certificate its
    own issuer (then there is no CA). ``tsa_not_before``/``tsa_not_after`` bound the TSA
    certificate's validity; ``digests`` is what the TSA accepts.
    """

    def __init__(
        self,
        directory: Path,
        *,
        organisation: str = "good",
        intermediate: bool = False,
        chain: bool = False,
        self_signed: bool = False,
        tsa_not_before: dt.datetime | None = None,
        tsa_not_after: dt.datetime | None = None,
        policy: str = DEFAULT_POLICY,
        digests: str = "sha256, sha384, sha512",
    ) -> None:
        self.directory = directory
        self.policy = policy
        self.chain = chain
        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        tsa_key = ec.generate_private_key(ec.SECP256R1())
        tsa_name = _name(organisation, f"{organisation} Test TSA")
        not_before = tsa_not_before or now - dt.timedelta(minutes=5)
        not_after = tsa_not_after or now + dt.timedelta(days=3650)
        self.ca_certificates: list[x509.Certificate] = []  # intermediate first, root last
        if self_signed:
            self.tsa_certificate = _tsa_certificate(
                tsa_name, tsa_key, tsa_name, tsa_key, not_before, not_after
            )
            self.root = self.tsa_certificate
        else:
            root_key = ec.generate_private_key(ec.SECP256R1())
            root_name = _name(organisation, f"{organisation} Test Root")
            self.root = _ca_certificate(root_name, root_key, root_name, root_key, now)
            issuer_name, issuer_key = root_name, root_key
            if intermediate:
                mid_key = ec.generate_private_key(ec.SECP256R1())
                mid_name = _name(organisation, f"{organisation} Test Intermediate")
                self.ca_certificates.append(
                    _ca_certificate(mid_name, mid_key, root_name, root_key, now)
                )
                issuer_name, issuer_key = mid_name, mid_key
            self.ca_certificates.append(self.root)
            self.tsa_certificate = _tsa_certificate(
                tsa_name, tsa_key, issuer_name, issuer_key, not_before, not_after
            )
        (directory / "tsa.key").write_bytes(
            tsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.tsa_pem_path = directory / "tsa.pem"
        self.tsa_pem_path.write_bytes(_pem(self.tsa_certificate))
        self.root_pem_path = directory / "root.pem"
        self.root_pem_path.write_bytes(_pem(self.root))
        self.intermediates_pem_path = directory / "intermediates.pem"
        self.intermediates_pem_path.write_bytes(
            b"".join(_pem(c) for c in self.ca_certificates[:-1])
        )
        (directory / "chain.pem").write_bytes(b"".join(_pem(c) for c in self.ca_certificates))
        (directory / "tsaserial").write_text("01\n")
        (directory / "tsa.cnf").write_text(_CONFIG.format(policy=policy, digests=digests))
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the TSA itself

    def reply(self, query: bytes) -> bytes:
        """Sign a reply to ``query`` (DER TimeStampReq) with ``openssl ts -reply``."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.directory) as scratch:
            query_path = Path(scratch) / "query.tsq"
            reply_path = Path(scratch) / "reply.tsr"
            query_path.write_bytes(query)
            command = [
                "openssl", "ts", "-reply", "-config", "tsa.cnf",
                "-queryfile", str(query_path),
                "-inkey", "tsa.key", "-signer", "tsa.pem",
                "-out", str(reply_path),
            ]  # fmt: skip
            if self.chain and self.ca_certificates:
                command += ["-chain", "chain.pem"]
            result = subprocess.run(
                command, cwd=self.directory, capture_output=True, timeout=30, check=False
            )
            if result.returncode != 0 or not reply_path.exists():
                raise RuntimeError(
                    f"openssl ts -reply failed ({result.returncode}): "
                    f"{result.stderr.decode(errors='replace')}"
                )
            return reply_path.read_bytes()

    def trust(self) -> TsaTrust:
        """The pinned trust a verifier of this TSA's tokens is given."""
        return TsaTrust(
            roots=(self.root,),
            tsa_certificate=self.tsa_certificate,
            intermediates=tuple(self.ca_certificates[:-1]),
        )

    # ------------------------------------------------------------------ HTTP

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local TSA is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/tsa"

    def start(self) -> LocalTsa:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get_content_type() != "application/timestamp-query":
                    self._answer(415, "text/plain", b"expected application/timestamp-query")
                    return
                if not 0 < length <= MAX_QUERY_BYTES:
                    self._answer(413, "text/plain", b"bad query length")
                    return
                try:
                    body = tsa.reply(self.rfile.read(length))
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    self._answer(500, "text/plain", str(error).encode())
                    return
                self._answer(200, "application/timestamp-reply", body)

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-tsa", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> LocalTsa:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def fixed_reply_server(status: int, content_type: str, body: bytes) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering every POST with this reply; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="fixed-reply", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/tsa"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main() -> None:
    """Run a local TSA for development: prints its URL and the files to pin, until Ctrl-C."""
    import time

    with (
        tempfile.TemporaryDirectory(prefix="protocolo-tsa-") as directory,
        LocalTsa(Path(directory)) as tsa,
    ):
        print(f"TSA URL: {tsa.url}")
        print(f"pin: root {tsa.root_pem_path}  TSA certificate {tsa.tsa_pem_path}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
