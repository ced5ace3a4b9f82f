//! Pure properties: MAC normalisation and TFTP packet parsing, no server.

use super::*;

#[test]
fn every_spelling_of_six_octets_normalises_to_the_colon_form() {
    check(
        4096,
        (any::<[u8; 6]>(), mac_style(), any::<bool>(), "[ \t]{0,2}"),
        |(o, st, up, pad)| {
            let spelled = format!("{pad}{}{pad}", spell(o, st, up));
            let colon = o
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            let want = if o == [0; 6] || o == [0xff; 6] || o[0] & 1 == 1 {
                Err(MacError::NotUnicast)
            } else {
                Ok(colon)
            };
            prop_assert_eq!(normalize_mac(&spelled), want, "{:?}", spelled);
            Ok(())
        },
    );
}

#[test]
fn normalize_mac_is_idempotent_and_its_output_canonical() {
    let input = prop_oneof![
        "[0-9a-fA-F:.\\- ]{0,24}",
        any::<String>(),
        (unicast(), mac_style(), any::<bool>()).prop_map(|(o, st, up)| spell(o, st, up)),
    ];
    check(4096, input, |s| {
        if let Ok(m) = normalize_mac(&s) {
            prop_assert_eq!(normalize_mac(&m), Ok(m.clone()));
            let canonical = m.len() == 17
                && m.split(':').all(|o| {
                    o.len() == 2
                        && o.chars()
                            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                });
            prop_assert!(canonical, "{s:?} → {m:?}");
        }
        Ok(())
    });
}

fn tftp_text() -> BoxedStrategy<String> {
    "[\\x01-\\x7f]{0,16}".boxed()
}

/// What `parse` lower-cases (modes, option names) generated lower-case already.
fn tftp_lower() -> BoxedStrategy<String> {
    "[\\x01-\\x40\\x5b-\\x7f]{0,12}".boxed()
}

fn tftp_options() -> BoxedStrategy<Vec<(String, String)>> {
    prop::collection::vec((tftp_lower(), tftp_text()), 0..=16).boxed()
}

fn tftp_packet() -> impl Strategy<Value = Packet> {
    let request =
        (tftp_text(), tftp_lower(), tftp_options()).prop_map(|(filename, mode, options)| Request {
            filename,
            mode,
            options,
        });
    prop_oneof![
        request.clone().prop_map(Packet::Read),
        request.prop_map(Packet::Write),
        (any::<u16>(), prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(block, data)| Packet::Data { block, data }),
        any::<u16>().prop_map(|block| Packet::Ack { block }),
        (any::<u16>(), tftp_text()).prop_map(|(code, message)| Packet::Error { code, message }),
        tftp_options().prop_map(Packet::OptionAck),
    ]
}

#[test]
fn tftp_packets_round_trip() {
    check(4096, tftp_packet(), |p| {
        prop_assert_eq!(tftp::parse(&tftp::encode(&p)), Ok(p));
        Ok(())
    });
}

#[test]
fn tftp_parse_never_panics_and_what_it_parses_round_trips() {
    let alphabet = prop::sample::select(&[0u8, 1, b'a', b'Z', b'9', 0x7f, 0x80, 0xff][..]);
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (0u16..8, prop::collection::vec(alphabet, 0..48)).prop_map(|(op, rest)| [
            op.to_be_bytes().to_vec(),
            rest
        ]
        .concat()),
        (
            tftp_packet(),
            any::<Index>(),
            prop::collection::vec(any::<u8>(), 0..4)
        )
            .prop_map(|(p, cut, tail)| {
                let b = tftp::encode(&p);
                [&b[..cut.index(b.len() + 1)], &tail[..]].concat()
            }),
    ];
    let dir = std::path::Path::new("/srv/tftp");
    check(8192, bytes, |b| {
        if let Ok(p) = tftp::parse(&b) {
            prop_assert_eq!(tftp::parse(&tftp::encode(&p)), Ok(p.clone()));
            if let Packet::Read(r) = &p {
                let _ = tftp::plan(dir, r, |_| Some(1 << 20));
            }
        }
        Ok(())
    });
}
