#![allow(clippy::unwrap_used)]
use super::*;

/// A minimal BER writer for test datagrams (what Net-SNMP's snmptrap sends).
mod ber {
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    pub fn int_with(tag: u8, v: i64) -> Vec<u8> {
        let bytes = v.to_be_bytes();
        let mut start = 0;
        while start < 7
            && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
                || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
        {
            start += 1;
        }
        tlv(tag, &bytes[start..])
    }
    pub fn int(v: i64) -> Vec<u8> {
        int_with(0x02, v)
    }
    pub fn ticks(v: u32) -> Vec<u8> {
        int_with(0x43, i64::from(v))
    }
    pub fn octets(v: &[u8]) -> Vec<u8> {
        tlv(0x04, v)
    }
    pub fn oid(arcs: &[u32]) -> Vec<u8> {
        let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &a in &arcs[2..] {
            let mut chunk = vec![(a & 0x7f) as u8];
            let mut rest = a >> 7;
            while rest > 0 {
                chunk.push(0x80 | (rest & 0x7f) as u8);
                rest >>= 7;
            }
            chunk.reverse();
            body.extend(chunk);
        }
        tlv(0x06, &body)
    }
    pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }
}

fn varbind(o: &[u32], value: Vec<u8>) -> Vec<u8> {
    ber::seq(&[ber::oid(o), value])
}

fn v2c_trap(community: &[u8], uptime: u32, trap_oid: &[u32], if_index: Option<u32>) -> Vec<u8> {
    let mut vbs = vec![
        varbind(SYS_UPTIME_0, ber::ticks(uptime)),
        varbind(SNMP_TRAP_OID, ber::oid(trap_oid)),
    ];
    if let Some(i) = if_index {
        vbs.push(varbind(&[IF_INDEX, &[i]].concat(), ber::int(i64::from(i))));
        vbs.push(varbind(&[oid::IF_ADMIN_STATUS, &[i]].concat(), ber::int(1)));
        vbs.push(varbind(&[oid::IF_OPER_STATUS, &[i]].concat(), ber::int(2)));
    }
    let pdu = ber::tlv(
        0xa7,
        &[ber::int(4711), ber::int(0), ber::int(0), ber::seq(&vbs)].concat(),
    );
    ber::seq(&[ber::int(1), ber::octets(community), pdu])
}

fn v1_trap(community: &[u8], generic: i64, uptime: u32, if_index: u32) -> Vec<u8> {
    let vbs = ber::seq(&[varbind(
        &[IF_INDEX, &[if_index]].concat(),
        ber::int(i64::from(if_index)),
    )]);
    let pdu = ber::tlv(
        0xa4,
        &[
            ber::oid(&[1, 3, 6, 1, 4, 1, 8072]),
            ber::tlv(0x40, &[127, 0, 0, 1]),
            ber::int(generic),
            ber::int(0),
            ber::ticks(uptime),
            vbs,
        ]
        .concat(),
    );
    ber::seq(&[ber::int(0), ber::octets(community), pdu])
}

fn get_request() -> Vec<u8> {
    let pdu = ber::tlv(
        0xa0,
        &[ber::int(1), ber::int(0), ber::int(0), ber::seq(&[])].concat(),
    );
    ber::seq(&[ber::int(1), ber::octets(b"public"), pdu])
}

const UP_LONG: u32 = 10 * 5 * 60 * 100;

#[test]
fn decodes_v2c_link_traps() {
    let t = decode(&v2c_trap(b"public", UP_LONG, TRAP_LINK_DOWN, Some(49))).unwrap();
    assert_eq!(t.kind, TrapKind::LinkDown);
    assert_eq!(t.if_index, Some(49));
    assert_eq!(t.uptime, Some(UP_LONG));
    assert_eq!(t.community, b"public");
    let t = decode(&v2c_trap(b"public", 5, TRAP_COLD_START, None)).unwrap();
    assert_eq!(t.kind, TrapKind::ColdStart);
    assert_eq!(t.if_index, None);
    let t = decode(&v2c_trap(b"public", 5, &[1, 3, 6, 1, 4, 1, 9, 9, 1], None)).unwrap();
    assert_eq!(t.kind, TrapKind::Other("1.3.6.1.4.1.9.9.1".into()));
}

#[test]
fn decodes_v1_link_traps() {
    let t = decode(&v1_trap(b"public", 3, UP_LONG, 7)).unwrap();
    assert_eq!(t.kind, TrapKind::LinkUp);
    assert_eq!(t.if_index, Some(7));
    assert_eq!(t.uptime, Some(UP_LONG));
}

