//! `shoal status`: the services and their replicas as a table (`kubectl get pods`-like),
//! then the autoscaled ones (`kubectl get hpa`-like), each followed by its notes.
use std::process::ExitCode;

use hyper::Method;
use shoal_core::AutoscaleBacklog;

use crate::admin_client::AdminClient;
use crate::cli::AdminArgs;
use crate::format::{aligned, backlog_summary, human_duration, mebibytes, percent, uptime};

pub(super) async fn status(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args);
    let v = client.json(Method::GET, "/api/v1/services", None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", status_table(&v));
    Ok(ExitCode::SUCCESS)
}

/// A service's failover counters, when anything happened: "12 retries, 3 hedges, ...".
fn failover_line(t: &serde_json::Value) -> Option<String> {
    let count = |k: &str| t[k].as_u64().unwrap_or(0);
    let mut parts: Vec<String> = [
        ("retries_total", "retries"),
        ("hedges_total", "hedges"),
        ("retries_refused_total", "retries over budget"),
        ("ejections_total", "ejections"),
        ("breaker_rejected_total", "rejected by the breaker"),
    ]
    .iter()
    .filter(|(k, _)| count(k) > 0)
    .map(|(k, label)| format!("{} {label}", count(k)))
    .collect();
    if let Some(b) = t["breaker"].as_str()
        && b != "closed"
    {
        parts.push(format!("circuit breaker {b}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A rollout in progress or rolled back, in one line ("rollout to v2: 1 of 3 replicas
/// updated, 0 ready"); None for none, or a complete one (the VERSION column tells).
fn rollout_line(r: &serde_json::Value) -> Option<String> {
    let version = r["version"].as_str()?;
    let why = r["message"]
        .as_str()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    match r["state"].as_str()? {
        "progressing" => Some(format!(
            "rollout to {version} progressing: {} of {} replicas updated, {} ready{why}",
            r["updated"], r["desired"], r["updated_ready"]
        )),
        "rolledback" => Some(format!(
            "rollout to {version} rolled back{}{why}",
            r["previous"]
                .as_str()
                .map(|p| format!(" to {p}"))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

/// A `kubectl get pods`-like table.
fn status_table(services: &serde_json::Value) -> String {
    let mut rows: Vec<[String; 11]> = vec![
        [
            "NAME", "STATE", "HEALTH", "READY", "PID", "PORT", "RESTARTS", "UPTIME", "CPU",
            "MEMORY", "VERSION",
        ]
        .map(String::from),
    ];
    let mut notes = Vec::new();
    for s in services.as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or("?");
        rows.push([
            name.to_owned(),
            s["state"].as_str().unwrap_or("?").to_owned(),
            String::new(),
            format!("{}/{}", s["ready"], s["desired"]),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        for r in s["replicas"].as_array().into_iter().flatten() {
            let opt = |v: &serde_json::Value| {
                if v.is_null() {
                    "-".to_owned()
                } else {
                    v.to_string()
                }
            };
            let cpu = percent(r["cpu_percent"].as_f64());
            let mem = mebibytes(r["rss_bytes"].as_u64());
            let up = r["uptime_secs"].as_f64().map_or("-".into(), uptime);
            let health = r["traffic"]["health"].as_str().unwrap_or("-");
            // A pod (Kubernetes mode) in place of a process: its name, and its node where
            // the PID would be.
            let (who, pid_or_node) = match r["pod"]["name"].as_str() {
                Some(pod) => (
                    pod.to_owned(),
                    r["pod"]["node"].as_str().unwrap_or("-").to_owned(),
                ),
                None => (r["index"].to_string(), opt(&r["pid"])),
            };
            rows.push([
                format!("  {name}/{who}"),
                r["state"].as_str().unwrap_or("?").to_owned(),
                health.to_owned(),
                String::new(),
                pid_or_node,
                opt(&r["port"]),
                r["restarts"].to_string(),
                up,
                cpu,
                mem,
                r["version"].as_str().unwrap_or("-").to_owned(),
            ]);
            if let Some(m) = r["message"].as_str()
                && r["state"] != "ready"
            {
                notes.push(format!("{name}/{}: {m}", r["index"]));
            }
            if let Some(reason) = r["traffic"]["reason"].as_str() {
                notes.push(format!("{name}/{}: {reason}", r["index"]));
            }
        }
        if let Some(line) = failover_line(&s["traffic"]) {
            notes.push(format!("{name}: {line}"));
        }
        if let Some(line) = rollout_line(&s["rollout"]) {
            notes.push(format!("{name}: {line}"));
        }
    }
    // Kubernetes mode: the replicas are pods, and the column names their nodes.
    let pods = services
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["replicas"].as_array().into_iter().flatten())
        .any(|r| r["pod"].is_object());
    if pods {
        rows[0][4] = "NODE".to_owned();
    }
    let mut out = aligned(&rows, &notes);
    out.push_str(&autoscale_table(services));
    out
}

/// Autoscaled services, like `kubectl get hpa`: TARGETS as current/target per metric.
fn autoscale_table(services: &serde_json::Value) -> String {
    let mut rows = vec![
        [
            "AUTOSCALED",
            "TARGETS",
            "MIN",
            "MAX",
            "REPLICAS",
            "LAST SCALED",
        ]
        .map(String::from),
    ];
    let mut notes = Vec::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for s in services.as_array().into_iter().flatten() {
        let a = &s["autoscale"];
        if a.is_null() {
            continue;
        }
        let name = s["name"].as_str().unwrap_or("?");
        let last = a["last_scaled_ms"].as_u64().map_or("-".into(), |t| {
            format!(
                "{} ago",
                human_duration(now_ms.saturating_sub(t) as f64 / 1000.0)
            )
        });
        rows.push([
            name.to_owned(),
            a["targets"].as_str().unwrap_or("-").to_owned(),
            a["min"].to_string(),
            a["max"].to_string(),
            format!("{}/{}", s["ready"], s["desired"]),
            last,
        ]);
        let mut note = format!("{name}: {}", a["reason"].as_str().unwrap_or(""));
        if a["panic"] == true {
            note.push_str(" [panic mode]");
        }
        if a["held"].as_u64().unwrap_or(0) > 0 {
            note.push_str(&format!(" [{} requests held while it starts]", a["held"]));
        }
        notes.push(note);
        if let Ok(b) = serde_json::from_value::<AutoscaleBacklog>(a["backlog"].clone()) {
            let consumers = s["ready"].as_u64().unwrap_or(0) as u32;
            notes.push(format!("{name}: {}", backlog_summary(&b, consumers)));
        }
    }
    if rows.len() == 1 {
        return String::new();
    }
    format!("\n{}", aligned(&rows, &notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_kubernetes_mode_the_status_table_shows_pods_and_their_nodes() {
        let services = serde_json::json!([{
            "name": "web", "state": "running", "ready": 1, "desired": 2,
            "replicas": [
                { "index": 0, "state": "ready", "pid": null, "port": 8080, "restarts": 0,
                  "pod": { "name": "web-7d9f-abcde", "node": "node-1", "terminating": false } },
                { "index": 1, "state": "draining", "pid": null, "port": 8080, "restarts": 0,
                  "pod": { "name": "web-7d9f-fghij", "node": null, "terminating": true } }
            ]
        }]);
        let table = status_table(&services);
        let header = table.lines().next().unwrap();
        assert!(
            header.contains("NODE") && !header.contains("PID"),
            "{table}"
        );
        let row = table
            .lines()
            .find(|l| l.contains("web/web-7d9f-abcde"))
            .unwrap();
        assert!(row.contains("node-1"), "{table}");
        assert!(table.contains("web/web-7d9f-fghij"), "{table}");
    }

    #[test]
    fn a_worker_shows_no_port_and_its_backlog_rate_and_consumers() {
        let backlog = |failures: u32| {
            serde_json::json!({
                "source": "redis 127.0.0.1:6379 stream jobs group workers",
                "messages": 1234, "smoothed": 1100.0, "consumed": 5000, "partitions": null,
                "rate_per_replica": 48.21, "active": true, "failures": failures,
                "error": (failures > 0).then_some(
                    "redis 127.0.0.1:6379 stream jobs group workers: cannot reach the broker: \
                     connection refused"
                ),
                "fallback": false, "read_at_ms": 1
            })
        };
        let services = |failures: u32| {
            serde_json::json!([{
                "name": "jobs", "state": "running", "ready": 3, "desired": 3, "worker": true,
                "replicas": [
                    { "index": 0, "state": "ready", "pid": 10, "port": null, "restarts": 0,
                      "traffic": null }
                ],
                "autoscale": {
                    "min": 0, "max": 8, "desired": 3, "targets": "411.3/100", "readings": [],
                    "panic": false, "reason": "backlog 1,234 over 100/replica → 13 replicas",
                    "limited_by": null, "last_scaled_ms": null, "held": 0,
                    "backlog": backlog(failures)
                }
            }])
        };
        let table = status_table(&services(0));
        let row = table.lines().find(|l| l.contains("jobs/0")).unwrap();
        assert!(!row.contains("null"), "{table}");
        assert!(
            table.contains(
                "jobs: backlog 1,234 (redis 127.0.0.1:6379 stream jobs group workers), \
                 3 consumers, 48.2/s per replica"
            ),
            "{table}"
        );
        let table = status_table(&services(3));
        assert!(
            table.contains(
                "jobs: backlog unknown: 3 failed reads in a row: redis 127.0.0.1:6379 stream \
                 jobs group workers: cannot reach the broker: connection refused"
            ),
            "{table}"
        );
    }
    #[test]
    fn the_status_table_shows_versions_and_a_rollout_in_progress() {
        let services = serde_json::json!([{
            "name": "api", "state": "progressing", "ready": 2, "desired": 2,
            "replicas": [
                { "index": 0, "state": "ready", "pid": 10, "port": 20001, "restarts": 0,
                  "version": "v1" },
                { "index": 2, "state": "starting", "pid": 12, "port": 20003, "restarts": 0,
                  "version": "v2" }
            ],
            "rollout": { "version": "v2", "previous": "v1", "state": "progressing",
                "updated": 1, "updated_ready": 0, "desired": 2, "message": null,
                "started_ms": 1 }
        }]);
        let table = status_table(&services);
        assert!(
            table.lines().next().unwrap().ends_with("VERSION"),
            "{table}"
        );
        let row = |who: &str| table.lines().find(|l| l.contains(who)).unwrap().to_owned();
        assert!(row("api/0").ends_with("v1"), "{table}");
        assert!(row("api/2").ends_with("v2"), "{table}");
        assert!(
            table.contains("api: rollout to v2 progressing: 1 of 2 replicas updated, 0 ready"),
            "{table}"
        );
    }

    #[test]
    fn the_status_table_shows_health_reasons_and_failover_counters() {
        let services = serde_json::json!([{
            "name": "web", "state": "running", "ready": 2, "desired": 2,
            "traffic": { "retries_total": 3, "hedges_total": 0, "ejections_total": 1, "breaker": "closed" },
            "replicas": [
                { "index": 0, "state": "ready", "pid": 10, "port": 20001, "restarts": 0,
                  "traffic": { "health": "healthy" } },
                { "index": 1, "state": "ready", "pid": 11, "port": 20002, "restarts": 0,
                  "traffic": { "health": "ejected", "reason": "ejected for 1000ms: connection refused" } }
            ]
        }]);
        let table = status_table(&services);
        let header = table.lines().next().unwrap();
        assert!(header.contains("HEALTH"), "{table}");
        let row = table.lines().find(|l| l.contains("web/1")).unwrap();
        assert!(row.contains("ejected"), "{table}");
        assert!(
            table.contains("web/1: ejected for 1000ms: connection refused"),
            "{table}"
        );
        assert!(table.contains("web: 3 retries, 1 ejections"), "{table}");
        assert!(
            !table.contains("breaker"),
            "a closed breaker is not news: {table}"
        );
    }
}
