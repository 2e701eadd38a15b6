//! Reads the tokens file's `issuers:` list (see the module doc of
//! [`crate::auth`] for the format). Every error names its place in the
//! file; unknown keys are refused.

use super::{
    IssuerConfig, Issuers, KeySource, DEFAULT_JWKS_MIN_REFETCH_SECONDS, DEFAULT_JWKS_TTL_SECONDS,
    DEFAULT_LEEWAY_SECONDS, MAX_LEEWAY_SECONDS,
};
use crate::auth::{Role, TokenError};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use rein_engine::syntax::yaml::{YamlNode, YamlValue};
use rein_runtime::ChainLink;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

const KEYS: &str = "name, issuer, audience, jwks_file, jwks_url, algorithms, leeway_seconds, \
jwks_ttl_seconds, jwks_min_refetch_seconds, role, roles_claim, roles, approves_claim, name_claim, \
actor, chain_kind";

/// Reads `issuers:`; a relative `jwks_file` is read from `base` (the
/// tokens file's directory).
pub(crate) fn parse_issuers(
    node: &YamlNode,
    base: Option<&Path>,
    at: &impl Fn(&YamlNode, String) -> TokenError,
) -> Result<Issuers, TokenError> {
    let YamlValue::Seq(items) = &node.value else {
        return Err(at(
            node,
            format!("`issuers` must be a list, found a {}", node.kind_name()),
        ));
    };
    let mut configs: Vec<IssuerConfig> = Vec::with_capacity(items.len());
    for item in items {
        let config = issuer(item, base, at)?;
        if configs.iter().any(|c| c.name == config.name) {
            return Err(at(item, format!("another issuer is also named `{}`", config.name)));
        }
        if configs.iter().any(|c| c.issuer == config.issuer) {
            return Err(at(
                item,
                format!(
                    "another issuer also has `issuer: {}`; each `iss` needs one issuer",
                    config.issuer
                ),
            ));
        }
        // Read the keys now, so that a bad JWKS file is named with its place.
        Issuers::new(vec![config.clone()]).map_err(|e| at(item, e))?;
        configs.push(config);
    }
    Issuers::new(configs).map_err(|e| at(node, e))
}

