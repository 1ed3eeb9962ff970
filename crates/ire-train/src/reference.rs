//! The config reference, from one source: the doc comments and serde defaults of the config
//! structs ([`RunConfig`] and the sections it holds, owned by ire-train, ire-optim, ire-data and
//! ire-llama), read through their `schemars::JsonSchema` derive. It renders `ire config` (a
//! resolved config as TOML with a comment per key, itself a valid config) and docs/config.md
//! (`ire config --reference`). A key without a doc comment fails `every_key_is_described`.

use std::fmt::Write;

use serde_json::Value as Json;

use ire_optim::{BaseName, OptimConfig};

use crate::RunConfig;

/// The command that regenerates docs/config.md (printed by the test that finds it stale).
pub const REGENERATE: &str = "cargo run --release -- config --reference > docs/config.md";

/// A small config with only the required keys: docs/config.md's example, and the declared
/// order of the keys (the schema's maps are sorted by name).
pub const EXAMPLE: &str = r#"[run]
name = "example"
dir = "runs/example"

[model]
preset = "tiny"

[optim]
base = "adamw"

[optim.ire]
kappa = 4.0

[schedule]
lr_max = 2e-3
total = 150

[batch]
micro_batch = 8
"#;

/// What a key defaults to when the config leaves it out.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultDoc {
    /// The key must be given.
    Required,
    /// Unset: its description says what that means.
    Unset,
    /// This value (inline TOML).
    Value(String),
}

/// One key of a section.
#[derive(Debug, Clone)]
pub struct KeyDoc {
    /// The key inside its section (`kappa`).
    pub name: String,
    /// Its doc comment on one line.
    pub about: String,
    /// Its type or allowed values (`float`, `"cosine" | "constant"`).
    pub kind: String,
    /// The allowed values of an enum with what each means (`"torch"`, `PyTorch defaults…`).
    pub variants: Vec<(String, String)>,
    /// Its default.
    pub default: DefaultDoc,
}

/// One `[section]`, or a table inside one (`[optim.ire]`).
#[derive(Debug, Clone)]
pub struct SectionDoc {
    /// `optim`, or `optim.ire` for a table of a section.
    pub name: String,
    /// What the section is for.
    pub about: String,
    /// Its keys, in the order the struct declares them.
    pub keys: Vec<KeyDoc>,
}

/// Every section and key of a run config, in declared order; a key holding a struct (`[optim]`'s
/// `ire`, `adamw`, …) is a section of its own (`optim.ire`), right after its parent.
pub fn sections() -> Vec<SectionDoc> {
    let schema = schemars::schema_for!(RunConfig);
    let root = schema.as_value();
    let order = declared_order();
    let mut out = Vec::new();
    for (name, prop) in object(root, "properties") {
        section_docs(name, prop, root, &order, &mut out);
    }
    let parent = |s: &SectionDoc| s.name.split('.').next().unwrap_or("").to_string();
    out.sort_by_key(|s| {
        let top = position(&order, &parent(s), "");
        (
            top,
            s.name.contains('.'),
            position(&order, &s.name, ""),
            s.name.clone(),
        )
    });
    out
}

/// The section `name` (schema `prop`) and its tables, appended to `out`.
fn section_docs(
    name: &str,
    prop: &Json,
    root: &Json,
    order: &[(String, String)],
    out: &mut Vec<SectionDoc>,
) {
    let body = table_schema(prop, root).unwrap_or_else(|| resolve(prop, root));
    let required = strings(body, "required");
    let mut keys = Vec::new();
    for (key, p) in object(body, "properties") {
        match table_schema(p, root) {
            Some(_) => section_docs(&format!("{name}.{key}"), p, root, order, out),
            None => keys.push(key_doc(key, p, root, required.contains(&key.as_str()))),
        }
    }
    keys.sort_by_key(|k| position(order, name, &k.name));
    out.push(SectionDoc {
        name: name.to_string(),
        about: one_line(prop.get("description")),
        keys,
    });
}

