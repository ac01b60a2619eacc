//! Receivers of the product's notifications: a real SMTP server (PyPI `aiosmtpd`, writing a
//! maildir) and an HTTP webhook receiver whose answers a test scripts (for example: fail three
//! times, then accept), recording every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{Process, find_program, free_port, open_tempdir, wait_until};

/// One e-mail as the SMTP sink stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// `To:` header.
    pub to: String,
    /// `Subject:` header (unfolded; RFC 2047 words left encoded).
    pub subject: String,
    /// `Message-ID:` header.
    pub message_id: String,
    /// `X-CNaaS-Idempotency-Key:` header.
    pub key: String,
    /// The body, transfer encoding undone.
    pub body: String,
    /// The whole message as received.
    pub raw: String,
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .unwrap_or_default()
}

/// Undoes quoted-printable (`=XX` and soft line breaks); `underscore` is the RFC 2047 variant.
fn quoted_printable(s: &str, underscore: bool) -> Vec<u8> {
    let bytes = s.replace("=\r\n", "").replace("=\n", "").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b'_' if underscore => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`) in a header.
fn decode_header(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find("=?") {
        let Some(end) = rest[start + 2..].find("?=").map(|e| start + 2 + e) else {
            break;
        };
        let before = &rest[..start];
        // Whitespace between two encoded words is not part of the text.
        if !before.trim().is_empty() || out.is_empty() {
            out.push_str(before);
        }
        let word = &rest[start + 2..end];
        let mut parts = word.splitn(3, '?');
        let (_charset, enc, text) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        let bytes = match enc.map(str::to_ascii_lowercase).as_deref() {
            Some("b") => b64(text),
            Some("q") => quoted_printable(text, true),
            _ => text.as_bytes().to_vec(),
        };
        out.push_str(&String::from_utf8_lossy(&bytes));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// aiosmtpd listening on a loopback port, storing every message in a maildir.
pub struct SmtpSink {
    /// Its port.
    pub port: u16,
    process: Option<Process>,
    dir: tempfile::TempDir,
    starts: u32,
    /// STARTTLS and AUTH required: (user, password).
    secure: Option<(String, String)>,
}

fn aiosmtpd() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CNAAS_AIOSMTPD") {
        return Ok(PathBuf::from(p));
    }
    // ./tests/run installs it in the same venv as snmpsim.
    if let Some(sim) = std::env::var_os("CNAAS_SNMPSIM") {
        let p = PathBuf::from(sim).with_file_name("aiosmtpd");
        if p.exists() {
            return Ok(p);
        }
    }
    find_program("aiosmtpd")
}

impl SmtpSink {
    /// Starts the sink on a free port and waits until it greets.
    pub fn start() -> Result<SmtpSink> {
        let mut sink = SmtpSink::not_started()?;
        sink.resume()?;
        Ok(sink)
    }

    /// A server that demands STARTTLS (with a certificate from a test CA, see
    /// [`SmtpSink::ca_file`]) and AUTH as `user`/`password` before it takes mail
    /// (`tests/peers/smtp_auth.py`, on aiosmtpd).
    pub fn start_secure(user: &str, password: &str) -> Result<SmtpSink> {
        let mut sink = SmtpSink::not_started()?;
        crate::make_pki(sink.dir.path())?;
        sink.secure = Some((user.to_owned(), password.to_owned()));
        sink.resume()?;
        Ok(sink)
    }

    /// The CA certificate of a secure server.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.secure.as_ref().map(|_| self.dir.path().join("ca.crt"))
    }

    /// A sink on a port where nothing listens yet (start it later with [`SmtpSink::resume`]).
    pub fn not_started() -> Result<SmtpSink> {
        Ok(SmtpSink {
            port: free_port(),
            process: None,
            dir: open_tempdir()?,
            starts: 0,
            secure: None,
        })
    }

    /// Stops the server: connections are refused until it resumes.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.terminate()?;
        }
        Ok(())
    }

    /// Starts the server (again) on the same port and maildir.
    pub fn resume(&mut self) -> Result<()> {
        let maildir = self.dir.path().join("maildir");
        self.starts += 1;
        let cmd = match &self.secure {
            None => {
                let mut cmd = Command::new(aiosmtpd()?);
                cmd.args(["-n", "-l", &format!("127.0.0.1:{}", self.port)])
                    .args(["-c", "aiosmtpd.handlers.Mailbox"])
                    .arg(&maildir);
                cmd
            }
            Some((user, password)) => {
                // The venv's python, beside its aiosmtpd script.
                let mut cmd = Command::new(aiosmtpd()?.with_file_name("python3"));
                let pki = self.dir.path();
                cmd.arg(crate::repo_root().join("tests/peers/smtp_auth.py"))
                    .arg(self.port.to_string())
                    .arg(&maildir)
                    .arg(pki.join("server.crt"))
                    .arg(pki.join("server.key"))
                    .args([user, password]);
                cmd
            }
        };
        let log = self
            .dir
            .path()
            .join(format!("aiosmtpd-{}.log", self.starts));
        let mut process = Process::spawn("aiosmtpd", cmd, &log)?;
        let port = self.port;
        wait_until("aiosmtpd to greet", Duration::from_secs(15), || {
            process.check_alive().ok()?;
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let mut line = String::new();
            BufReader::new(&mut s).read_line(&mut line).ok()?;
            let _ = s.write_all(b"QUIT\r\n");
            line.starts_with("220").then_some(())
        })
        .with_context(|| process.log())?;
        self.process = Some(process);
        Ok(())
    }

    /// Every message received so far, oldest file first.
    pub fn mails(&self) -> Vec<Mail> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.dir.path().join("maildir").join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort_by_key(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH)
        });
        files
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|raw| parse_mail(&raw))
            .collect()
    }
}

/// Reads the headers the tests look at (folded lines joined).
fn parse_mail(raw: &str) -> Mail {
    let head = raw
        .split("\r\n\r\n")
        .next()
        .and_then(|h| h.split("\n\n").next())
        .unwrap_or_default();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let get = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let body_raw = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .map_or("", |(_, b)| b);
    let body = match get("content-transfer-encoding")
        .to_ascii_lowercase()
        .as_str()
    {
        "base64" => String::from_utf8_lossy(&b64(body_raw)).into_owned(),
        "quoted-printable" => {
            String::from_utf8_lossy(&quoted_printable(body_raw, false)).into_owned()
        }
        _ => body_raw.to_owned(),
    };
    Mail {
        to: get("to"),
        subject: decode_header(&get("subject")),
        message_id: get("message-id"),
        key: get("x-cnaas-idempotency-key"),
        body: body.replace("\r\n", "\n"),
        raw: raw.to_owned(),
    }
}

/// One request the webhook receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// `Idempotency-Key` header.
    pub key: String,
    /// `Authorization` header.
    pub authorization: String,
    /// The body parsed as JSON (`null` if it was not JSON).
    pub body: serde_json::Value,
    /// The status it was answered with.
    pub status: u16,
}

/// An HTTP server on a loopback port answering POSTs with scripted statuses: the first
/// `fail_first` requests get 503, later ones 200.
pub struct WebhookReceiver {
    /// Its port.
    pub port: u16,
    requests: Arc<Mutex<Vec<WebhookRequest>>>,
}

impl WebhookReceiver {
    /// Starts the receiver (it lives as long as the test process).
    pub fn start(fail_first: usize) -> Result<WebhookReceiver> {
        WebhookReceiver::start_with(fail_first, 0)
    }

    /// Like [`WebhookReceiver::start`], but the first `hold_first` requests are read,
    /// recorded (status 0) and never answered: the connection stays open for a minute, as a
    /// gateway that hangs.
    pub fn start_with(fail_first: usize, hold_first: usize) -> Result<WebhookReceiver> {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let n = seen.lock().map(|v| v.len()).unwrap_or(0);
                if n < hold_first {
                    if let Ok(reader) = stream.try_clone()
                        && let Some(req) = read_request(reader)
                        && let Ok(mut v) = seen.lock()
                    {
                        v.push(WebhookRequest { status: 0, ..req });
                    }
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(60));
                        drop(stream);
                    });
                    continue;
                }
                let status = if n < fail_first + hold_first {
                    503
                } else {
                    200
                };
                if let Some(req) = serve_one(stream, status)
                    && let Ok(mut v) = seen.lock()
                {
                    v.push(req);
                }
            }
        });
        Ok(WebhookReceiver { port, requests })
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/notify", self.port)
    }

    /// Requests so far.
    pub fn requests(&self) -> Vec<WebhookRequest> {
        self.requests.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Reads one HTTP/1.1 request and answers `status`, closing the connection.
fn serve_one(mut stream: TcpStream, status: u16) -> Option<WebhookRequest> {
    let req = read_request(stream.try_clone().ok()?)?;
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let _ = stream.write_all(
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    Some(WebhookRequest { status, ..req })
}

/// Reads one HTTP/1.1 request (status 0: not answered yet).
fn read_request(stream: TcpStream) -> Option<WebhookRequest> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let (mut key, mut authorization, mut length) = (String::new(), String::new(), 0usize);
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "idempotency-key" => key = v.trim().to_owned(),
                "authorization" => authorization = v.trim().to_owned(),
                "content-length" => length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(WebhookRequest {
        key,
        authorization,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        status: 0,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn folded_headers_are_joined() {
        let m = parse_mail(
            "To: a@b.no\r\nSubject: [CNaaS S2] Ny\r\n hendelse\r\nMessage-ID: <x@y>\r\nX-CNaaS-Idempotency-Key: inc-1/opened-1\r\n\r\nbody",
        );
        assert_eq!(m.subject, "[CNaaS S2] Ny hendelse");
        assert_eq!(m.key, "inc-1/opened-1");
        assert_eq!(m.message_id, "<x@y>");
    }

    #[test]
    fn encoded_subjects_and_bodies_are_decoded() {
        let m = parse_mail(
            "Subject: =?utf-8?b?SGVuZGVsc2UgbMO4c3Q=?=\r\n =?utf-8?q?_p=C3=A5_a?=\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nF=C3=B8rste=\r\n tid=3D1\r\n",
        );
        assert_eq!(m.subject, "Hendelse løst på a");
        assert_eq!(m.body, "Første tid=1\n");
    }
}
