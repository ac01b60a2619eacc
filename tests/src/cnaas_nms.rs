//! A stand-in for CNaaS-NMS's REST API (v1.0) on a loopback port: CNaaS-NMS itself cannot run
//! here (it needs its own git repositories of templates and settings). It answers exactly in
//! the shapes of CNaaS-NMS's API reference (docs/apiref in SUNET/cnaas-nms):
//!
//! - `GET /api/v1.0/devices?page=N&per_page=M`: `{"status": "success", "data": {"devices":
//!   [...]}}` with `X-Total-Count`;
//! - `GET /api/v1.0/device/{hostname}/interfaces`: `{"status": "success", "data":
//!   {"interfaces": [{"device_id", "name", "configtype", "data"}], "hostname"}}`;
//! - `GET /api/v1.0/linknets` and `GET /api/v1.0/mgmtdomains`;
//! - a missing or wrong bearer token: 401 `{"status": "error", "message": ...}`.
//!
//! A test changes what it serves ([`NmsState`]) and how it fails ([`Failure`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use crate::free_port;

/// One device: id, hostname, management address, `device_type`, `state`.
#[derive(Debug, Clone)]
pub struct NmsDevice {
    /// `id`.
    pub id: i64,
    /// `hostname`.
    pub hostname: String,
    /// `management_ip`.
    pub management_ip: String,
    /// `ACCESS`, `DIST` or `CORE`.
    pub device_type: String,
    /// `MANAGED`, `DISCOVERED`, ...
    pub state: String,
    /// Interfaces (name, configtype) of an access switch.
    pub interfaces: Vec<(String, String)>,
}

/// What the server holds.
#[derive(Debug, Clone, Default)]
pub struct NmsState {
    /// The devices.
    pub devices: Vec<NmsDevice>,
    /// Links: (device a id, port, device b id, port).
    pub linknets: Vec<(i64, String, i64, String)>,
    /// Management domains (distribution pairs): (device a id, device b id).
    pub mgmtdomains: Vec<(i64, i64)>,
}

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Failure {
    /// It answers.
    #[default]
    None,
    /// 500 to everything.
    ServerError,
    /// A 200 whose body is not JSON.
    BadJson,
    /// No answer for 30 s.
    Hang,
}