fn issuer(
    item: &YamlNode,
    base: Option<&Path>,
    at: &impl Fn(&YamlNode, String) -> TokenError,
) -> Result<IssuerConfig, TokenError> {
    let YamlValue::Map(fields) = &item.value else {
        return Err(at(
            item,
            format!("an issuer must be a mapping, found a {}", item.kind_name()),
        ));
    };
    let string = |v: &YamlNode, key: &str| match &v.value {
        YamlValue::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(at(
            v,
            format!("`{key}` must be a non-empty string, found a {}", v.kind_name()),
        )),
    };
    let seconds = |v: &YamlNode, key: &str, min: u64, max: u64| match &v.value {
        YamlValue::Int(n) if (min as i64..=max as i64).contains(n) => Ok(*n as u64),
        _ => Err(at(v, format!("`{key}` must be a whole number from {min} to {max}"))),
    };
    let mut name = None;
    let mut issuer = None;
    let mut audience = None;
    let mut keys: Option<KeySource> = None;
    let mut algorithms = None;
    let mut leeway_seconds = DEFAULT_LEEWAY_SECONDS;
    let mut jwks_ttl = DEFAULT_JWKS_TTL_SECONDS;
    let mut jwks_min_refetch = DEFAULT_JWKS_MIN_REFETCH_SECONDS;
    let mut role = Role::Agent;
    let mut roles_claim: Option<(String, &YamlNode)> = None;
    let mut roles: Option<(Vec<(String, Role)>, &YamlNode)> = None;
    let mut approves_claim = None;
    let mut name_claim = "sub".to_string();
    let mut actor = Vec::new();
    let mut chain_kind = "user".to_string();
    for (k, v) in fields {
        let YamlValue::String(key) = &k.value else {
            return Err(at(k, "keys must be strings".into()));
        };
        match key.as_str() {
            "name" => {
                let n = string(v, key)?;
                if !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    return Err(at(
                        v,
                        format!("the issuer name `{n}` must be a plain name (letters, digits, `-`, `_`)"),
                    ));
                }
                name = Some(n);
            }
            "issuer" => issuer = Some(string(v, key)?),
            "audience" => {
                let list = string_list(v, key, at)?;
                if list.is_empty() {
                    return Err(at(v, "`audience` needs at least one audience".into()));
                }
                audience = Some(list);
            }
            "jwks_file" | "jwks_url" => {
                if keys.is_some() {
                    return Err(at(
                        k,
                        "an issuer has one of `jwks_file` and `jwks_url`, not both".into(),
                    ));
                }
                let value = string(v, key)?;
                let source = if key == "jwks_file" {
                    let path = Path::new(&value);
                    KeySource::File(match base {
                        Some(base) if path.is_relative() => base.join(path),
                        _ => path.to_path_buf(),
                    })
                } else {
                    KeySource::Url(jwks_url(&value).map_err(|e| at(v, e))?)
                };
                keys = Some(source);
            }
            "algorithms" => {
                let names = string_list(v, key, at)?;
                if names.is_empty() {
                    return Err(at(v, "`algorithms` needs at least one algorithm".into()));
                }
                let mut list = Vec::with_capacity(names.len());
                for n in &names {
                    list.push(algorithm(n).map_err(|e| at(v, e))?);
                }
                algorithms = Some(list);
            }
            "leeway_seconds" => leeway_seconds = seconds(v, key, 0, MAX_LEEWAY_SECONDS)?,
            "jwks_ttl_seconds" => jwks_ttl = seconds(v, key, 1, 7 * 24 * 3600)?,
            "jwks_min_refetch_seconds" => jwks_min_refetch = seconds(v, key, 1, 24 * 3600)?,
            "role" => role = role_of(v, at)?,
            "roles_claim" => roles_claim = Some((string(v, key)?, k)),
            "roles" => {
                let YamlValue::Map(entries) = &v.value else {
                    return Err(at(
                        v,
                        format!("`roles` must map claim values to roles, found a {}", v.kind_name()),
                    ));
                };
                let mut map: Vec<(String, Role)> = Vec::with_capacity(entries.len());
                for (value, r) in entries {
                    let value = match &value.value {
                        YamlValue::String(s) => s.clone(),
                        YamlValue::Int(i) => i.to_string(),
                        YamlValue::Bool(b) => b.to_string(),
                        _ => return Err(at(value, "a claim value in `roles` must be a string".into())),
                    };
                    map.push((value, role_of(r, at)?));
                }
                roles = Some((map, k));
            }
            "approves_claim" => approves_claim = Some(string(v, key)?),
            "name_claim" => name_claim = string(v, key)?,
            "actor" => actor = actor_map(v, at)?,
            "chain_kind" => {
                let kind = string(v, key)?;
                ChainLink {
                    kind: kind.clone(),
                    id: "x".into(),
                }
                .validate()
                .map_err(|e| at(v, e))?;
                chain_kind = kind;
            }
            other => return Err(at(k, format!("unknown key `{other}`; an issuer has {KEYS}"))),
        }
    }
    match (&roles_claim, &roles) {
        (Some((_, k)), None) => return Err(at(k, "`roles_claim` needs `roles:`, the claim values to map".into())),
        (None, Some((_, k))) => return Err(at(k, "`roles` needs `roles_claim:`, the claim to read".into())),
        _ => {}
    }
    let missing = |what: &str| at(item, format!("this issuer has no `{what}`"));
    let Some(keys) = keys else {
        return Err(missing("jwks_file` or `jwks_url"));
    };
    Ok(IssuerConfig {
        name: name.ok_or_else(|| missing("name"))?,
        issuer: issuer.ok_or_else(|| missing("issuer"))?,
        audience: audience.ok_or_else(|| missing("audience"))?,
        keys,
        algorithms,
        leeway_seconds,
        jwks_ttl: Duration::from_secs(jwks_ttl),
        jwks_min_refetch: Duration::from_secs(jwks_min_refetch),
        role,
        roles_claim: roles_claim.map(|(c, _)| c),
        roles: roles.map(|(r, _)| r).unwrap_or_default(),
        approves_claim,
        name_claim,
        actor,
        chain_kind,
    })
}

/// An allowed algorithm: asymmetric only. HMAC would need a shared secret,
/// and is the door of key confusion (an HS256 token "signed" with an
/// issuer's public key); `none` signs nothing.
fn algorithm(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("`none` is never an accepted algorithm".into());
    }
    let alg = Algorithm::from_str(name).map_err(|_| {
        format!(
            "unknown algorithm `{name}`; algorithms are RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
        )
    })?;
    if alg.family() == AlgorithmFamily::Hmac {
        return Err(format!(
            "`{name}` is refused: issuers sign with asymmetric keys (RS*, PS*, ES*, EdDSA), never a shared secret"
        ));
    }
    Ok(alg)
}

