//! `hive-load`: a closed-loop HTTP/1.1 load generator for hive-api and moto_server, on
//! loopback only.
//!
//! ```text
//! hive-load --hive http://127.0.0.1:8700 --credentials DATA_DIR/admin-credentials \
//!           [--moto http://127.0.0.1:5000] [--calls health,sts,iam,vpcs,sgs] \
//!           [--connections 32] [--duration 10] [--warmup 2] [--json out.json]
//! ```
//!
//! For every (target, call) pair it opens `--connections` keep-alive connections, each sending
//! one request after another for `--warmup` seconds (not recorded) and then `--duration`
//! seconds (recorded). AWS calls are signed with SigV4 afresh for every request, with the
//! current `X-Amz-Date` (`hive_iam::sigv4::sign`). A request counts as successful on HTTP 200;
//! anything else is counted by status and AWS error code (so a not-yet-implemented action shows
//! up as, say, `400 InvalidAction`, not as a crash). Latencies of successful requests are kept
//! whole and sorted, so the percentiles are exact.
//!
//! It prints one table row per pair (requests/s, p50, p99, errors), then the ratios that
//! matter: hive vs moto for each call, and each authenticated call vs `/health` on hive. With
//! `--json PATH` (or `-` for stdout) it also writes the figures as JSON.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hive_iam::seal::SecretString;
use hive_iam::sigv4::sign::Signer;
use hive_iam::sigv4::{Payload, SignedRequest};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use time::OffsetDateTime;

/// Content type of AWS query-protocol bodies, as botocore sends it.
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// How many bytes of an error body are kept as an example.
const EXAMPLE_LEN: usize = 240;

#[derive(Debug, Parser)]
#[command(
    name = "hive-load",
    about = "Loopback load generator: hive-api vs moto_server"
)]
struct Cli {
    /// hive-api base URL (loopback, http), e.g. http://127.0.0.1:8700.
    #[arg(long)]
    hive: Option<String>,
    /// moto_server base URL (loopback, http), e.g. http://127.0.0.1:5000.
    #[arg(long)]
    moto: Option<String>,
    /// AWS shared-credentials file with hive-api's credentials (e.g. <data-dir>/admin-credentials).
    #[arg(long, value_name = "PATH")]
    credentials: Option<PathBuf>,
    /// Profile to read from --credentials.
    #[arg(long, default_value = "hive-admin")]
    profile: String,
    /// Access key id for moto (moto accepts any; see --moto-user).
    #[arg(long, default_value = "testing")]
    moto_access_key_id: String,
    /// Secret for moto.
    #[arg(long, default_value = "testing")]
    moto_secret_access_key: String,
    /// Before measuring moto, create an IAM user with this name and an access key through
    /// moto's API, and sign with that key (so iam:GetUser without a name finds a user, as it
    /// does on hive).
    #[arg(long, default_value = "hive-load")]
    moto_user: String,
    /// Calls to measure, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "health,sts,iam,vpcs,sgs"
    )]
    calls: Vec<Call>,
    /// Concurrent keep-alive connections per measurement.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Recorded seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unrecorded warm-up seconds before each measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Region of the signatures.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Worker threads of the generator (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Write the results as JSON to this path (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// A call to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Call {
    /// `GET /health`, unauthenticated (hive only: moto has no such endpoint).
    Health,
    /// sts:GetCallerIdentity.
    Sts,
    /// iam:GetUser (the caller).
    Iam,
    /// ec2:DescribeVpcs.
    Vpcs,
    /// ec2:DescribeSecurityGroups.
    Sgs,
}

impl Call {
    /// AWS action name, or the path for `/health`.
    fn label(self) -> &'static str {
        match self {
            Self::Health => "GET /health",
            Self::Sts => "sts:GetCallerIdentity",
            Self::Iam => "iam:GetUser",
            Self::Vpcs => "ec2:DescribeVpcs",
            Self::Sgs => "ec2:DescribeSecurityGroups",
        }
    }

    /// Signing service and query-protocol body, or `None` for unsigned `/health`.
    fn aws(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Health => None,
            Self::Sts => Some(("sts", "Action=GetCallerIdentity&Version=2011-06-15")),
            Self::Iam => Some(("iam", "Action=GetUser&Version=2010-05-08")),
            Self::Vpcs => Some(("ec2", "Action=DescribeVpcs&Version=2016-11-15")),
            Self::Sgs => Some(("ec2", "Action=DescribeSecurityGroups&Version=2016-11-15")),
        }
    }
}

