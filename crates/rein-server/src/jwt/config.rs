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
        let plain = field
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
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