/// A JWKS URL: `https://`, or `http://` to this machine only (an
/// unencrypted fetch from elsewhere would let the network pick the keys).
fn jwks_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url.to_string()),
        "http" if loopback => Ok(url.to_string()),
        "http" => Err(format!(
            "`{text}`: a JWKS URL must be https (plain http only to localhost)"
        )),
        other => Err(format!("`{text}`: a JWKS URL must be https, not {other}")),
    }
}

fn role_of(v: &YamlNode, at: &impl Fn(&YamlNode, String) -> TokenError) -> Result<Role, TokenError> {
    match &v.value {
        YamlValue::String(r) => {
            Role::parse(r).ok_or_else(|| at(v, format!("unknown role `{r}`; roles are agent, approver, admin")))
        }
        _ => Err(at(v, format!("a role must be a string, found a {}", v.kind_name()))),
    }
}

fn string_list(
    v: &YamlNode,
    key: &str,
    at: &impl Fn(&YamlNode, String) -> TokenError,
) -> Result<Vec<String>, TokenError> {
    match &v.value {
        YamlValue::String(s) if !s.is_empty() => Ok(vec![s.clone()]),
        YamlValue::Seq(items) => items
            .iter()
            .map(|i| match &i.value {
                YamlValue::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(at(i, format!("each of `{key}` must be a non-empty string"))),
            })
            .collect(),
        _ => Err(at(
            v,
            format!(
                "`{key}` must be a string or a list of strings, found a {}",
                v.kind_name()
            ),
        )),
    }
}