/// Which server a measurement ran against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Server {
    Hive,
    Moto,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Self::Hive => "hive",
            Self::Moto => "moto",
        }
    }
}

/// Why the generator cannot run.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0}")]
    Usage(String),
    #[error("{url}: only http://<loopback address>:<port> is allowed")]
    NotLoopback { url: String },
    #[error("credentials file {path}: {reason}")]
    Credentials { path: String, reason: String },
    #[error("moto setup ({step}): {reason}")]
    MotoSetup { step: &'static str, reason: String },
    #[error("cannot write {path}: {reason}")]
    Output { path: String, reason: String },
}

/// Credentials for one server (the secret never reaches Debug output: `SecretString`).
#[derive(Debug, Clone)]
struct Credentials {
    access_key_id: String,
    secret: SecretString,
    session_token: Option<SecretString>,
}

/// One server to load: its address and credentials.
#[derive(Debug, Clone)]
struct Target {
    server: Server,
    addr: SocketAddr,
    /// `Host` header value.
    host: String,
    credentials: Credentials,
}

/// The figures of one (target, call) measurement.
#[derive(Debug, Clone, Serialize)]
struct Measurement {
    target: Server,
    call: Call,
    action: &'static str,
    connections: usize,
    duration_s: f64,
    /// Successful (HTTP 200) requests in the recorded window.
    ok: u64,
    /// Failed requests in the recorded window.
    errors: u64,
    /// Successful requests per second.
    rps: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    mean_us: f64,
    /// Connections re-opened (closed by the server or after an error).
    reconnects: u64,
    /// Failures by `"<status> <AWS code>"` (or `io: ...`), recorded window only.
    error_kinds: BTreeMap<String, u64>,
    /// One response body per failure kind, truncated.
    error_examples: BTreeMap<String, String>,
}

