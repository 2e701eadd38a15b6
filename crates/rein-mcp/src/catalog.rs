//! A server's tools as `tools/list` describes them: what contracts are
//! derived from, what pinning hashes, what the gateway checks every later
//! listing against.

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One tool, as the server listed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// Its name (`tools/call`'s `name`).
    pub name: String,
    /// The tool object as listed, whole (so nothing the server said is lost
    /// to pinning or to the derived contract's report).
    pub raw: Json,
}

/// A tool's annotations with the MCP spec's defaults filled in where the
/// server leaves them out (MCP-spec `schema.ts` `ToolAnnotations`): not
/// read-only, destructive, not idempotent, open-world. They are the
/// server's own claims: hints, never proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotations {
    /// `title`, empty when absent.
    pub title: String,
    /// `readOnlyHint` (default false).
    pub read_only: bool,
    /// `destructiveHint` (default true).
    pub destructive: bool,
    /// `idempotentHint` (default false).
    pub idempotent: bool,
    /// `openWorldHint` (default true).
    pub open_world: bool,
}

/// The SHA-256 (hex) of each part of a tool that pinning watches.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolDigest {
    /// Of the description (absent description: of the empty string).
    pub description: String,
    /// Of `inputSchema` (canonical JSON: keys sorted).
    pub input_schema: String,
    /// Of `outputSchema`, when the tool has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<String>,
    /// Of `annotations` as listed (absent: of `null`).
    pub annotations: String,
    /// Of the whole tool object, every other field included (`title`,
    /// `icons`, `_meta`, `execution`…).
    pub whole: String,
}

impl Tool {
    /// Reads one entry of a `tools/list` result's `tools`.
    pub fn from_json(raw: &Json) -> Result<Tool, String> {
        let name = raw
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| "a tool without a string `name`".to_string())?;
        Ok(Tool {
            name: name.to_string(),
            raw: raw.clone(),
        })
    }

    /// `description`, if any.
    pub fn description(&self) -> Option<&str> {
        self.raw.get("description").and_then(Json::as_str)
    }

    /// `inputSchema` (`Null` when the server left it out, which the spec
    /// does not allow).
    pub fn input_schema(&self) -> &Json {
        self.raw.get("inputSchema").unwrap_or(&Json::Null)
    }

    /// `outputSchema`, if the tool declares one.
    pub fn output_schema(&self) -> Option<&Json> {
        self.raw.get("outputSchema").filter(|s| !s.is_null())
    }

    /// The annotations, the spec's defaults filled in.
    pub fn annotations(&self) -> Annotations {
        let a = self.raw.get("annotations");
        let flag = |key: &str, default: bool| a.and_then(|a| a.get(key)).and_then(Json::as_bool).unwrap_or(default);
        Annotations {
            title: a
                .and_then(|a| a.get("title"))
                .or_else(|| self.raw.get("title"))
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            read_only: flag("readOnlyHint", false),
            destructive: flag("destructiveHint", true),
            idempotent: flag("idempotentHint", false),
            open_world: flag("openWorldHint", true),
        }
    }

    /// The hashes pinning records and compares.
    pub fn digest(&self) -> ToolDigest {
        ToolDigest {
            description: sha256_hex(self.description().unwrap_or_default().as_bytes()),
            input_schema: sha256_json(self.input_schema()),
            output_schema: self.output_schema().map(sha256_json),
            annotations: sha256_json(self.raw.get("annotations").unwrap_or(&Json::Null)),
            whole: sha256_json(&self.raw),
        }
    }
}

/// Every tool of one server, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// The tools by name.
    pub tools: BTreeMap<String, Tool>,
}

impl Catalog {
    /// Reads the `tools` of one or several `tools/list` result pages; a
    /// name listed twice is an error (which of the two would a call reach?).
    pub fn from_pages<'a>(pages: impl IntoIterator<Item = &'a Json>) -> Result<Catalog, String> {
        let mut tools = BTreeMap::new();
        for page in pages {
            let list = page
                .get("tools")
                .and_then(Json::as_array)
                .ok_or_else(|| "a tools/list result without a `tools` array".to_string())?;
            for raw in list {
                let tool = Tool::from_json(raw)?;
                if tools.contains_key(&tool.name) {
                    return Err(format!("the tool `{}` is listed twice", tool.name));
                }
                tools.insert(tool.name.clone(), tool);
            }
        }
        Ok(Catalog { tools })
    }
}

/// The Rein action of a server's tool, `mcp.<server>.<tool>`; `None` when
/// the names do not make a valid action name (the tool then cannot be
/// governed, and is refused).
pub fn action_name(server: &str, tool: &str) -> Option<String> {
    let name = format!("mcp.{server}.{tool}");
    rein_engine::syntax::native::valid_action_name(&name).then_some(name)
}

/// Whether `name` can name a server (`--server NAME`): letters, digits,
/// `_` and `-`, at most 64 bytes (it is a path segment and part of action
/// names).
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn sha256_json(value: &Json) -> String {
    // Keys sorted at every level whatever map serde_json is built with:
    // a workspace build can turn on `preserve_order` (a dev-dependency
    // does), and a digest must depend on the content only, or pins written
    // by one build would not match the listings another build reads.
    sha256_hex(&serde_json::to_vec(&canonical_json(value)).unwrap_or_default())
}

/// The same value with every object's keys in sorted order.
pub(crate) fn canonical_json(value: &Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Json::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical_json(&map[k.as_str()])))
                    .collect(),
            )
        }
        Json::Array(items) => Json::Array(items.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_take_the_spec_defaults() {
        let t = Tool::from_json(&json!({"name": "x", "inputSchema": {"type": "object"}})).unwrap();
        let a = t.annotations();
        assert!(!a.read_only && a.destructive && !a.idempotent && a.open_world);
        let t = Tool::from_json(
            &json!({"name": "x", "inputSchema": {}, "annotations": {"readOnlyHint": true, "openWorldHint": false}}),
        )
        .unwrap();
        let a = t.annotations();
        assert!(a.read_only && a.destructive && !a.open_world);
    }

    #[test]
    fn digests_change_with_what_they_cover() {
        let a = Tool::from_json(&json!({"name": "x", "description": "d", "inputSchema": {"type": "object"}})).unwrap();
        let b = Tool::from_json(&json!({"name": "x", "description": "d2", "inputSchema": {"type": "object"}})).unwrap();
        assert_ne!(a.digest().description, b.digest().description);
        assert_eq!(a.digest().input_schema, b.digest().input_schema);
        assert_ne!(a.digest().whole, b.digest().whole);
    }

    #[test]
    fn catalogs_refuse_a_name_twice() {
        let page = json!({"tools": [{"name": "a", "inputSchema": {}}, {"name": "a", "inputSchema": {}}]});
        assert!(Catalog::from_pages([&page]).is_err());
    }

    #[test]
    fn action_names() {
        assert_eq!(action_name("fs", "read_file").as_deref(), Some("mcp.fs.read_file"));
        assert_eq!(action_name("e", "get-env").as_deref(), Some("mcp.e.get-env"));
        assert_eq!(action_name("fs", "bad name"), None);
        assert_eq!(action_name("fs", "a..b"), None);
        assert!(valid_server_name("github") && !valid_server_name("a/b") && !valid_server_name(""));
    }
}
