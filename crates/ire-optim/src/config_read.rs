//! Reading `[optim]` as written: the older spelling rewritten into the current one.
//!
//! The older spelling (every config before bases and IRE were apart) names the optimizer and
//! writes AdamW's and IRE's keys directly in `[optim]`:
//!
//! ```toml
//! [optim]                          # reads as:  [optim]
//! name = "admire"                  #            base = "adamw"
//! beta2 = 0.95                     #            [optim.adamw]  beta2 = 0.95
//! kappa = 4.0                      #            [optim.ire]    kappa = 4.0
//! ```
//!
//! `name = "adamw"` reads the same without `[optim.ire]`; IRE keys written with it are refused
//! (AdamW would ignore them), except in configs ire saved itself, which wrote every key.

use crate::config::{BaseName, ADAMW_KEYS, ADMIRE_ONLY_KEYS};
use crate::OptimError;

/// The tables of the current spelling.
const TABLES: &[&str] = &["adamw", "sgd", "lion", "muon", "ire"];

/// Rewrites an `[optim]` table in the older spelling (with `name`) into the current one, in
/// place; checks that a table in the current spelling has no key of the older one at its top.
/// `saved`: the table comes from a config ire wrote, whose AdamW runs carry the IRE keys
/// (dropped instead of refused).
pub fn upgrade(optim: &mut toml::Table, saved: bool) -> Result<(), OptimError> {
    let Some(name) = optim.remove("name") else {
        return misplaced_keys(optim);
    };
    let admire = match name.as_str() {
        Some("admire") => true,
        Some("adamw") => false,
        _ => {
            let message = format!(
                "{name} is not \"admire\" or \"adamw\" (the older spelling; the current one is \
                 base = \"adamw\" | \"sgd\" | \"lion\" | \"muon\", with [optim.ire] for IRE)"
            );
            return Err(OptimError::optim("name", message));
        }
    };
    if optim.contains_key("base") {
        let message = "`name` is the older spelling of `base` (+ [optim.ire]): write one of them";
        return Err(OptimError::optim("name", message));
    }
    if let Some(table) = TABLES.iter().find(|t| optim.contains_key(**t)) {
        let message = "a table of the current spelling, and this [optim] uses the older `name` \
                       key: replace `name` by `base` (and [optim.ire] for IRE)";
        return Err(OptimError::optim(table, message));
    }
    optim.insert("base".into(), BaseName::Adamw.as_str().into());
    let adamw = take(optim, ADAMW_KEYS);
    optim.insert("adamw".into(), adamw.into());
    let ire = take(optim, ADMIRE_ONLY_KEYS);
    if admire {
        optim.insert("ire".into(), ire.into());
    } else if let Some(key) = ire.keys().next().filter(|_| !saved) {
        let key = ADMIRE_ONLY_KEYS
            .iter()
            .find(|k| *k == key)
            .expect("taken from this list");
        let message = "only applies to AdmIRE (optim.name = \"admire\"), and this run uses AdamW \
                       (optim.name = \"adamw\"): remove the key, or set optim.name = \"admire\"";
        return Err(OptimError::optim(key, message));
    }
    Ok(())
}

/// The entries of `keys` removed from `optim`, as a table.
fn take(optim: &mut toml::Table, keys: &[&str]) -> toml::Table {
    keys.iter()
        .filter_map(|k| Some((k.to_string(), optim.remove(*k)?)))
        .collect()
}

/// Refuses an AdamW or IRE key at the top of an `[optim]` in the current spelling.
fn misplaced_keys(optim: &toml::Table) -> Result<(), OptimError> {
    for (keys, table) in [(ADAMW_KEYS, "adamw"), (ADMIRE_ONLY_KEYS, "ire")] {
        if let Some(key) = keys.iter().find(|k| optim.contains_key(**k)) {
            let message = format!(
                "belongs in [optim.{table}] (each part of the optimizer has its table); or \
                 write the older spelling, with name = \"admire\" or \"adamw\" instead of `base`"
            );
            return Err(OptimError::optim(key, message));
        }
    }
    Ok(())
}
