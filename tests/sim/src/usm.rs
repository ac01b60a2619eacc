//! SNMPv3 for the simulated switches: the User-based Security Model (RFC 3414) with
//! HMAC-SHA-96 authentication and AES-128-CFB privacy (RFC 3826), for one user every switch
//! knows. Engine discovery is answered with a `usmStatsUnknownEngineIDs` report carrying the
//! engine's boots and time; requests must be authPriv. The simulator is lenient about the
//! time window (it accepts any engine time) since it is a test peer, not a security boundary.
//!
//! With one switch per socket the socket names the switch; on the shared socket the request's
//! contextName does (as the community does for v2c).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aes::Aes128;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rasn::types::{Integer, ObjectIdentifier, OctetString};
use rasn_smi::v1::Counter;
use rasn_smi::v2::{ApplicationSyntax, ObjectSyntax};
use rasn_snmp::v2::{Pdu, Pdus, Report, VarBind, VarBindValue};
use rasn_snmp::v3::{HeaderData, Message, ScopedPdu, ScopedPduData, USMSecurityParameters};
use sha1::{Digest, Sha1};

use crate::agent::{LinkChange, Route, Shared, Stats, respond};

/// The engine id every simulated switch reports (Net-SNMP's text format, enterprise 8072).
pub const ENGINE_ID: &[u8] = b"\x80\x00\x1f\x88\x04cnaas-sim";

const FLAG_AUTH: u8 = 1;
const FLAG_PRIV: u8 = 2;
const FLAG_REPORTABLE: u8 = 4;
const USM_STATS: [u32; 9] = [1, 3, 6, 1, 6, 3, 15, 1, 1];
const UNSUPPORTED_SEC_LEVELS: u32 = 1;
const UNKNOWN_USER_NAMES: u32 = 3;
const UNKNOWN_ENGINE_IDS: u32 = 4;
const WRONG_DIGESTS: u32 = 5;
const DECRYPTION_ERRORS: u32 = 6;

/// The v3 user of the simulated campus.
#[derive(Debug, Clone)]
pub struct V3User {
    /// User name.
    pub user: String,
    /// SHA-1 authentication password.
    pub auth_password: String,
    /// AES-128 privacy password.
    pub priv_password: String,
}

/// The user's localized keys and the engine's state.
pub struct Usm {
    user: Vec<u8>,
    auth_key: [u8; 20],
    priv_key: [u8; 16],
    started: Instant,
    salt: AtomicU64,
    reports: [AtomicU64; 7],
}

/// RFC 3414 A.2.2: the password stretched to 1 MB, hashed, then localized to the engine id.
pub fn localize_sha1(password: &[u8], engine_id: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    if !password.is_empty() {
        let mut fed = 0usize;
        while fed < 1_048_576 {
            let take = (1_048_576 - fed).min(password.len());
            h.update(&password[..take]);
            fed += take;
        }
    }
    let ku = h.finalize();
    let mut l = Sha1::new();
    l.update(ku);
    l.update(engine_id);
    l.update(ku);
    l.finalize().into()
}

fn hmac_96(key: &[u8], message: &[u8]) -> Option<[u8; 12]> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).ok()?;
    mac.update(message);
    let full = mac.finalize().into_bytes();
    full.get(..12)?.try_into().ok()
}

/// RFC 3826 3.1.2.1: engine boots, engine time, then the 8-byte salt.
fn iv(boots: u32, time: u32, salt: &[u8]) -> Option<[u8; 16]> {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt.get(..8)?);
    Some(iv)
}

impl Usm {
    /// Keys for `user`, localized to [`ENGINE_ID`].
    pub fn new(user: V3User) -> Usm {
        let auth_key = localize_sha1(user.auth_password.as_bytes(), ENGINE_ID);
        let priv_full = localize_sha1(user.priv_password.as_bytes(), ENGINE_ID);
        let mut priv_key = [0u8; 16];
        priv_key.copy_from_slice(&priv_full[..16]);
        Usm {
            user: user.user.into_bytes(),
            auth_key,
            priv_key,
            started: Instant::now(),
            salt: AtomicU64::new(0x5eed),
            reports: Default::default(),
        }
    }