/// The struct schema of a key that holds a struct, or an `Option` of one: a table of its own.
fn table_schema<'a>(prop: &'a Json, root: &'a Json) -> Option<&'a Json> {
    let direct = resolve(prop, root);
    if direct.get("properties").is_some() {
        return Some(direct);
    }
    let alternatives = prop.get("anyOf").and_then(Json::as_array)?;
    let mut structs = alternatives
        .iter()
        .filter(|a| a.get("type") != Some(&"null".into()))
        .map(|a| resolve(a, root));
    match (structs.next(), structs.next()) {
        (Some(one), None) if one.get("properties").is_some() => Some(one),
        _ => None,
    }
}

fn key_doc(name: &str, prop: &Json, root: &Json, required: bool) -> KeyDoc {
    let default = match prop.get("default") {
        _ if required => DefaultDoc::Required,
        None | Some(Json::Null) => DefaultDoc::Unset,
        Some(v) => DefaultDoc::Value(inline_toml(v)),
    };
    KeyDoc {
        name: name.to_string(),
        about: one_line(prop.get("description")),
        kind: kind(prop, root),
        variants: variants(prop, root),
        default,
    }
}

/// `(section, key)` pairs in the order [`RunConfig`] serializes them (`key` empty for the
/// section itself): [`EXAMPLE`]'s, then the `[optim]` tables of the other bases; keys unset in
/// both are not in it and sort last.
fn declared_order() -> Vec<(String, String)> {
    let cfg = RunConfig::parse(EXAMPLE, "the reference example", &[])
        .expect("the reference example is a valid config");
    let mut order = Vec::new();
    let text = toml::to_string(&cfg).expect("a RunConfig always serializes to TOML");
    push_order(&text, "", &mut order);
    for base in [BaseName::Sgd, BaseName::Lion, BaseName::Muon] {
        let optim = toml::to_string(&OptimConfig::base(base)).expect("an OptimConfig serializes");
        push_order(&optim, "optim.", &mut order);
    }
    order
}

/// The sections and keys of TOML `text` in order, its headers prefixed with `prefix`.
fn push_order(text: &str, prefix: &str, order: &mut Vec<(String, String)>) {
    let mut section = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            section = format!("{prefix}{header}");
            if !order.contains(&(section.clone(), String::new())) {
                order.push((section.clone(), String::new()));
            }
        } else if let Some((key, _)) = t.split_once(" = ") {
            order.push((section.clone(), key.trim().to_string()));
        }
    }
}

fn position(order: &[(String, String)], section: &str, key: &str) -> usize {
    order
        .iter()
        .position(|(s, k)| s == section && k == key)
        .unwrap_or(usize::MAX)
}

/// The schema behind a `$ref` (once), or `s` itself.
fn resolve<'a>(s: &'a Json, root: &'a Json) -> &'a Json {
    match s.get("$ref").and_then(Json::as_str) {
        Some(r) => &root["$defs"][r.trim_start_matches("#/$defs/")],
        None => s,
    }
}

fn object<'a>(s: &'a Json, field: &str) -> impl Iterator<Item = (&'a String, &'a Json)> {
    s.get(field).and_then(Json::as_object).into_iter().flatten()
}

fn strings<'a>(s: &'a Json, field: &str) -> Vec<&'a str> {
    let list = s.get(field).and_then(Json::as_array);
    list.into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect()
}

/// A doc comment on one line (its line breaks are the source's wrapping, not paragraphs).
fn one_line(description: Option<&Json>) -> String {
    let text = description.and_then(Json::as_str).unwrap_or("");
    // Intra-doc links read as plain code here.
    let text = text.replace("[`", "`").replace("`]", "`");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A JSON value as inline TOML (`"cpu"`, `["cpu"]`, `1e-16`, `{ train = { … } }`).
fn inline_toml(v: &Json) -> String {
    match toml::Value::try_from(v) {
        Ok(t) => show(&t),
        Err(_) => v.to_string(),
    }
}

/// A TOML value on one line, floats as a person writes them (`1e-16`, not 17 digits).
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(x) if x.is_finite() && *x != 0.0 && !(1e-4..1e15).contains(&x.abs()) => {
            format!("{x:e}")
        }
        toml::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(show).collect::<Vec<_>>().join(", ")
            )
        }
        toml::Value::Table(t) => {
            let fields = t.iter().map(|(k, v)| format!("{k} = {}", show(v)));
            format!("{{ {} }}", fields.collect::<Vec<_>>().join(", "))
        }
        other => other.to_string(),
    }
}

