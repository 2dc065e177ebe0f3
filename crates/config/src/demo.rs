//! The built-in demo stack: what `shoal up` runs without a stack file and `shoal init` writes.

/// Two services of the built-in sample app behind path-prefix routes, one of them
/// autoscaled. `shoal` as `argv[0]` means "this shoal binary", so the demo works before shoal
/// is on `PATH`.
pub const DEMO_STACK: &str = r#"# shoal demo stack: two services of the built-in sample app behind one gateway.
# Try:  curl localhost:8000/api/users/whoami   (repeat it: replicas take turns)
#       shoal status    shoal scale users 4    shoal logs users -f
gateway:
  listen: 127.0.0.1:8000          # where clients connect
  replica_header: true            # X-Shoal-Replica names the replica that answered
admin:
  listen: 127.0.0.1:8080          # admin API (shoal status/scale/logs talk to it)

services:
  users:
    command: [shoal, sample-app]  # any program that listens on $PORT works here
    replicas: 3
    health: { path: /health, interval: 1s }
    restart: { policy: on-failure, max_attempts: 5 }
  music:
    command: [shoal, sample-app]
    replicas: 2                   # the starting count; the autoscaler takes it from there
    health: { path: /health, interval: 1s }
    balance: least_requests
    # 1 to 6 replicas, aiming at 5 requests in flight per replica. Watch it scale:
    #   shoal load 'http://127.0.0.1:8000/api/music/work?cpu_ms=20' -c 20 -d 30s
    #   shoal status
    autoscale: { min: 1, max: 6, concurrency: 5 }

routes:
  - match: PathPrefix(`/api/users`)
    strip_prefix: /api/users
    service: users
  - match: PathPrefix(`/api/music`)
    strip_prefix: /api/music
    service: music
"#;
