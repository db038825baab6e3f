//! Tests of the format-independent layer: descriptors, sealing, verifying and opening,
//! frozen vectors and the proptest round trips.

use super::cbc_hmac::{cbc_encrypt_in_place, cbc_encryptor};
use std::io::Cursor;

use proptest::prelude::*;

use super::*;

fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
        .collect()
}

fn sealed(format: MediaFormat, kind: MediaKind, plain: &[u8]) -> (Vec<u8>, Descriptor) {
    let mut opts = SealOptions::new(format, kind);
    opts.mime = Some("application/octet-stream".into());
    let mut blob = Vec::new();
    let d = seal(&opts, plain, &mut blob).unwrap();
    (blob, d)
}

fn open_vec(d: &Descriptor, blob: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open(d, Cursor::new(blob), &mut out)?;
    Ok(out)
}

/// The descriptor an attacker who controls the transport *and* the digest (but not the
/// key) would need: blob length and digest recomputed for the tampered blob.
fn with_digest_of(d: &Descriptor, blob: &[u8]) -> Descriptor {
    let mut d = d.clone();
    d.file_enc_sha256 = sha256(blob);
    d.blob_length = blob.len() as u64;
    d
}

const FORMATS: [MediaFormat; 2] = [MediaFormat::Whatsapp, MediaFormat::Signal];

/// Frozen vectors, computed independently of this crate (Python `cryptography` + `hmac`,
/// following the format definitions in docs/FORMATS-E2EE.md). Do not change.
#[test]
fn frozen_vectors() {
    // WhatsApp video: key 00..1f, plaintext i % 251 for 70 000 bytes, with sidecar.
    let key = whatsapp::MediaKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
    let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let (blob, s) = whatsapp::encrypt(&key.expand(MediaKind::Video), &plain, true).unwrap();
    assert_eq!(blob.len(), 70_026);
    assert_eq!(
        hex::encode(s.file_sha256),
        "9dc177c2fde29dea8e7c29f7ddf147b7c449c99d049c62f3aac0a5933ecf76a3"
    );
    assert_eq!(
        hex::encode(s.file_enc_sha256),
        "58928e4db5a42915a45fabeee3c47d192db27cae09be915c4472c05cece17a44"
    );
    assert_eq!(hex::encode(s.mac), "fd7f3efa53b93c651c90");
    assert_eq!(
        hex::encode(s.sidecar.unwrap()),
        "06fd19b0092b6c93e4b288d3cbde71e16e70a2bd"
    );
    // Signal: key 40..7f, IV c8..d7, plaintext i % 7 for 1000 bytes (padded to 1020).
    let key = signal::SignalKey::from_bytes(&(64u8..128).collect::<Vec<_>>()).unwrap();
    let iv: [u8; 16] = core::array::from_fn(|i| 200 + i as u8);
    let plain: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
    let (blob, s) = signal::encrypt_with_iv(&key, iv, &plain).unwrap();
    assert_eq!(signal::pad_size(1000), 1020);
    assert_eq!(blob.len(), 1072);
    assert_eq!(
        hex::encode(s.digest),
        "994023800bbcca101e316138a164e1b31cc86f7b2d88141b98afa155c9547684"
    );
}