/// The type or the allowed values of a schema, as a reader writes them in TOML.
fn kind(s: &Json, root: &Json) -> String {
    let s = resolve(s, root);
    if let Some(title) = s.get("title").and_then(Json::as_str) {
        return title.to_string();
    }
    if let Some(c) = s.get("const") {
        return c.to_string();
    }
    if let Some(values) = s.get("enum").and_then(Json::as_array) {
        return join(values.iter().map(Json::to_string));
    }
    for alternatives in ["oneOf", "anyOf"] {
        if let Some(list) = s.get(alternatives).and_then(Json::as_array) {
            let not_null = list
                .iter()
                .filter(|a| a.get("type") != Some(&"null".into()));
            return join(not_null.map(|a| kind(a, root)));
        }
    }
    match s.get("type") {
        Some(Json::String(t)) => type_name(t, s, root),
        Some(Json::Array(types)) => {
            let types = types.iter().filter_map(Json::as_str);
            join(
                types
                    .filter(|t| *t != "null")
                    .map(|t| type_name(t, s, root)),
            )
        }
        _ => "any value".into(),
    }
}

fn type_name(t: &str, s: &Json, root: &Json) -> String {
    match t {
        "array" => match s.get("items") {
            Some(items) => format!("array of {}", kind(items, root)),
            None => "array".into(),
        },
        "object" if s.get("properties").is_some() => {
            let fields = object(s, "properties").map(|(k, v)| format!("{k} = {}", kind(v, root)));
            format!("{{ {} }}", fields.collect::<Vec<_>>().join(", "))
        }
        "object" => "table".into(),
        "number" => "float".into(),
        "integer" => "integer".into(),
        "boolean" => "bool".into(),
        other => other.into(),
    }
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(" | ")
}

/// An enum's values with their doc comments (empty for other types).
fn variants(s: &Json, root: &Json) -> Vec<(String, String)> {
    let s = resolve(s, root);
    let list = s
        .get("oneOf")
        .and_then(Json::as_array)
        .into_iter()
        .flatten();
    list.filter_map(|v| Some((kind(v, root), one_line(Some(v.get("description")?)))))
        .collect()
}

/// `ire config`: `cfg` as TOML, every key under a one-line comment (meaning, type, default).
/// Unset keys are printed commented out with the value the run uses instead, and the tables of
/// `[optim]` the run does not use (another base's, `[optim.ire]` without IRE) with their keys'
/// defaults, so the text parses back to `cfg`.
pub fn annotated_toml(cfg: &RunConfig, origin: &str) -> String {
    let resolved = toml::Value::try_from(cfg).expect("a RunConfig always serializes to TOML");
    let mut out = format!(
        "# The resolved config of {origin} (`ire config`): every key with the value the run uses,\n\
         # defaults filled in, under a comment saying what it means (docs/config.md has the same).\n\
         # This text is itself a config: `ire train --config FILE` runs the same run. A key\n\
         # commented out is unset (its line shows what the run uses instead) or does not apply.\n\n"
    );
    for section in sections() {
        let mut path = section.name.split('.');
        let first = resolved.get(path.next().unwrap_or(""));
        let values = path.fold(first, |v, key| v.and_then(|v| v.get(key)));
        let values = values.and_then(toml::Value::as_table);
        let _ = match values {
            Some(_) => writeln!(out, "# {}\n[{}]", section.about, section.name),
            None => writeln!(
                out,
                "# {}\n# [{}]  # not used by this run: its keys at their defaults",
                section.about, section.name
            ),
        };
        for key in &section.keys {
            let default = match &key.default {
                DefaultDoc::Required => "required".to_string(),
                DefaultDoc::Unset => "default unset".to_string(),
                DefaultDoc::Value(v) => format!("default {v}"),
            };
            let _ = writeln!(out, "# {} [{}; {default}]", key.about, key.kind);
            let value = values.and_then(|t| t.get(&key.name));
            let name = &key.name;
            let _ = match (value, &key.default) {
                (Some(v), _) => writeln!(out, "{name} = {}", show(v)),
                (None, DefaultDoc::Value(v)) if values.is_none() => writeln!(out, "# {name} = {v}"),
                (None, _) => match unset_value(cfg, &section.name, name) {
                    Some(v) => writeln!(out, "# {name} = {v}  # unset: the run uses this"),
                    None => writeln!(out, "# {name} =  # unset"),
                },
            };
        }
        out.push('\n');
    }
    out
}

