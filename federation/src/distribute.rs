//! Distribution of the bundles in force to workloads, as files.
//!
//! Every [`Distributor::write`] produces a complete generation directory `gen-<N>` holding:
//! * `bundles.json`: a SPIFFE bundle map (SPIFFE_Trust_Domain_and_Bundle.md §5:
//!   `{"trust_domains": {"<td>": <bundle JWKS>, ...}}`, no `spiffe_refresh_hint` inside),
//! * `<td>.pem`: the X.509 authorities of each trust domain,
//! * `certs/<hash>.<n>`: an OpenSSL hashed CA directory (what `openssl rehash` produces),
//! * `<td>.p12` (unless [`Pkcs12Options::per_trust_domain`] is off): a PKCS#12 truststore of
//!   that trust domain's X.509 authorities, and `all.p12` (if [`Pkcs12Options::all`] is on)
//!   with the authorities of every trust domain.
//!
//! Invariants:
//! * Readers see one generation or the next, never a mix: the generation is written and
//!   fsynced in a temporary directory, renamed to `gen-<N>`, and only then the symlink
//!   `current -> gen-<N>` is replaced by `rename(2)` of a new symlink (atomic).
//! * Trust domains are never merged: one PEM file and one map entry per trust domain. The
//!   hashed directory is, by its nature, one pool; it is meant for consumers that trust a
//!   single peer or that check the trust domain of the peer's SPIFFE ID themselves.
//! * [`parse_bundle_map`] rejects a map with a duplicate trust domain key (§5.1.1, §6.3).
//! * Every entry of a PKCS#12 store is a *trusted certificate entry* (a CertBag carrying
//!   Java's trusted-key-usage attribute `2.16.840.1.113894.746875.1.1` = anyExtendedKeyUsage,
//!   which keytool lists as `trustedCertEntry`); no store holds a private key. The alias of an
//!   authority is `<td>-<i>` (`i` its index in the bundle), the same in `<td>.p12` and
//!   `all.p12`. The certificate bags are encrypted and MACed with the configured password
//!   (PBES2/AES-256, HMAC-SHA-256), which is therefore never empty: Java skips encrypted
//!   certificates when it loads a store without a password.
//! * An authority that cannot be encoded is left out of the PKCS#12 stores (as out of
//!   `certs/`) with a warning, never the whole generation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use crate::bundle::{Bundle, BundleError, BundleSet};
use crate::fs::{replace_public, sync_dir};
use crate::spiffe_id::{SpiffeIdError, TrustDomain};

/// Writes generations of distribution files under one output directory.
#[derive(Clone, Debug)]
pub struct Distributor {
    dir: PathBuf,
    /// How many generations (including the current one) to keep.
    keep: usize,
    pkcs12: Pkcs12Options,
}

/// Which PKCS#12 truststores a generation holds, and their password.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs12Options {
    /// Write `<td>.p12` for every trust domain.
    pub per_trust_domain: bool,
    /// Write `all.p12` with the authorities of every trust domain.
    pub all: bool,
    /// Encrypts the certificate bags and keys the MAC (a Java `trustStorePassword`).
    pub password: String,
}

/// The password of the PKCS#12 stores when none is configured: Java's conventional
/// truststore password (that of its own `cacerts`).
pub const DEFAULT_PKCS12_PASSWORD: &str = "changeit";

/// The file name of the store with every trust domain.
pub const ALL_PKCS12: &str = "all.p12";

impl Default for Pkcs12Options {
    /// One store per trust domain, no `all.p12`, password [`DEFAULT_PKCS12_PASSWORD`].
    fn default() -> Self {
        Self {
            per_trust_domain: true,
            all: false,
            password: DEFAULT_PKCS12_PASSWORD.to_owned(),
        }
    }
}

