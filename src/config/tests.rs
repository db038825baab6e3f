//! Configuration: layering, secrets, validation messages that name the key.

use super::*;

fn with_keys(extra: &str) -> String {
    format!(
        "[keys]\nactive = \"k1\"\n[keys.master.k1]\nkey = \"{}\"\n[tokens]\nactive = \"t1\"\n[tokens.keys.t1]\nkey = \"{}\"\n{extra}",
        SecretKey::from_bytes([1; 32]).to_base64(),
        SecretKey::from_bytes([2; 32]).to_base64()
    )
}

fn load(toml: &str) -> Result<Settings, ConfigError> {
    let c = Config::load(&Sources {
        dev_layer: Some(toml.to_string()),
        ..Default::default()
    })?;
    Settings::resolve(&c)
}

#[test]
fn defaults_parse_but_need_keys() {
    let c = Config::load(&Sources::default()).unwrap();
    let e = Settings::resolve(&c).unwrap_err();
    assert_eq!(e.key, "keys.active");
    assert!(load(&with_keys("")).is_ok());
}

#[test]
fn errors_name_the_key() {
    assert_eq!(
        load(&with_keys("[server]\nlisten = \"nope\""))
            .unwrap_err()
            .key,
        "server.listen"
    );
    assert_eq!(
        load(&with_keys("[storage]\nurl = \"ftp://x\""))
            .unwrap_err()
            .key,
        "storage.url"
    );
    assert_eq!(
        load(&with_keys("[server]\nlistn = \"x\"")).unwrap_err().key,
        "server.listn"
    );
    assert_eq!(
        load(&with_keys("[partners.a]\nkey_sha256 = \"zz\"\nscopes = []"))
            .unwrap_err()
            .key,
        "partners.a.key_sha256"
    );
    let h = "0".repeat(64);
    assert_eq!(
        load(&with_keys(&format!(
            "[partners.a]\nkey_sha256 = \"{h}\"\nscopes = [\"fly\"]"
        )))
        .unwrap_err()
        .key,
        "partners.a.scopes"
    );
    let toml = format!(
        "[keys]\nactive = \"k1\"\n[keys.master.k1]\nkey_file = \"/nonexistent\"\n[tokens]\nactive = \"t1\"\n[tokens.keys.t1]\nkey = \"{}\"\n",
        SecretKey::from_bytes([2; 32]).to_base64()
    );
    let e = load(&toml).unwrap_err();
    assert_eq!(e.key, "keys.master.k1.key_file");
}

#[test]
fn secret_file_works_and_debug_redacts() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k");
    std::fs::write(&f, SecretKey::from_bytes([3; 32]).to_base64()).unwrap();
    let toml = format!(
        "[keys]\nactive = \"k1\"\n[keys.master.k1]\nkey_file = \"{}\"\n[tokens]\nactive = \"t1\"\n[tokens.keys.t1]\nkey = \"{}\"\n",
        f.display(),
        SecretKey::from_bytes([2; 32]).to_base64()
    );
    let s = load(&toml).unwrap();
    assert_eq!(s.master_keys.get("k1").unwrap().expose(), &[3; 32]);
    let c = Config::load(&Sources {
        dev_layer: Some(toml),
        ..Default::default()
    })
    .unwrap();
    let shown = format!("{c:?} {s:?}");
    assert!(
        !shown.contains(&SecretKey::from_bytes([2; 32]).to_base64()),
        "{shown}"
    );
}
