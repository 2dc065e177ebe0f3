//! What the gateway may do with the Kubernetes API: a ServiceAccount, a Role in the stack's
//! namespace and the RoleBinding between them, with the least rights
//! `shoal up --discovery kubernetes` needs. Every rule says why it is there, in a comment above
//! the Role and in `--explain`.
//!
//! - EndpointSlices (`discovery.k8s.io`): `get`, `list`, `watch` — how the gateway learns
//!   which pods of a service are ready, serving or terminating. Lists and watches cannot be
//!   limited to names, so this is every EndpointSlice of the namespace (nothing secret: pod
//!   addresses and ports).
//! - Deployments (`apps`): `get`, limited to the replicated services — their desired count
//!   and rollout state for `shoal status`.
//! - `deployments/scale` (`apps`): `get`, `patch`, `update`, limited to the services shoal's
//!   autoscaler owns (`crate::scaling`): the only Deployments whose count the gateway may set.
//!   `shoal scale` and the dashboard's +/- go through the same subresource, so they work for
//!   these services and are refused (403) for the others. That is deliberate: a fixed count
//!   belongs to the manifest (`kubectl apply` would reset it; `kubectl scale` is the way), an
//!   HPA's count to the HPA (it would undo the change within a sync period), and whoever can
//!   reach the admin API (a port-forward) must not gain the right to scale Deployments the
//!   stack file does not let shoal scale. With no such service there is no rule, since a rule
//!   with an empty `resourceNames` would allow every Deployment.
//! - Leases (`coordination.k8s.io`): `create` (RBAC cannot limit `create` by name: the name
//!   is in the request body, not its URL) and `get`, `update`, `patch` of the Lease
//!   `shoal-gateway` only — the leader election that lets exactly one gateway pod scale.
//! - Pods (core): `get`, `list` — optional: the node and restart count of each pod in
//!   `shoal status` and the dashboard (the EndpointSlices name the pod and node but not its
//!   restarts). Delete the rule and status shows pods from the EndpointSlices alone. It also
//!   lets the gateway read the pod specs of the namespace, environment values included, which
//!   is why it is the first rule to drop in a namespace that keeps secrets in plain `env`.
//!
//! No Secrets, no writes to anything but the scale subresource and one Lease, nothing outside
//! the namespace (a Role, not a ClusterRole).
use serde_norway::Value;
use shoal_config::{Source, Stack};

use crate::explain::Section;
use crate::scaling::Owner;
use crate::workload::metadata;
use crate::yaml::{Obj, list};
use crate::{GATEWAY_NAME, Kind, LEASE_NAME, Manifest, Options};

/// One rule of the Role.
struct Rule {
    group: &'static str,
    resource: &'static str,
    names: Vec<String>,
    verbs: &'static [&'static str],
    why: String,
}

impl Rule {
    fn to_value(&self) -> Value {
        Obj::new()
            .with("apiGroups", list([self.group]))
            .with("resources", list([self.resource]))
            .with_nonempty("resourceNames", list(self.names.iter().map(String::as_str)))
            .with("verbs", list(self.verbs.iter().copied()))
            .into()
    }

    /// `deployments/scale (apps): get, patch, update` and the names, for explanations.
    fn describe(&self) -> String {
        let group = if self.group.is_empty() {
            "core".to_owned()
        } else {
            self.group.to_owned()
        };
        let names = if self.names.is_empty() {
            String::new()
        } else {
            format!(" of {}", self.names.join(", "))
        };
        format!(
            "{} ({group}): {}{names}",
            self.resource,
            self.verbs.join(", ")
        )
    }
}

/// The Role's rules, in the order they are written.
fn rules(stack: &Stack, opts: &Options) -> Vec<Rule> {
    let mut deployments = Vec::new();
    let mut scaled = Vec::new();
    for s in &stack.services {
        if let (Source::Command(command), Some(container)) = (&s.source, &s.container) {
            deployments.push(s.name.clone());
            if Owner::of(command, container, opts.ingress) == Owner::Shoal {
                scaled.push(s.name.clone());
            }
        }
    }
    let mut rules = vec![Rule {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        names: Vec::new(),
        verbs: &["get", "list", "watch"],
        why: "which pods of each service are ready, serving or terminating (label kubernetes.io/service-name); lists and watches cannot be limited to names".to_owned(),
    }];
    if !deployments.is_empty() {
        rules.push(Rule {
            group: "apps",
            resource: "deployments",
            names: deployments,
            verbs: &["get"],
            why: "each service's desired count and rollout state, for `shoal status`".to_owned(),
        });
    }
    if !scaled.is_empty() {
        rules.push(Rule {
            group: "apps",
            resource: "deployments/scale",
            names: scaled,
            verbs: &["get", "patch", "update"],
            why: "shoal's in-cluster autoscaler (and `shoal scale`) set the count of the services it owns, and only those: a fixed count is the manifest's, an HPA's count the HPA's".to_owned(),
        });
    }
    rules.push(Rule {
        group: "coordination.k8s.io",
        resource: "leases",
        names: Vec::new(),
        verbs: &["create"],
        why: format!(
            "the first gateway pod creates the Lease `{LEASE_NAME}` (RBAC cannot limit `create` to a name)"
        ),
    });
    rules.push(Rule {
        group: "coordination.k8s.io",
        resource: "leases",
        names: vec![LEASE_NAME.to_owned()],
        verbs: &["get", "update", "patch"],
        why: "leader election: exactly one gateway pod, the Lease's holder, scales".to_owned(),
    });
    rules.push(Rule {
        group: "",
        resource: "pods",
        names: Vec::new(),
        verbs: &["get", "list"],
        why: "optional: node and restarts of each pod in `shoal status`; without it status shows what the EndpointSlices say. It can read pod specs (env values included)".to_owned(),
    });
    rules
}

