//! Who a request is for: its tenant. In order, a JWT (signature verified
//! with HS256 secrets or RS256/ES256 keys from a JWKS file; expired, not yet
//! valid, wrongly issued or badly signed tokens are refused with 401), an
//! API key (stored as SHA-256 digests; an unknown key is refused), a trusted
//! header, else the configured default tenant. Built once per config; keys
//! and JWKS files are read when the config is applied.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use levee_config::{ApiKeys, Jwt, Tenants};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A verification key from the config or a JWKS file.
#[derive(Debug)]
enum VerifyKey {
    Hs256(ring::hmac::Key),
    Rs256 { n: Vec<u8>, e: Vec<u8> },
    Es256(Vec<u8>),
}

/// Resolves a request's tenant.
#[derive(Debug)]
pub(crate) struct TenantResolver {
    default: Arc<str>,
    header: Option<HeaderName>,
    api_key_header: Option<HeaderName>,
    /// SHA-256 of each key → tenant.
    api_keys: HashMap<[u8; 32], Arc<str>>,
    jwt: Option<JwtVerifier>,
    /// Tenant names already seen, so resolving does not allocate.
    names: HashMap<String, Arc<str>>,
}

#[derive(Debug)]
struct JwtVerifier {
    header: HeaderName,
    claim: String,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_s: u64,
    /// Keys by `kid` (HS256 secrets have none and are all tried).
    keys: Vec<(Option<String>, VerifyKey)>,
}

/// Why a request's credentials were refused (answered 401).
pub(crate) type Refusal = String;

impl TenantResolver {
    /// Builds the resolver, reading key files (relative to `base`).
    pub(crate) fn new(config: &Tenants, base: Option<&Path>) -> Result<Self, String> {
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        let mut intern = |s: &str| -> Arc<str> {
            names
                .entry(s.to_string())
                .or_insert_with(|| Arc::from(s))
                .clone()
        };
        let default = intern(&config.default);
        for t in &config.list {
            intern(&t.name);
        }
        let mut api_keys = HashMap::new();
        if let Some(a) = &config.api_keys {
            for k in all_api_keys(a, base)? {
                let digest = hex32(&k.sha256).ok_or("an API key digest is not 64 hex digits")?;
                api_keys.insert(digest, intern(&k.tenant));
            }
        }
        let jwt = config
            .jwt
            .as_ref()
            .map(|j| JwtVerifier::new(j, base))
            .transpose()?;
        Ok(Self {
            default,
            header: config
                .header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            api_key_header: config
                .api_keys
                .as_ref()
                .and_then(|a| HeaderName::from_bytes(a.header.as_bytes()).ok()),
            api_keys,
            jwt,
            names,
        })
    }

    /// The tenant of a request with `headers`; `now_unix` (seconds) is
    /// called only to check a token's times.
    pub(crate) fn resolve(
        &self,
        headers: &HeaderMap,
        now_unix: impl FnOnce() -> u64,
    ) -> Result<Arc<str>, Refusal> {
        if let Some(jwt) = &self.jwt {
            if let Some(value) = headers.get(&jwt.header) {
                let name = jwt.verify(value.as_bytes(), now_unix())?;
                return Ok(self.name(&name));
            }
        }
        if let Some(h) = &self.api_key_header {
            if let Some(key) = headers.get(h) {
                let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
                let mut d = [0u8; 32];
                d.copy_from_slice(digest.as_ref());
                return self
                    .api_keys
                    .get(&d)
                    .cloned()
                    .ok_or_else(|| "unknown API key".to_string());
            }
        }
        if let Some(h) = &self.header {
            if let Some(t) = headers.get(h).and_then(|v| v.to_str().ok()) {
                if !t.is_empty() {
                    return Ok(self.name(t));
                }
            }
        }
        Ok(self.default.clone())
    }

    fn name(&self, name: &str) -> Arc<str> {
        self.names
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }
}

fn all_api_keys(a: &ApiKeys, base: Option<&Path>) -> Result<Vec<levee_config::ApiKey>, String> {
    let mut keys = a.keys.clone();
    if let Some(file) = &a.file {
        let path = resolve(file, base);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("API key file {}: {e}", path.display()))?;
        let more = levee_config::load_api_keys(&text, &path.display().to_string())
            .map_err(|e| e.to_string())?;
        keys.extend(more);
    }
    Ok(keys)
}

fn resolve(file: &Path, base: Option<&Path>) -> std::path::PathBuf {
    match base {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(hex, 16).ok()?;
    }
    (s.len() == 64).then_some(out)
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| "the token is not valid base64url".to_string())
}