/// A ratio between two measurements and the target it is held to.
#[derive(Debug, Clone, Serialize)]
struct Ratio {
    what: String,
    ratio: Option<f64>,
    target: f64,
    met: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Report {
    measurements: Vec<Measurement>,
    ratios: Vec<Ratio>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let runtime = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hive-load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hive-load: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), LoadError> {
    // Bounded so that `Duration::from_secs_f64` cannot panic.
    let seconds = |s: f64, min: f64| s.is_finite() && s >= min && s <= 86_400.0;
    if cli.connections == 0 || !seconds(cli.duration, 0.001) || !seconds(cli.warmup, 0.0) {
        return Err(LoadError::Usage(
            "--connections must be positive, --duration within 0.001..=86400 s, \
             --warmup within 0..=86400 s"
                .into(),
        ));
    }
    let mut targets = Vec::new();
    if let Some(url) = &cli.hive {
        let path = cli.credentials.as_deref().ok_or_else(|| {
            LoadError::Usage("--hive needs --credentials (the admin-credentials file)".into())
        })?;
        let credentials = read_profile(path, &cli.profile)?;
        targets.push(target(Server::Hive, url, credentials)?);
    }
    if let Some(url) = &cli.moto {
        let base = Credentials {
            access_key_id: cli.moto_access_key_id.clone(),
            secret: SecretString::new(cli.moto_secret_access_key.clone()),
            session_token: None,
        };
        let mut moto = target(Server::Moto, url, base)?;
        if !cli.moto_user.is_empty() && cli.calls.contains(&Call::Iam) {
            moto.credentials = moto_user(&moto, &cli.region, &cli.moto_user).await?;
        }
        targets.push(moto);
    }
    if targets.is_empty() {
        return Err(LoadError::Usage("give --hive and/or --moto".into()));
    }

    let mut measurements = Vec::new();
    for t in &targets {
        for &call in &cli.calls {
            if call == Call::Health && t.server == Server::Moto {
                continue;
            }
            eprintln!(
                "hive-load: {} {} ({} connections, {:.0}s + {:.0}s warm-up)",
                t.server.name(),
                call.label(),
                cli.connections,
                cli.duration,
                cli.warmup
            );
            let m = measure(
                Arc::new(t.clone()),
                call,
                &cli.region,
                cli.connections,
                Duration::from_secs_f64(cli.warmup),
                Duration::from_secs_f64(cli.duration),
            )
            .await;
            measurements.push(m);
        }
    }
    let ratios = ratios(&measurements);
    print_table(&measurements, &ratios);
    if let Some(path) = &cli.json {
        let report = Report {
            measurements,
            ratios,
        };
        let json = serde_json::to_string_pretty(&report).map_err(|e| LoadError::Output {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if path == Path::new("-") {
            println!("{json}");
        } else {
            std::fs::write(path, json + "\n").map_err(|e| LoadError::Output {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(())
}

/// Parses a base URL and refuses anything but plain HTTP to a loopback address.
fn target(server: Server, url: &str, credentials: Credentials) -> Result<Target, LoadError> {
    let refuse = || LoadError::NotLoopback { url: url.into() };
    let uri: Uri = url.parse().map_err(|_| refuse())?;
    if uri.scheme_str() != Some("http") {
        return Err(refuse());
    }
    let host = uri.host().ok_or_else(refuse)?;
    let ip: IpAddr = match host.trim_start_matches('[').trim_end_matches(']') {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| refuse())?,
    };
    if !ip.is_loopback() {
        return Err(refuse());
    }
    let port = uri.port_u16().unwrap_or(80);
    let addr = SocketAddr::new(ip, port);
    Ok(Target {
        server,
        addr,
        host: uri
            .authority()
            .map_or_else(|| addr.to_string(), |a| a.as_str().to_owned()),
        credentials,
    })
}

/// Reads one profile of an AWS shared-credentials file.
fn read_profile(path: &Path, profile: &str) -> Result<Credentials, LoadError> {
    let fail = |reason: String| LoadError::Credentials {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut in_profile = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(SecretString::new(v)),
                "aws_session_token" => token = Some(SecretString::new(v)),
                _ => {}
            }
        }
    }
    match (key, secret) {
        (Some(access_key_id), Some(secret)) => Ok(Credentials {
            access_key_id,
            secret,
            session_token: token,
        }),
        _ => Err(fail(format!(
            "no profile [{profile}] with aws_access_key_id and aws_secret_access_key"
        ))),
    }
}

/// An open keep-alive connection.
type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // The connection task ends when the sender is dropped or the server closes.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Builds a request; AWS calls are signed now, with the current time.
fn build_request(
    target: &Target,
    call: Call,
    signer: Option<&Signer>,
) -> Result<Request<Full<Bytes>>, String> {
    let Some((_, body)) = call.aws() else {
        return Request::builder()
            .method(Method::GET)
            .uri("/health")
            .header("host", &target.host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string());
    };
    let signer = signer.ok_or("no signer for an AWS call")?;
    let headers: [(&str, &[u8]); 2] = [
        ("host", target.host.as_bytes()),
        ("content-type", FORM.as_bytes()),
    ];
    let signed = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        payload: Payload::Bytes(body.as_bytes()),
    };
    let sig = signer
        .sign(&signed, OffsetDateTime::now_utc())
        .map_err(|e| e.to_string())?;
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("host", &target.host)
        .header("content-type", FORM);
    for (name, value) in sig.iter() {
        req = req.header(name, value);
    }
    req.body(Full::new(Bytes::from_static(body.as_bytes())))
        .map_err(|e| e.to_string())
}

/// What one connection saw.
#[derive(Default)]
struct WorkerStats {
    samples: Vec<u64>,
    errors: BTreeMap<String, u64>,
    examples: BTreeMap<String, String>,
    reconnects: u64,
}

impl WorkerStats {
    fn error(&mut self, recording: bool, kind: String, example: &str) {
        if !recording {
            return;
        }
        *self.errors.entry(kind.clone()).or_default() += 1;
        self.examples
            .entry(kind)
            .or_insert_with(|| truncate(example, EXAMPLE_LEN));
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace('\n', " ")
}

/// The first `<Code>` of an AWS error body.
fn aws_error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    Some(&body[start..start + len])
}

async fn worker(
    target: Arc<Target>,
    call: Call,
    region: String,
    record_from: Instant,
    end: Instant,
) -> WorkerStats {
    let signer = call.aws().map(|(service, _)| {
        let c = &target.credentials;
        Signer::new(
            c.access_key_id.clone(),
            c.secret.clone(),
            c.session_token.clone(),
            region,
            service,
        )
    });
    let mut stats = WorkerStats::default();
    let mut conn: Option<Conn> = None;
    let mut opened = false;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let recording = now >= record_from;
        let mut sender = match conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                if opened {
                    stats.reconnects += 1;
                }
                match connect(target.addr).await {
                    Ok(s) => {
                        opened = true;
                        s
                    }
                    Err(e) => {
                        stats.error(recording, "io: connect".into(), &e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
        };
        if sender.ready().await.is_err() {
            // Closed by the server between requests (keep-alive timeout): reconnect.
            continue;
        }
        let req = match build_request(&target, call, signer.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                stats.error(recording, "client: build".into(), &e);
                break;
            }
        };
        let t0 = Instant::now();
        let recording = t0 >= record_from;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                stats.error(recording, "io: send".into(), &e.to_string());
                continue;
            }
        };
        let status = resp.status();
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                stats.error(recording, "io: body".into(), &e.to_string());
                continue;
            }
        };
        let elapsed = t0.elapsed();
        conn = Some(sender);
        if status.as_u16() == 200 {
            if recording {
                stats
                    .samples
                    .push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
            }
        } else {
            let text = String::from_utf8_lossy(&body);
            let kind = match aws_error_code(&text) {
                Some(code) => format!("{} {code}", status.as_u16()),
                None => status.as_u16().to_string(),
            };
            stats.error(recording, kind, &text);
        }
    }
    stats
}