#[test]
fn requests_are_not_traps() {
    assert!(
        matches!(decode(&get_request()), Err(TrapError::NotATrap(_))),
        "{:?}",
        decode(&get_request())
    );
}

fn router() -> (Router, mpsc::Receiver<Hint>, mpsc::Receiver<Hint>) {
    let (tx1, rx1) = mpsc::channel(4);
    let (tx2, rx2) = mpsc::channel(4);
    let mut r = Router::new(DEFAULT_QUIET);
    let lo: IpAddr = [127, 0, 0, 1].into();
    r.add(
        lo,
        Source {
            name: "a".into(),
            auth: TrapAuth::Community(Secret::new("ca")),
            hints: tx1,
        },
    );
    r.add(
        lo,
        Source {
            name: "b".into(),
            auth: TrapAuth::Community(Secret::new("cb")),
            hints: tx2,
        },
    );
    (r, rx1, rx2)
}

#[test]
fn verdicts() {
    let (r, _a, _b) = router();
    let lo: IpAddr = [127, 0, 0, 1].into();
    let other: IpAddr = [127, 0, 0, 2].into();
    let trap = |c: &[u8], up, oid: &[u32], i| decode(&v2c_trap(c, up, oid, i)).unwrap();
    let cases = [
        (
            lo,
            trap(b"cb", UP_LONG, TRAP_LINK_DOWN, Some(3)),
            Verdict::Deliver {
                device: 1,
                hint: Hint::Port(3),
            },
        ),
        (
            lo,
            trap(b"ca", UP_LONG, TRAP_LINK_UP, None),
            Verdict::Deliver {
                device: 0,
                hint: Hint::Repoll,
            },
        ),
        (
            lo,
            trap(b"ca", UP_LONG, TRAP_WARM_START, None),
            Verdict::Deliver {
                device: 0,
                hint: Hint::Repoll,
            },
        ),
        (
            lo,
            trap(b"ca", 100, TRAP_LINK_DOWN, Some(3)),
            Verdict::LogOnly("after_reboot"),
        ),
        (
            lo,
            trap(b"ca", UP_LONG, &[1, 3, 6, 1, 4, 1, 1], None),
            Verdict::LogOnly("not_handled"),
        ),
        (
            lo,
            trap(b"wrong", UP_LONG, TRAP_LINK_DOWN, Some(3)),
            Verdict::Drop("bad_community"),
        ),
        (
            other,
            trap(b"ca", UP_LONG, TRAP_LINK_DOWN, Some(3)),
            Verdict::Drop("unknown_source"),
        ),
    ];
    for (ip, t, want) in cases {
        assert_eq!(r.judge(ip, &t), want, "{t:?} from {ip}");
    }
}

/// xorshift64*: a fast, deterministic source of test bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