impl fmt::Debug for Pkcs12Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs12Options")
            .field("per_trust_domain", &self.per_trust_domain)
            .field("all", &self.all)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistributeError {
    #[error("cannot write the distribution directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the PKCS#12 truststore {file}")]
    Pkcs12 {
        file: String,
        #[source]
        source: p12_keystore::error::Error,
    },
    #[error("the PKCS#12 password is empty; Java cannot read the certificates of such a store")]
    EmptyPkcs12Password,
    #[error("trust domain \"all\" clashes with the combined truststore all.p12")]
    AllClash,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleMapError {
    #[error("bundle map is not valid JSON of the expected shape")]
    Json(#[source] serde_json::Error),
    #[error("bundle map has no \"trust_domains\" object")]
    MissingTrustDomains,
    #[error("bundle map key {key:?} is not a valid trust domain name")]
    BadTrustDomain {
        key: String,
        #[source]
        source: SpiffeIdError,
    },
    #[error("bundle map lists trust domain {0} more than once; refusing the whole map")]
    DuplicateTrustDomain(TrustDomain),
    #[error("bundle map entry for {trust_domain} is not a valid bundle")]
    Bundle {
        trust_domain: TrustDomain,
        #[source]
        source: BundleError,
    },
}

// === impl Distributor ===

impl Distributor {
    /// Distributes into `dir` (created if missing), keeping the current and one previous
    /// generation.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            keep: 2,
            pkcs12: Pkcs12Options::default(),
        }
    }

    /// Sets which PKCS#12 truststores are written. An empty password is refused when a store
    /// is to be written.
    pub fn with_pkcs12(mut self, options: Pkcs12Options) -> Result<Self, DistributeError> {
        if (options.per_trust_domain || options.all) && options.password.is_empty() {
            return Err(DistributeError::EmptyPkcs12Password);
        }
        self.pkcs12 = options;
        Ok(self)
    }

    pub fn with_generations_kept(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// The stable path consumers read: `<dir>/current`.
    pub fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    /// Writes `set` as a new generation, switches `current` to it and prunes old ones.
    /// Returns the generation directory.
    pub fn write(&self, set: &BundleSet) -> Result<PathBuf, DistributeError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DistributeError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let generations = self.generations().map_err(io(&self.dir))?;
        let next = generations.iter().next_back().map_or(1, |n| n + 1);
        let name = format!("gen-{next}");
        let final_dir = self.dir.join(&name);

        let tmp = tempfile::Builder::new()
            .prefix(".tmp-gen-")
            .tempdir_in(&self.dir)
            .map_err(io(&self.dir))?;
        write_generation(tmp.path(), set).map_err(io(tmp.path()))?;
        write_pkcs12(tmp.path(), set, &self.pkcs12)?;
        sync_dir(tmp.path()).map_err(io(tmp.path()))?;
        let tmp_path = tmp.keep();
        if let Err(source) = std::fs::rename(&tmp_path, &final_dir) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            return Err(DistributeError::Io {
                path: final_dir,
                source,
            });
        }

        // Atomic switch: a new symlink under a temporary name, renamed over `current`.
        let link_tmp = self.dir.join(format!(".current-{next}"));
        let _ = std::fs::remove_file(&link_tmp);
        symlink(Path::new(&name), &link_tmp).map_err(io(&link_tmp))?;
        std::fs::rename(&link_tmp, self.current()).map_err(io(&self.current()))?;
        sync_dir(&self.dir).map_err(io(&self.dir))?;

        // Prune: keep the newest `keep` generations.
        let mut all = self.generations().map_err(io(&self.dir))?;
        while all.len() > self.keep {
            if let Some(oldest) = all.pop_first() {
                let p = self.dir.join(format!("gen-{oldest}"));
                if let Err(e) = std::fs::remove_dir_all(&p) {
                    tracing::warn!(path = %p.display(), error = %e, "cannot prune old generation");
                }
            }
        }
        Ok(final_dir)
    }

    fn generations(&self) -> std::io::Result<BTreeSet<u64>> {
        let mut out = BTreeSet::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.strip_prefix("gen-"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.insert(n);
            }
        }
        Ok(out)
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "symlinks need a unix system",
    ))
}

fn write_generation(dir: &Path, set: &BundleSet) -> std::io::Result<()> {
    replace_public(&dir.join("bundles.json"), &bundle_map_json(set))?;
    let certs = dir.join("certs");
    std::fs::create_dir(&certs)?;
    let mut used: BTreeMap<u32, u32> = BTreeMap::new();
    for bundle in set.iter() {
        replace_public(
            &dir.join(format!("{}.pem", bundle.trust_domain().as_str())),
            pem_of(bundle).as_bytes(),
        )?;
        for der in bundle.x509_authorities() {
            let Some(hash) = subject_hash(der) else {
                tracing::warn!(trust_domain = %bundle.trust_domain(), "authority subject unparsable; left out of certs/");
                continue;
            };
            let n = used.entry(hash).or_insert(0);
            replace_public(
                &certs.join(format!("{hash:08x}.{n}")),
                pem_block(der).as_bytes(),
            )?;
            *n += 1;
        }
    }
    sync_dir(&certs)?;
    sync_dir(dir)
}