impl JwtVerifier {
    fn new(j: &Jwt, base: Option<&Path>) -> Result<Self, String> {
        let mut keys: Vec<(Option<String>, VerifyKey)> = j
            .hs256_secrets
            .iter()
            .map(|s| {
                (
                    None,
                    VerifyKey::Hs256(ring::hmac::Key::new(
                        ring::hmac::HMAC_SHA256,
                        s.expose().as_bytes(),
                    )),
                )
            })
            .collect();
        if let Some(file) = &j.jwks_file {
            let path = resolve(file, base);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
            keys.extend(
                parse_jwks(&text).map_err(|e| format!("JWKS file {}: {e}", path.display()))?,
            );
        }
        Ok(Self {
            header: HeaderName::from_bytes(j.header.as_bytes()).map_err(|e| e.to_string())?,
            claim: j.claim.clone(),
            issuer: j.issuer.clone(),
            audience: j.audience.clone(),
            leeway_s: j.leeway.as_secs(),
            keys,
        })
    }

    /// Verifies `Bearer <token>` and returns the tenant claim.
    fn verify(&self, value: &[u8], now: u64) -> Result<String, Refusal> {
        let value = std::str::from_utf8(value).map_err(|_| "malformed authorization header")?;
        let token = levee_core::auth::bearer_token(value).unwrap_or(value.trim());
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the token is not a JWT (three dot-separated parts)".into());
        };
        let header: serde_json::Value =
            serde_json::from_slice(&b64(h)?).map_err(|_| "the token header is not JSON")?;
        let alg = header["alg"].as_str().unwrap_or("");
        let kid = header["kid"].as_str();
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let sig = b64(s)?;
        let verified = self.keys.iter().any(|(key_id, key)| {
            if kid.is_some() && key_id.is_some() && key_id.as_deref() != kid {
                return false;
            }
            match (alg, key) {
                ("HS256", VerifyKey::Hs256(k)) => ring::hmac::verify(k, signed, &sig).is_ok(),
                ("RS256", VerifyKey::Rs256 { n, e }) => RsaPublicKeyComponents { n, e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
                    .is_ok(),
                ("ES256", VerifyKey::Es256(point)) => {
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(signed, &sig)
                        .is_ok()
                }
                _ => false,
            }
        });
        if !verified {
            return Err(format!("the token's {alg} signature does not verify"));
        }
        let claims: serde_json::Value =
            serde_json::from_slice(&b64(p)?).map_err(|_| "the token claims are not JSON")?;
        if let Some(exp) = claims["exp"].as_u64() {
            if now > exp + self.leeway_s {
                return Err("the token has expired".into());
            }
        }
        if let Some(nbf) = claims["nbf"].as_u64() {
            if now + self.leeway_s < nbf {
                return Err("the token is not valid yet".into());
            }
        }
        if let Some(iss) = &self.issuer {
            if claims["iss"].as_str() != Some(iss) {
                return Err("the token's issuer is not accepted".into());
            }
        }
        if let Some(aud) = &self.audience {
            let ok = match &claims["aud"] {
                serde_json::Value::String(a) => a == aud,
                serde_json::Value::Array(list) => list.iter().any(|a| a.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err("the token's audience is not accepted".into());
            }
        }
        claims[self.claim.as_str()]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("the token has no `{}` claim", self.claim))
    }
}