async fn measure(
    target: Arc<Target>,
    call: Call,
    region: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Measurement {
    let start = Instant::now();
    let record_from = start + warmup;
    let end = record_from + duration;
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(worker(
                Arc::clone(&target),
                call,
                region.to_owned(),
                record_from,
                end,
            ))
        })
        .collect();
    let mut samples = Vec::new();
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut error_examples = BTreeMap::new();
    let mut reconnects = 0;
    for h in handles {
        match h.await {
            Ok(s) => {
                samples.extend(s.samples);
                for (k, n) in s.errors {
                    *error_kinds.entry(k).or_default() += n;
                }
                for (k, e) in s.examples {
                    error_examples.entry(k).or_insert(e);
                }
                reconnects += s.reconnects;
            }
            Err(e) => {
                *error_kinds.entry("client: worker".into()).or_default() += 1;
                error_examples
                    .entry("client: worker".into())
                    .or_insert_with(|| e.to_string());
            }
        }
    }
    // Requests that finish after the deadline still count: the window is [record_from, last).
    let window = start.elapsed().saturating_sub(warmup).as_secs_f64();
    samples.sort_unstable();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        // Nearest-rank percentile.
        let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1] as f64 / 1000.0
    };
    let ok = samples.len() as u64;
    let mean_us = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|&n| n as f64).sum::<f64>() / samples.len() as f64 / 1000.0
    };
    Measurement {
        target: target.server,
        call,
        action: call.label(),
        connections,
        duration_s: window,
        ok,
        errors: error_kinds.values().sum(),
        rps: ok as f64 / window.max(f64::MIN_POSITIVE),
        p50_us: pct(50.0),
        p90_us: pct(90.0),
        p99_us: pct(99.0),
        p999_us: pct(99.9),
        max_us: pct(100.0),
        mean_us,
        reconnects,
        error_kinds,
        error_examples,
    }
}