/// Writes the PKCS#12 truststores `options` asks for into the generation directory `dir`.
fn write_pkcs12(
    dir: &Path,
    set: &BundleSet,
    options: &Pkcs12Options,
) -> Result<(), DistributeError> {
    if options.all && set.iter().any(|b| b.trust_domain().as_str() == "all") {
        return Err(DistributeError::AllClash);
    }
    let mut all = Vec::new();
    for bundle in set.iter() {
        let entries = trusted_entries(bundle);
        if options.per_trust_domain {
            let file = format!("{}.p12", bundle.trust_domain().as_str());
            write_store(dir, &file, &entries, &options.password)?;
        }
        if options.all {
            all.extend(entries);
        }
    }
    if options.all {
        write_store(dir, ALL_PKCS12, &all, &options.password)?;
    }
    Ok(())
}

/// The authorities of `bundle` as (alias, certificate), skipping unparsable ones.
fn trusted_entries(bundle: &Bundle) -> Vec<(String, p12_keystore::Certificate)> {
    let td = bundle.trust_domain();
    let mut out = Vec::new();
    for (i, der) in bundle.x509_authorities().iter().enumerate() {
        match p12_keystore::Certificate::from_der(der) {
            Ok(cert) => out.push((format!("{}-{i}", td.as_str()), cert)),
            Err(e) => tracing::warn!(
                trust_domain = %td,
                error = %e,
                "authority unparsable; left out of the PKCS#12 truststores"
            ),
        }
    }
    out
}

/// Encodes a truststore of `entries` (all trusted certificate entries) to `dir/file`.
fn write_store(
    dir: &Path,
    file: &str,
    entries: &[(String, p12_keystore::Certificate)],
    password: &str,
) -> Result<(), DistributeError> {
    let mut store = p12_keystore::KeyStore::new();
    for (alias, cert) in entries {
        store.add_entry(
            alias,
            p12_keystore::KeyStoreEntry::Certificate(cert.clone()),
        );
    }
    let bytes = store
        .writer(password)
        .write()
        .map_err(|source| DistributeError::Pkcs12 {
            file: file.to_owned(),
            source,
        })?;
    let path = dir.join(file);
    replace_public(&path, &bytes).map_err(|source| DistributeError::Io { path, source })
}

/// The SPIFFE bundle map of `set` (pretty JSON), without refresh hints (§5.1.1).
pub fn bundle_map_json(set: &BundleSet) -> Vec<u8> {
    let mut domains = serde_json::Map::new();
    for bundle in set.iter() {
        let mut b = (**bundle).clone();
        b.set_refresh_hint(None);
        let value = serde_json::from_slice(&b.to_json()).unwrap_or(serde_json::Value::Null);
        domains.insert(bundle.trust_domain().to_string(), value);
    }
    let map = serde_json::json!({ "trust_domains": domains });
    serde_json::to_vec_pretty(&map).unwrap_or_default()
}

/// The X.509 authorities of `bundle` as concatenated PEM `CERTIFICATE` blocks.
pub fn pem_of(bundle: &Bundle) -> String {
    bundle
        .x509_authorities()
        .iter()
        .map(|c| pem_block(c))
        .collect()
}