/// Reads RS256 (`kty: RSA`, `n`, `e`) and ES256 (`kty: EC`, `crv: P-256`,
/// `x`, `y`) public keys from a JWKS document.
fn parse_jwks(text: &str) -> Result<Vec<(Option<String>, VerifyKey)>, String> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let keys = doc["keys"].as_array().ok_or("no `keys` array")?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let kid = k["kid"].as_str().map(str::to_string);
        let field = |name: &str| {
            k[name]
                .as_str()
                .ok_or(format!("keys[{i}] has no `{name}`"))
                .and_then(|v| b64(v).map_err(|_| format!("keys[{i}].{name} is not base64url")))
        };
        match k["kty"].as_str() {
            Some("RSA") => out.push((
                kid,
                VerifyKey::Rs256 {
                    n: field("n")?,
                    e: field("e")?,
                },
            )),
            Some("EC") if k["crv"].as_str() == Some("P-256") => {
                let mut point = vec![4u8];
                point.extend(field("x")?);
                point.extend(field("y")?);
                out.push((kid, VerifyKey::Es256(point)));
            }
            other => {
                return Err(format!(
                    "keys[{i}]: unsupported key type {other:?} (RSA or EC P-256)"
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_config::{ApiKey, Secret, TenantConfig};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn enc(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn hs256(claims: serde_json::Value) -> String {
        let head = enc(&serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        let body = enc(&claims);
        let msg = format!("{head}.{body}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, msg.as_bytes()).as_ref());
        format!("{msg}.{sig}")
    }

    fn jwt_config(jwks: Option<std::path::PathBuf>) -> Tenants {
        Tenants {
            default: "anonymous".into(),
            header: Some("x-tenant".into()),
            api_keys: Some(ApiKeys {
                header: "x-api-key".into(),
                keys: vec![ApiKey {
                    tenant: "acme".into(),
                    // sha256("k-acme")
                    sha256: hex(ring::digest::digest(&ring::digest::SHA256, b"k-acme").as_ref()),
                }],
                file: None,
            }),
            jwt: Some(Jwt {
                header: "authorization".into(),
                claim: "tenant".into(),
                hs256_secrets: vec![Secret::new(SECRET)],
                jwks_file: jwks,
                issuer: Some("https://id.example".into()),
                audience: Some("levee".into()),
                leeway: Duration::from_secs(30),
            }),
            list: vec![TenantConfig {
                name: "acme".into(),
                weight: 2,
            }],
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const NOW: u64 = 1_800_000_000;

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut c = serde_json::json!({
            "tenant": "globex", "iss": "https://id.example", "aud": ["levee", "other"],
            "exp": NOW + 60, "nbf": NOW - 60,
        });
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    #[test]
    fn order_jwt_then_api_key_then_header_then_default() {
        let r = TenantResolver::new(&jwt_config(None), None).unwrap();
        let bearer = format!("Bearer {}", hs256(claims(serde_json::json!({}))));
        let both = headers(&[("authorization", &bearer), ("x-api-key", "k-acme")]);
        assert_eq!(&*r.resolve(&both, || NOW).unwrap(), "globex");
        assert_eq!(
            &*r.resolve(&headers(&[("x-api-key", "k-acme")]), || NOW)
                .unwrap(),
            "acme"
        );
        assert_eq!(
            &*r.resolve(&headers(&[("x-tenant", "initech")]), || NOW)
                .unwrap(),
            "initech"
        );
        assert_eq!(&*r.resolve(&HeaderMap::new(), || NOW).unwrap(), "anonymous");
    }

    #[test]
    fn bad_credentials_are_refused_with_a_reason() {
        let r = TenantResolver::new(&jwt_config(None), None).unwrap();
        let cases = [
            (claims(serde_json::json!({"exp": NOW - 31})), "expired"),
            (
                claims(serde_json::json!({"nbf": NOW + 31})),
                "not valid yet",
            ),
            (claims(serde_json::json!({"iss": "https://evil"})), "issuer"),
            (claims(serde_json::json!({"aud": "other"})), "audience"),
            (claims(serde_json::json!({"tenant": ""})), "claim"),
        ];
        for (c, why) in cases {
            let h = headers(&[("authorization", &format!("Bearer {}", hs256(c)))]);
            let err = r.resolve(&h, || NOW).unwrap_err();
            assert!(err.contains(why), "{err} should mention {why}");
        }
        // Within the leeway an expired token still passes.
        let h = headers(&[(
            "authorization",
            &format!(
                "Bearer {}",
                hs256(claims(serde_json::json!({"exp": NOW - 29})))
            ),
        )]);
        assert!(r.resolve(&h, || NOW).is_ok());
        // A tampered payload breaks the signature.
        let token = hs256(claims(serde_json::json!({})));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = enc(&claims(serde_json::json!({"tenant": "acme"})));
        parts[1] = &forged;
        let h = headers(&[("authorization", &format!("Bearer {}", parts.join(".")))]);
        assert!(r.resolve(&h, || NOW).unwrap_err().contains("signature"));
        assert!(r
            .resolve(&headers(&[("authorization", "Bearer nope")]), || NOW)
            .unwrap_err()
            .contains("not a JWT"));
        assert_eq!(
            r.resolve(&headers(&[("x-api-key", "wrong")]), || NOW)
                .unwrap_err(),
            "unknown API key"
        );
    }

    #[test]
    fn es256_tokens_verify_against_a_jwks_file() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref();
        let (x, y) = (&public[1..33], &public[33..65]);
        let dir = std::env::temp_dir().join(format!("levee-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks = dir.join("jwks.json");
        std::fs::write(
            &jwks,
            serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}]})
            .to_string(),
        )
        .unwrap();
        let r = TenantResolver::new(&jwt_config(Some("jwks.json".into())), Some(&dir)).unwrap();
        let head = enc(&serde_json::json!({"alg": "ES256", "kid": "k1"}));
        let body = enc(&claims(serde_json::json!({"tenant": "umbrella"})));
        let msg = format!("{head}.{body}");
        let sig = pair.sign(&rng, msg.as_bytes()).unwrap();
        let token = format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        let h = headers(&[("authorization", &format!("Bearer {token}"))]);
        assert_eq!(&*r.resolve(&h, || NOW).unwrap(), "umbrella");
        // Signed as ES256 but claiming HS256 (algorithm confusion): refused.
        let head = enc(&serde_json::json!({"alg": "HS256", "kid": "k1"}));
        let forged = format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        let h = headers(&[("authorization", &format!("Bearer {forged}"))]);
        assert!(r.resolve(&h, || NOW).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unreadable_key_files_are_reported() {
        let err = TenantResolver::new(&jwt_config(Some("missing.json".into())), None).unwrap_err();
        assert!(err.contains("missing.json"), "{err}");
    }
}
