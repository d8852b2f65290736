//! A small CA for trust domains and the bridge (rcgen, ECDSA P-256).
//!
//! Invariants:
//! * Every certificate the CA signs follows X509-SVID.md: signing certificates are
//!   `CA:TRUE` with keyUsage keyCertSign + cRLSign and the URI SAN `spiffe://<td>`; leaves
//!   are `CA:FALSE`, keyUsage digitalSignature only, EKU serverAuth + clientAuth, exactly one
//!   URI SAN (an ID with a non-root path in the CA's own trust domain), random serial,
//!   `notBefore = now - 1 min`, and never outlive the certificate that signs them.
//! * A CSR is used for its public key only; its requested names are ignored, and a CSR
//!   asking for a CA certificate is refused.
//! * Keys reach the disk only through [`write_private`] (mode 0600 from creation),
//!   and no key is ever formatted into a log line or an error (`IssuedSvid`'s `Debug` omits it).
//! * The CA's published bundle (`bundle.json`) always contains the current root. `rotate`
//!   adds a new root next to the old ones and `retire_old` removes every root but the current
//!   one. `spiffe_sequence` is written into `bundle.json` and is the only sequence the bundle
//!   endpoint serves: `init` sets it to the Unix time, and each change raises it to
//!   `max(previous + 1, Unix time)` ([`next_sequence`]), so it strictly grows with every change
//!   and a re-created CA still orders after what peers hold.
//! * JWT-SVIDs ([`jwt`]): when the CA has a JWT signing key (`jwt.key`, ES256), the bundle lists
//!   its public key as a `jwt-svid` JWK whose `kid` is the key's RFC 7638 thumbprint. `rotate`
//!   replaces that key and keeps the old public key in the bundle; `retire_old` drops every JWT
//!   key but the current one, exactly as for roots. A directory made before JWT-SVIDs has no
//!   `jwt.key`: it loads and works as before, and its next `rotate` adds one.
//!
//! On-disk layout of a CA directory (see docs/cli.md):
//!
//! ```text
//! ca.pem, ca.key        the signing CA: the root, or the intermediate with --intermediate
//! root.pem, root.key    only with --intermediate: the root that signs ca.pem
//! bundle.json           the trust domain's SPIFFE bundle (the roots), with sequence and hint
//! retired/<sha256>.pem  every root that was replaced by `rotate`, kept for the record
//! jwt.key               the JWT-SVID signing key (P-256, PKCS#8 PEM, 0600); may be absent in
//!                       directories created by older versions
//! ```

pub mod describe;
pub mod jwt;
pub mod serve;

pub use jwt::JwtSigner;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::bundle::{next_sequence, Bundle, BundleError};
use fedgate_federation::jwt::{JwtSigningKey, MintError};
use fedgate_federation::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

pub use fedgate_federation::fs::{
    create_private_dir, read_limited, write_atomic, write_private, FileError,
};

/// How long a leaf is back-dated, to absorb clock skew between issuer and verifier.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// Options of [`Ca::init`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Lifetime of the root (and of the intermediate).
    pub ttl: Duration,
    /// `spiffe_refresh_hint` of the published bundle.
    pub refresh_hint: Option<Duration>,
    /// Issue from an intermediate signed by the root instead of from the root.
    pub intermediate: bool,
}

/// A CA for one trust domain, loaded in memory.
pub struct Ca {
    trust_domain: TrustDomain,
    root: Signer,
    /// Present with `--intermediate`: issues leaves; `root` then only signs it.
    intermediate: Option<Signer>,
    /// The JWT-SVID signing key; `None` only for a directory created before JWT-SVIDs.
    jwt: Option<Arc<JwtSigningKey>>,
    bundle: Bundle,
}

/// What [`Ca::retire_old`] removed from the bundle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    /// Old roots removed.
    pub roots: usize,
    /// Old JWT signing keys removed.
    pub jwt_keys: usize,
}

/// A freshly issued X509-SVID and its private key.
pub struct IssuedSvid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 PEM. Never logged: `Debug` leaves it out.
    key_pem: String,
}

