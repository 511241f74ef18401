//! How SLIs measured elsewhere (a Prometheus query, Datadog, `type: Any`)
//! become Levee scopes: rules given as `--map NAME=TARGET` or in a mapping
//! file, and the route names of a Levee config (an SLO or service named like
//! a route measures that route).
//!
//! A flag's target is `route:NAME`, `tier:core|optional`, `tenant:NAME` or
//! `cluster:NAME` (several joined by `,`), optionally with `latency:300ms`,
//! `latency` or `availability`. A mapping file (TOML or YAML, read by the
//! config's decoder) holds the same as `[[map]]` tables:
//!
//! ```toml
//! [[map]]
//! slo = "checkout-latency"   # or `service`, or `indicator` (an SLI's name)
//! route = "checkout"         # and/or tier, tenant, cluster
//! sli = "latency"            # optional: availability or latency
//! threshold = "300ms"        # latency only
//! ```

use super::map::Scope;
use crate::diag::Decoder;
use crate::node::{Node, Value};
use crate::{parse_duration, Diagnostic, Diagnostics, Format};
use std::path::Path;
use std::time::Duration;

/// What a rule says about the kind of SLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SliChoice {
    Availability,
    /// A latency SLI, with the threshold when the rule gives one.
    Latency(Option<Duration>),
}

/// Which name a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum On {
    /// An SLO, an SLI or a service of that name (a `--map` flag).
    Any,
    Slo,
    Sli,
    Service,
}

/// One mapping rule.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Rule {
    pub(super) on: On,
    pub(super) name: String,
    pub(super) scope: Scope,
    pub(super) sli: Option<SliChoice>,
    /// Where it was given, for notes: `--map checkout=...` or `map.toml:3`.
    pub(super) origin: String,
}

/// The rules and route names an import maps foreign metric sources with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    pub(super) rules: Vec<Rule>,
    pub(super) routes: Vec<String>,
}

/// How `levee slo import` runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// How SLIs measured elsewhere become Levee scopes.
    pub mapping: Mapping,
    /// Whether what cannot carry over is an error rather than a note.
    pub strict: bool,
}

/// The SLO, SLI and service names one SLO is known by.
pub(super) struct Names<'s> {
    pub(super) slo: &'s str,
    pub(super) sli: Option<&'s str>,
    pub(super) service: Option<&'s str>,
}

impl Mapping {
    /// Adds one `NAME=TARGET` rule, as given to `--map`.
    pub fn add_flag(&mut self, flag: &str) -> Result<(), String> {
        let (name, target) = flag.split_once('=').ok_or_else(|| {
            format!("`{flag}` is not NAME=TARGET (such as `checkout=route:checkout`)")
        })?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("`{flag}` names no SLO, SLI or service"));
        }
        let mut scope = Scope::default();
        let mut sli = None;
        for part in target.split(',').map(str::trim) {
            let (key, value) = part.split_once(':').unwrap_or((part, ""));
            set(&mut scope, &mut sli, key, value).map_err(|e| format!("`{flag}`: {e}"))?;
        }
        if scope == Scope::default() {
            return Err(format!(
                "`{flag}` gives no route:, tier:, tenant: or cluster:"
            ));
        }
        self.rules.push(Rule {
            on: On::Any,
            name: name.to_string(),
            scope,
            sli,
            origin: format!("--map {flag}"),
        });
        Ok(())
    }

    /// Adds the rules of a mapping file (TOML or YAML `[[map]]` tables).
    pub fn add_file(&mut self, path: &Path) -> Result<(), Diagnostics> {
        let file = path.display().to_string();
        let one = |message: String| Diagnostics(vec![Diagnostic::whole_file(&file, message, None)]);
        let src = std::fs::read_to_string(path)
            .map_err(|e| one(format!("cannot read the mapping file: {e}")))?;
        let root = match Format::from_path(path) {
            Some(Format::Toml) => crate::node::parse_toml(&src),
            _ => crate::node::parse_yaml(&src),
        }
        .map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: file.clone(),
                line: e.loc.line,
                col: e.loc.col,
                path: String::new(),
                message: format!("not a valid mapping file: {}", e.message),
                help: None,
            }])
        })?;
        let mut d = Decoder::literal(&file);
        let mut rules = Vec::new();
        if let Some(mut t) = d.table(&root, "") {
            let list = d.opt(&mut t, "map", |d, n, p| {
                if n.value == Value::Null {
                    return Some(Vec::new());
                }
                d.list(n, p, |d, n, p| rule(d, n, p, &file))
            });
            d.finish(t);
            rules = list.unwrap_or_default();
        }
        let mut diags = d.diags;
        diags.sort_by_key(|d| (d.line, d.col));
        if !diags.is_empty() {
            return Err(Diagnostics(diags));
        }
        self.rules.extend(rules);
        Ok(())
    }

    /// Routes of a Levee config: an SLO or service named like one of them
    /// measures that route when no rule says otherwise.
    pub fn add_routes(&mut self, routes: impl IntoIterator<Item = String>) {
        self.routes.extend(routes);
    }

    /// The first rule for these names: a rule on the SLO, then on its SLI,
    /// then on its service (a `--map` rule matches any of them).
    pub(super) fn find(&self, names: &Names<'_>) -> Option<(usize, &Rule)> {
        let wanted = [
            (On::Slo, Some(names.slo)),
            (On::Sli, names.sli),
            (On::Service, names.service),
        ];
        wanted.iter().find_map(|(on, name)| {
            let name = (*name)?;
            self.rules
                .iter()
                .enumerate()
                .find(|(_, r)| (r.on == *on || r.on == On::Any) && r.name == name)
        })
    }

    /// The route named like the SLO, its SLI or its service.
    pub(super) fn route_named(&self, names: &Names<'_>) -> Option<&str> {
        [Some(names.slo), names.sli, names.service]
            .into_iter()
            .flatten()
            .find_map(|n| self.routes.iter().find(|r| *r == n))
            .map(String::as_str)
    }
}

