//! DNS messages for SRV lookups: encoding one query (RFC 1035 §4.1, with an
//! EDNS0 OPT record, RFC 6891) and decoding its answer: the SRV records
//! (RFC 2782) and the addresses the server added for their targets.
//!
//! Answers come from the network: every length, offset and compression
//! pointer is checked before it is followed, pointers must point backwards
//! (so names cannot loop), and anything malformed is a [`WireError`], never
//! a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record type A.
pub(crate) const TYPE_A: u16 = 1;
/// Record type AAAA.
pub(crate) const TYPE_AAAA: u16 = 28;
/// Record type SRV.
pub(crate) const TYPE_SRV: u16 = 33;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The UDP payload size advertised in EDNS0: DNS Flag Day 2020's value,
/// which keeps answers below common MTUs (no IP fragments to lose).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;
const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// More pointers than this in one name is a broken (or hostile) answer;
/// backward-only pointers already bound it by the message length.
const MAX_POINTERS: usize = 64;

/// Why an answer was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// The message ends before what it declares.
    #[error("the answer ends early (at byte {0})")]
    Short(usize),
    /// A compression pointer points forwards, at itself, or too often.
    #[error("the answer has a name whose compression pointers loop")]
    BadPointer,
    /// A name of more than 255 bytes, or a label type from RFC 6891's
    /// reserved space.
    #[error("the answer has a malformed name")]
    BadName,
    /// A name to query that DNS cannot carry.
    #[error("`{0}` cannot be queried: labels are 1 to 63 bytes, names at most 255")]
    BadQueryName(String),
    /// Not an answer to the query sent (ID, flags or question differ).
    #[error("the message does not answer the query sent")]
    NotOurs,
    /// The server set TC: the answer did not fit; ask again over TCP.
    #[error("the answer is truncated")]
    Truncated,
    /// RCODE 3: the name does not exist.
    #[error("the name does not exist (NXDOMAIN)")]
    NxDomain,
    /// Another error RCODE (2 is SERVFAIL, 5 REFUSED).
    #[error("the server answered with RCODE {0}")]
    Rcode(u8),
    /// An SRV, A or AAAA record whose data does not fit its type.
    #[error("the answer has a malformed {0} record")]
    BadRecord(&'static str),
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Srv {
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) port: u16,
    /// Lower case, without the final dot; empty for `.`, which says the
    /// service is not available there (RFC 2782).
    pub(crate) target: String,
    pub(crate) ttl: u32,
}

/// An address the server added (additional section) for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// Lower case, without the final dot.
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
    pub(crate) ttl: u32,
}

/// What an SRV answer says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    /// SRV records of the answer section (after any CNAME).
    pub(crate) srv: Vec<Srv>,
    /// A and AAAA records of the additional section.
    pub(crate) addresses: Vec<Address>,
}

/// A query for `name` (no final dot needed) of type `qtype`, recursion
/// desired, advertising [`EDNS_PAYLOAD`] bytes over UDP.
pub(crate) fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 2 + 4 + 11);
    out.extend_from_slice(&id.to_be_bytes());
    // QR=0, opcode QUERY, RD=1.
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    // One question, no answers or authority, one additional (OPT).
    for count in [1u16, 0, 0, 1] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    encode_name(&mut out, name)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root owner, type 41, class = payload size, TTL = extended RCODE
    // and flags (none), no options.
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(out)
}

fn encode_name(out: &mut Vec<u8>, name: &str) -> Result<(), WireError> {
    let bad = || WireError::BadQueryName(name.to_string());
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut written = 1;
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(bad());
            }
            written += 1 + label.len();
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    if written > MAX_NAME {
        return Err(bad());
    }
    out.push(0);
    Ok(())
}

/// A bounds-checked reader over one message.
struct Reader<'m> {
    msg: &'m [u8],
    pos: usize,
}