    fn boots_time(&self) -> (u32, u32) {
        let t = u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX);
        (1, t)
    }

    /// A report with one usmStats counter, sent at security level `flags` (noAuthNoPriv for
    /// discovery and failures).
    fn report(&self, msg_id: &Integer, user: &[u8], stat: u32, request_id: i32) -> Option<Vec<u8>> {
        let n = self
            .reports
            .get(usize::try_from(stat).ok()?)?
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let mut oid = USM_STATS.to_vec();
        oid.extend([stat, 0]);
        let pdu = Pdus::Report(Report(Pdu {
            request_id,
            error_status: 0,
            error_index: 0,
            variable_bindings: vec![VarBind {
                name: ObjectIdentifier::new_unchecked(oid.into()),
                value: VarBindValue::Value(ObjectSyntax::ApplicationWide(
                    ApplicationSyntax::Counter(Counter(u32::try_from(n).unwrap_or(u32::MAX))),
                )),
            }],
        }));
        let (boots, time) = self.boots_time();
        let usm = USMSecurityParameters {
            authoritative_engine_id: OctetString::from(ENGINE_ID.to_vec()),
            authoritative_engine_boots: Integer::from(boots),
            authoritative_engine_time: Integer::from(time),
            user_name: OctetString::from(user.to_vec()),
            authentication_parameters: OctetString::from(Vec::new()),
            privacy_parameters: OctetString::from(Vec::new()),
        };
        let scoped = ScopedPduData::CleartextPdu(ScopedPdu {
            engine_id: OctetString::from(ENGINE_ID.to_vec()),
            name: OctetString::from(Vec::new()),
            data: pdu,
        });
        encode(msg_id, 0, &usm, scoped)
    }

    /// An authPriv response: encrypts the scoped PDU, then signs the whole message.
    fn response(&self, msg_id: &Integer, context: &OctetString, data: Pdus) -> Option<Vec<u8>> {
        let (boots, time) = self.boots_time();
        let salt = self.salt.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let mut plain = rasn::ber::encode(&ScopedPdu {
            engine_id: OctetString::from(ENGINE_ID.to_vec()),
            name: context.clone(),
            data,
        })
        .ok()?;
        let iv = iv(boots, time, &salt)?;
        cfb_mode::Encryptor::<Aes128>::new(&self.priv_key.into(), &iv.into()).encrypt(&mut plain);
        let usm = USMSecurityParameters {
            authoritative_engine_id: OctetString::from(ENGINE_ID.to_vec()),
            authoritative_engine_boots: Integer::from(boots),
            authoritative_engine_time: Integer::from(time),
            user_name: OctetString::from(self.user.clone()),
            authentication_parameters: OctetString::from(vec![0u8; 12]),
            privacy_parameters: OctetString::from(salt.to_vec()),
        };
        let mut bytes = encode(
            msg_id,
            FLAG_AUTH | FLAG_PRIV,
            &usm,
            ScopedPduData::EncryptedPdu(OctetString::from(plain)),
        )?;
        let at = placeholder(&bytes)?;
        let digest = hmac_96(&self.auth_key, &bytes)?;
        bytes.get_mut(at..at + 12)?.copy_from_slice(&digest);
        Some(bytes)
    }
}

/// Where the 12 zero bytes of authentication parameters sit in an encoded message.
fn placeholder(bytes: &[u8]) -> Option<usize> {
    let mut pattern = vec![0x04, 0x0c];
    pattern.extend([0u8; 12]);
    bytes
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .map(|p| p + 2)
}

fn encode(
    msg_id: &Integer,
    flags: u8,
    usm: &USMSecurityParameters,
    scoped: ScopedPduData,
) -> Option<Vec<u8>> {
    let mut msg = Message {
        version: Integer::from(3),
        global_data: HeaderData {
            message_id: msg_id.clone(),
            max_size: Integer::from(65_507),
            flags: OctetString::from(vec![flags]),
            security_model: Integer::from(3),
        },
        security_parameters: OctetString::from(Vec::new()),
        scoped_data: scoped,
    };
    msg.encode_security_parameters(rasn::Codec::Ber, usm).ok()?;
    rasn::ber::encode(&msg).ok()
}

fn request_id(p: &Pdus) -> i32 {
    match p {
        Pdus::GetRequest(r) => r.0.request_id,
        Pdus::GetNextRequest(r) => r.0.request_id,
        Pdus::SetRequest(r) => r.0.request_id,
        Pdus::GetBulkRequest(r) => r.0.request_id,
        _ => 0,
    }
}

