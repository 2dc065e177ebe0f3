//! Raw → validated for `routes:`: each route's name (unique), its rule (a parse error points
//! at the character inside the rule), its targets (`rollout.rs`), its middlewares (inline
//! `strip_prefix` first, then the named ones, chains flattened), the entrypoints it listens
//! on, and its own `retry:` and `timeouts:` over its service's. Routes are returned in the
//! order they are tried: highest priority first.
use shoal_route::Rule;

use super::Cx;
use super::middlewares::Middlewares;
use super::units::{list_or_none, offset_place};
use crate::error::{Diagnostic, did_you_mean};
use crate::model::*;
use crate::raw::*;

impl Cx<'_> {
    /// Every route, once the gateway's entrypoints, the services and the middlewares are
    /// known.
    pub(super) fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        gateway: &Gateway,
        services: &[Service],
        middlewares: &Middlewares,
    ) -> Vec<Route> {
        let middleware_names = &middlewares.names;
        let entrypoint_names: Vec<&str> = gateway
            .entrypoints
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        let mut routes = Vec::new();
        let mut route_names: Vec<String> = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let path = format!("routes[{i}]");
            let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
            if route_names.contains(&name) {
                self.error(
                    &format!("{path}.name"),
                    format!("route name `{name}` is used twice"),
                );
            }
            route_names.push(name.clone());
            let rule = match Rule::parse(&r.rule) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    let field = format!("{path}.match");
                    let place = self.locs.value(&field);
                    let (line, column) = offset_place(&r.rule, e.offset, place);
                    self.diags.push(Diagnostic {
                        file: self.file.to_owned(),
                        line,
                        column,
                        field,
                        message: format!("invalid rule: {}", e.message),
                        hint: None,
                    });
                    None
                }
            };
            let mut targets = self.targets(
                &path, &name, r.service, r.services, r.sticky, r.canary, r.mirror, services,
            );
            let mut chain = Vec::new();
            if let Some(prefixes) = r.strip_prefix
                && let Some(m) = self.strip_prefix(&format!("{path}.strip_prefix"), prefixes)
            {
                chain.push(m);
            }
            for (j, m) in r.middlewares.iter().enumerate() {
                // A chain's members, flattened, in place.
                match middlewares.expanded.get(m) {
                    Some(Some(list)) => chain.extend(list.iter().cloned()),
                    Some(None) => {} // already reported
                    None => {
                        let hint = did_you_mean(m, middleware_names.iter().map(String::as_str))
                            .or_else(|| {
                                let names: Vec<&str> =
                                    middleware_names.iter().map(String::as_str).collect();
                                Some(format!("defined middlewares: {}", list_or_none(&names)))
                            });
                        self.error_hint(
                            &format!("{path}.middlewares[{j}]"),
                            format!("unknown middleware `{m}`"),
                            hint,
                        );
                    }
                }
            }
            if let Some(eps) = &r.entrypoints {
                for (j, e) in eps.iter().enumerate() {
                    let field = format!("{path}.entrypoints[{j}]");
                    if !entrypoint_names.contains(&e.as_str()) {
                        let hint = did_you_mean(e, entrypoint_names.iter().copied());
                        self.error_hint(&field, format!("unknown entrypoint `{e}`"), hint);
                    } else if let Some(to) = gateway
                        .entrypoints
                        .iter()
                        .find(|ep| ep.name == *e)
                        .and_then(|ep| ep.redirect_to.as_ref())
                    {
                        self.error_hint(
                            &field,
                            format!(
                                "entrypoint `{e}` redirects every request to `{}`; routes \
                                 cannot listen on it",
                                to.entrypoint
                            ),
                            Some(format!("list `{}` instead", to.entrypoint)),
                        );
                    }
                }
            }
            let base = |name: &str| {
                services
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.retry.clone())
                    .unwrap_or_default()
            };
            let retry = r.retry.map(|raw| {
                let path = format!("{path}.retry");
                let merged = self.retry(&path, Some(raw.clone()), &base(&targets.service));
                // A split's targets each take the route's fields over their own service's.
                // The fields' problems are the same for every target, and were said above.
                if let Some(split) = &mut targets.split {
                    for target in &mut split.targets {
                        let said = self.diags.len();
                        target.retry =
                            Some(self.retry(&path, Some(raw.clone()), &base(&target.service)));
                        self.diags.truncate(said);
                    }
                }
                merged
            });
            let timeouts = match &r.timeouts {
                Some(t) => self.request_timeouts(&format!("{path}.timeouts"), t),
                None => RequestTimeouts::default(),
            };
            if let Some(rule) = rule {
                let priority = r.priority.unwrap_or_else(|| rule.default_priority());
                routes.push(Route {
                    name,
                    rule,
                    priority,
                    service: targets.service,
                    split: targets.split,
                    mirror: targets.mirror,
                    middlewares: chain,
                    entrypoints: r.entrypoints,
                    retry,
                    timeouts,
                });
            }
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.priority));
        routes
    }
}
