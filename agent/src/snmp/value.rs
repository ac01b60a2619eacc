//! Varbind values copied out of the receive buffer, so a response outlives its session borrow.

use snmp2::Value;

/// An SNMP value the agent keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpValue {
    /// INTEGER.
    Integer(i64),
    /// OCTET STRING.
    OctetString(Vec<u8>),
    /// OBJECT IDENTIFIER.
    ObjectId(Vec<u32>),
    /// IpAddress.
    IpAddress([u8; 4]),
    /// Counter32.
    Counter32(u32),
    /// Gauge32 / Unsigned32.
    Unsigned32(u32),
    /// TimeTicks (hundredths of a second).
    Timeticks(u32),
    /// Counter64.
    Counter64(u64),
    /// NULL.
    Null,
    /// noSuchObject exception.
    NoSuchObject,
    /// noSuchInstance exception.
    NoSuchInstance,
    /// endOfMibView exception.
    EndOfMibView,
    /// Anything else (opaque, nested PDUs): kept as a type name for logs.
    Other(&'static str),
}

impl SnmpValue {
    /// Copies a borrowed `snmp2` value.
    pub fn from_snmp2(v: &Value<'_>) -> SnmpValue {
        match v {
            Value::Integer(i) => SnmpValue::Integer(*i),
            Value::OctetString(s) => SnmpValue::OctetString(s.to_vec()),
            Value::ObjectIdentifier(o) => SnmpValue::ObjectId(
                o.iter()
                    .map(|it| it.filter_map(|a| u32::try_from(a).ok()).collect())
                    .unwrap_or_default(),
            ),
            Value::IpAddress(a) => SnmpValue::IpAddress(*a),
            Value::Counter32(c) => SnmpValue::Counter32(*c),
            Value::Unsigned32(c) => SnmpValue::Unsigned32(*c),
            Value::Timeticks(t) => SnmpValue::Timeticks(*t),
            Value::Counter64(c) => SnmpValue::Counter64(*c),
            Value::Null => SnmpValue::Null,
            Value::NoSuchObject => SnmpValue::NoSuchObject,
            Value::NoSuchInstance => SnmpValue::NoSuchInstance,
            Value::EndOfMibView => SnmpValue::EndOfMibView,
            Value::Boolean(_) => SnmpValue::Other("boolean"),
            Value::Opaque(_) => SnmpValue::Other("opaque"),
            _ => SnmpValue::Other("constructed"),
        }
    }

    /// The value as an integer, for INTEGER and the unsigned types.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SnmpValue::Integer(i) => Some(*i),
            SnmpValue::Counter32(c) | SnmpValue::Unsigned32(c) | SnmpValue::Timeticks(c) => {
                Some(i64::from(*c))
            }
            SnmpValue::Counter64(c) => i64::try_from(*c).ok(),
            _ => None,
        }
    }

    /// TimeTicks (or a plain unsigned, which some agents send for sysUpTime).
    pub fn as_ticks(&self) -> Option<u32> {
        match self {
            SnmpValue::Timeticks(t) | SnmpValue::Unsigned32(t) | SnmpValue::Counter32(t) => {
                Some(*t)
            }
            SnmpValue::Integer(i) => u32::try_from(*i).ok(),
            _ => None,
        }
    }

    /// The value as text (OCTET STRING, lossy UTF-8, trailing NULs dropped).
    pub fn as_text(&self) -> Option<String> {
        match self {
            SnmpValue::OctetString(b) => {
                let end = b.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
                Some(String::from_utf8_lossy(b.get(..end).unwrap_or(b)).into_owned())
            }
            _ => None,
        }
    }

    /// Whether this is one of the three exception values.
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            SnmpValue::NoSuchObject | SnmpValue::NoSuchInstance | SnmpValue::EndOfMibView
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(SnmpValue::Integer(2).as_i64(), Some(2));
        assert_eq!(SnmpValue::Timeticks(7).as_ticks(), Some(7));
        assert_eq!(SnmpValue::Integer(-1).as_ticks(), None);
        assert_eq!(
            SnmpValue::OctetString(b"Gi1/0/1\0".to_vec())
                .as_text()
                .as_deref(),
            Some("Gi1/0/1")
        );
        assert_eq!(
            SnmpValue::OctetString(vec![0xff]).as_text().as_deref(),
            Some("\u{fffd}")
        );
        assert!(SnmpValue::EndOfMibView.is_exception());
        assert_eq!(SnmpValue::Null.as_i64(), None);
    }
}