/// hive vs moto per call (target 50x) and each authenticated hive call vs hive `/health`
/// (target 0.5x). A ratio is missing when either side had no successful request.
fn ratios(ms: &[Measurement]) -> Vec<Ratio> {
    let find = |server: Server, call: Call| {
        ms.iter()
            .find(|m| m.target == server && m.call == call && m.ok > 0)
    };
    let mut out = Vec::new();
    let mut calls: Vec<Call> = ms
        .iter()
        .map(|m| m.call)
        .filter(|&c| c != Call::Health)
        .collect();
    calls.sort_unstable();
    calls.dedup();
    let ratio = |what: String, a: Option<&Measurement>, b: Option<&Measurement>, target: f64| {
        let r = a.zip(b).map(|(a, b)| a.rps / b.rps);
        Ratio {
            what,
            ratio: r,
            target,
            met: r.map(|r| r >= target),
        }
    };
    let has = |server: Server, call: Call| ms.iter().any(|m| m.target == server && m.call == call);
    for &call in &calls {
        if has(Server::Hive, call) && has(Server::Moto, call) {
            out.push(ratio(
                format!("{} hive / moto", call.label()),
                find(Server::Hive, call),
                find(Server::Moto, call),
                50.0,
            ));
        }
    }
    if has(Server::Hive, Call::Health) {
        for &call in &calls {
            if has(Server::Hive, call) {
                out.push(ratio(
                    format!("{} / GET /health (hive)", call.label()),
                    find(Server::Hive, call),
                    find(Server::Hive, Call::Health),
                    0.5,
                ));
            }
        }
    }
    out
}

fn print_table(ms: &[Measurement], ratios: &[Ratio]) {
    println!(
        "\n{:<6} {:<28} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "target", "call", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for m in ms {
        let (rps, p50, p99, p999) = if m.ok > 0 {
            (
                format!("{:.0}", m.rps),
                format!("{:.3}", m.p50_us / 1000.0),
                format!("{:.3}", m.p99_us / 1000.0),
                format!("{:.3}", m.p999_us / 1000.0),
            )
        } else {
            ("-".into(), "-".into(), "-".into(), "-".into())
        };
        println!(
            "{:<6} {:<28} {:>10} {:>10} {:>10} {:>10} {:>8}",
            m.target.name(),
            m.action,
            rps,
            p50,
            p99,
            p999,
            m.errors
        );
        for (kind, n) in &m.error_kinds {
            let example = m.error_examples.get(kind).map_or("", String::as_str);
            println!("         {n:>8} x {kind}: {example}");
        }
    }
    if !ratios.is_empty() {
        println!(
            "\n{:<52} {:>10} {:>8} {:>6}",
            "ratio", "value", "target", "met"
        );
        for r in ratios {
            let (value, met) = match (r.ratio, r.met) {
                (Some(v), Some(m)) => (format!("{v:.2}x"), if m { "yes" } else { "NO" }),
                _ => ("-".into(), "n/a"),
            };
            println!(
                "{:<52} {:>10} {:>8} {:>6}",
                r.what,
                value,
                format!(">={}x", r.target),
                met
            );
        }
    }
}

/// The XML text of the first `<tag>` in `body`.
fn xml_text<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(&body[start..start + len])
}