fn pem_block(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The bundles of the bundle map file at `path`, as `bytes` read by a
/// [`FileWatch`](crate::watch::FileWatch) that watches it as an optional file. A map that
/// does not exist (yet) is empty, with a warning: a gateway may not have distributed one when a
/// workload or agent starts, and the watch picks it up once it appears. An existing map must
/// parse.
pub fn bundles_of_map_file(path: &Path, bytes: &[u8]) -> Result<Vec<Bundle>, BundleMapError> {
    if bytes.is_empty() && !path.exists() {
        tracing::warn!(
            path = %path.display(),
            "federated bundle map does not exist (yet): only the local trust domain's bundle \
             is in use until it appears"
        );
        return Ok(Vec::new());
    }
    let set = parse_bundle_map(bytes)?;
    Ok(set.iter().map(|b| Bundle::clone(b)).collect())
}

/// Parses a SPIFFE bundle map. Keys are trust domain names (`example.org`; the
/// `spiffe://example.org` form is accepted too); two keys naming the same trust domain, or a
/// repeated `trust_domains` key, reject the whole map.
pub fn parse_bundle_map(bytes: &[u8]) -> Result<BundleSet, BundleMapError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = TopLevel
        .deserialize(&mut de)
        .map_err(BundleMapError::Json)?;
    de.end().map_err(BundleMapError::Json)?;
    let entries = top.ok_or(BundleMapError::MissingTrustDomains)?;
    let mut seen = BTreeSet::new();
    let mut set = BundleSet::new();
    for (key, value) in entries {
        let td = TrustDomain::new(&key).map_err(|source| BundleMapError::BadTrustDomain {
            key: key.clone(),
            source,
        })?;
        if !seen.insert(td.clone()) {
            return Err(BundleMapError::DuplicateTrustDomain(td));
        }
        let json = serde_json::to_vec(&value).unwrap_or_default();
        let (mut bundle, _) =
            Bundle::parse(&td, &json).map_err(|source| BundleMapError::Bundle {
                trust_domain: td.clone(),
                source,
            })?;
        // Consumers must not act on per-bundle refresh hints inside a map (§5.1.1).
        bundle.set_refresh_hint(None);
        set = set.with(bundle);
    }
    Ok(set)
}

type Entries = Vec<(String, serde_json::Value)>;

/// Visits the top-level object, keeping `trust_domains` entries in order, duplicates included.
struct TopLevel;

/// Visits the `trust_domains` object without collapsing duplicate keys.
struct EntryList;

impl<'de> DeserializeSeed<'de> for TopLevel {
    type Value = Option<Entries>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = Option<Entries>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SPIFFE bundle map object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Option<Entries> = None;
        let mut duplicate = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "trust_domains" {
                let entries = map.next_value_seed(EntryList)?;
                if found.is_some() {
                    duplicate = true;
                }
                found = Some(entries);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        if duplicate {
            return Err(de::Error::custom("duplicate \"trust_domains\" key"));
        }
        Ok(found)
    }
}

impl<'de> DeserializeSeed<'de> for EntryList {
    type Value = Entries;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntryList {
    type Value = Entries;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of trust domain name to bundle")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            out.push((key, map.next_value::<serde_json::Value>()?));
        }
        Ok(out)
    }
}

/// OpenSSL's `X509_NAME_hash` (the `openssl x509 -hash` value) of a certificate's subject.
pub fn subject_hash(cert_der: &[u8]) -> Option<u32> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let canon = canonical_name(cert.subject().as_raw())?;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &canon);
    let d = digest.as_ref();
    Some(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
}