/// A million random and mutated datagrams: the decoder returns, it never panics.
#[test]
fn a_million_hostile_datagrams_never_panic() {
    let seeds = [
        v2c_trap(b"public", UP_LONG, TRAP_LINK_DOWN, Some(49)),
        v2c_trap(b"public", 1, TRAP_COLD_START, None),
        v1_trap(b"public", 2, UP_LONG, 3),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut refused) = (0u32, 0u32);
    for n in 0..1_000_000u32 {
        let mut d = if n % 4 == 0 {
            (0..rng.below(200))
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        if n % 4 != 0 {
            for _ in 0..=rng.below(4) {
                match rng.below(4) {
                    0 if !d.is_empty() => {
                        let i = rng.below(d.len());
                        d[i] ^= 1 << rng.below(8);
                    }
                    1 if !d.is_empty() => {
                        let i = rng.below(d.len());
                        d[i] = rng.next() as u8;
                    }
                    2 => d.truncate(rng.below(d.len() + 1)),
                    _ => {
                        let i = rng.below(d.len() + 1);
                        d.insert(i, rng.next() as u8);
                    }
                }
            }
        }
        match decode(&d) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    // Both paths were exercised: mutations that still decode, and refusals.
    assert!(ok > 1000 && refused > 100_000, "ok {ok}, refused {refused}");
}

/// A real SNMPv3 authPriv (SHA/AES) linkDown trap for ifIndex 49, sent by Net-SNMP's
/// `snmptrap -v 3 -e 0x80001f8880c0ffee00 -u cnaas -a SHA -A authsecret1 -x AES -X privsecret1
/// -l authPriv ... 12345678 linkDown ifIndex.49 i 49 ...` and captured.
const V3_TRAP: &[u8] = include_bytes!("v3-linkdown-trap.bin");

fn v3_router(auth_password: &str) -> (Router, mpsc::Receiver<Hint>) {
    use crate::snmp::{AuthProto, PrivProto, V3};
    let (tx, rx) = mpsc::channel(4);
    let mut r = Router::new(DEFAULT_QUIET);
    let v3 = V3 {
        user: "cnaas".into(),
        auth: AuthProto::Sha,
        auth_password: Secret::new(auth_password),
        privacy: Some((PrivProto::Aes, Secret::new("privsecret1"))),
        context: String::new(),
    };
    r.add(
        [127, 0, 0, 1].into(),
        Source {
            name: "v3".into(),
            auth: TrapAuth::Usm(v3),
            hints: tx,
        },
    );
    (r, rx)
}

#[test]
fn decodes_an_snmpv3_auth_priv_trap() {
    assert_eq!(decode(V3_TRAP), Err(TrapError::NeedsUsm));
    let (mut r, _rx) = v3_router("authsecret1");
    let (device, trap) = r.decode_v3([127, 0, 0, 1].into(), V3_TRAP).unwrap();
    assert_eq!(device, 0);
    assert_eq!(trap.kind, TrapKind::LinkDown);
    assert_eq!(trap.if_index, Some(49));
    assert_eq!(trap.uptime, Some(12_345_678));
    assert_eq!(
        r.verdict(device, &trap),
        Verdict::Deliver {
            device: 0,
            hint: Hint::Port(49)
        }
    );
    // The same datagram again is a replay.
    assert_eq!(
        r.decode_v3([127, 0, 0, 1].into(), V3_TRAP).unwrap_err(),
        "replayed"
    );
    assert_eq!(
        r.decode_v3([127, 0, 0, 2].into(), V3_TRAP).unwrap_err(),
        "unknown_source"
    );
}

#[test]
fn a_wrong_password_refuses_the_v3_trap() {
    let (mut r, _rx) = v3_router("not-the-password");
    assert_eq!(
        r.decode_v3([127, 0, 0, 1].into(), V3_TRAP).unwrap_err(),
        "bad_credentials"
    );
}

#[test]
fn mutated_v3_traps_never_panic() {
    let (mut r, _rx) = v3_router("authsecret1");
    let ip: IpAddr = [127, 0, 0, 1].into();
    assert!(r.decode_v3(ip, V3_TRAP).is_ok());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut accepted = 0;
    for _ in 0..100_000 {
        let mut d = V3_TRAP.to_vec();
        for _ in 0..=rng.below(3) {
            match rng.below(3) {
                0 if !d.is_empty() => {
                    let i = rng.below(d.len());
                    d[i] ^= 1 << rng.below(8);
                }
                1 => d.truncate(rng.below(d.len() + 1)),
                _ if !d.is_empty() => {
                    let i = rng.below(d.len());
                    d[i] = rng.next() as u8;
                }
                _ => {}
            }
        }
        let _ = decode(&d);
        if r.decode_v3(ip, &d).is_ok() && d != V3_TRAP {
            accepted += 1;
        }
    }
    // The HMAC covers the whole message: nothing changed may pass.
    assert_eq!(accepted, 0, "{accepted} altered v3 traps were accepted");
}

#[test]
fn the_sender_clock_refuses_replays_and_stale_messages() {
    use super::EngineClock;
    let t0 = std::time::Instant::now();
    let secs = |n| t0 + std::time::Duration::from_secs(n);
    let mut c = EngineClock::new(t0);
    assert_eq!(c.admit(1, 5, 1000, t0), Ok(()));
    // The same message again, at once or later: a replay.
    assert_eq!(c.admit(1, 5, 1000, secs(1)), Err("replayed"));
    // Another message a little behind (sent before, arrived after): inside the window.
    assert_eq!(c.admit(2, 5, 990, secs(1)), Ok(()));
    // A captured one played back 10 minutes later: outside the window.
    assert_eq!(c.admit(3, 5, 1001, secs(600)), Err("outside_time_window"));
    // Fresh ones go on.
    assert_eq!(c.admit(4, 5, 1600, secs(600)), Ok(()));
    // An earlier boot: a replay; a later boot (the device restarted): taken.
    assert_eq!(c.admit(5, 4, 99_999, secs(601)), Err("replayed"));
    assert_eq!(c.admit(6, 6, 3, secs(700)), Ok(()));
    assert_eq!(c.admit(4, 5, 1600, secs(700)), Err("replayed"));
}