/// The value an unset key takes in `cfg`, where the config can tell it (inline TOML).
fn unset_value(cfg: &RunConfig, section: &str, key: &str) -> Option<String> {
    let model = cfg.model.resolve().ok()?;
    let value: Json = match (section, key) {
        ("model", _) => serde_json::to_value(&model).ok()?.get(key)?.clone(),
        ("batch", "seq_len") => cfg.seq_len(&model).into(),
        ("schedule", "lr_min") => cfg.schedule.build().ok()?.lr_min.into(),
        ("optim.ire", "start") => cfg.schedule.warmup.into(),
        ("data", "tokenizer") => serde_json::to_value(cfg.data.tokenizer_spec()).ok()?,
        ("data", "prepared_dir") => cfg.data.prepared_dir().display().to_string().into(),
        ("data", "val_fraction") => cfg.data.val_fraction().into(),
        _ => return None,
    };
    Some(inline_toml(&value))
}

/// docs/config.md: an intro, the example, and one table per section.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(MARKDOWN_INTRO);
    let _ = writeln!(out, "```toml\n{EXAMPLE}```\n");
    for section in sections() {
        let _ = writeln!(out, "## `[{}]`\n\n{}\n", section.name, section.about);
        out.push_str("| key | type / allowed values | default | meaning |\n|---|---|---|---|\n");
        for key in &section.keys {
            let mut about = key.about.clone();
            for (value, meaning) in &key.variants {
                let _ = write!(about, "<br>`{value}`: {meaning}");
            }
            let default = match &key.default {
                DefaultDoc::Required => "required".to_string(),
                DefaultDoc::Unset => "unset".to_string(),
                DefaultDoc::Value(v) => format!("`{v}`"),
            };
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} |",
                key.name,
                cell(&key.kind),
                cell(&default),
                cell(&about)
            );
        }
        out.push('\n');
    }
    out
}

/// Text made safe for a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

const MARKDOWN_INTRO: &str = "# Config reference

<!-- Generated from the config structs' doc comments: do not edit; regenerate with
     `cargo run --release -- config --reference > docs/config.md` (a test fails when stale). -->

A run is one TOML file with one section per component. Every key of every section is below, with
its type or allowed values, its default and what it means; unknown keys are errors naming the key.
`--set section.key=value` (repeatable) overrides a key of the file on the command line;
`--set section.table=false` removes a table (`--set optim.ire=false`: the base without IRE).

