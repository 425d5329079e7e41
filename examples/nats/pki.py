"""A throwaway demo PKI for the NATS example, written into one directory:

    ca.pem                        the demo CA (its key is never written: it signs and is gone)
    server.pem, server.key        Envoy's certificate, for 127.0.0.1 and localhost
    <name>.pem, <name>.key        a client certificate per workload, its SPIFFE id as URI SAN

The gateway's principals are the clients' URI SANs (policy "principal": {"source": "mtls"}).
For real deployments the certificates come from your mesh or SPIFFE issuer (SPIRE, ...).

    python pki.py DIR
"""

import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The workloads of the example: file name -> SPIFFE id.
CLIENTS = {
    "checkout": "spiffe://example.org/ns/shop/sa/checkout",  # a producer of orders
    "invoicer": "spiffe://example.org/ns/billing/sa/invoicer",  # a reader of the sealed fields
    "reports": "spiffe://example.org/ns/analytics/sa/reports",  # neither
}

NOW = datetime.datetime.now(datetime.timezone.utc)
VALIDITY = (NOW - datetime.timedelta(minutes=5), NOW + datetime.timedelta(days=1))


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate(subject, key, issuer, issuer_key, extensions):
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALIDITY[0])
        .not_valid_after(VALIDITY[1])
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def write(directory, stem, cert, key=None):
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path = directory / f"{stem}.key"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)


def leaf(ca_cert, ca_key, common_name, san, usage):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        name(common_name),
        key,
        ca_cert.subject,
        ca_key,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.SubjectAlternativeName(san), False),
            (x509.ExtendedKeyUsage([usage]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ],
    )
    return cert, key


def main(directory):
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate(
        name("eventseal NATS example CA"),
        ca_key,
        name("eventseal NATS example CA"),
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (
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
                True,
            ),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ],
    )
    write(directory, "ca", ca_cert)

    server_san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert, key = leaf(ca_cert, ca_key, "eventseal NATS gateway", server_san, ExtendedKeyUsageOID.SERVER_AUTH)
    write(directory, "server", cert, key)

    for stem, spiffe in CLIENTS.items():
        san = [x509.UniformResourceIdentifier(spiffe)]
        cert, key = leaf(ca_cert, ca_key, stem, san, ExtendedKeyUsageOID.CLIENT_AUTH)
        write(directory, stem, cert, key)
        print(f"{stem}.pem  {spiffe}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