#[test]
fn descriptor_json_roundtrip_and_redaction() {
    for format in FORMATS {
        let (blob, d) = sealed(format, MediaKind::Video, &sample(70_000));
        let json = d.to_json_pretty();
        let back = Descriptor::from_json(&json).unwrap();
        assert_eq!(back, d);
        let via_serde: Descriptor = serde_json::from_str(&json).unwrap();
        assert_eq!(via_serde, d);
        assert_eq!(open_vec(&back, &blob).unwrap(), sample(70_000));
        let dbg = format!("{d:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(!dbg.contains(&b64(d.key.as_bytes())));
        assert_eq!(d.blob_length, d.expected_blob_length());
        if format == MediaFormat::Whatsapp {
            assert_eq!(d.sidecar.as_ref().map(Vec::len), Some(20));
        }
    }
}

#[test]
fn descriptor_errors_are_clear() {
    let (_, d) = sealed(MediaFormat::Whatsapp, MediaKind::Image, b"hi");
    let json = d.to_json_pretty();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["file_sha256"] = "not*base64!".into();
    let err = Descriptor::from_json(&v.to_string()).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::InvalidBase64 {
                field: "file_sha256"
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "descriptor field `file_sha256` is not valid base64"
    );

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["key"] = "@@@@".into();
    assert!(matches!(
        Descriptor::from_json(&v.to_string()),
        Err(FormatError::InvalidBase64 { field: "key" })
    ));
    v["key"] = b64(&[1; 16]).into();
    assert!(matches!(
        Descriptor::from_json(&v.to_string()),
        Err(FormatError::FieldLength {
            field: "key",
            expected: 32,
            actual: 16
        })
    ));
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["file_enc_sha256"] = b64(&[1; 31]).into();
    assert!(matches!(
        Descriptor::from_json(&v.to_string()),
        Err(FormatError::FieldLength {
            field: "file_enc_sha256",
            ..
        })
    ));
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["format"] = "opaque".into();
    assert!(matches!(
        Descriptor::from_json(&v.to_string()),
        Err(FormatError::Descriptor(_))
    ));
    assert!(matches!(
        Descriptor::from_json("{"),
        Err(FormatError::Descriptor(_))
    ));
    // URL-safe unpadded base64 and Signal's field names are accepted.
    let (_, s) = sealed(MediaFormat::Signal, MediaKind::Document, b"x");
    let mut v: serde_json::Value = serde_json::from_str(&s.to_json_pretty()).unwrap();
    let obj = v.as_object_mut().unwrap();
    let digest = obj.remove("file_enc_sha256").unwrap();
    obj.insert("digest".into(), digest);
    let size = obj.remove("file_length").unwrap();
    obj.insert("size".into(), size);
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.key.as_bytes());
    obj.insert("key".into(), key.into());
    assert_eq!(Descriptor::from_json(&v.to_string()).unwrap(), s);
}

#[test]
fn wrong_key_is_a_mac_failure() {
    for format in FORMATS {
        let (blob, d) = sealed(format, MediaKind::Document, &sample(1000));
        let mut wrong = d.clone();
        wrong.key = match format {
            MediaFormat::Whatsapp => KeyMaterial::Whatsapp(whatsapp::MediaKey::generate().unwrap()),
            _ => KeyMaterial::Signal(signal::SignalKey::generate().unwrap()),
        };
        assert!(matches!(
            open_vec(&wrong, &blob),
            Err(FormatError::MacMismatch)
        ));
        // The same key under another kind is another WhatsApp key too.
        if format == MediaFormat::Whatsapp {
            let mut other = d.clone();
            other.kind = MediaKind::Audio;
            assert!(matches!(
                open_vec(&other, &blob),
                Err(FormatError::MacMismatch)
            ));
        }
    }
}

#[test]
fn flipped_bits_in_every_region() {
    for format in FORMATS {
        let plain = sample(5000);
        let (blob, d) = sealed(format, MediaKind::Video, &plain);
        let n = blob.len();
        let mac_len = if format == MediaFormat::Whatsapp {
            10
        } else {
            32
        };
        // (region, byte index): Signal's IV is in the blob; WhatsApp's is derived, so its
        // first ciphertext block (the one the IV whitens) stands in for it.
        let regions = [
            ("iv/first block", 3),
            ("body", n / 2),
            ("last block", n - mac_len - 5),
            ("mac first byte", n - mac_len),
            ("mac last byte", n - 1),
        ];
        for (region, i) in regions {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            let mut out = Vec::new();
            let err = open(&d, Cursor::new(&bad), &mut out).unwrap_err();
            assert!(
                matches!(err, FormatError::EncDigestMismatch),
                "{format} {region}: {err}"
            );
            assert!(out.is_empty(), "no plaintext may leave on failure");
            let forged = with_digest_of(&d, &bad);
            let err = open(&forged, Cursor::new(&bad), &mut out).unwrap_err();
            assert!(
                matches!(err, FormatError::MacMismatch),
                "{format} {region}: {err}"
            );
            assert!(out.is_empty(), "no plaintext may leave on failure");
        }
        // Sidecar tampering is a MAC failure too.
        if let Some(sc) = &d.sidecar {
            let mut bad = d.clone();
            let mut s = sc.clone();
            s[3] ^= 1;
            bad.sidecar = Some(s);
            assert!(matches!(
                open_vec(&bad, &blob),
                Err(FormatError::MacMismatch)
            ));
            bad.sidecar = Some(sc[..sc.len() - 1].to_vec());
            assert!(matches!(
                open_vec(&bad, &blob),
                Err(FormatError::InvalidSidecar { .. })
            ));
        }
    }
}