/// The ServiceAccount, Role and RoleBinding, and what they mean.
pub(crate) fn render(stack: &Stack, opts: &Options) -> (Vec<Manifest>, Section) {
    let name = GATEWAY_NAME;
    let rules = rules(stack, opts);
    let mut section = Section::new("gateway: Kubernetes API access");
    let mut role_comments = vec![format!(
        "What the gateway may do, in namespace `{}` only; no Secrets, and no writes but the scale subresource and its one Lease:",
        opts.namespace
    )];
    for r in &rules {
        role_comments.push(format!("- {} — {}.", r.describe(), r.why));
        section.row(r.describe(), r.why.clone());
    }
    if !rules.iter().any(|r| r.resource == "deployments/scale") {
        role_comments.push(
            "(No deployments/scale rule: no service is scaled by shoal's autoscaler, and an empty resourceNames would allow every Deployment.)"
                .to_owned(),
        );
        section.note(
            "no deployments/scale rule: no service is scaled by shoal's autoscaler (`shoal scale` is refused in the cluster)",
        );
    }
    section.row(
        "(identity)",
        format!(
            "ServiceAccount {name}, Role {name}, RoleBinding {name}; the gateway pods run as it and mount its token"
        ),
    );
    let manifests = vec![
        Manifest {
            kind: Kind::ServiceAccount,
            name: name.to_owned(),
            comments: vec![
                "The gateway's identity towards the Kubernetes API (its pods mount the token)."
                    .to_owned(),
            ],
            body: Obj::new()
                .with("apiVersion", Kind::ServiceAccount.api_version())
                .with("kind", Kind::ServiceAccount.name())
                .with("metadata", metadata(name, opts, "gateway"))
                .into(),
        },
        Manifest::with_top(
            Kind::Role,
            name,
            role_comments,
            metadata(name, opts, "gateway"),
            "rules",
            list(rules.iter().map(Rule::to_value)),
        ),
        Manifest {
            kind: Kind::RoleBinding,
            name: name.to_owned(),
            comments: vec![format!(
                "Role {name}, given to ServiceAccount {name} in this namespace."
            )],
            body: Obj::new()
                .with("apiVersion", Kind::RoleBinding.api_version())
                .with("kind", Kind::RoleBinding.name())
                .with("metadata", metadata(name, opts, "gateway"))
                .with(
                    "roleRef",
                    Obj::new()
                        .with("apiGroup", "rbac.authorization.k8s.io")
                        .with("kind", "Role")
                        .with("name", name),
                )
                .with(
                    "subjects",
                    list([Obj::new()
                        .with("kind", "ServiceAccount")
                        .with("name", name)
                        .with("namespace", opts.namespace.as_str())]),
                )
                .into(),
        },
    ];
    (manifests, section)
}

#[cfg(test)]
mod tests {
    use shoal_config::Runtime;

    use super::*;

    fn stack(services: &str) -> Stack {
        shoal_config::parse_for(
            &format!(
                "services:\n{services}  legacy:\n    servers: [http://10.0.0.1:80]\nroutes:\n  - match: PathPrefix(`/`)\n    service: legacy\n"
            ),
            "f",
            Runtime::Kubernetes,
        )
        .unwrap()
    }

    fn rule<'a>(role: &'a Value, resource: &str) -> Option<&'a Value> {
        role["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .rfind(|r| r["resources"][0] == resource)
    }

    fn names(rule: &Value) -> Vec<&str> {
        rule["resourceNames"]
            .as_sequence()
            .map(|s| s.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn scale_rights_only_for_what_shoal_scales() {
        let s = stack(
            "  fixed:\n    image: x:1\n    replicas: 2\n  hpa:\n    image: x:1\n    autoscale: { max: 4, cpu: 50%, rps: 10 }\n  mine:\n    image: x:1\n    autoscale: { max: 4, concurrency: 5 }\n",
        );
        let (objects, _) = render(&s, &Options::default());
        let role = &objects[1].body;
        assert_eq!(objects[1].kind, Kind::Role);
        assert_eq!(names(rule(role, "deployments/scale").unwrap()), ["mine"]);
        assert_eq!(
            names(rule(role, "deployments").unwrap()),
            ["fixed", "hpa", "mine"],
            "static servers have no Deployment"
        );
        assert_eq!(names(rule(role, "leases").unwrap()), [LEASE_NAME]);
        assert!(names(rule(role, "endpointslices").unwrap()).is_empty());
        let binding = &objects[2].body;
        assert_eq!(binding["subjects"][0]["name"], GATEWAY_NAME);
        assert_eq!(binding["subjects"][0]["namespace"], "default");
        assert_eq!(binding["roleRef"]["name"], GATEWAY_NAME);
    }

    #[test]
    fn an_empty_name_list_never_becomes_a_rule_for_everything() {
        // Nothing for shoal to scale, and then no Deployments at all.
        for services in ["  fixed:\n    image: x:1\n", ""] {
            let (objects, section) = render(&stack(services), &Options::default());
            let role = &objects[1].body;
            assert!(rule(role, "deployments/scale").is_none(), "{services}");
            for r in role["rules"].as_sequence().unwrap() {
                if let Some(n) = r.get("resourceNames") {
                    assert!(!n.as_sequence().unwrap().is_empty(), "{r:?}");
                }
            }
            assert!(
                section
                    .notes
                    .iter()
                    .any(|n| n.contains("no deployments/scale rule")),
                "{services}"
            );
        }
        let (objects, _) = render(&stack(""), &Options::default());
        assert!(rule(&objects[1].body, "deployments").is_none());
    }
}