/// OpenSSL's canonical name encoding (`x509_name_canon`): the DER of each RDN `SET` in
/// order, without the outer `SEQUENCE`, where every string value is converted to a
/// `UTF8String`, trimmed, with internal whitespace runs collapsed to one space and ASCII
/// letters lowercased.
fn canonical_name(name_der: &[u8]) -> Option<Vec<u8>> {
    let (tag, body, rest) = tlv(name_der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut rdns = body;
    while !rdns.is_empty() {
        let (tag, set_body, rest) = tlv(rdns)?;
        if tag != 0x31 {
            return None;
        }
        rdns = rest;
        let mut atvs = Vec::new();
        let mut items = set_body;
        while !items.is_empty() {
            let (tag, atv, rest) = tlv(items)?;
            if tag != 0x30 {
                return None;
            }
            items = rest;
            let (oid_tag, oid, after_oid) = tlv(atv)?;
            if oid_tag != 0x06 {
                return None;
            }
            let (vtag, value, after_value) = tlv(after_oid)?;
            if !after_value.is_empty() {
                return None;
            }
            let mut enc = der(0x06, oid);
            match string_to_utf8(vtag, value) {
                Some(s) => enc.extend(der(0x0c, canonical_string(&s).as_bytes())),
                None => enc.extend(der(vtag, value)),
            }
            atvs.push(der(0x30, &enc));
        }
        // DER SET OF: elements sorted by their encoding, as OpenSSL's i2d does.
        atvs.sort();
        out.extend(der(0x31, &atvs.concat()));
    }
    Some(out)
}

/// The string types OpenSSL canonicalizes (`ASN1_MASK_CANON`), decoded to UTF-8.
fn string_to_utf8(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String
        0x0c => String::from_utf8(value.to_vec()).ok(),
        // PrintableString, T61String, IA5String, VisibleString: one byte per character.
        0x13 | 0x14 | 0x16 | 0x1a => Some(value.iter().map(|&b| char::from(b)).collect()),
        // UniversalString (UCS-4 BE)
        0x1c => value
            .chunks(4)
            .map(|c| {
                <[u8; 4]>::try_from(c)
                    .ok()
                    .map(u32::from_be_bytes)
                    .and_then(char::from_u32)
            })
            .collect(),
        // BMPString (UCS-2 BE)
        0x1e => {
            let units: Option<Vec<u16>> = value
                .chunks(2)
                .map(|c| <[u8; 2]>::try_from(c).ok().map(u16::from_be_bytes))
                .collect();
            String::from_utf16(&units?).ok()
        }
        _ => None,
    }
}