/// Sends one signed IAM call and returns the response body of a 200.
async fn iam_call(target: &Target, region: &str, body: String) -> Result<String, String> {
    let c = &target.credentials;
    let signer = Signer::new(
        c.access_key_id.clone(),
        c.secret.clone(),
        c.session_token.clone(),
        region,
        "iam",
    );
    let headers: [(&str, &[u8]); 2] = [
        ("host", target.host.as_bytes()),
        ("content-type", FORM.as_bytes()),
    ];
    let sig = signer
        .sign(
            &SignedRequest {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                payload: Payload::Bytes(body.as_bytes()),
            },
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| e.to_string())?;
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("host", &target.host)
        .header("content-type", FORM);
    for (name, value) in sig.iter() {
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let mut conn = connect(target.addr).await?;
    let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status.as_u16() == 200 {
        Ok(text)
    } else {
        Err(format!("HTTP {status}: {}", truncate(&text, EXAMPLE_LEN)))
    }
}

/// Creates (or reuses) an IAM user in moto and returns a fresh access key of it.
async fn moto_user(moto: &Target, region: &str, user: &str) -> Result<Credentials, LoadError> {
    let create = iam_call(
        moto,
        region,
        format!("Action=CreateUser&Version=2010-05-08&UserName={user}"),
    )
    .await;
    if let Err(e) = create
        && !e.contains("EntityAlreadyExists")
    {
        return Err(LoadError::MotoSetup {
            step: "CreateUser",
            reason: e,
        });
    }
    let body = iam_call(
        moto,
        region,
        format!("Action=CreateAccessKey&Version=2010-05-08&UserName={user}"),
    )
    .await
    .map_err(|reason| LoadError::MotoSetup {
        step: "CreateAccessKey",
        reason,
    })?;
    let key = xml_text(&body, "AccessKeyId");
    let secret = xml_text(&body, "SecretAccessKey");
    match (key, secret) {
        (Some(k), Some(s)) => Ok(Credentials {
            access_key_id: k.to_owned(),
            secret: SecretString::new(s),
            session_token: None,
        }),
        _ => Err(LoadError::MotoSetup {
            step: "CreateAccessKey",
            reason: "no AccessKeyId/SecretAccessKey in the response".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIA".into(),
            secret: SecretString::new("s"),
            session_token: None,
        }
    }

    #[test]
    fn only_loopback_http_targets() {
        for ok in [
            "http://127.0.0.1:8700",
            "http://localhost:1",
            "http://[::1]:5000",
            "http://127.1.2.3:80/",
        ] {
            let t = target(Server::Hive, ok, creds()).expect(ok);
            assert!(t.addr.ip().is_loopback(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:80",
            "https://127.0.0.1:8700",
            "http://example.com:80",
            "http://0.0.0.0:80",
            "127.0.0.1:80",
            "",
        ] {
            assert!(target(Server::Hive, bad, creds()).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_profile_is_parsed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = x\n\n\
             # comment\n[hive-admin]\naws_access_key_id = AKIAADMIN\n\
             aws_secret_access_key = se=cret\n",
        )
        .expect("write");
        let c = read_profile(&path, "hive-admin").expect("profile");
        assert_eq!(c.access_key_id, "AKIAADMIN");
        assert_eq!(c.secret.expose(), "se=cret");
        assert!(read_profile(&path, "missing").is_err());
        assert!(read_profile(&dir.path().join("nope"), "hive-admin").is_err());
    }

    #[test]
    fn error_codes_and_xml_text() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>\
                    <Message>m</Message></Error></ErrorResponse>";
        assert_eq!(aws_error_code(body), Some("InvalidAction"));
        assert_eq!(aws_error_code("<html>500</html>"), None);
        assert_eq!(xml_text("<a><B>x</B></a>", "B"), Some("x"));
        assert_eq!(truncate("héllo", 2), "h");
    }

    #[test]
    fn ratios_compare_hive_with_moto_and_health() {
        let m = |target, call, rps: f64, ok| Measurement {
            target,
            call,
            action: call.label(),
            connections: 1,
            duration_s: 1.0,
            ok,
            errors: 0,
            rps,
            p50_us: 0.0,
            p90_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            mean_us: 0.0,
            reconnects: 0,
            error_kinds: BTreeMap::new(),
            error_examples: BTreeMap::new(),
        };
        let ms = [
            m(Server::Hive, Call::Health, 1000.0, 1000),
            m(Server::Hive, Call::Sts, 600.0, 600),
            m(Server::Moto, Call::Sts, 10.0, 10),
            m(Server::Hive, Call::Vpcs, 0.0, 0),
            m(Server::Moto, Call::Vpcs, 5.0, 5),
        ];
        let r = ratios(&ms);
        let get = |what: &str| r.iter().find(|r| r.what == what).expect(what);
        let sts = get("sts:GetCallerIdentity hive / moto");
        assert_eq!((sts.ratio, sts.met), (Some(60.0), Some(true)));
        let health = get("sts:GetCallerIdentity / GET /health (hive)");
        assert_eq!((health.ratio, health.met), (Some(0.6), Some(true)));
        let vpcs = get("ec2:DescribeVpcs hive / moto");
        assert_eq!((vpcs.ratio, vpcs.met), (None, None));
    }

    #[tokio::test]
    async fn requests_are_signed_afresh() {
        let t = target(Server::Hive, "http://127.0.0.1:9", creds()).expect("loopback");
        let signer = Signer::new("AKIA", SecretString::new("s"), None, "us-east-1", "sts");
        let req = build_request(&t, Call::Sts, Some(&signer)).expect("builds");
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .expect("signed");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIA/"));
        assert!(auth.contains("/us-east-1/sts/aws4_request"));
        assert!(req.headers().contains_key("x-amz-date"));
        let health = build_request(&t, Call::Health, None).expect("builds");
        assert!(!health.headers().contains_key("authorization"));
        assert_eq!(health.uri().path(), "/health");
    }
}