/// `actor:` of an issuer: claim → actor field, fields plain names other
/// than `chain`, each bound once.
fn actor_map(
    node: &YamlNode,
    at: &impl Fn(&YamlNode, String) -> TokenError,
) -> Result<Vec<(String, String)>, TokenError> {
    let YamlValue::Map(entries) = &node.value else {
        return Err(at(
            node,
            format!(
                "`actor` must map claims to actor fields (e.g. `sub: id`), found a {}",
                node.kind_name()
            ),
        ));
    };
    let mut out: Vec<(String, String)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let YamlValue::String(claim) = &k.value else {
            return Err(at(k, "a claim must be a name".into()));
        };
        let YamlValue::String(field) = &v.value else {
            return Err(at(
                v,
                format!(
                    "the actor field for claim `{claim}` must be a name, found a {}",
                    v.kind_name()
                ),
            ));
        };
        let plain = crate::auth::is_plain_field(field);
        if !plain {
            return Err(at(
                v,
                format!("unknown actor field `{field}`; a bound field is a plain name such as id, role, tenant"),
            ));
        }
        if field == "chain" {
            return Err(at(
                v,
                "`actor.chain` is set by Rein (one link `<chain_kind>:<sub>`), not by a claim".into(),
            ));
        }
        if out.iter().any(|(_, f)| f == field) {
            return Err(at(v, format!("`actor.{field}` is bound twice")));
        }
        out.push((claim.clone(), field.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::auth::Tokens;

    const ISSUER: &str = "issuers:\n  - name: corp\n    issuer: https://login.example.com/\n    audience: rein\n    jwks_url: https://login.example.com/jwks.json\n";

    fn error(text: &str) -> String {
        match Tokens::parse("t.yaml", text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    #[test]
    fn refuses_bad_issuers_with_location() {
        let cases = [
            ("algorithms: [HS256]", "t.yaml:6:17: `HS256` is refused: issuers sign with asymmetric keys (RS*, PS*, ES*, EdDSA), never a shared secret"),
            ("algorithms: [RS256, HS512]", "t.yaml:6:17: `HS512` is refused"),
            ("algorithms: [none]", "t.yaml:6:17: `none` is never an accepted algorithm"),
            ("algorithms: [RS1]", "t.yaml:6:17: unknown algorithm `RS1`"),
            ("algorithms: []", "t.yaml:6:17: `algorithms` needs at least one algorithm"),
            ("leeway_seconds: 301", "t.yaml:6:21: `leeway_seconds` must be a whole number from 0 to 300"),
            ("leeway_seconds: -1", "t.yaml:6:21: `leeway_seconds` must be a whole number"),
            ("jwks_min_refetch_seconds: 0", "t.yaml:6:31: `jwks_min_refetch_seconds` must be a whole number from 1"),
            ("roles_claim: groups", "t.yaml:6:5: `roles_claim` needs `roles:`"),
            ("roles: {ops: admin}", "t.yaml:6:5: `roles` needs `roles_claim:`"),
            ("roles_claim: g\n    roles: {ops: root}", "t.yaml:7:18: unknown role `root`; roles are agent, approver, admin"),
            ("role: root", "t.yaml:6:11: unknown role `root`"),
            ("actor: {sub: chain}", "t.yaml:6:18: `actor.chain` is set by Rein"),
            ("actor: {sub: a.b}", "t.yaml:6:18: unknown actor field `a.b`"),
            ("actor: {sub: id, oid: id}", "t.yaml:6:27: `actor.id` is bound twice"),
            ("actor: {sub: [id]}", "t.yaml:6:18: the actor field for claim `sub` must be a name, found a list"),
            ("actor: sub", "t.yaml:6:12: `actor` must map claims to actor fields"),
            ("jwks_file: keys.json", "t.yaml:6:5: an issuer has one of `jwks_file` and `jwks_url`, not both"),
            ("audiences: rein", "t.yaml:6:5: unknown key `audiences`; an issuer has name, issuer, audience"),
            ("chain_kind: \"a b\"", "t.yaml:6:17: the kind `a b` of a chain link must be a plain name"),
            ("name_claim: [a]", "t.yaml:6:17: `name_claim` must be a non-empty string, found a list"),
        ];
        for (line, want) in cases {
            let e = error(&format!("{ISSUER}    {line}\n"));
            assert!(e.starts_with(want), "{line}:\n got: {e}\nwant: {want}");
        }
    }

    #[test]
    fn refuses_incomplete_or_unsafe_issuers() {
        let without = |key: &str| {
            ISSUER
                .lines()
                .filter(|l| !l.trim_start().starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        assert_eq!(error(&without("audience")), "t.yaml:2:5: this issuer has no `audience`");
        let nameless = ISSUER.replace("- name: corp\n    issuer", "- issuer");
        assert_eq!(error(&nameless), "t.yaml:2:5: this issuer has no `name`");
        assert!(error(&without("jwks_url")).contains("has no `jwks_file` or `jwks_url`"));
        let http = ISSUER.replace(
            "https://login.example.com/jwks.json",
            "http://login.example.com/jwks.json",
        );
        assert!(error(&http).contains("a JWKS URL must be https (plain http only to localhost)"));
        assert!(Tokens::parse(
            "t.yaml",
            &ISSUER.replace("https://login.example.com/jwks.json", "http://127.0.0.1:9/j")
        )
        .is_ok());
        assert!(
            error(&ISSUER.replace("https://login.example.com/jwks.json", "file:///etc/jwks")).contains("must be https")
        );
        // Two issuers of one name, or of one `iss`.
        let twice = format!("{ISSUER}{}", &ISSUER["issuers:\n".len()..].replace("login.", "other."));
        assert_eq!(error(&twice), "t.yaml:6:5: another issuer is also named `corp`");
        let twice = format!("{ISSUER}{}", &ISSUER["issuers:\n".len()..].replace("corp", "corp2"));
        assert!(error(&twice).starts_with("t.yaml:6:5: another issuer also has `issuer: https://login.example.com/`"));
        // A static token named as a JWT holder would share its identity.
        let clash = format!("tokens:\n  - {{name: \"corp:alice\", role: agent, token: aaaaaaaaaaaaaaaa}}\n{ISSUER}");
        assert!(error(&clash).starts_with("t.yaml:2:5: the token name `corp:alice` is of the form `corp:…`"));
        // Issuers only is a file; nothing at all is not.
        assert!(Tokens::parse("t.yaml", ISSUER).is_ok());
        assert!(error("issuers: []\n").contains("no tokens"));
        assert_eq!(error("{}\n"), "t.yaml:1:1: missing `tokens:` (or `issuers:`)");
    }

    #[test]
    fn reads_jwks_files_beside_the_tokens_file() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.yaml");
        let text = ISSUER.replace("jwks_url: https://login.example.com/jwks.json", "jwks_file: keys.json");
        std::fs::write(&tokens, &text).unwrap();
        let e = Tokens::load(&tokens).unwrap_err().to_string();
        assert!(e.contains("tokens.yaml:2:5: cannot read the JWKS file"), "{e}");
        // Keys no algorithm here may use: HMAC secrets, encryption keys.
        std::fs::write(
            dir.path().join("keys.json"),
            r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0"}, {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}"#,
        )
        .unwrap();
        let e = Tokens::load(&tokens).unwrap_err().to_string();
        assert!(e.contains("no key in it is usable for signatures"), "{e}");
        std::fs::write(dir.path().join("keys.json"), "[]").unwrap();
        let e = Tokens::load(&tokens).unwrap_err().to_string();
        assert!(e.contains("not a JWKS: no `keys` list"), "{e}");
        std::fs::write(
            dir.path().join("keys.json"),
            r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "e1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        )
        .unwrap();
        assert!(Tokens::load(&tokens).is_ok());
    }
}