/// Everything that can go wrong in the CA; each variant names the file or the rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("no CA in {dir}: {} is missing; create one with `fedgate ca init`", dir.join(CA_PEM).display())]
    NoCa { dir: PathBuf },
    #[error("{path} already exists; refusing to overwrite an existing CA (choose another --out)")]
    AlreadyExists { path: PathBuf },
    #[error("{path}: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: not a usable private key (expected a PKCS#8 PEM key)")]
    BadKey {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("{key} does not belong to the certificate in {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{path}: not a valid bundle for trust domain {trust_domain}")]
    BadBundle {
        path: PathBuf,
        trust_domain: TrustDomain,
        #[source]
        source: BundleError,
    },
    #[error(
        "{path}: the CA certificate is not listed in the bundle; the CA directory is inconsistent"
    )]
    RootNotInBundle { path: PathBuf },
    #[error(
        "{id} is outside the CA's trust domain {trust_domain}; a CA issues only for its own trust domain"
    )]
    WrongTrustDomain {
        id: SpiffeId,
        trust_domain: TrustDomain,
    },
    #[error("{id} has no path; leaf SVIDs need a non-root path (X509-SVID.md §2)")]
    RootPathId { id: SpiffeId },
    #[error("invalid DNS name {name:?} for a SAN: {reason}")]
    BadDnsName { name: String, reason: String },
    #[error("ttl must be longer than zero")]
    ZeroTtl,
    #[error(
        "requested notAfter {requested} is later than the signing CA's notAfter {ca_not_after}; \
         use a shorter --ttl or rotate the CA"
    )]
    TtlBeyondCa {
        requested: String,
        ca_not_after: String,
    },
    #[error("ttl {0:?} is too large")]
    TtlTooLarge(Duration),
    #[error("CSR is malformed or its signature does not verify: {reason}")]
    BadCsr { reason: String },
    #[error("CSR requests a CA certificate (basicConstraints cA=TRUE); only leaves are issued")]
    CsrRequestsCa,
    #[error("spiffe_sequence would overflow; the bundle cannot change any more")]
    SequenceOverflow,
    #[error("{path}: not a usable JWT signing key")]
    BadJwtKey {
        path: PathBuf,
        #[source]
        source: MintError,
    },
    #[error(
        "{path}: the JWT signing key is not listed in the bundle as a jwt-svid key; the CA \
         directory is inconsistent"
    )]
    JwtKeyNotInBundle { path: PathBuf },
    #[error(
        "the CA in {dir} has no JWT signing key ({} is missing; the directory predates \
         JWT-SVIDs): run `fedgate ca rotate --ca {}` to add one",
        dir.join(JWT_KEY).display(), dir.display()
    )]
    NoJwtKey { dir: PathBuf },
    #[error("cannot mint a JWT-SVID for {id}")]
    Mint {
        id: SpiffeId,
        #[source]
        source: MintError,
    },
    #[error("cannot {what}")]
    Sign {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}

/// A signing certificate and its key.
struct Signer {
    der: CertificateDer<'static>,
    key: KeyPair,
    /// rcgen's view of `der` for signing: issuer name and key identifier come from it.
    issuer: rcgen::Certificate,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

// === impl Ca ===

impl Ca {
    /// Creates a new CA in memory: a self-signed root (and an intermediate if asked) and a
    /// bundle with the root, `opts.refresh_hint` and the Unix time as its sequence
    /// ([`next_sequence`]). Nothing is written.
    pub fn init(trust_domain: &TrustDomain, opts: &InitOptions) -> Result<Ca, CaError> {
        let now = OffsetDateTime::now_utc();
        let root = new_root(trust_domain, now, opts.ttl)?;
        let intermediate = if opts.intermediate {
            Some(new_intermediate(trust_domain, &root, now)?)
        } else {
            None
        };
        let jwt = new_jwt_key()?;
        let mut bundle = Bundle::new(trust_domain.clone());
        bundle.add_x509_authority(root.der.clone());
        bundle.add_jwt_authority(jwt.authority());
        bundle.set_refresh_hint(opts.refresh_hint);
        bump_sequence(&mut bundle)?;
        Ok(Ca {
            trust_domain: trust_domain.clone(),
            root,
            intermediate,
            jwt: Some(jwt),
            bundle,
        })
    }