`ire config --config FILE [--set key=value …]` prints the resolved config of FILE: every key with
the value the run will use (defaults filled in) and a comment saying what it means. That output is
itself a config: `ire train --config` accepts it and resolves it to the same run. Keys printed
commented out are unset (their comment says what the run uses instead) or in a table the run does
not use (another base's, or `[optim.ire]` without IRE).

`[optim]` names the base optimizer (`base`); each base's hyper-parameters are in its own table
(`[optim.adamw]`, `[optim.sgd]`, `[optim.lion]`, `[optim.muon]`; Muon uses `[optim.adamw]` too, for
the parameters it leaves to AdamW) and IRE is the table `[optim.ire]`: present, IRE runs on top of
the base (AdamW + IRE is the paper's AdmIRE); absent, the base runs alone. docs/optimizers.md
explains each. The older spelling — `name = \"admire\"` or `\"adamw\"` with AdamW's and IRE's keys
directly in `[optim]` — still reads as the same config; `ire config` prints it in this one.

Settings that cannot be meant are refused when the config is read: a table of a base the run does
not use, an AdamW or IRE key at the top of `[optim]` next to `base` (it belongs in its table), an
IRE key with the older `name = \"adamw\"`, or `batch.seq_len` beyond the model's context
(`model.max_position_embeddings`).

The smallest config (every other key at its default):

";

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn every_key_is_described() {
        let sections = sections();
        let names: Vec<&str> = sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(&names[..3], ["run", "model", "data"], "declared order");
        assert!(
            names.contains(&"optim") && names.contains(&"dist"),
            "{names:?}"
        );
        let mut keys = 0;
        for section in &sections {
            assert!(
                !section.about.is_empty(),
                "[{}] has no doc comment",
                section.name
            );
            for key in &section.keys {
                let at = format!("{}.{}", section.name, key.name);
                assert!(
                    !key.about.is_empty(),
                    "{at} has no doc comment: describe it on its field (docs/config.md \
                     and `ire config` are made from it)"
                );
                assert!(key.kind != "any value", "{at}: no type in the schema");
                keys += 1;
            }
        }
        assert!(keys >= 55, "only {keys} keys");
        // Defaults come from serde's, enum values from the enums.
        let key = |section: &str, n: &str| {
            let section = sections.iter().find(|s| s.name == section).unwrap();
            section.keys.iter().find(|k| k.name == n).unwrap().clone()
        };
        assert_eq!(
            key("optim", "base").default,
            DefaultDoc::Value("\"adamw\"".into())
        );
        assert_eq!(
            key("optim", "base").kind,
            "\"adamw\" | \"sgd\" | \"lion\" | \"muon\""
        );
        assert_eq!(
            key("optim.ire", "kappa").default,
            DefaultDoc::Value("4.0".into())
        );
        assert_eq!(
            key("optim.adamw", "eps").default,
            DefaultDoc::Value("1e-16".into())
        );
        assert_eq!(key("optim.ire", "start").default, DefaultDoc::Unset);
        assert_eq!(
            key("optim.ire", "scope").kind,
            "\"global\" | \"per_tensor\""
        );
        assert_eq!(
            key("optim.lion", "beta2").default,
            DefaultDoc::Value("0.99".into())
        );
        // The tables of [optim] follow it, in the example's order, then the others.
        let at = |n: &str| names.iter().position(|s| *s == n).unwrap();
        assert_eq!(at("optim.adamw"), at("optim") + 1);
        assert_eq!(at("optim.ire"), at("optim") + 2);
        assert!(at("optim.muon") < at("schedule"), "{names:?}");
    }

    #[test]
    fn docs_config_md_is_current() {
        let path = repo().join("docs/config.md");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text == markdown(),
            "docs/config.md is stale (a config key or its doc comment changed): regenerate it \
             with `{REGENERATE}`"
        );
    }

    #[test]
    fn the_annotated_config_shows_what_unset_and_foreign_keys_mean() {
        let path = repo().join("configs/tiny-adamw.toml");
        let cfg = RunConfig::load(&path, &[]).unwrap();
        let text = annotated_toml(&cfg, "tiny-adamw.toml");
        for line in [
            "# max_position_embeddings = 256  # unset: the run uses this",
            "# lr_min = 0.0001  # unset: the run uses this",
            "# [optim.ire]  # not used by this run: its keys at their defaults",
            "# kappa = 4.0",
            "[optim.adamw]",
            "eps = 1e-16",
            "beta2 = 0.95",
            "tokenizer = { train = { max_train_bytes = 100000000, min_frequency = 2, vocab_size = 8192 } }",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        let comment = text.lines().position(|l| l == "beta2 = 0.95").unwrap() - 1;
        assert_eq!(
            text.lines().nth(comment).unwrap(),
            "# Adam β₂. Default 0.95. [float; default 0.95]"
        );
    }
}