/// The running stand-in.
pub struct FakeCnaasNms {
    /// Its port.
    pub port: u16,
    /// What it serves.
    pub state: Arc<Mutex<NmsState>>,
    /// How it fails.
    pub failure: Arc<Mutex<Failure>>,
    /// Requests seen (path and query).
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// The JWT it accepts.
pub const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjbmFhcy1tb25pdG9yIn0.c2lnbmF0dXJl";

impl FakeCnaasNms {
    /// Starts it (it lives as long as the test process).
    pub fn start(state: NmsState) -> Result<FakeCnaasNms> {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let fake = FakeCnaasNms {
            port,
            state: Arc::new(Mutex::new(state)),
            failure: Arc::default(),
            requests: Arc::default(),
        };
        let (state, failure, requests) = (
            fake.state.clone(),
            fake.failure.clone(),
            fake.requests.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, failure, requests) = (state.clone(), failure.clone(), requests.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, &failure, &requests);
                });
            }
        });
        Ok(fake)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes what it serves.
    pub fn with(&self, f: impl FnOnce(&mut NmsState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// Sets how it fails.
    pub fn fail(&self, how: Failure) {
        if let Ok(mut f) = self.failure.lock() {
            *f = how;
        }
    }

    /// How many requests it has had.
    pub fn request_count(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or(0)
    }
}

fn serve(
    stream: TcpStream,
    state: &Mutex<NmsState>,
    failure: &Mutex<Failure>,
    requests: &Mutex<Vec<String>>,
) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut authorization = String::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = v.trim().to_owned();
        }
    }
    if let Ok(mut r) = requests.lock() {
        r.push(target.clone());
    }
    let how = failure.lock().map(|f| *f).unwrap_or_default();
    let mut out = stream;
    let reply = |out: &mut TcpStream, status: &str, body: &str, extra: &str| -> Result<()> {
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            body.len()
        )?;
        Ok(())
    };
    match how {
        Failure::ServerError => {
            return reply(
                &mut out,
                "500 INTERNAL SERVER ERROR",
                "{\"status\": \"error\", \"message\": \"internal\"}",
                "",
            );
        }
        Failure::BadJson => return reply(&mut out, "200 OK", "<html>maintenance</html>", ""),
        Failure::Hang => {
            std::thread::sleep(Duration::from_secs(30));
            return Ok(());
        }
        Failure::None => {}
    }
    if authorization != format!("Bearer {JWT}") {
        return reply(
            &mut out,
            "401 UNAUTHORIZED",
            "{\"status\": \"error\", \"message\": \"JWT token missing or invalid\"}",
            "",
        );
    }
    let s = state.lock().map(|s| s.clone()).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let success = |data: Value| json!({ "status": "success", "data": data }).to_string();
    let device_json = |d: &NmsDevice| {
        json!({
            "id": d.id, "hostname": d.hostname, "site_id": null, "description": null,
            "management_ip": d.management_ip, "dhcp_ip": null, "infra_ip": null, "oob_ip": null,
            "serial": null, "ztp_mac": null, "platform": "eos", "vendor": null, "model": null,
            "os_version": null, "synchronized": true, "state": d.state,
            "device_type": d.device_type, "confhash": null, "last_seen": "2026-12-01 10:30:23.338681",
            "port": null
        })
    };
    if path == "/api/v1.0/devices" {
        let per_page = param("per_page").unwrap_or(50).max(1);
        let page = param("page").unwrap_or(1).max(1);
        let list: Vec<Value> = s
            .devices
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(device_json)
            .collect();
        return reply(
            &mut out,
            "200 OK",
            &success(json!({ "devices": list })),
            &format!("X-Total-Count: {}\r\n", s.devices.len()),
        );
    }
    if let Some(host) = path
        .strip_prefix("/api/v1.0/device/")
        .and_then(|r| r.strip_suffix("/interfaces"))
    {
        let Some(d) = s.devices.iter().find(|d| d.hostname == host) else {
            return reply(
                &mut out,
                "404 NOT FOUND",
                "{\"status\": \"error\", \"message\": \"Device not found\"}",
                "",
            );
        };
        let list: Vec<Value> = d
            .interfaces
            .iter()
            .map(|(name, ct)| json!({ "device_id": d.id, "name": name, "configtype": ct, "data": null }))
            .collect();
        return reply(
            &mut out,
            "200 OK",
            &success(json!({ "interfaces": list, "hostname": host })),
            "",
        );
    }
    if path == "/api/v1.0/linknets" {
        let list: Vec<Value> = s
            .linknets
            .iter()
            .enumerate()
            .map(|(i, (a, ap, b, bp))| {
                json!({ "id": i + 1, "ipv4_network": null, "device_a_id": a, "device_a_ip": null,
                        "device_a_port": ap, "device_b_id": b, "device_b_ip": null,
                        "device_b_port": bp, "site_id": null, "description": null })
            })
            .collect();
        return reply(
            &mut out,
            "200 OK",
            &success(json!({ "linknets": list })),
            "",
        );
    }
    if path == "/api/v1.0/mgmtdomains" {
        let list: Vec<Value> = s
            .mgmtdomains
            .iter()
            .enumerate()
            .map(|(i, (a, b))| {
                json!({ "id": i + 1, "ipv4_gw": "192.168.50.0/24", "device_a_id": a,
                        "device_a_ip": null, "device_b_id": b, "device_b_ip": null,
                        "site_id": null, "vlan": 600, "description": null })
            })
            .collect();
        return reply(
            &mut out,
            "200 OK",
            &success(json!({ "mgmtdomains": list })),
            "",
        );
    }
    reply(
        &mut out,
        "404 NOT FOUND",
        "{\"status\": \"error\", \"message\": \"not found\"}",
        "",
    )
}