/// Answers one SNMPv3 datagram (see the module docs); None when it gets no answer.
pub fn answer(
    shared: &Shared,
    route: &Route,
    bytes: &[u8],
    stats: &Stats,
    changes: &mut Vec<LinkChange>,
) -> Option<Vec<u8>> {
    let malformed = || {
        stats.malformed.fetch_add(1, Ordering::Relaxed);
        None
    };
    let Some(usm) = &shared.usm else {
        return malformed();
    };
    let Ok(msg) = rasn::ber::decode::<Message>(bytes) else {
        return malformed();
    };
    if msg.version != Integer::from(3) {
        return malformed();
    }
    let Ok(params) = msg.decode_security_parameters::<USMSecurityParameters>(rasn::Codec::Ber)
    else {
        return malformed();
    };
    let flags = msg.global_data.flags.first().copied().unwrap_or(0);
    let msg_id = &msg.global_data.message_id;
    let cleartext_id = match &msg.scoped_data {
        ScopedPduData::CleartextPdu(s) => request_id(&s.data),
        ScopedPduData::EncryptedPdu(_) => 0,
    };
    // Discovery: the client does not know the engine yet.
    if params.authoritative_engine_id.is_empty() || &params.authoritative_engine_id[..] != ENGINE_ID
    {
        if flags & FLAG_REPORTABLE == 0 {
            return malformed();
        }
        return usm.report(msg_id, &params.user_name, UNKNOWN_ENGINE_IDS, cleartext_id);
    }
    if params.user_name[..] != usm.user[..] {
        return usm.report(msg_id, &params.user_name, UNKNOWN_USER_NAMES, cleartext_id);
    }
    if flags & (FLAG_AUTH | FLAG_PRIV) != FLAG_AUTH | FLAG_PRIV {
        return usm.report(
            msg_id,
            &params.user_name,
            UNSUPPORTED_SEC_LEVELS,
            cleartext_id,
        );
    }
    // Authentication: the HMAC over the message with its own digest zeroed.
    let given = &params.authentication_parameters;
    let at = bytes
        .windows(given.len().max(1))
        .position(|w| w == &given[..])
        .filter(|_| given.len() == 12);
    let Some(at) = at else {
        return usm.report(msg_id, &params.user_name, WRONG_DIGESTS, 0);
    };
    let mut zeroed = bytes.to_vec();
    zeroed.get_mut(at..at + 12)?.fill(0);
    if hmac_96(&usm.auth_key, &zeroed)?[..] != given[..] {
        return usm.report(msg_id, &params.user_name, WRONG_DIGESTS, 0);
    }
    let ScopedPduData::EncryptedPdu(encrypted) = &msg.scoped_data else {
        return usm.report(msg_id, &params.user_name, DECRYPTION_ERRORS, 0);
    };
    let boots = u32::try_from(&params.authoritative_engine_boots).unwrap_or(0);
    let time = u32::try_from(&params.authoritative_engine_time).unwrap_or(0);
    let Some(iv) = iv(boots, time, &params.privacy_parameters) else {
        return usm.report(msg_id, &params.user_name, DECRYPTION_ERRORS, 0);
    };
    let mut plain = encrypted.to_vec();
    cfb_mode::Decryptor::<Aes128>::new(&usm.priv_key.into(), &iv.into()).decrypt(&mut plain);
    // The plaintext may carry padding after the ScopedPdu; decode what is there.
    let Ok((scoped, _rest)) = rasn::ber::decode_with_remainder::<ScopedPdu>(&plain) else {
        return usm.report(msg_id, &params.user_name, DECRYPTION_ERRORS, 0);
    };
    let name = match route {
        Route::Fixed { switch, .. } => switch.clone(),
        Route::ByCommunity => String::from_utf8_lossy(&scoped.name).into_owned(),
    };
    let data = respond(shared, &name, &scoped.data, stats, changes)?;
    usm.response(msg_id, &scoped.name, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_localization_matches_rfc_3414_a_3_2() {
        // RFC 3414 A.3.2: "maplesyrup", engine id 000000000000000000000002, SHA.
        let engine = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let key = localize_sha1(b"maplesyrup", &engine);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "6695febc9288e36282235fc7151f128497b38f3f");
    }

    #[test]
    fn the_placeholder_is_found_after_its_header() {
        let mut m = vec![0x30, 0x10, 0x04, 0x03, 1, 2, 3, 0x04, 0x0c];
        m.extend([0u8; 12]);
        m.extend([0x04, 0x00]);
        assert_eq!(placeholder(&m), Some(9));
        assert_eq!(placeholder(&[0x04, 0x0c, 0]), None);
    }
}