/// Applies `key:value` of a target.
fn set(
    scope: &mut Scope,
    sli: &mut Option<SliChoice>,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let value = value.trim();
    let need = |v: &str| {
        if v.is_empty() {
            Err(format!("`{key}:` needs a name"))
        } else {
            Ok(v.to_string())
        }
    };
    match key.trim() {
        "route" => scope.route = Some(need(value)?),
        "cluster" => scope.cluster = Some(need(value)?),
        "tenant" if crate::decode::is_name(value) => scope.tenant = Some(value.to_string()),
        "tenant" => return Err(format!("`{value}` is not a valid tenant name")),
        "tier" if matches!(value, "core" | "optional") => scope.tier = Some(value.to_string()),
        "tier" => return Err(format!("tier `{value}` is not `core` or `optional`")),
        "availability" if value.is_empty() => *sli = Some(SliChoice::Availability),
        "latency" if value.is_empty() => *sli = Some(SliChoice::Latency(None)),
        "latency" => match parse_duration(value).ok().filter(|d| !d.is_zero()) {
            Some(d) => *sli = Some(SliChoice::Latency(Some(d))),
            None => return Err(format!("`{value}` is not a latency threshold such as `300ms`")),
        },
        other => {
            return Err(format!(
                "unknown target `{other}`; use route:, tier:, tenant:, cluster:, availability or latency[:THRESHOLD]"
            ))
        }
    }
    Ok(())
}

/// One `[[map]]` table.
fn rule(d: &mut Decoder<'_>, n: &Node, p: &str, file: &str) -> Option<Rule> {
    let mut t = d.table(n, p)?;
    let mut named = Vec::new();
    for (key, on) in [
        ("slo", On::Slo),
        ("indicator", On::Sli),
        ("service", On::Service),
    ] {
        if let Some(name) = d.opt(&mut t, key, |d, n, p| d.str(n, p).map(str::to_string)) {
            named.push((on, name));
        }
    }
    let mut scope = Scope::default();
    let mut sli = None;
    let mut ok = true;
    for key in ["route", "tier", "tenant", "cluster"] {
        if let Some((value, loc)) = d.opt(&mut t, key, |d, n, p| {
            d.str(n, p).map(|s| (s.to_string(), n.loc))
        }) {
            if let Err(e) = set(&mut scope, &mut sli, key, &value) {
                d.error(loc, &crate::diag::join_path(p, key), e);
                ok = false;
            }
        }
    }
    let kind = d.opt(&mut t, "sli", |d, n, p| {
        d.choice(n, p, &["availability", "latency"])
    });
    let threshold = d.opt(&mut t, "threshold", |d, n, p| d.duration(n, p));
    match (kind, threshold) {
        (Some("availability"), Some(_)) => {
            d.error(
                t.loc,
                &crate::diag::join_path(p, "threshold"),
                "`threshold` applies to `sli = \"latency\"`",
            );
            ok = false;
        }
        (Some("availability"), None) => sli = Some(SliChoice::Availability),
        (_, Some(th)) => sli = Some(SliChoice::Latency(Some(th))),
        (Some(_), None) => sli = Some(SliChoice::Latency(None)),
        (None, None) => {}
    }
    let loc = t.loc;
    d.finish(t);
    let (on, name) = match named.as_slice() {
        [one] => one.clone(),
        _ => {
            d.error_help(
                loc,
                p,
                "a mapping names one SLO, SLI or service",
                "give one of `slo`, `indicator` or `service`",
            );
            return None;
        }
    };
    if scope == Scope::default() {
        d.error_help(
            loc,
            p,
            "a mapping needs a Levee scope",
            "give `route`, `tier`, `tenant` or `cluster`",
        );
        return None;
    }
    ok.then(|| Rule {
        on,
        name,
        scope,
        sli,
        origin: format!("{file}:{}", loc.line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let mut m = Mapping::default();
        m.add_flag("checkout=route:checkout,latency:300ms").unwrap();
        m.add_flag("search = tier:core , availability").unwrap();
        assert_eq!(m.rules[0].scope.route.as_deref(), Some("checkout"));
        assert_eq!(
            m.rules[0].sli,
            Some(SliChoice::Latency(Some(Duration::from_millis(300))))
        );
        assert_eq!(m.rules[1].scope.tier.as_deref(), Some("core"));
        assert_eq!(m.rules[1].sli, Some(SliChoice::Availability));
        for bad in [
            "checkout",
            "=route:a",
            "a=latency:1s",
            "a=tier:gold",
            "a=route:",
            "a=host:x",
            "a=route:x,latency:fast",
        ] {
            assert!(m.add_flag(bad).is_err(), "{bad}");
        }
    }
}