impl<'m> Reader<'m> {
    fn bytes(&mut self, n: usize) -> Result<&'m [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Short(self.pos))?;
        let slice = self
            .msg
            .get(self.pos..end)
            .ok_or(WireError::Short(self.pos))?;
        self.pos = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A possibly compressed name, lower case, without the final dot;
    /// bytes other than letters, digits, `-`, `_` and `*` are written
    /// `\DDD` as dig does, so a hostile label cannot smuggle dots.
    fn name(&mut self) -> Result<String, WireError> {
        let (name, next) = read_name(self.msg, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Reads the name at `start`; returns it and the offset after it (after
/// the first pointer, when compressed).
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), WireError> {
    let mut name = String::new();
    let mut pos = start;
    let mut after: Option<usize> = None;
    let mut pointers = 0;
    let mut wire_len = 1;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Short(pos))?;
        match len & 0xC0 {
            0x00 if len == 0 => {
                return Ok((name, after.unwrap_or(pos + 1)));
            }
            0x00 => {
                let len = usize::from(len);
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(WireError::Short(pos + 1))?;
                wire_len += 1 + len;
                if wire_len > MAX_NAME {
                    return Err(WireError::BadName);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    match b {
                        b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'*' => name.push(char::from(b)),
                        b'A'..=b'Z' => name.push(char::from(b.to_ascii_lowercase())),
                        _ => name.push_str(&format!("\\{b:03}")),
                    }
                }
                pos += 1 + len;
            }
            0xC0 => {
                let low = *msg.get(pos + 1).ok_or(WireError::Short(pos + 1))?;
                let target = (usize::from(len & 0x3F) << 8) | usize::from(low);
                // Backwards only: every jump lands strictly earlier, so a
                // name cannot loop.
                pointers += 1;
                if target >= pos || pointers > MAX_POINTERS {
                    return Err(WireError::BadPointer);
                }
                after.get_or_insert(pos + 2);
                pos = target;
            }
            // 0x40 and 0x80: extended and reserved label types.
            _ => return Err(WireError::BadName),
        }
    }
}

/// RFC 2181 §8: a TTL with the top bit set is read as 0.
fn ttl(raw: u32) -> u32 {
    if raw > i32::MAX as u32 {
        0
    } else {
        raw
    }
}

/// Decodes the answer to query `id` for `name` of type `qtype`.
pub(crate) fn decode_answer(
    msg: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
) -> Result<Answer, WireError> {
    let mut r = Reader { msg, pos: 0 };
    let got_id = r.u16()?;
    let flags = r.u16()?;
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    let nscount = r.u16()?;
    let arcount = r.u16()?;
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xF;
    if got_id != id || !is_response || opcode != 0 || qdcount != 1 {
        return Err(WireError::NotOurs);
    }
    // A truncated answer may lack records (and even its question):
    // nothing in it is worth reading.
    if flags & 0x0200 != 0 {
        return Err(WireError::Truncated);
    }
    let qname = r.name()?;
    let (got_type, got_class) = (r.u16()?, r.u16()?);
    let wanted = name.strip_suffix('.').unwrap_or(name);
    if !qname.eq_ignore_ascii_case(wanted) || got_type != qtype || got_class != CLASS_IN {
        return Err(WireError::NotOurs);
    }
    match (flags & 0xF) as u8 {
        0 => {}
        3 => return Err(WireError::NxDomain),
        code => return Err(WireError::Rcode(code)),
    }
    let mut answer = Answer::default();
    let sections = [
        (ancount, Section::Answer),
        (nscount, Section::Authority),
        (arcount, Section::Additional),
    ];
    for (count, section) in sections {
        for _ in 0..count {
            let owner = r.name()?;
            let rtype = r.u16()?;
            let class = r.u16()?;
            let ttl = ttl(r.u32()?);
            let len = usize::from(r.u16()?);
            let data_start = r.pos;
            let data = r.bytes(len)?;
            if class != CLASS_IN {
                continue;
            }
            match (section, rtype) {
                (Section::Answer, TYPE_SRV) => {
                    if len < 7 {
                        return Err(WireError::BadRecord("SRV"));
                    }
                    let field = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
                    // The target may be compressed although RFC 2782 says
                    // not to; it must still end inside the record.
                    let (target, end) = read_name(msg, data_start + 6)?;
                    if end != data_start + len {
                        return Err(WireError::BadRecord("SRV"));
                    }
                    answer.srv.push(Srv {
                        priority: field(0),
                        weight: field(2),
                        port: field(4),
                        target,
                        ttl,
                    });
                }
                (Section::Additional, TYPE_A) => {
                    let octets: [u8; 4] = data.try_into().map_err(|_| WireError::BadRecord("A"))?;
                    answer.addresses.push(Address {
                        name: owner,
                        ip: IpAddr::V4(Ipv4Addr::from(octets)),
                        ttl,
                    });
                }
                (Section::Additional, TYPE_AAAA) => {
                    let octets: [u8; 16] =
                        data.try_into().map_err(|_| WireError::BadRecord("AAAA"))?;
                    answer.addresses.push(Address {
                        name: owner,
                        ip: IpAddr::V6(Ipv6Addr::from(octets)),
                        ttl,
                    });
                }
                // CNAMEs (the server followed them), authority records,
                // OPT and anything else: not needed.
                _ => {}
            }
        }
    }
    Ok(answer)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
    Additional,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds answers the way servers do, compression included, for tests
    /// here and in `dns`.
    pub(crate) struct Builder {
        pub(crate) msg: Vec<u8>,
        counts: [u16; 3],
    }

    impl Builder {
        /// An answer to `id` for `name`/`qtype` with `flags` (0x8180:
        /// response, RD, RA, NOERROR).
        pub(crate) fn new(id: u16, flags: u16, name: &str, qtype: u16) -> Builder {
            let mut msg = Vec::new();
            msg.extend_from_slice(&id.to_be_bytes());
            msg.extend_from_slice(&flags.to_be_bytes());
            msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            encode_name(&mut msg, name).unwrap();
            msg.extend_from_slice(&qtype.to_be_bytes());
            msg.extend_from_slice(&CLASS_IN.to_be_bytes());
            Builder {
                msg,
                counts: [0; 3],
            }
        }

        fn record(&mut self, section: usize, owner: &[u8], rtype: u16, ttl: u32, data: &[u8]) {
            self.counts[section] += 1;
            self.msg.extend_from_slice(owner);
            self.msg.extend_from_slice(&rtype.to_be_bytes());
            self.msg.extend_from_slice(&CLASS_IN.to_be_bytes());
            self.msg.extend_from_slice(&ttl.to_be_bytes());
            self.msg
                .extend_from_slice(&(data.len() as u16).to_be_bytes());
            self.msg.extend_from_slice(data);
        }

        /// An SRV record owned by the question's name (a pointer to it).
        pub(crate) fn srv(
            mut self,
            priority: u16,
            weight: u16,
            port: u16,
            target: &str,
            ttl: u32,
        ) -> Self {
            let mut data = Vec::new();
            data.extend_from_slice(&priority.to_be_bytes());
            data.extend_from_slice(&weight.to_be_bytes());
            data.extend_from_slice(&port.to_be_bytes());
            encode_name(&mut data, target).unwrap();
            self.record(0, &[0xC0, 12], TYPE_SRV, ttl, &data);
            self
        }

        /// An A or AAAA record for `name` in the additional section.
        pub(crate) fn addr(mut self, name: &str, ip: IpAddr, ttl: u32) -> Self {
            let mut owner = Vec::new();
            encode_name(&mut owner, name).unwrap();
            match ip {
                IpAddr::V4(v4) => self.record(2, &owner, TYPE_A, ttl, &v4.octets()),
                IpAddr::V6(v6) => self.record(2, &owner, TYPE_AAAA, ttl, &v6.octets()),
            }
            self
        }

        pub(crate) fn build(mut self) -> Vec<u8> {
            for (i, c) in self.counts.iter().enumerate() {
                self.msg[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
            }
            self.msg
        }
    }

    const NAME: &str = "_http._tcp.orders.svc.cluster.local";

    #[test]
    fn a_query_is_laid_out_as_rfc_1035_says() {
        let q = encode_query(0xBEEF, "_http._tcp.a.b.", TYPE_SRV).unwrap();
        let mut expected = vec![0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        expected.extend_from_slice(b"\x05_http\x04_tcp\x01a\x01b\x00");
        expected.extend_from_slice(&[0, 33, 0, 1]);
        expected.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(q, expected);
        assert!(encode_query(1, "a..b", TYPE_SRV).is_err());
        assert!(encode_query(1, &"x".repeat(64), TYPE_SRV).is_err());
        let long = vec!["x".repeat(63); 4].join(".");
        assert!(
            encode_query(1, &long, TYPE_SRV).is_err(),
            "256 bytes on the wire"
        );
    }

    #[test]
    fn srv_records_and_their_addresses_are_read() {
        let msg = Builder::new(7, 0x8180, NAME, TYPE_SRV)
            .srv(10, 60, 8080, "Orders-0.orders.svc.cluster.local", 30)
            .srv(20, 0, 8081, "orders-1.orders.svc.cluster.local.", 5)
            .addr(
                "orders-0.orders.svc.cluster.local",
                "10.1.0.7".parse().unwrap(),
                30,
            )
            .addr(
                "orders-0.orders.svc.cluster.local",
                "fd00::7".parse().unwrap(),
                30,
            )
            .build();
        let a = decode_answer(&msg, 7, NAME, TYPE_SRV).unwrap();
        assert_eq!(a.srv.len(), 2);
        assert_eq!(
            a.srv[0],
            Srv {
                priority: 10,
                weight: 60,
                port: 8080,
                target: "orders-0.orders.svc.cluster.local".into(),
                ttl: 30
            }
        );
        assert_eq!(a.srv[1].target, "orders-1.orders.svc.cluster.local");
        assert_eq!(a.addresses.len(), 2);
        assert_eq!(a.addresses[1].ip, "fd00::7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn compressed_targets_and_the_root_target_are_read() {
        let mut b = Builder::new(1, 0x8180, NAME, TYPE_SRV);
        // Target `orders-0` + pointer to "orders.svc..." inside the question
        // (offset 12 + len("\x05_http\x04_tcp") = 23).
        let mut data = vec![0, 1, 0, 1, 0x1F, 0x90];
        data.extend_from_slice(b"\x08orders-0\xC0\x17");
        b.record(0, &[0xC0, 12], TYPE_SRV, 9, &data);
        let b = b.srv(0, 0, 0, ".", 9);
        let a = decode_answer(&b.build(), 1, NAME, TYPE_SRV).unwrap();
        assert_eq!(a.srv[0].target, "orders-0.orders.svc.cluster.local");
        assert_eq!(a.srv[0].port, 8080);
        assert_eq!(a.srv[1].target, "");
    }

    #[test]
    fn answers_to_someone_else_are_refused() {
        let msg = Builder::new(7, 0x8180, NAME, TYPE_SRV).build();
        assert_eq!(
            decode_answer(&msg, 8, NAME, TYPE_SRV),
            Err(WireError::NotOurs)
        );
        assert_eq!(
            decode_answer(&msg, 7, "other.name", TYPE_SRV),
            Err(WireError::NotOurs)
        );
        assert_eq!(
            decode_answer(&msg, 7, NAME, TYPE_A),
            Err(WireError::NotOurs)
        );
        let query = encode_query(7, NAME, TYPE_SRV).unwrap();
        assert_eq!(
            decode_answer(&query, 7, NAME, TYPE_SRV),
            Err(WireError::NotOurs)
        );
        // Names compare without case, as DNS does.
        assert!(decode_answer(&msg, 7, &NAME.to_uppercase(), TYPE_SRV).is_ok());
    }

    #[test]
    fn rcodes_and_truncation_are_errors_of_their_own() {
        let at = |flags| {
            decode_answer(
                &Builder::new(7, flags, NAME, TYPE_SRV).build(),
                7,
                NAME,
                TYPE_SRV,
            )
        };
        assert_eq!(at(0x8183), Err(WireError::NxDomain));
        assert_eq!(at(0x8182), Err(WireError::Rcode(2)));
        assert_eq!(
            at(0x8385),
            Err(WireError::Truncated),
            "TC wins: the rest may be missing"
        );
        assert_eq!(at(0x8180), Ok(Answer::default()));
    }

    #[test]
    fn malformed_answers_are_errors() {
        let good = Builder::new(7, 0x8180, NAME, TYPE_SRV)
            .srv(1, 1, 80, "a.example", 5)
            .addr("a.example", "10.0.0.1".parse().unwrap(), 5)
            .build();
        // Every prefix is short somewhere.
        for cut in 0..good.len() {
            assert!(
                decode_answer(&good[..cut], 7, NAME, TYPE_SRV).is_err(),
                "cut at {cut}"
            );
        }
        // A pointer to itself, and one pointing forwards.
        let mut looped = Builder::new(7, 0x8180, NAME, TYPE_SRV).build();
        looped[7] = 1;
        let at = looped.len() as u16;
        looped.extend_from_slice(&(0xC000 | at).to_be_bytes());
        assert_eq!(
            decode_answer(&looped, 7, NAME, TYPE_SRV),
            Err(WireError::BadPointer)
        );
        let mut forward = Builder::new(7, 0x8180, NAME, TYPE_SRV).build();
        forward[7] = 1;
        let ahead = forward.len() as u16 + 2;
        forward.extend_from_slice(&(0xC000 | ahead).to_be_bytes());
        forward.push(0);
        assert_eq!(
            decode_answer(&forward, 7, NAME, TYPE_SRV),
            Err(WireError::BadPointer)
        );
        // An A record of 5 bytes, an SRV without a target.
        let mut b = Builder::new(7, 0x8180, NAME, TYPE_SRV);
        b.record(2, &[0], TYPE_A, 1, &[10, 0, 0, 1, 9]);
        assert_eq!(
            decode_answer(&b.build(), 7, NAME, TYPE_SRV),
            Err(WireError::BadRecord("A"))
        );
        let mut b = Builder::new(7, 0x8180, NAME, TYPE_SRV);
        b.record(0, &[0xC0, 12], TYPE_SRV, 1, &[0, 1, 0, 1, 0, 80]);
        assert_eq!(
            decode_answer(&b.build(), 7, NAME, TYPE_SRV),
            Err(WireError::BadRecord("SRV"))
        );
        // A target running past its record's end.
        let mut b = Builder::new(7, 0x8180, NAME, TYPE_SRV);
        b.record(
            0,
            &[0xC0, 12],
            TYPE_SRV,
            1,
            &[0, 1, 0, 1, 0, 80, 3, b'a', b'b', b'c', 0, 0],
        );
        assert_eq!(
            decode_answer(&b.build(), 7, NAME, TYPE_SRV),
            Err(WireError::BadRecord("SRV"))
        );
        // A reserved label type.
        let mut b = Builder::new(7, 0x8180, NAME, TYPE_SRV);
        b.record(2, &[0x40, 0], TYPE_A, 1, &[10, 0, 0, 1]);
        assert_eq!(
            decode_answer(&b.build(), 7, NAME, TYPE_SRV),
            Err(WireError::BadName)
        );
    }

    #[test]
    fn odd_bytes_in_names_cannot_pose_as_dots() {
        let mut b = Builder::new(7, 0x8180, NAME, TYPE_SRV);
        b.record(
            0,
            &[0xC0, 12],
            TYPE_SRV,
            1,
            b"\x00\x01\x00\x01\x00\x50\x03a.b\x03com\x00",
        );
        let a = decode_answer(&b.build(), 7, NAME, TYPE_SRV).unwrap();
        assert_eq!(a.srv[0].target, "a\\046b.com");
    }

    #[test]
    fn ttls_with_the_top_bit_set_are_zero() {
        let a = decode_answer(
            &Builder::new(7, 0x8180, NAME, TYPE_SRV)
                .srv(1, 1, 80, "a.b", 0x8000_0000)
                .build(),
            7,
            NAME,
            TYPE_SRV,
        )
        .unwrap();
        assert_eq!(a.srv[0].ttl, 0);
    }

    proptest! {
        /// Bytes from anywhere decode to an answer or an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), id in any::<u16>()) {
            let _ = decode_answer(&bytes, id, NAME, TYPE_SRV);
        }

        /// A real answer with bytes flipped decodes or fails, never panics.
        #[test]
        fn corrupted_answers_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut msg = Builder::new(7, 0x8180, NAME, TYPE_SRV)
                .srv(1, 5, 80, "a.example", 5)
                .srv(2, 5, 81, "b.example", 5)
                .addr("a.example", "10.0.0.1".parse().unwrap(), 5)
                .build();
            for (at, byte) in flips {
                let i = at % msg.len();
                msg[i] = byte;
            }
            let _ = decode_answer(&msg, 7, NAME, TYPE_SRV);
        }

        /// What a server writes is what is read back.
        #[test]
        fn records_round_trip(
            records in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u16>(), "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}", 0u32..=i32::MAX as u32), 0..12),
            addrs in proptest::collection::vec((any::<[u8; 4]>(), 0u32..1000), 0..6),
        ) {
            let mut b = Builder::new(42, 0x8180, NAME, TYPE_SRV);
            for (p, w, port, target, ttl) in &records {
                b = b.srv(*p, *w, *port, target, *ttl);
            }
            for (octets, ttl) in &addrs {
                b = b.addr("host.example", IpAddr::from(*octets), *ttl);
            }
            let a = decode_answer(&b.build(), 42, NAME, TYPE_SRV).unwrap();
            let got: Vec<_> = a.srv.iter().map(|s| (s.priority, s.weight, s.port, s.target.clone(), s.ttl)).collect();
            let want: Vec<_> = records.iter().map(|(p, w, port, t, ttl)| (*p, *w, *port, t.clone(), *ttl)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(a.addresses.len(), addrs.len());
        }
    }
}
