//! NETCONF messages (RFC 6241): the client's `<hello>`, the server's `<hello>` and the framing
//! both agree on, `<rpc>` with a message-id, and the parts of an `<rpc-reply>` the agent needs
//! (its message-id, `<ok/>`, `<rpc-error>`s, and the `<data>` element as text for the plans).

use quick_xml::Reader;
use quick_xml::events::Event;

use super::framing::Framing;

/// The base namespace.
pub const BASE_NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";
/// base:1.0 (end-of-message framing).
pub const BASE_10: &str = "urn:ietf:params:netconf:base:1.0";
/// base:1.1 (chunked framing).
pub const BASE_11: &str = "urn:ietf:params:netconf:base:1.1";

/// Why a message cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not well-formed XML.
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed, but not what was expected.
    #[error("{0}")]
    Unexpected(String),
}

/// What the server said in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// Its session id.
    pub session_id: u32,
    /// Its capabilities (URIs).
    pub capabilities: Vec<String>,
}

impl ServerHello {
    /// Whether it lists a capability starting with `prefix` (capabilities carry parameters
    /// after `?`).
    pub fn has(&self, prefix: &str) -> bool {
        self.capabilities.iter().any(|c| c.starts_with(prefix))
    }

    /// The framing after the hellos: chunked when both sides offer base:1.1 (the client always
    /// does), else end-of-message.
    pub fn framing(&self) -> Framing {
        if self.capabilities.iter().any(|c| c == BASE_11) {
            Framing::Chunked
        } else {
            Framing::EndOfMessage
        }
    }
}

/// The client's hello: base:1.0 and base:1.1.
pub fn client_hello() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><hello xmlns="{BASE_NS}"><capabilities><capability>{BASE_10}</capability><capability>{BASE_11}</capability></capabilities></hello>"#
    )
}

/// An `<rpc>` around `operation` (XML the caller builds from trusted parts).
pub fn rpc(message_id: u64, operation: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><rpc message-id="{message_id}" xmlns="{BASE_NS}">{operation}</rpc>"#
    )
}

/// The text of an element: text pieces and resolved entity references.
pub(super) fn push_ref(
    out: &mut String,
    r: &quick_xml::events::BytesRef<'_>,
) -> Result<(), MessageError> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        out.push(c);
        return Ok(());
    }
    let name = std::str::from_utf8(r).map_err(|e| MessageError::Xml(e.to_string()))?;
    match quick_xml::escape::resolve_predefined_entity(name) {
        Some(s) => {
            out.push_str(s);
            Ok(())
        }
        None => Err(MessageError::Xml(format!("unknown entity &{name};"))),
    }
}

fn xml_err(e: impl std::fmt::Display) -> MessageError {
    MessageError::Xml(e.to_string())
}

/// Parses the server's hello.
pub fn parse_hello(xml: &str) -> Result<ServerHello, MessageError> {
    // Not trimmed: text around an entity reference keeps its spaces; each value is
    // trimmed whole.
    let mut r = Reader::from_str(xml);
    let (mut path, mut text) = (Vec::<String>::new(), String::new());
    let (mut session_id, mut capabilities, mut root) = (None, Vec::new(), None);
    loop {
        match r.read_event().map_err(xml_err)? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                root.get_or_insert_with(|| name.clone());
                path.push(name);
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(xml_err)?),
            Event::GeneralRef(g) => push_ref(&mut text, &g)?,
            Event::End(_) => {
                match path.last().map(String::as_str) {
                    Some("capability") => capabilities.push(text.trim().to_owned()),
                    Some("session-id") => {
                        session_id = Some(text.trim().parse::<u32>().map_err(|_| {
                            MessageError::Unexpected(format!(
                                "session-id `{}` is not a number",
                                text.trim()
                            ))
                        })?);
                    }
                    _ => {}
                }
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if root.as_deref() != Some("hello") {
        return Err(MessageError::Unexpected(format!(
            "expected <hello>, got <{}>",
            root.unwrap_or_default()
        )));
    }
    let session_id = session_id
        .ok_or_else(|| MessageError::Unexpected("the server's hello has no session-id".into()))?;
    if !capabilities.iter().any(|c| c == BASE_10 || c == BASE_11) {
        return Err(MessageError::Unexpected(
            "the server offers neither base:1.0 nor base:1.1".into(),
        ));
    }
    Ok(ServerHello {
        session_id,
        capabilities,
    })
}

/// One `<rpc-error>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpcError {
    /// `error-tag` (e.g. `operation-failed`).
    pub tag: String,
    /// `error-severity`.
    pub severity: String,
    /// `error-message`, if any.
    pub message: String,
}

/// What an `<rpc-reply>` (or a `<notification>`) said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// The root element: `rpc-reply` or `notification`.
    pub root: String,
    /// Its message-id, if it has one.
    pub message_id: Option<String>,
    /// `<ok/>`.
    pub ok: bool,
    /// The errors.
    pub errors: Vec<RpcError>,
    /// The `<data>` element, whole, as it came (for the plans to read).
    pub data: Option<String>,
}