    /// Loads a CA directory written by [`Ca::save`], checking that keys match certificates
    /// and that the bundle lists the current root.
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let ca_pem = dir.join(CA_PEM);
        let root_pem = dir.join(ROOT_PEM);
        if !ca_pem.exists() {
            return Err(CaError::NoCa {
                dir: dir.to_path_buf(),
            });
        }
        let has_intermediate = root_pem.exists();
        let (root, intermediate) = if has_intermediate {
            let root = load_signer(&root_pem, &dir.join(ROOT_KEY))?;
            let inter = load_signer(&ca_pem, &dir.join(CA_KEY))?;
            (root, Some(inter))
        } else {
            (load_signer(&ca_pem, &dir.join(CA_KEY))?, None)
        };
        if let Some(inter) = &intermediate {
            // Cheap consistency check for a half-written directory: the intermediate must
            // name the root as its issuer (the signature is checked when SVIDs are verified).
            let issued_by_root = match (
                describe::parse_cert(&inter.der),
                describe::parse_cert(&root.der),
            ) {
                (Ok(i), Ok(r)) => {
                    i.tbs_certificate.issuer.as_raw() == r.tbs_certificate.subject.as_raw()
                }
                _ => false,
            };
            if !issued_by_root {
                return Err(CaError::BadCertificate {
                    path: ca_pem.clone(),
                    reason: format!("not issued by the root in {}", root_pem.display()),
                });
            }
        }
        let root_path = if has_intermediate { &root_pem } else { &ca_pem };
        let trust_domain = trust_domain_of(&root.der, root_path)?;
        let bundle_path = dir.join(BUNDLE_JSON);
        let json = read_limited(&bundle_path)?;
        let (bundle, _warnings) =
            Bundle::parse(&trust_domain, &json).map_err(|source| CaError::BadBundle {
                path: bundle_path.clone(),
                trust_domain: trust_domain.clone(),
                source,
            })?;
        if !bundle.x509_authorities().contains(&root.der) {
            return Err(CaError::RootNotInBundle {
                path: root_path.clone(),
            });
        }
        let jwt = jwt::load_key(dir, &bundle)?;
        Ok(Ca {
            trust_domain,
            root,
            intermediate,
            jwt,
            bundle,
        })
    }

