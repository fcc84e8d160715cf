//! Decision latency of both in-process engines on a realistic RBAC corpus of 10, 100 and
//! 1,000 policies: `cargo bench -p gatehouse-policy`. Each decision is timed on its own;
//! requests cycle through random principals (5 groups each), servers, tools and operations,
//! so allows and denies mix. Three regimes: the first use of a (principal, item) pair; a
//! new second (Cedar's entities cached, its verdicts not, since `time` is in the context);
//! and the same requests again within that second (verdicts cached).

#[path = "corpus.rs"]
mod corpus;

use std::time::{Duration, Instant};

use gatehouse_config::{Operation, PoliciesConfig, PolicyEngineKind};
use gatehouse_policy::{
    Action, ContextInput, ItemKind, Policies, PolicyRequest, PrincipalInput, ResourceInput,
};

const REQUESTS: usize = 2_000;
const ROUNDS: usize = 10;

/// xorshift: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn requests(n: usize) -> Vec<PolicyRequest> {
    let (servers, tools) = corpus::shape(n);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..REQUESTS)
        .map(|i| {
            let groups = (0..5)
                .map(|_| format!("g{}", rng.next(corpus::GROUPS)))
                .collect();
            PolicyRequest {
                principal: PrincipalInput {
                    sub: format!("user-{}", rng.next(500)),
                    groups,
                    ..PrincipalInput::anonymous()
                },
                action: Action::CallTool,
                resource: ResourceInput {
                    kind: ItemKind::Tool,
                    name: format!("t{}", rng.next(tools)),
                    server: format!("s{}", rng.next(servers)),
                    virtual_server: "mcp".into(),
                    operation: if i % 3 == 0 {
                        Operation::Write
                    } else {
                        Operation::Read
                    },
                    annotations: Default::default(),
                },
                context: ContextInput {
                    source_ip: if i % 7 == 0 { "192.0.2.10" } else { "10.0.0.5" }.into(),
                    ..ContextInput::default()
                },
            }
        })
        .collect()
}

fn load(engine: PolicyEngineKind, n: usize, dir: &std::path::Path) -> Policies {
    let (file, text) = match engine {
        PolicyEngineKind::Cedar => ("corpus.cedar", corpus::cedar(n, "")),
        _ => ("corpus.rego", corpus::rego(n, &[])),
    };
    let sub = dir.join(format!("{}-{n}", engine.as_str()));
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join(file), text).unwrap();
    Policies::compile(&PoliciesConfig {
        engine,
        paths: vec![sub.display().to_string()],
        url: None,
        timeout: None,
    })
    .expect("the corpus loads")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i].as_nanos() as f64 / 1000.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this once quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { ROUNDS };
    let dir = tempfile::tempdir().unwrap();
    println!(
        "| engine | policies | decisions | allowed | p50 µs | p99 µs | mean µs | same second again p50 µs | p99 µs | first use p50 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for engine in [PolicyEngineKind::Cedar, PolicyEngineKind::Rego] {
        for n in [10, 100, 1000] {
            let policies = load(engine, n, dir.path());
            let reqs = requests(n);
            // First pass: every (principal, item) pair is new, so Cedar builds its entities
            // and policy slice; later passes find them cached, as a running gateway does.
            let mut first = Vec::with_capacity(reqs.len());
            for r in &reqs {
                let start = Instant::now();
                std::hint::black_box(policies.decide_now(r));
                first.push(start.elapsed());
            }
            first.sort();
            // Each round is a new second (a new `time`): entities are cached, verdicts are not.
            // Then the same requests again within that second: verdicts are cached too.
            let mut times = Vec::with_capacity(reqs.len() * rounds);
            let mut again = Vec::with_capacity(reqs.len() * rounds);
            let mut allowed = 0usize;
            let mut reqs = reqs;
            for round in 0..rounds {
                let now = format!("2026-11-26T10:01:{:02}Z", round % 60);
                for r in &mut reqs {
                    r.context.time = now.clone();
                }
                for r in &reqs {
                    let start = Instant::now();
                    let d = policies.decide_now(r).expect("in process");
                    times.push(start.elapsed());
                    allowed += usize::from(d.allowed);
                }
                for r in &reqs {
                    let start = Instant::now();
                    std::hint::black_box(policies.decide_now(r));
                    again.push(start.elapsed());
                }
            }
            again.sort();
            times.sort();
            let mean =
                times.iter().sum::<Duration>().as_nanos() as f64 / times.len() as f64 / 1000.0;
            println!(
                "| {} | {n} | {} | {:.0}% | {:.1} | {:.1} | {mean:.1} | {:.1} | {:.1} | {:.1} |",
                engine.as_str(),
                times.len(),
                100.0 * allowed as f64 / times.len() as f64,
                percentile(&times, 50.0),
                percentile(&times, 99.0),
                percentile(&again, 50.0),
                percentile(&again, 99.0),
                percentile(&first, 50.0),
            );
        }
    }
}