/// Trim ASCII whitespace, collapse runs of it into one space, lowercase ASCII letters.
fn canonical_string(s: &str) -> String {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r');
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.trim_matches(is_space).chars() {
        if is_space(c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            in_space = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Reads one DER TLV with a single-byte tag: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Encodes one DER TLV.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_string_rules() {
        assert_eq!(canonical_string("  Hello   World \t"), "hello world");
        assert_eq!(canonical_string("ÄBC"), "Äbc");
        assert_eq!(canonical_string(""), "");
    }

    #[test]
    fn der_round_trips_through_tlv() {
        for len in [0usize, 1, 127, 128, 255, 256, 70000] {
            let body = vec![7u8; len];
            let enc = der(0x04, &body);
            let (tag, got, rest) = tlv(&enc).unwrap();
            assert_eq!((tag, got.len(), rest.len()), (0x04, len, 0));
        }
    }

    #[test]
    fn duplicate_trust_domains_are_refused() {
        let dup = br#"{"trust_domains": {"a.test": {"keys": []}, "a.test": {"keys": []}}}"#;
        assert!(matches!(
            parse_bundle_map(dup),
            Err(BundleMapError::DuplicateTrustDomain(td)) if td.as_str() == "a.test"
        ));
        let twice = br#"{"trust_domains": {}, "trust_domains": {}}"#;
        assert!(matches!(
            parse_bundle_map(twice),
            Err(BundleMapError::Json(_))
        ));
        assert!(matches!(
            parse_bundle_map(b"{}"),
            Err(BundleMapError::MissingTrustDomains)
        ));
        let two_forms =
            br#"{"trust_domains": {"a.test": {"keys": []}, "spiffe://a.test": {"keys": []}}}"#;
        assert!(matches!(
            parse_bundle_map(two_forms),
            Err(BundleMapError::DuplicateTrustDomain(_))
        ));
        let ok = br#"{"trust_domains": {"a.test": {"keys": [], "spiffe_refresh_hint": 5}, "b.test": {"keys": []}}}"#;
        let set = parse_bundle_map(ok).unwrap();
        assert_eq!(set.len(), 2);
        assert!(
            set.iter().all(|b| b.refresh_hint().is_none()),
            "hints inside a map are ignored"
        );
        assert!(matches!(
            parse_bundle_map(br#"{"trust_domains": {"Bad Name": {"keys": []}}}"#),
            Err(BundleMapError::BadTrustDomain { .. })
        ));
    }

    fn root(cn: &str) -> Vec<u8> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    fn bundle(td: &str, roots: &[Vec<u8>]) -> Bundle {
        let mut b = Bundle::new(TrustDomain::new(td).unwrap());
        for r in roots {
            b.add_x509_authority(r.clone().into());
        }
        b
    }

    /// (alias, DER) of the trusted certificate entries of a store; panics on any other entry.
    fn read_store(path: &Path, password: &str) -> BTreeMap<String, Vec<u8>> {
        let bytes = std::fs::read(path).unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &bytes,
            password,
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .unwrap();
        store
            .entries()
            .map(|(alias, entry)| match entry {
                p12_keystore::KeyStoreEntry::Certificate(c) => (alias.clone(), c.as_der().to_vec()),
                other => panic!("unexpected entry {alias}: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn pkcs12_store_per_trust_domain_and_all() {
        use std::os::unix::fs::PermissionsExt;
        let (a1, b1, b2) = (root("a1"), root("b1"), root("b2"));
        let set = BundleSet::new()
            .with(bundle("a.test", std::slice::from_ref(&a1)))
            .with(bundle("b.test", &[b1.clone(), b2.clone()]))
            .with(bundle("jwt-only.test", &[]));
        let dir = tempfile::tempdir().unwrap();
        let d = Distributor::new(dir.path())
            .with_pkcs12(Pkcs12Options {
                per_trust_domain: true,
                all: true,
                password: "s3cret".into(),
            })
            .unwrap();
        let generation = d.write(&set).unwrap();
        let current = d.current();

        let a = read_store(&current.join("a.test.p12"), "s3cret");
        assert_eq!(a, BTreeMap::from([("a.test-0".to_owned(), a1.clone())]));
        let b = read_store(&current.join("b.test.p12"), "s3cret");
        assert_eq!(
            b,
            BTreeMap::from([
                ("b.test-0".to_owned(), b1.clone()),
                ("b.test-1".to_owned(), b2.clone())
            ])
        );
        assert!(read_store(&current.join("jwt-only.test.p12"), "s3cret").is_empty());
        let all = read_store(&current.join(ALL_PKCS12), "s3cret");
        assert_eq!(
            all,
            BTreeMap::from([
                ("a.test-0".to_owned(), a1),
                ("b.test-0".to_owned(), b1),
                ("b.test-1".to_owned(), b2)
            ])
        );
        // Public like the PEM files; the wrong password does not open the store.
        let mode = std::fs::metadata(generation.join("a.test.p12"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        let bytes = std::fs::read(current.join("a.test.p12")).unwrap();
        assert!(p12_keystore::KeyStore::from_pkcs12(
            &bytes,
            "wrong",
            p12_keystore::Pkcs12ImportPolicy::Strict
        )
        .is_err());
    }

    #[test]
    fn pkcs12_defaults_and_switches() {
        let set = BundleSet::new().with(bundle("a.test", &[root("a")]));
        let dir = tempfile::tempdir().unwrap();
        // Default: per trust domain, no all.p12, Java's conventional password.
        let d = Distributor::new(dir.path().join("default"));
        d.write(&set).unwrap();
        assert_eq!(
            read_store(&d.current().join("a.test.p12"), "changeit").len(),
            1
        );
        assert!(!d.current().join(ALL_PKCS12).exists());
        // Off: no .p12 at all, the other files as before.
        let off = Distributor::new(dir.path().join("off"))
            .with_pkcs12(Pkcs12Options {
                per_trust_domain: false,
                all: false,
                password: String::new(),
            })
            .unwrap();
        off.write(&set).unwrap();
        assert!(!off.current().join("a.test.p12").exists());
        assert!(off.current().join("a.test.pem").exists());
        // An empty password is refused when a store is written.
        assert!(matches!(
            Distributor::new(dir.path()).with_pkcs12(Pkcs12Options {
                password: String::new(),
                ..Pkcs12Options::default()
            }),
            Err(DistributeError::EmptyPkcs12Password)
        ));
        // A trust domain named "all" cannot coexist with all.p12; the generation is not
        // switched.
        let clash = Distributor::new(dir.path().join("clash"))
            .with_pkcs12(Pkcs12Options {
                all: true,
                ..Pkcs12Options::default()
            })
            .unwrap();
        let set = set.with(bundle("all", &[root("x")]));
        assert!(matches!(clash.write(&set), Err(DistributeError::AllClash)));
        assert!(!clash.current().exists());
    }

    proptest! {
        #[test]
        fn bundle_map_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_bundle_map(&bytes);
        }

        #[test]
        fn canonical_name_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = canonical_name(&bytes);
        }
    }
}