    /// Writes the CA directory (creating it 0700 if missing). Keys go through
    /// [`write_private`]; every root in the bundle other than the current one is kept in
    /// `retired/<sha256>.pem`.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        create_private_dir(dir)?;
        // Keys first, so a crash never leaves a certificate whose key was not written;
        // `load` detects a key/certificate mismatch.
        match &self.intermediate {
            Some(inter) => {
                write_private(
                    &dir.join(ROOT_KEY),
                    self.root.key.serialize_pem().as_bytes(),
                )?;
                write_private(&dir.join(CA_KEY), inter.key.serialize_pem().as_bytes())?;
                write_atomic(
                    &dir.join(ROOT_PEM),
                    describe::encode_pem_certs(std::slice::from_ref(&self.root.der)).as_bytes(),
                )?;
                write_atomic(
                    &dir.join(CA_PEM),
                    describe::encode_pem_certs(std::slice::from_ref(&inter.der)).as_bytes(),
                )?;
            }
            None => {
                write_private(&dir.join(CA_KEY), self.root.key.serialize_pem().as_bytes())?;
                write_atomic(
                    &dir.join(CA_PEM),
                    describe::encode_pem_certs(std::slice::from_ref(&self.root.der)).as_bytes(),
                )?;
            }
        }
        if let Some(jwt) = &self.jwt {
            write_private(&dir.join(JWT_KEY), jwt.to_pem().as_bytes())?;
        }
        let old_roots: Vec<_> = self
            .bundle
            .x509_authorities()
            .iter()
            .filter(|a| **a != self.root.der)
            .collect();
        if !old_roots.is_empty() {
            let retired = dir.join(RETIRED_DIR);
            create_private_dir(&retired)?;
            for old in old_roots {
                let path = retired.join(format!("{}.pem", describe::sha256_hex(old)));
                if !path.exists() {
                    write_atomic(
                        &path,
                        describe::encode_pem_certs(std::slice::from_ref(old)).as_bytes(),
                    )?;
                }
            }
        }
        write_atomic(&dir.join(BUNDLE_JSON), &self.bundle.to_json())?;
        Ok(())
    }

    /// Refuses to initialise into a directory that already holds CA files.
    pub fn ensure_absent(dir: &Path) -> Result<(), CaError> {
        for name in [CA_PEM, CA_KEY, ROOT_PEM, ROOT_KEY, BUNDLE_JSON, JWT_KEY] {
            let path = dir.join(name);
            if path.exists() {
                return Err(CaError::AlreadyExists { path });
            }
        }
        Ok(())
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The bundle this CA publishes for its trust domain.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The current root (the trust anchor of newly issued SVIDs).
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root.der
    }

    /// The JWT-SVID signer, or [`CaError::NoJwtKey`] for a directory (`dir`, for the message)
    /// created before JWT-SVIDs.
    pub fn jwt_signer(&self, dir: &Path) -> Result<JwtSigner, CaError> {
        match &self.jwt {
            Some(key) => Ok(JwtSigner::new(self.trust_domain.clone(), key.clone())),
            None => Err(CaError::NoJwtKey {
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// Certificates between a leaf and the root: the intermediate, or nothing.
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        self.intermediate.iter().map(|i| i.der.clone()).collect()
    }

    /// Issues an X509-SVID for `id` with a fresh ECDSA P-256 key, valid from one minute ago
    /// for `ttl`, with `dns` as extra DNS SANs. The chain is the leaf, then intermediates.
    pub fn issue(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        dns: &[String],
    ) -> Result<IssuedSvid, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
            CaError::Sign {
                what: "generate a key".into(),
                source,
            }
        })?;
        let params = self.leaf_params(id, ttl, dns, OffsetDateTime::now_utc())?;
        let signer = self.signer();
        let leaf = params
            .signed_by(&key, &signer.issuer, &signer.key)
            .map_err(|source| CaError::Sign {
                what: format!("sign the SVID for {id}"),
                source,
            })?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(self.intermediates());
        Ok(IssuedSvid {
            id: id.clone(),
            chain,
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs the public key of a PKCS#10 CSR as a leaf SVID for `id` (the bridge CA's issuing
    /// endpoint). Names requested in the CSR are ignored: the SVID carries exactly `id`.
    /// Returns the chain, leaf first.
    pub fn issue_from_csr(
        &self,
        csr_der: &[u8],
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<Vec<CertificateDer<'static>>, CaError> {
        let (rest, csr) =
            X509CertificationRequest::from_der(csr_der).map_err(|e| CaError::BadCsr {
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(CaError::BadCsr {
                reason: format!("{} trailing bytes", rest.len()),
            });
        }
        if let Some(exts) = csr.requested_extensions() {
            for ext in exts {
                if let ParsedExtension::BasicConstraints(bc) = ext {
                    if bc.ca {
                        return Err(CaError::CsrRequestsCa);
                    }
                }
            }
        }
        // rcgen verifies the CSR's self-signature (proof of possession of the key).
        let parsed =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| CaError::BadCsr {
                    reason: e.to_string(),
                })?;
        let params = self.leaf_params(id, ttl, &[], OffsetDateTime::now_utc())?;
        let signer = self.signer();
        let leaf = params
            .signed_by(&parsed.public_key, &signer.issuer, &signer.key)
            .map_err(|source| CaError::Sign {
                what: format!("sign the CSR for {id}"),
                source,
            })?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(self.intermediates());
        Ok(chain)
    }

    /// Replaces the root with a new key and certificate of the same lifetime (and the
    /// intermediate with one signed by the new root), and the JWT signing key with a new one
    /// (adding one if the CA had none). The bundle keeps the old roots and JWT keys and adds
    /// the new ones; the sequence grows ([`next_sequence`]).
    pub fn rotate(&mut self) -> Result<(), CaError> {
        let now = OffsetDateTime::now_utc();
        let lifetime = (self.root.not_after - self.root.not_before).unsigned_abs();
        let root = new_root(&self.trust_domain, now, lifetime)?;
        let intermediate = match self.intermediate {
            Some(_) => Some(new_intermediate(&self.trust_domain, &root, now)?),
            None => None,
        };
        let jwt = new_jwt_key()?;
        let mut bundle = self.bundle.clone();
        bundle.add_x509_authority(root.der.clone());
        bundle.add_jwt_authority(jwt.authority());
        bump_sequence(&mut bundle)?;
        self.root = root;
        self.intermediate = intermediate;
        self.jwt = Some(jwt);
        self.bundle = bundle;
        Ok(())
    }

    /// Removes every root but the current one, and every JWT key but the current one (when
    /// the CA has a JWT key), from the bundle. Returns what was removed; the sequence grows
    /// ([`next_sequence`]) only if the bundle changed.
    pub fn retire_old(&mut self) -> Result<Retired, CaError> {
        let old: Vec<_> = self
            .bundle
            .x509_authorities()
            .iter()
            .filter(|a| **a != self.root.der)
            .cloned()
            .collect();
        let old_jwt: Vec<String> = match &self.jwt {
            Some(current) => self
                .bundle
                .jwt_authorities()
                .iter()
                .filter(|a| a.key_id != current.key_id())
                .map(|a| a.key_id.clone())
                .collect(),
            None => Vec::new(),
        };
        let retired = Retired {
            roots: old.len(),
            jwt_keys: old_jwt.len(),
        };
        if retired == Retired::default() {
            return Ok(retired);
        }
        let mut bundle = self.bundle.clone();
        for o in &old {
            bundle.remove_x509_authority(o);
        }
        for kid in &old_jwt {
            bundle.remove_jwt_authority(kid);
        }
        bump_sequence(&mut bundle)?;
        self.bundle = bundle;
        Ok(retired)
    }

    fn signer(&self) -> &Signer {
        self.intermediate.as_ref().unwrap_or(&self.root)
    }

    /// The leaf rules of X509-SVID.md, in one place for `issue` and `issue_from_csr`.
    fn leaf_params(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        dns: &[String],
        now: OffsetDateTime,
    ) -> Result<CertificateParams, CaError> {
        check_workload_id(&self.trust_domain, id)?;
        let not_after = checked_not_after(now, ttl)?;
        let limit = self.signer().not_after.min(self.root.not_after);
        if not_after > limit {
            return Err(CaError::TtlBeyondCa {
                requested: describe::rfc3339(not_after),
                ca_not_after: describe::rfc3339(limit),
            });
        }
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "SPIFFE");
        p.distinguished_name = dn;
        p.subject_alt_names = vec![SanType::URI(ia5(&id.to_string()).map_err(|reason| {
            CaError::BadCertificate {
                path: PathBuf::from("(issued SVID)"),
                reason,
            }
        })?)];
        for name in dns {
            let bad = |reason: String| CaError::BadDnsName {
                name: name.clone(),
                reason,
            };
            // The same syntax rustls accepts as a server name (RFC 1035 labels).
            rustls_pki_types::DnsName::try_from(name.as_str())
                .map_err(|_| bad("not a valid DNS name (RFC 1035 labels)".into()))?;
            p.subject_alt_names
                .push(SanType::DnsName(ia5(name).map_err(bad)?));
        }
        // basicConstraints, critical, with cA absent (= FALSE). rcgen's `ExplicitNoCa` encodes
        // `cA FALSE` explicitly, which DER forbids (a DEFAULT value) and strict parsers such as
        // Python's `cryptography` (py-spiffe) reject.
        p.is_ca = IsCa::NoCa;
        let mut basic_constraints =
            rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
        basic_constraints.set_criticality(true);
        p.custom_extensions.push(basic_constraints);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = now - BACKDATE;
        p.not_after = not_after;
        p.serial_number = Some(random_serial());
        p.use_authority_key_identifier_extension = true;
        Ok(p)
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are deliberately not shown.
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("root", &describe::sha256_hex(&self.root.der))
            .field(
                "intermediate",
                &self
                    .intermediate
                    .as_ref()
                    .map(|i| describe::sha256_hex(&i.der)),
            )
            .field("jwt_kid", &self.jwt.as_ref().map(|k| k.key_id().to_owned()))
            .field("sequence", &self.bundle.sequence())
            .finish()
    }
}

// === impl IssuedSvid ===

impl IssuedSvid {
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// Leaf first, then intermediates.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub fn chain_pem(&self) -> String {
        describe::encode_pem_certs(&self.chain)
    }

    /// The private key, PKCS#8 PEM. Write it only with [`write_private`]; never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes `svid.pem`, `svid.key` (0600) and `bundle.json` into `dir` (created 0700 if
    /// missing). Returns the paths written, in that order.
    pub fn write(&self, dir: &Path, bundle: &Bundle) -> Result<[PathBuf; 3], CaError> {
        create_private_dir(dir)?;
        let key = dir.join(SVID_KEY);
        let pem = dir.join(SVID_PEM);
        let json = dir.join(BUNDLE_JSON);
        write_private(&key, self.key_pem.as_bytes())?;
        write_atomic(&pem, self.chain_pem().as_bytes())?;
        write_atomic(&json, &bundle.to_json())?;
        Ok([pem, key, json])
    }
}