#[test]
fn truncated_and_extended_blobs() {
    for format in FORMATS {
        let (blob, d) = sealed(format, MediaKind::Image, &sample(3000));
        let n = blob.len();
        for bad in [&blob[..n - 1], &blob[..n - 16], &blob[..10]] {
            let err = open_vec(&d, bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    FormatError::MalformedBlob { .. } | FormatError::BlobLengthMismatch { .. }
                ),
                "{format}: {err}"
            );
        }
        assert!(matches!(
            open_vec(&d, &blob[..n - 1]),
            Err(FormatError::MalformedBlob { .. })
        ));
        assert!(matches!(
            open_vec(&d, &blob[..n - 16]),
            Err(FormatError::BlobLengthMismatch { .. })
        ));
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(
            open_vec(&d, &longer),
            Err(FormatError::MalformedBlob { .. })
        ));
        longer.extend_from_slice(&[0; 15]);
        assert!(matches!(
            open_vec(&d, &longer),
            Err(FormatError::BlobLengthMismatch { .. })
        ));
        // Even with a forged digest and length, a truncated blob fails its MAC.
        let cut = [&blob[..16], &blob[32..]].concat();
        let mut forged = with_digest_of(&d, &cut);
        forged.file_length = d.file_length - 16;
        assert!(matches!(
            open_vec(&forged, &cut),
            Err(FormatError::MacMismatch)
        ));
    }
}

#[test]
fn wrong_digests_in_descriptor() {
    for format in FORMATS {
        let (blob, d) = sealed(format, MediaKind::Voice, &sample(777));
        let mut bad = d.clone();
        bad.file_enc_sha256[0] ^= 1;
        assert!(matches!(
            open_vec(&bad, &blob),
            Err(FormatError::EncDigestMismatch)
        ));
        let mut bad = d.clone();
        bad.file_sha256[31] ^= 1;
        assert!(matches!(
            open_vec(&bad, &blob),
            Err(FormatError::PlainDigestMismatch)
        ));
        let mut bad = d.clone();
        bad.file_length += 1;
        let err = open_vec(&bad, &blob).unwrap_err();
        assert!(
            matches!(
                err,
                FormatError::BlobLengthMismatch { .. }
                    | FormatError::PlainLengthMismatch { .. }
                    | FormatError::PlainDigestMismatch
                    | FormatError::CorruptPlaintext
            ),
            "{format}: {err}"
        );
    }
}

#[test]
fn bad_padding_behind_a_good_mac_is_corrupt_plaintext() {
    // WhatsApp: a final block that is not PKCS#7, authenticated with the right MAC.
    let key = whatsapp::MediaKey::generate().unwrap();
    let keys = key.expand(MediaKind::Document);
    let mut ct = [0xA5u8; 32];
    ct[31] = 0;
    cbc_encrypt_in_place(&mut cbc_encryptor(&keys.cipher_key, &keys.iv), &mut ct);
    let mut h = hmac_sha256(&keys.mac_key);
    hmac::Mac::update(&mut h, &keys.iv);
    hmac::Mac::update(&mut h, &ct);
    let tag = hmac::Mac::finalize(h).into_bytes();
    let blob = [&ct[..], &tag[..10]].concat();
    let d = Descriptor {
        kind: MediaKind::Document,
        mime: None,
        key: KeyMaterial::Whatsapp(key),
        file_sha256: [0; 32],
        file_enc_sha256: sha256(&blob),
        file_length: 31,
        blob_length: blob.len() as u64,
        sidecar: None,
        incremental_mac: None,
        metadata: None,
    };
    assert!(matches!(
        open_vec(&d, &blob),
        Err(FormatError::CorruptPlaintext)
    ));

    // Signal: same, with the IV in the blob.
    let skey = signal::SignalKey::generate().unwrap();
    let iv = [7u8; 16];
    let mut ct = [0x5Au8; 32];
    ct[31] = 17;
    cbc_encrypt_in_place(&mut cbc_encryptor(skey.aes_key(), &iv), &mut ct);
    let mut h = hmac_sha256(skey.mac_key());
    hmac::Mac::update(&mut h, &iv);
    hmac::Mac::update(&mut h, &ct);
    let tag = hmac::Mac::finalize(h).into_bytes();
    let blob = [&iv[..], &ct[..], &tag[..]].concat();
    let d = Descriptor {
        key: KeyMaterial::Signal(skey),
        file_enc_sha256: sha256(&blob),
        file_length: 10,
        blob_length: blob.len() as u64,
        ..d
    };
    assert!(matches!(
        open_vec(&d, &blob),
        Err(FormatError::CorruptPlaintext)
    ));
}