/// Parses an `<rpc-reply>` or a `<notification>`.
pub fn parse_reply(xml: &str) -> Result<Reply, MessageError> {
    // Not trimmed: text around an entity reference keeps its spaces; each value is
    // trimmed whole.
    let mut r = Reader::from_str(xml);
    let mut reply = Reply::default();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut error = RpcError::default();
    loop {
        let start = usize::try_from(r.buffer_position()).unwrap_or(usize::MAX);
        match r.read_event().map_err(xml_err)? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if path.is_empty() {
                    reply.root.clone_from(&name);
                    if let Ok(Some(a)) = e.try_get_attribute("message-id") {
                        reply.message_id = Some(a.unescape_value().map_err(xml_err)?.into_owned());
                    }
                }
                if path.len() == 1 && name == "data" {
                    // Keep the element as it came: the plans parse it with their own schema.
                    let span = r.read_to_end(e.name()).map_err(xml_err)?;
                    let end = usize::try_from(span.end).unwrap_or(usize::MAX);
                    let whole = xml.get(start..end).unwrap_or_default();
                    // read_to_end stops before the end tag; put it back.
                    reply.data = Some(format!(
                        "{whole}</{}>",
                        String::from_utf8_lossy(e.name().as_ref())
                    ));
                    continue;
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = e.local_name();
                if path.len() == 1 && name.as_ref() == b"ok" {
                    reply.ok = true;
                }
                if path.is_empty() {
                    reply.root = String::from_utf8_lossy(name.as_ref()).into_owned();
                }
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(xml_err)?),
            Event::GeneralRef(g) => push_ref(&mut text, &g)?,
            Event::End(_) => {
                let t = text.trim().to_owned();
                match path.last().map(String::as_str) {
                    Some("error-tag") => error.tag = t,
                    Some("error-severity") => error.severity = t,
                    Some("error-message") => error.message = t,
                    Some("rpc-error") => reply.errors.push(std::mem::take(&mut error)),
                    _ => {}
                }
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if reply.root != "rpc-reply" && reply.root != "notification" {
        return Err(MessageError::Unexpected(format!(
            "expected <rpc-reply> or <notification>, got <{}>",
            reply.root
        )));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_server_hello_decides_the_framing() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <capabilities>
    <capability>urn:ietf:params:netconf:base:1.0</capability>
    <capability>urn:ietf:params:netconf:base:1.1</capability>
    <capability>urn:ietf:params:xml:ns:netconf:base:1.0?module=ietf-netconf&amp;revision=2011-06-01</capability>
    <capability>urn:ietf:params:xml:ns:yang:ietf-interfaces?module=ietf-interfaces&#38;revision=2018-02-20</capability>
  </capabilities>
  <session-id>4</session-id>
</hello>"#;
        let h = parse_hello(xml).unwrap();
        assert_eq!(h.session_id, 4);
        assert_eq!(h.framing(), Framing::Chunked);
        assert!(h.has("urn:ietf:params:xml:ns:yang:ietf-interfaces"));
        assert!(h.capabilities[2].ends_with("module=ietf-netconf&revision=2011-06-01"));
        assert!(h.capabilities[3].contains("&revision=2018-02-20"));
        let old = parse_hello(&xml.replace(
            "<capability>urn:ietf:params:netconf:base:1.1</capability>",
            "",
        ))
        .unwrap();
        assert_eq!(old.framing(), Framing::EndOfMessage);
        for (bad, why) in [
            ("<hello><capabilities/></hello>", "no session-id"),
            ("<hello><session-id>x</session-id></hello>", "not a number"),
            ("<hello><session-id>1</session-id></hello>", "neither base"),
            ("<rpc-reply/>", "expected <hello>"),
            ("<hello><session-id>1</hello>", "not well-formed"),
        ] {
            let e = parse_hello(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn replies_say_ok_errors_and_data() {
        let ok = parse_reply(r#"<rpc-reply message-id="2" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><ok/></rpc-reply>"#).unwrap();
        assert_eq!(
            (ok.message_id.as_deref(), ok.ok, ok.data),
            (Some("2"), true, None)
        );
        let err = parse_reply(
            r#"<rpc-reply message-id="3" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><rpc-error><error-type>application</error-type><error-tag>operation-failed</error-tag><error-severity>error</error-severity><error-message xml:lang="en">no such &lt;thing&gt;</error-message></rpc-error></rpc-reply>"#,
        )
        .unwrap();
        assert_eq!(err.errors.len(), 1);
        assert_eq!(err.errors[0].tag, "operation-failed");
        assert_eq!(err.errors[0].message, "no such <thing>");
        let data = parse_reply(
            r#"<rpc-reply message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><data><interfaces-state xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces"><interface><name>ge-0/0/1</name><oper-status>down</oper-status></interface></interfaces-state></data></rpc-reply>"#,
        )
        .unwrap();
        let d = data.data.unwrap();
        assert!(d.starts_with("<data>") && d.ends_with("</data>"), "{d}");
        assert!(d.contains("<oper-status>down</oper-status>"));
        let n = parse_reply(r#"<notification xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"><eventTime>2026-11-25T03:00:00Z</eventTime></notification>"#).unwrap();
        assert_eq!((n.root.as_str(), n.message_id), ("notification", None));
        assert!(parse_reply("<hello/>").is_err());
        assert!(parse_reply("<rpc-reply><data></rpc-reply>").is_err());
    }

    #[test]
    fn the_client_says_both_bases() {
        let h = client_hello();
        assert!(h.contains(BASE_10) && h.contains(BASE_11));
        assert!(rpc(7, "<get/>").contains(r#"message-id="7""#));
    }
}