impl fmt::Debug for IssuedSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSvid")
            .field("id", &self.id)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

// === file names ===

/// The signing CA certificate (root, or intermediate with `--intermediate`).
pub const CA_PEM: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
/// The root, only when an intermediate signs leaves.
pub const ROOT_PEM: &str = "root.pem";
pub const ROOT_KEY: &str = "root.key";
pub const BUNDLE_JSON: &str = "bundle.json";
pub const RETIRED_DIR: &str = "retired";
pub const SVID_PEM: &str = "svid.pem";
pub const SVID_KEY: &str = "svid.key";
/// The JWT-SVID signing key (absent in directories that predate JWT-SVIDs).
pub const JWT_KEY: &str = "jwt.key";

// === helpers ===

fn new_root(td: &TrustDomain, now: OffsetDateTime, ttl: Duration) -> Result<Signer, CaError> {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| CaError::Sign {
            what: "generate a root key".into(),
            source,
        })?;
    let mut p = ca_params(td, &key, "root", now, ttl)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).map_err(|source| CaError::Sign {
        what: format!("self-sign the root of {td}"),
        source,
    })?;
    signer_from(cert.der().clone(), key, Path::new("(new root)"))
}

fn new_jwt_key() -> Result<Arc<JwtSigningKey>, CaError> {
    JwtSigningKey::generate()
        .map(Arc::new)
        .map_err(|source| CaError::BadJwtKey {
            path: PathBuf::from("(new JWT key)"),
            source,
        })
}