#[test]
fn padding_oracle_probes_all_look_the_same() {
    // Classic CBC padding-oracle probes (tweaking the second-to-last block so the last
    // plaintext byte takes every value) never reach the padding check: every probe is the
    // same MAC failure, and nothing is written.
    for format in FORMATS {
        let (blob, d) = sealed(format, MediaKind::Document, &sample(100));
        let mac_len = if format == MediaFormat::Whatsapp {
            10
        } else {
            32
        };
        let target = blob.len() - mac_len - 16 - 1;
        for guess in 0..=255u8 {
            let mut probe = blob.clone();
            probe[target] ^= guess | 1;
            let forged = with_digest_of(&d, &probe);
            let mut out = Vec::new();
            let err = open(&forged, Cursor::new(&probe), &mut out).unwrap_err();
            assert!(matches!(err, FormatError::MacMismatch));
            assert!(out.is_empty());
        }
    }
}

#[test]
fn sealer_streams_in_pieces() {
    for format in FORMATS {
        let plain = sample(200_001);
        let mut opts = SealOptions::new(format, MediaKind::Video);
        opts.incremental_mac_for_size = Some(plain.len() as u64);
        let mut s = Sealer::new(&opts).unwrap();
        let mut blob = Vec::new();
        for c in plain.chunks(12_345) {
            s.update(c, &mut blob).unwrap();
        }
        let d = s.finish(&mut blob).unwrap();
        assert_eq!(d.blob_length, blob.len() as u64);
        assert_eq!(d.incremental_mac.is_some(), format == MediaFormat::Signal);
        assert_eq!(open_vec(&d, &blob).unwrap(), plain);
    }
    assert!(Sealer::new(&SealOptions::new(MediaFormat::Opaque, MediaKind::Image)).is_err());
}

#[test]
fn open_to_path_leaves_nothing_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (blob, d) = sealed(MediaFormat::Signal, MediaKind::Image, &sample(2000));
    let blob_path = dir.path().join("blob");
    std::fs::write(&blob_path, &blob).unwrap();
    let out = dir.path().join("plain.bin");
    let mut bad = d.clone();
    bad.file_sha256[0] ^= 1;
    assert!(matches!(
        open_to_path(&bad, &blob_path, &out),
        Err(FormatError::PlainDigestMismatch)
    ));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the blob"
    );
    open_to_path(&d, &blob_path, &out).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), sample(2000));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[tokio::test]
async fn async_seal_and_open() {
    for format in FORMATS {
        let plain = sample(150_000);
        let opts = SealOptions::new(format, MediaKind::Audio);
        let mut blob = Vec::new();
        let d = seal_async(&opts, plain.as_slice(), &mut blob)
            .await
            .unwrap();
        let mut out = Vec::new();
        let opened = open_async(&d, Cursor::new(&blob), &mut out).await.unwrap();
        assert_eq!(out, plain);
        assert_eq!(opened.plaintext_length, plain.len() as u64);
        let mut bad = blob.clone();
        bad[100] ^= 1;
        let mut out = Vec::new();
        let err = open_async(&with_digest_of(&d, &bad), Cursor::new(&bad), &mut out)
            .await
            .unwrap_err();
        assert!(matches!(err, FormatError::MacMismatch));
        assert!(out.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn roundtrip(
        plain in proptest::collection::vec(any::<u8>(), 0..5000),
        kind_ix in 0usize..6,
        signal in any::<bool>(),
        piece in 1usize..700,
    ) {
        let format = if signal { MediaFormat::Signal } else { MediaFormat::Whatsapp };
        let kind = MediaKind::ALL[kind_ix];
        let mut s = Sealer::new(&SealOptions::new(format, kind)).unwrap();
        let mut blob = Vec::new();
        for c in plain.chunks(piece) {
            s.update(c, &mut blob).unwrap();
        }
        let d = s.finish(&mut blob).unwrap();
        prop_assert!(format.length_is_valid(blob.len() as u64));
        let d = Descriptor::from_json(&d.to_json_pretty()).unwrap();
        let verified = verify(&d, blob.chunks(piece).flatten().copied().collect::<Vec<_>>().as_slice()).unwrap();
        let mut out = Vec::new();
        decrypt_verified(&d, &verified, blob.as_slice(), &mut out).unwrap();
        prop_assert_eq!(out, plain);
    }
}
