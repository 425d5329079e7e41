//! The test's own CA (rcgen): Envoy's server certificate and client certificates whose URI
//! SAN is a case's SPIFFE id. Everything is made fresh per run and lives in memory.

pub use eventseal_testkit::http::ClientIdentity;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use std::net::{IpAddr, Ipv4Addr};

/// A CA that signs Envoy's certificate and the clients'.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub cert_pem: String,
    /// Envoy's certificate for `localhost` / 127.0.0.1 (PEM).
    pub server_cert_pem: String,
    /// Its key (PEM).
    pub server_key_pem: String,
}

impl TestCa {
    /// A new CA and a server certificate.
    ///
    /// # Panics
    /// If rcgen cannot make them (it always can).
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "eventseal e2e test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("the CA certificate");
        let issuer = Issuer::new(params, key);

        let server_key = KeyPair::generate().expect("a server key");
        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("server parameters");
        server.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server.distinguished_name.push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).expect("the server certificate");
        TestCa {
            issuer,
            cert_pem: cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }

    /// A client certificate with `spiffe` as its only URI SAN, ready to connect.
    ///
    /// # Panics
    /// If `spiffe` is not a valid IA5 string.
    pub fn client(&self, spiffe: &str) -> ClientIdentity {
        self.client_trusting(spiffe, &self.cert_pem)
    }

    /// [`TestCa::client`], trusting `server_ca` (PEM) for the server instead: a client of a
    /// server whose certificate another CA signed.
    ///
    /// # Panics
    /// If `spiffe` is not a valid IA5 string.
    pub fn client_trusting(&self, spiffe: &str, server_ca: &str) -> ClientIdentity {
        let key = KeyPair::generate().expect("a client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, "eventseal e2e client");
        params
            .subject_alt_names
            .push(SanType::URI(spiffe.try_into().expect("a SPIFFE id is IA5")));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("the client certificate");
        ClientIdentity::new(cert.pem(), key.serialize_pem(), server_ca.to_owned())
    }
}