fn new_intermediate(
    td: &TrustDomain,
    root: &Signer,
    now: OffsetDateTime,
) -> Result<Signer, CaError> {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| CaError::Sign {
            what: "generate an intermediate key".into(),
            source,
        })?;
    let lifetime = (root.not_after - now).unsigned_abs();
    let mut p = ca_params(td, &key, "intermediate", now, lifetime)?;
    // The intermediate only signs leaves.
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.not_before = root.not_before.max(now - BACKDATE);
    p.not_after = root.not_after;
    p.use_authority_key_identifier_extension = true;
    let cert = p
        .signed_by(&key, &root.issuer, &root.key)
        .map_err(|source| CaError::Sign {
            what: format!("sign the intermediate of {td}"),
            source,
        })?;
    signer_from(cert.der().clone(), key, Path::new("(new intermediate)"))
}

/// Common fields of signing certificates: subject, TD URI SAN, key usage, validity, serial.
fn ca_params(
    td: &TrustDomain,
    key: &KeyPair,
    role: &str,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "fedgate");
    // The key's fingerprint keeps subjects of successive roots distinct, which helps people
    // and path builders tell them apart.
    let kid = describe::sha256_hex(&key.public_key_der());
    dn.push(DnType::CommonName, format!("{td} {role} {}", &kid[..12]));
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::URI(ia5(&td.id_string()).map_err(|reason| {
        CaError::BadCertificate {
            path: PathBuf::from("(new CA)"),
            reason,
        }
    })?)];
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - BACKDATE;
    p.not_after = checked_not_after(now, ttl)?;
    p.serial_number = Some(random_serial());
    Ok(p)
}

fn load_signer(cert_path: &Path, key_path: &Path) -> Result<Signer, CaError> {
    let pem = read_limited(cert_path)?;
    let certs = describe::parse_pem_certs(&pem).map_err(|e| CaError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let [der] = <[_; 1]>::try_from(certs).map_err(|v: Vec<_>| CaError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason: format!("expected exactly one certificate, found {}", v.len()),
    })?;
    let key_bytes = read_limited(key_path)?;
    let key_text = std::str::from_utf8(&key_bytes).map_err(|_| CaError::BadKey {
        path: key_path.to_path_buf(),
        source: rcgen::Error::CouldNotParseKeyPair,
    })?;
    let key = KeyPair::from_pem(key_text).map_err(|source| CaError::BadKey {
        path: key_path.to_path_buf(),
        source,
    })?;
    let signer = signer_from(der, key, cert_path)?;
    let cert = describe::parse_cert(&signer.der).map_err(|reason| CaError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason,
    })?;
    if cert.tbs_certificate.subject_pki.raw != signer.key.public_key_der().as_slice() {
        return Err(CaError::KeyMismatch {
            key: key_path.to_path_buf(),
            cert: cert_path.to_path_buf(),
        });
    }
    if !matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca) {
        return Err(CaError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: "not a CA certificate (basicConstraints cA must be TRUE)".into(),
        });
    }
    Ok(signer)
}

fn signer_from(der: CertificateDer<'static>, key: KeyPair, path: &Path) -> Result<Signer, CaError> {
    let bad = |reason: String| CaError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let params = CertificateParams::from_ca_cert_der(&der).map_err(|e| bad(e.to_string()))?;
    let (not_before, not_after) = (params.not_before, params.not_after);
    // rcgen signs with an issuer `Certificate`; re-signing the parsed parameters yields one
    // whose subject name and key identifier are those of `der` (the throwaway signature is
    // never used).
    let issuer = params
        .self_signed(&key)
        .map_err(|e| bad(format!("key cannot sign: {e}")))?;
    Ok(Signer {
        der,
        key,
        issuer,
        not_before,
        not_after,
    })
}

/// The trust domain named by a CA certificate's URI SAN `spiffe://<td>`.
fn trust_domain_of(der: &[u8], path: &Path) -> Result<TrustDomain, CaError> {
    let bad = |reason: String| CaError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let cert = describe::parse_cert(der).map_err(bad)?;
    let uris: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| {
                if let GeneralName::URI(u) = n {
                    Some(*u)
                } else {
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let [uri] = uris.as_slice() else {
        return Err(bad(format!(
            "a CA certificate needs exactly one URI SAN spiffe://<trust domain>, found {}",
            uris.len()
        )));
    };
    let id = SpiffeId::parse(uri).map_err(|e: SpiffeIdError| bad(format!("URI SAN {uri}: {e}")))?;
    if !id.path().is_empty() {
        return Err(bad(format!(
            "URI SAN {uri} has a path; a signing certificate's ID must not (X509-SVID.md §3)"
        )));
    }
    Ok(id.trust_domain().clone())
}

/// Gives `bundle` the sequence of its next version (see [`next_sequence`]).
fn bump_sequence(bundle: &mut Bundle) -> Result<(), CaError> {
    let next = next_sequence(bundle.sequence(), std::time::SystemTime::now())
        .ok_or(CaError::SequenceOverflow)?;
    bundle.set_sequence(Some(next));
    Ok(())
}

fn checked_not_after(now: OffsetDateTime, ttl: Duration) -> Result<OffsetDateTime, CaError> {
    if ttl.is_zero() {
        return Err(CaError::ZeroTtl);
    }
    let ttl_t = time::Duration::try_from(ttl).map_err(|_| CaError::TtlTooLarge(ttl))?;
    let t = now.checked_add(ttl_t).ok_or(CaError::TtlTooLarge(ttl))?;
    // X.509 GeneralizedTime stops at year 9999.
    if t.year() > 9999 {
        return Err(CaError::TtlTooLarge(ttl));
    }
    Ok(t)
}

/// 16 random bytes, positive and without a leading zero byte (RFC 5280 §4.1.2.2: ≤ 20 bytes).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn ia5(s: &str) -> Result<rcgen::Ia5String, String> {
    rcgen::Ia5String::try_from(s.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;

/// An SVID this CA may sign (X.509 or JWT) names a workload of its own trust domain: the ID
/// is in `trust_domain` and has a path (the trust domain's own ID is not a workload).
pub(crate) fn check_workload_id(trust_domain: &TrustDomain, id: &SpiffeId) -> Result<(), CaError> {
    if id.trust_domain() != trust_domain {
        return Err(CaError::WrongTrustDomain {
            id: id.clone(),
            trust_domain: trust_domain.clone(),
        });
    }
    if id.path().is_empty() {
        return Err(CaError::RootPathId { id: id.clone() });
    }
    Ok(())
}
